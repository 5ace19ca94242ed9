//! `[store]`: where the capture and registry stores live, retention, the journal, the commit wait.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::checks::bad;
use crate::error::Result;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Store {
    #[serde(default = "default_capture_path")]
    pub capture_path: PathBuf,
    #[serde(default = "default_registry_path")]
    pub registry_path: PathBuf,
    #[serde(default = "default_retention")]
    pub retention_months: u32,
    /// Fallback journal; default `<capture_path>.journal`.
    pub journal_path: Option<PathBuf>,
    /// How long a session waits for the store to acknowledge a transaction
    /// before it journals it and goes on (milliseconds).
    #[serde(default = "default_commit_timeout_ms")]
    pub commit_timeout_ms: u64,
}

fn default_capture_path() -> PathBuf {
    "/var/lib/mss-sidecar/capture".into()
}

fn default_registry_path() -> PathBuf {
    "/var/lib/mss-sidecar/registry".into()
}

fn default_retention() -> u32 {
    13
}

fn default_commit_timeout_ms() -> u64 {
    1000
}

impl Default for Store {
    fn default() -> Self {
        Store {
            capture_path: default_capture_path(),
            registry_path: default_registry_path(),
            retention_months: default_retention(),
            journal_path: None,
            commit_timeout_ms: default_commit_timeout_ms(),
        }
    }
}

impl Store {
    pub fn journal_path(&self) -> PathBuf {
        self.journal_path.clone().unwrap_or_else(|| {
            let mut p = self.capture_path.clone().into_os_string();
            p.push(".journal");
            PathBuf::from(p)
        })
    }

    pub fn commit_timeout(&self) -> Duration {
        Duration::from_millis(self.commit_timeout_ms)
    }
}

impl Store {
    pub(super) fn validate(&self) -> Result<()> {
        for (key, p) in [
            ("store.capture_path", &self.capture_path),
            ("store.registry_path", &self.registry_path),
        ] {
            if !p.is_absolute() {
                return bad(key, format!("{} must be an absolute path", p.display()));
            }
        }
        if self.retention_months == 0 {
            return bad("store.retention_months", "must be at least 1".into());
        }
        if self.commit_timeout_ms == 0 || self.commit_timeout_ms > 60_000 {
            return bad(
                "store.commit_timeout_ms",
                "must be between 1 and 60000 (mail waits this long at most)".into(),
            );
        }
        Ok(())
    }
}
