//! `[sipil]`: the ANS deposit and report web services (every wire detail a key).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::checks::{bad, is_address};
use crate::error::Result;

/// The ANS deposit (`postFile`) and report (`getReport`) web services.
///
/// We do not have the wire format (Référentiel #1 Opérateurs §5.8.3.2): every
/// wire detail is a key here, with the defaults documented in README.md
/// ("Delivering to the ANS").
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Sipil {
    pub post_url: String,
    pub report_url: String,
    /// The operator's certificate chain (PEM), leaf first.
    pub client_cert: Option<PathBuf>,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub client_key: Option<PathBuf>,
    /// The CA(s) trusted for the SIPIL server certificate (PEM, IGC-Santé chain).
    pub ca_file: Option<PathBuf>,
    /// Also trust the system's CA bundle (off: only `ca_file` is trusted).
    #[serde(default)]
    pub use_system_roots: bool,
    /// Accept a private key file readable by group or others (refused by default).
    #[serde(default)]
    pub allow_readable_key: bool,
    pub report_email: Option<String>,
    /// Day of month M by which the figures of M-1 must be accepted.
    #[serde(default = "default_deadline")]
    pub deadline_day: u8,
    /// HTTP method of the deposit: "POST" or "PUT".
    #[serde(default = "default_post_method")]
    pub post_method: String,
    /// multipart/form-data field carrying the ZIP.
    #[serde(default = "default_file_field")]
    pub file_field: String,
    /// multipart/form-data field carrying `report_email` (sent only when it is set).
    #[serde(default = "default_email_field")]
    pub email_field: String,
    /// How to find the deposit id in the deposit response: unset = the whole
    /// trimmed body; else a regex with exactly one capture group.
    pub deposit_id_regex: Option<String>,
    /// HTTP method of the report call: "GET" (id in the query) or "POST" (id in a form).
    #[serde(default = "default_report_method")]
    pub report_method: String,
    /// Name of the parameter carrying the deposit id on the report call.
    #[serde(default = "default_report_id_param")]
    pub report_id_param: String,
    /// Regex: the report shows blocking errors (checked first).
    #[serde(default = "default_report_rejected")]
    pub report_rejected: String,
    /// Regex: the report is not final yet (checked second).
    #[serde(default = "default_report_pending")]
    pub report_pending: String,
    /// Regex: the deposit is accepted (checked last; no match at all = pending).
    #[serde(default = "default_report_accepted")]
    pub report_accepted: String,
    /// Whole-request timeout (the upload of up to 70 MB included).
    #[serde(default = "default_sipil_timeout")]
    pub timeout_secs: u64,
    #[serde(default = "default_sipil_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Attempts per call and per run on network errors, timeouts and HTTP 5xx.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Delay before the 2nd attempt; doubled each time, capped at 5 minutes.
    #[serde(default = "default_retry_delay_ms")]
    pub retry_delay_ms: u64,
    /// `mss-export run`: report fetches after a deposit while it is pending.
    #[serde(default = "default_report_polls")]
    pub report_polls: u32,
    #[serde(default = "default_report_poll_interval")]
    pub report_poll_interval_secs: u64,
}

/// Default `sipil.report_rejected`.
pub const DEFAULT_REPORT_REJECTED: &str = r"(?i)\b(rejet\w*|rejected|refus\w*|ko|[1-9][0-9]*\s+(erreurs?\s+bloquantes?|blocking\s+errors?))\b";

/// Default `sipil.report_pending`.
pub const DEFAULT_REPORT_PENDING: &str =
    r"(?i)\b(en\s+cours|en\s+attente|pending|in\s+progress|processing|non\s+trait\w*)\b";

/// Default `sipil.report_accepted`.
pub const DEFAULT_REPORT_ACCEPTED: &str =
    r"(?i)\b(accept\w*|valid[ée]\w*|int[ée]gr[ée]\w*|ok|succ[eè]s|success\w*)\b";

fn default_post_method() -> String {
    "POST".into()
}

fn default_file_field() -> String {
    "file".into()
}

fn default_email_field() -> String {
    "email".into()
}

fn default_report_method() -> String {
    "GET".into()
}

fn default_report_id_param() -> String {
    "id".into()
}

