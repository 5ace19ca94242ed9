//! # mss-sidecar: capture MSSanté statistics inline
//!
//! ## Where a recipient goes
//! client → [`proxy`] session → [`proxy::observer`] (the next hop accepted the
//! RCPT, then the message) → [`recorder::Recorder::message`] (classify, MAIL_ID,
//! record) → [`capture::Capture::commit`] (group commit, bounded wait, journal)
//! → `mss_shared::store::capture` (one `out` row per recipient) →
//! `mss_shared::indicators` through `mss_shared::figures` (each row's fate in its
//! month) → `mss_exporter::build` (the Echanges CSV). Through the milter:
//! Postfix → [`milter`] callbacks → the same recorder. Each step only calls the
//! next; nothing calls back up.
//!
//! ## Layout
//! - [`daemon`]: `mss-sidecar` itself: load config, open the store, start the
//!   capture writer and the configured front ends, stop on SIGTERM.
//! - [`recorder`]: the one recording path: a front end hands it a finished
//!   transaction (or a login, or a recipient outside the Espace de Confiance);
//!   it classifies, makes the MAIL_ID, builds the record, commits, counts.
//! - [`capture`]: the capture writer (group commit, bounded wait, journal).
//! - [`proxy`]: the SMTP proxy front end and its protocol [`proxy::observer`].
//! - [`milter`]: the milter front end (Postfix `smtpd_milters` / `non_smtpd_milters`).
//! - [`events`]: login events: HTTP endpoint (Dovecot 2.3/2.4 `event_exporter`, generic JSON) and Dovecot's `last_login` dict socket (`events/dict.rs`, protocol 3 and 4; `events/generations.rs`: tests of both Dovecot generations).
//! - [`privdrop`]: becoming `[service] user` when started as root.
//! - [`shipper`]: `[central]`: the outbox to PostgreSQL, exactly once, off the SMTP path.
//! - [`marks`]: `started` / `stopping` / `stopped` lines in Postfix's log (`postlog`), read by reconcile.
//! - [`policy`]: the liste blanche policy (refuse or report recipients outside the Espace de Confiance).
//! - [`http`]: the HTTP listeners on axum: bearer-token layer, `/metrics` router, serving.
//! - [`metrics`]: the metrics on `prometheus-client` (typed label sets); [`export_watch`]: the
//!   export state and certificate expiry read for `/metrics` every minute.
//! - [`admin`]: every `mss-admin` subcommand, one file per group (counts,
//!   mailbox, logins, status, reconcile, report…); depends on `mss-shared`
//!   only, and nothing of the daemon depends on it.
//! - [`fuzz`]: byte-in entry points of every parser, for `fuzz/` and the smoke test.
//! - [`cli`]: error printing and exit codes shared by the binaries.

pub mod admin;
pub mod capture;
pub mod cli;
pub mod daemon;
pub mod events;
pub mod export_watch;
#[doc(hidden)]
pub mod fuzz;
pub mod http;
pub mod marks;
pub mod metrics;
pub mod milter;
pub mod policy;
pub mod privdrop;
pub mod proxy;
pub mod recorder;
pub mod shipper;
