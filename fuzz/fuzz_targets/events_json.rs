#![no_main]
//! POST /v1/dovecot and /v1/logins bodies.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mss_sidecar::fuzz::events_json(data);
});
