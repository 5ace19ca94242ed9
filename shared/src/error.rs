//! The error type of expected failures, with the exit code each maps to.

use crate::exit;

/// Errors a sysadmin can act on. Each variant names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration key has a bad value (or the file cannot be read/parsed).
    #[error("configuration: {0}")]
    Config(String),
    /// A store cannot be opened, read or written.
    #[error("store {path}: {reason}")]
    Store { path: String, reason: String },
    /// Bad command-line usage.
    #[error("{0}")]
    Usage(String),
    /// A listener cannot be bound.
    #[error("{0}")]
    Bind(String),
    /// The SIPIL web service (TLS, network, HTTP status, response) failed.
    #[error("{0}")]
    Remote(String),
    /// A month older than `store.retention_months`: its rows are purged.
    #[error("{0}")]
    TooOld(String),
    /// A registry change that would alter a month already accepted by the ANS
    /// (without `--force`), or dated in the future.
    #[error("{0}")]
    Refused(String),
    /// The central PostgreSQL (`[central]`) cannot be used.
    #[error("central store: {0}")]
    Central(String),
    /// The month is not complete centrally: a node lags.
    #[error("{0}")]
    Incomplete(String),
    /// Anything else, with context.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Usage(_) => exit::CONFIG,
            Error::Store { .. } => exit::STORE,
            Error::Bind(_) => exit::BIND,
            Error::Remote(_) => exit::SIPIL,
            Error::TooOld(_) => exit::TOO_OLD,
            Error::Refused(_) => exit::REFUSED,
            Error::Central(_) => exit::CENTRAL,
            Error::Incomplete(_) => exit::INCOMPLETE,
            Error::Other(_) => exit::UNEXPECTED,
        }
    }

    pub fn store(path: impl std::fmt::Display, reason: impl std::fmt::Display) -> Self {
        Error::Store {
            path: path.to_string(),
            reason: reason.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