fn default_report_rejected() -> String {
    DEFAULT_REPORT_REJECTED.into()
}

fn default_report_pending() -> String {
    DEFAULT_REPORT_PENDING.into()
}

fn default_report_accepted() -> String {
    DEFAULT_REPORT_ACCEPTED.into()
}

fn default_sipil_timeout() -> u64 {
    300
}

fn default_sipil_connect_timeout() -> u64 {
    30
}

fn default_max_attempts() -> u32 {
    4
}

fn default_retry_delay_ms() -> u64 {
    10_000
}

fn default_report_polls() -> u32 {
    3
}

fn default_report_poll_interval() -> u64 {
    60
}

fn default_deadline() -> u8 {
    5
}

impl Sipil {
    /// The compiled `deposit_id_regex` (validated at load).
    pub fn deposit_id_regex(&self) -> Option<regex::Regex> {
        self.deposit_id_regex
            .as_deref()
            .map(|r| regex::Regex::new(r).expect("validated at load"))
    }

    /// The compiled report patterns: (rejected, pending, accepted).
    pub fn report_patterns(&self) -> (regex::Regex, regex::Regex, regex::Regex) {
        let c = |r: &str| regex::Regex::new(r).expect("validated at load");
        (
            c(&self.report_rejected),
            c(&self.report_pending),
            c(&self.report_accepted),
        )
    }

    pub(super) fn validate(&self) -> Result<()> {
        if let Some(m) = &self.report_email {
            if !is_address(m) {
                return bad("sipil.report_email", format!("{m:?} is not a mail address"));
            }
        }
        if !(1..=28).contains(&self.deadline_day) {
            return bad("sipil.deadline_day", "must be between 1 and 28".into());
        }
        for (key, u) in [
            ("sipil.post_url", &self.post_url),
            ("sipil.report_url", &self.report_url),
        ] {
            let ok = u
                .strip_prefix("https://")
                .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
            if !ok {
                return bad(
                    key,
                    format!("{u:?} must be an https:// URL (mutual TLS is mandatory)"),
                );
            }
        }
        if !matches!(self.post_method.as_str(), "POST" | "PUT") {
            return bad(
                "sipil.post_method",
                format!("{:?} must be \"POST\" or \"PUT\"", self.post_method),
            );
        }
        if !matches!(self.report_method.as_str(), "GET" | "POST") {
            return bad(
                "sipil.report_method",
                format!("{:?} must be \"GET\" or \"POST\"", self.report_method),
            );
        }
        for (key, v) in [
            ("sipil.file_field", &self.file_field),
            ("sipil.email_field", &self.email_field),
            ("sipil.report_id_param", &self.report_id_param),
        ] {
            if v.is_empty() || v.bytes().any(|b| b.is_ascii_control() || b == b'"') {
                return bad(
                    key,
                    format!("{v:?} must be a non-empty name without quotes"),
                );
            }
        }
        if let Some(r) = &self.deposit_id_regex {
            match regex::Regex::new(r) {
                Ok(re) if re.captures_len() == 2 => {}
                Ok(re) => {
                    return bad(
                        "sipil.deposit_id_regex",
                        format!(
                            "{r:?} has {} capture groups: exactly one is needed (the deposit id)",
                            re.captures_len() - 1
                        ),
                    )
                }
                Err(e) => return bad("sipil.deposit_id_regex", format!("{r:?}: {e}")),
            }
        }
        for (key, r) in [
            ("sipil.report_rejected", &self.report_rejected),
            ("sipil.report_pending", &self.report_pending),
            ("sipil.report_accepted", &self.report_accepted),
        ] {
            if let Err(e) = regex::Regex::new(r) {
                return bad(key, format!("{r:?}: {e}"));
            }
        }
        if self.timeout_secs == 0 || self.connect_timeout_secs == 0 {
            return bad(
                "sipil.timeout_secs",
                "timeout_secs and connect_timeout_secs must be positive".into(),
            );
        }
        if !(1..=20).contains(&self.max_attempts) {
            return bad("sipil.max_attempts", "must be between 1 and 20".into());
        }
        if self.report_polls > 100 {
            return bad("sipil.report_polls", "must be at most 100".into());
        }
        Ok(())
    }
}
