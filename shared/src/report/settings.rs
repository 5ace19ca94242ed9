//! `[report]`: mailing each structure its monthly report once the ANS has
//! accepted the month (`mss-export run`), through the local MTA's
//! `sendmail(1)`.
//!
//! ```toml
//! [report]
//! mail_to_structures = true
//! from = "statistiques@operateur.example"  # envelope and From: of the mails
//! # sendmail = "/usr/sbin/sendmail"
//! # lang = "fr"                            # or "en"
//! ```
//! The addresses come from `mss-admin structure set FINESS --contact ADDR`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::text::Lang;
use crate::error::{Error, Result};
use crate::indicators::admission::is_address;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReportSettings {
    #[serde(default)]
    pub mail_to_structures: bool,
    /// Sender of the report mails (required with `mail_to_structures`).
    pub from: Option<String>,
    #[serde(default = "default_sendmail")]
    pub sendmail: PathBuf,
    #[serde(default = "default_lang")]
    pub lang: String,
}

impl Default for ReportSettings {
    fn default() -> Self {
        ReportSettings {
            mail_to_structures: false,
            from: None,
            sendmail: default_sendmail(),
            lang: default_lang(),
        }
    }
}

fn default_sendmail() -> PathBuf {
    "/usr/sbin/sendmail".into()
}

fn default_lang() -> String {
    "fr".into()
}

impl ReportSettings {
    pub fn is_default(&self) -> bool {
        *self == ReportSettings::default()
    }

    /// The language of mailed reports.
    pub fn language(&self) -> Lang {
        Lang::parse(&self.lang).unwrap_or(Lang::Fr)
    }

    /// # Errors
    /// [`Error::Config`] naming the key.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, why: String| Err(Error::Config(format!("key `report.{key}`: {why}")));
        if Lang::parse(&self.lang).is_none() {
            return bad(
                "lang",
                format!("{:?}: expected \"fr\" or \"en\"", self.lang),
            );
        }
        match &self.from {
            Some(f) if !is_address(f) => bad("from", format!("{f:?} is not a mail address")),
            None if self.mail_to_structures => bad(
                "from",
                "required with mail_to_structures = true (the sender of the report mails)".into(),
            ),
            _ => Ok(()),
        }
    }
}
