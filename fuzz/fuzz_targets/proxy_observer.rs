#![no_main]
//! Proxy session ingest, both directions: op stream of client bytes, raw upstream bytes and canned replies (mss_sidecar::fuzz::observer_session).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mss_sidecar::fuzz::observer_session(data);
});
