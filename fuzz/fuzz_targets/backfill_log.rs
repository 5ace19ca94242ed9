#![no_main]
//! mss-admin logins import (Dovecot and Postfix log formats).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mss_sidecar::fuzz::backfill_log(data);
});
