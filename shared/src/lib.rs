//! # mss-shared: what every mss-sidecar binary agrees on
//!
//! ## Layout
//! - [`central`]: `[central]`, several nodes through PostgreSQL (schema, nodes, shipping, the merged snapshot).
//! - [`certificate`]: days left on the operator's client certificate.
//! - [`config`]: the TOML configuration, strict loading and validation.
//! - [`coverage`]: `[coverage]`, from which day every login is captured.
//! - [`model`]: records handed from the front ends to the capture writer; MAIL_ID.
//! - [`month`]: months and time zones (`operator.timezone`), CSV date format.
//! - [`store`]: the RocksDB stores and their key layout ([`store::capture`]).
//! - [`output`]: `--json` output structs.
//! - [`listeblanche`]: the ANS liste blanche (Espace de Confiance domains).
//! - [`exit`]: process exit codes; [`error`]: expected errors and their codes.
//! - [`indicators`]: the ANS rules (addresses, admission, membership, Connexions), pure.
//! - [`figures`]: a month read from the stores through [`indicators`]: rows and their
//!   fate, Connexions lines with their rule (exporter, counts, connexions, show).
//! - [`report`]: a structure's monthly report (figures from [`figures`]; HTML, JSON, CSV).

pub mod central;
pub mod certificate;
pub mod config;
pub mod coverage;
pub mod error;
pub mod exit;
pub mod figures;
pub mod indicators;
pub mod listeblanche;
pub mod model;
pub mod month;
pub mod output;
pub mod report;
pub mod store;

pub use error::{Error, Result};
