//! # mss-exporter: the monthly ANS archive
//!
//! ## Layout
//! - [`build`]: CSV files per domain and the ZIP archive(s) of a month.
//! - [`validate`]: SPEC.md checks on a ZIP or CSV, every problem listed.

pub mod build;
pub mod validate;
