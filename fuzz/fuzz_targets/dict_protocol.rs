#![no_main]
//! Dovecot last_login dict-proxy lines.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mss_sidecar::fuzz::dict_lines(data);
});
