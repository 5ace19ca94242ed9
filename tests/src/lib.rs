//! # mss-tests: end-to-end test support
//!
//! - [`bench`]: the benchmarks' load generator (smtp-source) and median.
//! - [`central_bench`]: `mss-bench central`, a node's backlog shipped to PostgreSQL.
//! - [`chromium`]: headless Chromium (PDF, PNG), bounded, its process group killed.
//! - [`config`]: test configurations built from the `Config` types (TOML by `Config::to_toml`).
//! - [`daemon`]: the real `mss-sidecar` as a child, with its `/proc` figures.
//! - [`files`]: the month's files from `mss-export build`, the generic login endpoint.
//! - [`fake_upstream`]: a misbehaving (or accepting) SMTP next hop.
//! - [`multinode`]: the several-nodes tests' PostgreSQL, nodes and their MAIL_IDs.
//! - [`golden`]: the golden-files test's crafted month and its comparison.
//! - [`guard`]: bounded waits on child processes; a guard that stops a child on drop.
//! - [`dovecot`]: a private Dovecot as SASL server.
//! - [`debian13`]: the Debian 13 chroot (Dovecot 2.4, Postfix 3.10) and a Dovecot 2.4 in it.
//! - [`maillog`]: the reconcile tests' Postfix with the sidecar as milter, its log, `reconcile`.
//! - [`lanes`]: checks run alike in the Debian 12 and Debian 13 lanes (Dovecot 2.3 / 2.4).
//! - [`postgres`]: a private PostgreSQL 15 (TLS, scram, the three roles), stopped on drop.
//! - [`postfix`]: private Postfix instances (own config, queue, loopback port).
//! - [`structures`]: the structures' report test: files read, expected figures, `/metrics` checked.
//! - [`swaks`]: the swaks client.
//! - [`smtp`]: a raw SMTP client for exact bytes and pipelining.
//! - [`sidecar`]: the proxy in-process, the binaries, reading captured rows.
//! - [`sipil`]: a local mTLS SIPIL server and its test PKI (rcgen).

pub mod bench;
pub mod central_bench;
pub mod chromium;
pub mod config;
pub mod daemon;
pub mod debian13;
pub mod dovecot;
pub mod fake_upstream;
pub mod files;
pub mod golden;
pub mod guard;
pub mod lanes;
pub mod maillog;
pub mod multinode;
pub mod postfix;
pub mod postgres;
pub mod sidecar;
pub mod sipil;
pub mod smtp;
pub mod structures;
pub mod swaks;
