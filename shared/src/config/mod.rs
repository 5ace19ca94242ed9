//! The TOML configuration (`/etc/mss-sidecar/config.toml`, contract in DESIGN.md).
//!
//! Loading is strict: an unknown key, a missing mandatory key or a bad value is
//! one [`Error::Config`] whose message names the key (and the line when the
//! parser knows it), so that `mss-sidecar` exits 2 with a single actionable line.
//!
//! # Layout
//! One module per section, each with its own validation: [`operator`]
//! (`[operator]`, `[service]`), [`store`], [`proxy`] (`[proxy]`, `[milter]`),
//! [`http`] (`[events]`, `[metrics]`, bearer tokens), [`policy`], [`export`],
//! [`sipil`], [`central`]. `[coverage]` is [`crate::coverage`], `[report]` is
//! [`crate::report::settings`]. This file: [`Config`], loading, and the
//! checks every section shares.

mod central;
mod checks;
mod export;
mod http;
mod operator;
mod policy;
mod proxy;
mod sipil;
mod store;
#[cfg(test)]
mod tests;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use central::{Central, CentralTls};
pub use export::Export;
pub use http::{ct_eq, Events, Metrics, Token, MIN_TOKEN_LEN};
pub use operator::{Operator, Service};
pub use policy::{Policy, PolicyMode};
pub use proxy::{ListenAddr, Milter, Proxy, UpstreamTls};
pub use sipil::{Sipil, DEFAULT_REPORT_ACCEPTED, DEFAULT_REPORT_PENDING, DEFAULT_REPORT_REJECTED};
pub use store::Store;

/// Default configuration file, overridden by `--config` or `MSS_CONFIG`.
pub const DEFAULT_PATH: &str = "/etc/mss-sidecar/config.toml";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub operator: Operator,
    #[serde(default)]
    pub store: Store,
    pub proxy: Option<Proxy>,
    pub milter: Option<Milter>,
    pub events: Option<Events>,
    pub metrics: Option<Metrics>,
    #[serde(default, skip_serializing_if = "Export::is_default")]
    pub export: Export,
    pub sipil: Option<Sipil>,
    pub policy: Option<Policy>,
    #[serde(default)]
    pub service: Service,
    /// `[coverage]`: from which day logins are all captured (see [`crate::coverage`]).
    #[serde(default, skip_serializing_if = "crate::coverage::Coverage::is_default")]
    pub coverage: crate::coverage::Coverage,
    /// `[report]`: structures' reports mailed after acceptance (see [`crate::report::settings`]).
    #[serde(
        default,
        skip_serializing_if = "crate::report::settings::ReportSettings::is_default"
    )]
    pub report: crate::report::settings::ReportSettings,
    /// `[central]`: several nodes replicated to PostgreSQL (see [`crate::central`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub central: Option<Central>,
}

impl Config {
    /// Read, parse and validate the file.
    ///
    /// # Errors
    /// [`Error::Config`] naming the file, the key and (when known) the line.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        Config::parse(&text).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parse and validate a configuration text.
    pub fn parse(text: &str) -> Result<Config> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| {
            let mut msg = e.message().trim().to_string();
            if let Some(span) = e.span() {
                let line = text[..span.start.min(text.len())].lines().count().max(1);
                let section = text[..span.start.min(text.len())]
                    .lines()
                    .rev()
                    .find_map(|l| {
                        let l = l.trim();
                        (l.starts_with('[') && l.ends_with(']')).then(|| l.to_string())
                    });
                msg = match section {
                    Some(s) => format!("line {line} in {s}: {msg}"),
                    None => format!("line {line}: {msg}"),
                };
            }
            Error::Config(msg)
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&mut self) -> Result<()> {
        self.report.validate()?;
        self.operator.validate()?;
        self.store.validate()?;
        if let Some(p) = &self.proxy {
            p.validate()?;
        }
        if let Some(m) = &self.milter {
            m.validate()?;
        }
        if let Some(e) = &mut self.events {
            e.validate()?;
        }
        if let Some(p) = &mut self.policy {
            p.validate()?;
        }
        if let Some(m) = &mut self.metrics {
            m.validate()?;
        }
        self.service.validate()?;
        self.export.validate()?;
        if let Some(s) = &self.sipil {
            s.validate()?;
        }
        if let Some(c) = &self.central {
            c.validate()?;
        }
        Ok(())
    }

    /// The configuration as TOML (what [`Config::parse`] reads back; bearer
    /// tokens are not written, their `token_file` is).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("every configuration serialises")
    }

    /// The configured time zone.
    pub fn tz(&self) -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get(&self.operator.timezone).expect("validated at load")
    }

    /// Create the capture store's directory if needed and prove it is writable
    /// (the daemon calls this before it binds anything).
    ///
    /// # Errors
    /// [`Error::Config`] naming `store.capture_path` (or the journal path).
    pub fn check_capture_writable(&self) -> Result<()> {
        check_dir_writable("store.capture_path", &self.store.capture_path)?;
        let j = self.store.journal_path();
        if let Some(parent) = j.parent() {
            check_dir_writable("store.journal_path", parent)?;
        }
        Ok(())
    }

    /// True when `addr`'s domain is one of the operator's.
    pub fn is_operator_address(&self, addr: &str) -> bool {
        domain_of(addr).is_some_and(|d| self.operator.domains.iter().any(|o| o == &d))
    }
}

/// Create `dir` (mode 0700 on creation) and write a probe file into it.
pub fn check_dir_writable(key: &str, dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                Error::Config(format!("key `{key}`: cannot create {}: {e}", dir.display()))
            })?;
    }
    let probe = dir.join(format!(".write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| {
            Error::Config(format!(
                "key `{key}`: {} is not writable: {e}",
                dir.display()
            ))
        })
}

/// Lower-cased domain part of an address, if any.
pub fn domain_of(addr: &str) -> Option<String> {
    let (_, d) = addr.rsplit_once('@')?;
    (!d.is_empty()).then(|| d.trim_end_matches('.').to_ascii_lowercase())
}
