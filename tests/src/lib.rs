//! # mss-tests: end-to-end test support
//!
//! - [`postfix`]: private Postfix instances (own config, queue, loopback port).
//! - [`swaks`]: the swaks client.
//! - [`smtp`]: a raw SMTP client for exact bytes and pipelining.
//! - [`sidecar`]: the proxy in-process, the binaries, reading captured rows.

pub mod postfix;
pub mod sidecar;
pub mod smtp;
pub mod swaks;
