#![no_main]
//! mss-admin mailbox import CSV.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mss_sidecar::fuzz::mailbox_csv(data);
});
