//! `[policy]`: the liste blanche (Espace de Confiance) policy.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::checks::{bad, is_domain};
use crate::error::Result;

/// What to do with a recipient outside the Espace de Confiance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    /// Refuse the recipient (`550 5.7.1`).
    Enforce,
    /// Let it through; count and log it.
    Report,
}

/// `[policy]`: the liste blanche (Espace de Confiance) policy.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The ANS liste blanche XML (kept up to date by `refresh_url` or by
    /// the operator).
    pub liste_blanche: PathBuf,
    #[serde(default = "default_policy_mode")]
    pub mode: PolicyMode,
    /// Extra domains treated as inside (e.g. a partner not yet listed).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Refuse a new copy that loses more than this share of the domains.
    #[serde(default = "default_max_drop")]
    pub max_drop_percent: u32,
    /// HTTPS address of the ANS liste blanche: fetched at start and every
    /// `refresh_interval_secs`; a copy that passes the same checks as a
    /// reload replaces `liste_blanche` (atomically), any other is refused and
    /// the good copy kept.
    #[serde(default)]
    pub refresh_url: Option<String>,
    /// CA certificates (PEM) trusted for `refresh_url`, and only those
    /// (e.g. `/etc/ssl/certs/ca-certificates.crt`); required with it.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_refresh_interval")]
    pub refresh_interval_secs: u64,
}

fn default_refresh_interval() -> u64 {
    86_400
}

fn default_policy_mode() -> PolicyMode {
    PolicyMode::Report
}

fn default_max_drop() -> u32 {
    10
}

impl Policy {
    pub(super) fn validate(&mut self) -> Result<()> {
        let p = self;
        for d in &mut p.allow {
            *d = d.trim().trim_end_matches('.').to_ascii_lowercase();
            if !is_domain(d) {
                return bad("policy.allow", format!("{d:?} is not a domain name"));
            }
        }
        if p.max_drop_percent > 100 {
            return bad(
                "policy.max_drop_percent",
                "must be between 0 and 100".into(),
            );
        }
        if let Some(u) = &p.refresh_url {
            if !u.starts_with("https://") || u.len() <= "https://".len() {
                return bad(
                    "policy.refresh_url",
                    format!("{u:?}: must be an https:// address"),
                );
            }
            match &p.ca_file {
                None => return bad(
                    "policy.ca_file",
                    "required with policy.refresh_url: the CA certificates (PEM) to trust for it"
                        .into(),
                ),
                Some(ca) if !ca.is_file() => {
                    return bad("policy.ca_file", format!("{}: no such file", ca.display()))
                }
                Some(_) => {}
            }
            if p.refresh_interval_secs == 0 {
                return bad("policy.refresh_interval_secs", "must be at least 1".into());
            }
        }
        if !p.liste_blanche.is_file() {
            return bad(
                "policy.liste_blanche",
                format!("{}: no such file (download it from https://espacedeconfiance.mssante.fr/listeblanchemssante.xml)", p.liste_blanche.display()),
            );
        }
        Ok(())
    }
}
