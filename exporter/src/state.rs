//! The per-month delivery record, persisted in the registry DB (`meta`
//! column family, key `sipil/month/YYYY-MM`, JSON, synced writes).
//!
//! States, in order: `built` → `validated` → `submitted` → `report_pending`
//! → `accepted` | `rejected`. The state is derived from the current archive
//! set, the deposits and the reports ([`MonthRecord::recompute`]), so that
//! it always tells the truth about what the ANS has.

use jiff::Timestamp;
use mss_shared::month::Month;
use mss_shared::store::registry::RegistryStore;
use mss_shared::Error;
use serde::{Deserialize, Serialize};

use crate::sipil::Verdict;

const PREFIX: &str = "sipil/month/";

/// Where a month stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Archive(s) written.
    Built,
    /// Archive(s) checked against SPEC.md.
    Validated,
    /// Every archive deposited, no report read yet.
    Submitted,
    /// A report was read and is not final yet.
    ReportPending,
    /// Every archive of the month is accepted: never resubmitted.
    Accepted,
    /// A report shows blocking errors.
    Rejected,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Built => "built",
            State::Validated => "validated",
            State::Submitted => "submitted",
            State::ReportPending => "report_pending",
            State::Accepted => "accepted",
            State::Rejected => "rejected",
        })
    }
}

/// One archive file of the month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Archive {
    pub file: String,
    pub sha256: String,
    pub size: u64,
}

/// One deposit call that got an HTTP answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submission {
    pub file: String,
    pub sha256: String,
    pub size: u64,
    /// RFC 3339, UTC.
    pub time: String,
    pub http_status: u16,
    /// The response body, verbatim (lossy UTF-8).
    pub response: String,
    /// None: the call failed (HTTP error, or no id in the response).
    pub deposit_id: Option<String>,
}

/// One report read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub deposit_id: String,
    pub file: String,
    pub sha256: String,
    pub time: String,
    pub http_status: u16,
    pub content_type: Option<String>,
    /// The report, verbatim (lossy UTF-8).
    pub raw: String,
    pub verdict: Verdict,
    /// The text the classifying pattern matched.
    pub matched: Option<String>,
}

/// Everything known about the delivery of one month.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonthRecord {
    pub month: String,
    pub state: State,
    /// The current archive set (what is deposited next / was deposited last).
    pub archives: Vec<Archive>,
    pub submissions: Vec<Submission>,
    pub reports: Vec<Report>,
    /// Last failure (network, TLS, HTTP), cleared by the next success.
    pub last_error: Option<String>,
    pub updated: String,
    /// `[central]`: the nodes that had not shipped the whole month when it
    /// was submitted on the day before the deadline; once they have, the
    /// month is rebuilt and submitted again (before the deadline).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incomplete: Vec<String>,
}

/// Short-lived registry access (other writers may need it between calls).
///
/// # Errors
/// The registry cannot be opened, or `f`'s error.
pub fn with_reg<T>(
    cfg: &mss_shared::config::Config,
    f: impl FnOnce(&RegistryStore) -> Result<T, Error>,
) -> Result<T, Error> {
    let reg = mss_shared::central::registry::open_write(cfg)?;
    let out = f(&reg)?;
    reg.commit()?;
    Ok(out)
}

pub fn now_string() -> String {
    Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or(Timestamp::now())
        .to_string()
}

impl MonthRecord {
    pub fn new(month: Month) -> MonthRecord {
        MonthRecord {
            month: month.to_string(),
            state: State::Built,
            archives: vec![],
            submissions: vec![],
            reports: vec![],
            last_error: None,
            updated: now_string(),
            incomplete: vec![],
        }
    }

    /// The latest successful deposit of this archive content.
    pub fn deposit_of(&self, sha256: &str) -> Option<&Submission> {
        self.submissions
            .iter()
            .rev()
            .find(|s| s.sha256 == sha256 && s.deposit_id.is_some())
    }

    /// The latest report of a deposit.
    pub fn report_of(&self, deposit_id: &str) -> Option<&Report> {
        self.reports
            .iter()
            .rev()
            .find(|r| r.deposit_id == deposit_id)
    }

    /// True when this archive content was accepted once (by any deposit).
    pub fn accepted(&self, sha256: &str) -> bool {
        self.reports
            .iter()
            .any(|r| r.sha256 == sha256 && r.verdict == Verdict::Accepted)
    }

