//! # mss-tests: end-to-end test support
//!
//! - [`dovecot`]: a private Dovecot as SASL server.
//! - [`postfix`]: private Postfix instances (own config, queue, loopback port).
//! - [`swaks`]: the swaks client.
//! - [`smtp`]: a raw SMTP client for exact bytes and pipelining.
//! - [`sidecar`]: the proxy in-process, the binaries, reading captured rows.
//! - [`sipil`]: a local mTLS SIPIL server and its test PKI (rcgen).

pub mod dovecot;
pub mod postfix;
pub mod sidecar;
pub mod sipil;
pub mod smtp;
pub mod swaks;
