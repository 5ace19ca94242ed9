//! `[central]`: several nodes replicate to the operator's PostgreSQL (see
//! [`crate::central`]). Absent: single node, nothing changes.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::checks::bad;
use crate::error::Result;

/// How the connection to PostgreSQL is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CentralTls {
    /// TLS, the server's certificate checked against `ca_file` and the host name.
    VerifyFull,
    /// TLS, the certificate not checked (a network you trust against active attackers only).
    Require,
    /// No TLS: only for a Unix socket (`host=/run/postgresql`).
    Disable,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Central {
    /// libpq-style URL, `postgresql://user@host[:port][,host2[:port2]]/db`
    /// (several hosts: the first that accepts a read-write session), or a
    /// key=value string. Never the password.
    pub url: String,
    /// A file holding the password (first line); never in config.toml.
    pub password_file: Option<PathBuf>,
    /// The CA that signed the server's certificate (verify-full).
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_tls")]
    pub tls: CentralTls,
    /// Rows per shipped batch (one PostgreSQL transaction each).
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
}

fn default_tls() -> CentralTls {
    CentralTls::VerifyFull
}

fn default_batch_rows() -> usize {
    5000
}

impl Central {
    pub(super) fn validate(&self) -> Result<()> {
        let parsed: std::result::Result<tokio_postgres::Config, _> = self.url.parse();
        let pg = match parsed {
            Ok(c) => c,
            Err(e) => {
                return bad(
                    "central.url",
                    format!("{:?} is not a PostgreSQL URL: {e}", self.url),
                )
            }
        };
        if pg.get_password().is_some() {
            return bad(
                "central.url",
                "holds a password: put it in central.password_file (mode 0640, root:mss)".into(),
            );
        }
        if pg.get_user().is_none() {
            return bad(
                "central.url",
                "names no user (postgresql://USER@host/db)".into(),
            );
        }
        if pg.get_dbname().is_none() {
            return bad(
                "central.url",
                "names no database (postgresql://user@host/DB)".into(),
            );
        }
        let unix_only = pg
            .get_hosts()
            .iter()
            .all(|h| matches!(h, tokio_postgres::config::Host::Unix(_)));
        match self.tls {
            CentralTls::Disable if !unix_only => {
                return bad(
                    "central.tls",
                    "\"disable\" is only allowed when every host is a Unix socket".into(),
                )
            }
            CentralTls::VerifyFull if self.ca_file.is_none() && !unix_only => {
                return bad(
                    "central.ca_file",
                    "missing: verify-full (the default) checks the server against this CA".into(),
                )
            }
            _ => {}
        }
        if !(100..=100_000).contains(&self.batch_rows) {
            return bad(
                "central.batch_rows",
                format!("{} is out of 100..=100000", self.batch_rows),
            );
        }
        Ok(())
    }
}
