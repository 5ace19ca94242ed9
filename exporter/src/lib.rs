//! # mss-exporter: the monthly ANS archive
//!
//! ## Layout
//! - [`build`]: CSV files per domain and the ZIP archive(s) of a month.
//! - [`quarantine`]: `AAAAMM_quarantine.csv`, the rows a build could not write validly.
//! - [`validate`]: SPEC.md checks on a ZIP or CSV, every problem listed.
//! - [`sipil`]: the SIPIL client (deposit, report) over mutual TLS.
//! - [`state`]: the per-month delivery record in the registry DB.
//! - [`mail_reports`]: each structure's report mailed once the month is accepted.
//! - [`run`]: `submit`, `report`, `run` (the timer's state machine); [`status`]: `status`.

pub mod build;
pub mod mail_reports;
pub mod quarantine;
pub mod run;
pub mod sipil;
pub mod state;
pub mod status;
pub mod validate;
