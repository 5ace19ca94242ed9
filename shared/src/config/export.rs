//! `[export]`: where and how `mss-export build` writes the archives.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::checks::bad;
use crate::error::Result;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Export {
    #[serde(default = "default_out_dir")]
    pub out_dir: PathBuf,
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    #[serde(default = "default_max_archive")]
    pub max_archive_bytes: u64,
    #[serde(default = "default_true")]
    pub crlf: bool,
}

fn default_out_dir() -> PathBuf {
    "/var/lib/mss-sidecar/exports".into()
}

fn default_delimiter() -> String {
    ";".into()
}

fn default_max_archive() -> u64 {
    70_000_000
}

fn default_true() -> bool {
    true
}

impl Default for Export {
    fn default() -> Self {
        Export {
            out_dir: default_out_dir(),
            delimiter: default_delimiter(),
            max_archive_bytes: default_max_archive(),
            crlf: true,
        }
    }
}

impl Export {
    pub fn is_default(&self) -> bool {
        *self == Export::default()
    }

    pub(super) fn validate(&self) -> Result<()> {
        let d = self.delimiter.as_bytes();
        if d.len() != 1 || d[0] == b'"' || d[0] == b'\r' || d[0] == b'\n' {
            return bad(
                "export.delimiter",
                format!(
                    "{:?} must be one ASCII character other than a quote or newline",
                    self.delimiter
                ),
            );
        }
        Ok(())
    }
}
