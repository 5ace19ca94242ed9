//! # indicators: the ANS rules, pure (no I/O), in one place
//!
//! Every figure the product states — the exporter's files, `mss-admin counts`,
//! `mss-admin connexions`, `mailbox show/list`, the reports — is decided here,
//! so that two of them can never disagree.
//!
//! ## Layout
//! - [`address`]: address canonicalisation (sub-addresses, trailing dots, SRS forwards).
//! - [`admission`]: row admission: which captured rows can be written validly, the others
//!   quarantined with their reason.
//! - [`membership`]: whether a BAL belongs to month M's files, or why it is excluded.
//! - [`connexions`]: the Connexions date of a BAL for month M and the rule that produced it.

pub mod address;
pub mod admission;
pub mod connexions;
pub mod membership;
