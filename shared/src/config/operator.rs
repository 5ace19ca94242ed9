//! `[operator]`: the operator's domains, time zone, node name; `[service]`: the user the daemon runs as.

use serde::{Deserialize, Serialize};

use super::checks::{bad, is_domain};
use crate::error::Result;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    /// Mail domains of the operator: senders on these domains make Echanges rows.
    pub domains: Vec<String>,
    #[serde(default = "default_tz")]
    pub timezone: String,
    /// Node name, part of every MAIL_ID: unique per sidecar.
    #[serde(default = "default_node")]
    pub node: String,
    /// Postfix's `recipient_delimiter` (e.g. `"+"`): `alice+x@d` is BAL `alice@d`. Empty = off.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub recipient_delimiter: String,
}

fn default_tz() -> String {
    "Europe/Paris".into()
}

fn default_node() -> String {
    "mx1".into()
}

impl Operator {
    /// The operator of `domains`, every other key at its default.
    pub fn new(domains: &[&str]) -> Operator {
        Operator {
            domains: domains.iter().map(|d| d.to_string()).collect(),
            timezone: default_tz(),
            node: default_node(),
            recipient_delimiter: String::new(),
        }
    }

    pub(super) fn validate(&self) -> Result<()> {
        if self.domains.is_empty() {
            return bad(
                "operator.domains",
                "at least one mail domain is required".into(),
            );
        }
        for d in &self.domains {
            if !is_domain(d) {
                return bad(
                    "operator.domains",
                    format!("{d:?} is not a mail domain (lower-case labels, e.g. \"ch-exemple.mssante.fr\")"),
                );
            }
        }
        if jiff::tz::TimeZone::get(&self.timezone).is_err() {
            return bad(
                "operator.timezone",
                format!(
                    "unknown time zone {:?} (e.g. \"Europe/Paris\")",
                    self.timezone
                ),
            );
        }
        let node_ok = !self.node.is_empty()
            && self.node.len() <= 64
            && self
                .node
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !node_ok {
            return bad(
                "operator.node",
                format!(
                    "{:?} must be 1-64 letters, digits or '-' (it is part of every MAIL_ID)",
                    self.node
                ),
            );
        }
        Ok(())
    }
}

/// `[service]`: how the daemon runs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// When `mss-sidecar` is started as root, the user it becomes once its
    /// listeners are bound (before any store is opened). Ignored otherwise;
    /// `"root"` explicitly keeps root (tests, containers: not recommended).
    #[serde(default = "default_service_user")]
    pub user: String,
    /// Write `started` / `stopping` / `stopped` marks into Postfix's log
    /// with `postlog` (tag `mss-sidecar`), for `mss-admin reconcile`.
    #[serde(default = "yes")]
    pub mail_log_marks: bool,
    /// The Postfix instance whose log gets the marks (`postlog -c`).
    #[serde(default = "default_postfix_config_dir")]
    pub postfix_config_dir: std::path::PathBuf,
}

impl Default for Service {
    fn default() -> Self {
        Service {
            user: default_service_user(),
            mail_log_marks: true,
            postfix_config_dir: default_postfix_config_dir(),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_postfix_config_dir() -> std::path::PathBuf {
    "/etc/postfix".into()
}

fn default_service_user() -> String {
    "mss".into()
}

impl Service {
    pub(super) fn validate(&self) -> Result<()> {
        let u = &self.user;
        if u.is_empty()
            || u.len() > 32
            || !u
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return bad("service.user", format!("{u:?} is not a user name"));
        }
        Ok(())
    }
}
