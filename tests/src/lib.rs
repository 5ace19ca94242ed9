//! # mss-tests: end-to-end test support
//!
//! - [`sidecar`]: the proxy in-process, the binaries, reading captured rows.

pub mod sidecar;
pub mod smtp;