    /// The verdict of the current deposit of an archive, if any.
    pub fn verdict_of(&self, sha256: &str) -> Option<Verdict> {
        if self.accepted(sha256) {
            return Some(Verdict::Accepted);
        }
        let dep = self.deposit_of(sha256)?;
        self.report_of(dep.deposit_id.as_deref()?)
            .map(|r| r.verdict)
    }

    /// Derive the state from archives, deposits and reports. `validated` is
    /// the floor once the archives are checked.
    pub fn recompute(&mut self, validated: bool) {
        if self.archives.is_empty() {
            return;
        }
        let verdicts: Vec<Option<Verdict>> = self
            .archives
            .iter()
            .map(|a| self.verdict_of(&a.sha256))
            .collect();
        let all_deposited = self
            .archives
            .iter()
            .all(|a| self.accepted(&a.sha256) || self.deposit_of(&a.sha256).is_some());
        self.state = if verdicts.iter().all(|v| *v == Some(Verdict::Accepted)) {
            State::Accepted
        } else if verdicts.contains(&Some(Verdict::Rejected)) {
            State::Rejected
        } else if all_deposited && verdicts.contains(&Some(Verdict::Pending)) {
            State::ReportPending
        } else if all_deposited {
            State::Submitted
        } else if validated || self.state != State::Built {
            State::Validated
        } else {
            State::Built
        };
        self.updated = now_string();
    }

    /// The most recent report.
    pub fn last_report(&self) -> Option<&Report> {
        self.reports.last()
    }
}

fn key(month: Month) -> String {
    format!("{PREFIX}{month}")
}

/// Load the record of a month.
pub fn load(reg: &RegistryStore, month: Month) -> Result<Option<MonthRecord>, Error> {
    match reg.get_meta(&key(month))? {
        Some(v) => serde_json::from_value(v)
            .map(Some)
            .map_err(|e| Error::Other(format!("delivery record of {month} is unreadable: {e}"))),
        None => Ok(None),
    }
}

/// Save (synced).
pub fn save(reg: &RegistryStore, month: Month, rec: &MonthRecord) -> Result<(), Error> {
    let v = serde_json::to_value(rec).map_err(|e| Error::Other(format!("record: {e}")))?;
    reg.put_meta_synced(&key(month), &v)
}

/// Every month with a record, oldest first.
pub fn list(reg: &RegistryStore) -> Result<Vec<MonthRecord>, Error> {
    let mut out = vec![];
    for (name, v) in reg.list_meta(PREFIX)? {
        let rec: MonthRecord = serde_json::from_value(v)
            .map_err(|e| Error::Other(format!("{name} is unreadable: {e}")))?;
        out.push(rec);
    }
    Ok(out)
}

/// `mss-export status --json`: stable machine output.
#[derive(Debug, Serialize)]
pub struct StatusOutput {
    pub months: Vec<MonthStatus>,
}

#[derive(Debug, Serialize)]
pub struct MonthStatus {
    pub month: String,
    pub state: State,
    pub archives: Vec<Archive>,
    pub deposit_ids: Vec<String>,
    pub last_submission: Option<String>,
    pub last_report: Option<ReportSummary>,
    pub last_error: Option<String>,
    pub updated: String,
    /// Rows of the month's last build left in `AAAAMM_quarantine.csv`.
    pub quarantined_rows: u64,
}

#[derive(Debug, Serialize)]
pub struct ReportSummary {
    pub deposit_id: String,
    pub time: String,
    pub verdict: Verdict,
    pub raw: String,
}

impl From<&MonthRecord> for MonthStatus {
    fn from(r: &MonthRecord) -> Self {
        MonthStatus {
            month: r.month.clone(),
            state: r.state,
            archives: r.archives.clone(),
            deposit_ids: r
                .archives
                .iter()
                .filter_map(|a| r.deposit_of(&a.sha256)?.deposit_id.clone())
                .collect(),
            last_submission: r.submissions.last().map(|s| s.time.clone()),
            last_report: r.last_report().map(|x| ReportSummary {
                deposit_id: x.deposit_id.clone(),
                time: x.time.clone(),
                verdict: x.verdict,
                raw: x.raw.clone(),
            }),
            last_error: r.last_error.clone(),
            updated: r.updated.clone(),
            quarantined_rows: 0,
        }
    }
}
