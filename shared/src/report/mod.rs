//! The monthly report of a structure (`mss-admin report`, and the mail
//! `mss-export run` sends each structure once its month is accepted).
//!
//! A *structure* is a FINESS: the BAL's geographic one (EG) when it has one,
//! else its legal entity's (EJ), as the ANS attaches them (SPEC.md
//! "Structuring rules"); BALs with neither are grouped by domain, "not
//! attached" ("de ville"). Every figure comes from [`crate::figures`]: the
//! rows written in the month's Echanges files and the lines of its
//! Connexions files, so a report's figures are the files' by construction.
//!
//! # Layout
//! - this file: the figures ([`Report`]) and [`build`] (with the comparisons).
//! - `gather`: one month's figures for every structure, in one pass.
//! - [`structure`]: structure keys and the registry's per-structure contact.
//! - [`html`]: one self-contained HTML page (inline CSS and SVG, no script).
//! - [`text`]: labels in French and English; the CSV rendering.
//! - [`settings`]: `[report]` (mailing reports to structures).
//! - [`write`]: the formats and the files `AAAAMM_<structure>.{html,json,csv}`.

mod gather;
pub mod html;
pub mod settings;
pub mod structure;
pub mod text;
pub mod write;

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use crate::config::Config;
use crate::error::Result;
use crate::figures::oldest_kept;
use crate::indicators::connexions::Rule;
use crate::indicators::membership::Excluded;
use crate::listeblanche::ListeBlanche;
use crate::month::Month;
use crate::store::capture::CaptureStore;
use crate::store::registry::{BalType, Mailbox, RegistryStore};

pub use structure::{Contact, StructureKey};

/// A BAL's type as the report shows it (`undeclared`: not in the registry).
pub fn kind_name(m: Option<&Mailbox>) -> &'static str {
    match m.map(|m| m.kind) {
        Some(BalType::Personnelle) => "personnelle",
        Some(BalType::Organisationnelle) => "organisationnelle",
        Some(BalType::Applicative) => "applicative",
        None => "undeclared",
    }
}

/// The BAL types, in report order.
pub const KINDS: [&str; 4] = [
    "personnelle",
    "organisationnelle",
    "applicative",
    "undeclared",
];

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Report {
    /// `YYYY-MM`.
    pub month: String,
    pub structure: StructureKey,
    /// From `mss-admin structure set`, when recorded.
    pub name: Option<String>,
    pub contact: Option<String>,
    /// Operator domains of the structure's BALs.
    pub domains: Vec<String>,
    pub mailboxes: Mailboxes,
    pub sent: Sent,
    pub connexions: Connexions,
    /// The same figures for the month before and the same month a year
    /// earlier; `null` when that month is not captured (older than the
    /// capture store's retention, or before the capture began).
    pub previous_month: Option<Summary>,
    pub year_before: Option<Summary>,
    pub files: Files,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Mailboxes {
    /// One line per type in [`KINDS`] order (all four, zeros included).
    pub by_type: Vec<TypeLine>,
    /// BALs of the registry left out of the month's files, and why.
    pub excluded: Vec<ExcludedBal>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TypeLine {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// In the month's Connexions files.
    pub included: u64,
    pub excluded: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ExcludedBal {
    pub bal: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub because: Excluded,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Sent {
    /// Distinct MAIL_IDs of the rows written.
    pub messages: u64,
    /// Echanges rows written (one per accepted recipient).
    pub rows: u64,
    /// TAILLE summed over messages (each message once).
    pub bytes: u64,
    pub by_type: Vec<SentLine>,
    /// Every day of the month (local, `operator.timezone`), zeros included.
    pub days: Vec<Day>,
    /// The ten BALs with the most rows (then messages, then address).
    pub top: Vec<TopBal>,
    /// Rows whose recipient is inside / outside the Espace de Confiance
    /// (operator domains, the liste blanche, `policy.allow`); `null` without
    /// a liste blanche.
    pub trust_space: Option<TrustSpace>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SentLine {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub messages: u64,
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Day {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub messages: u64,
    pub rows: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TopBal {
    pub bal: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub messages: u64,
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct TrustSpace {
    pub inside: u64,
    pub outside: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Connexions {
    /// BALs of the Connexions files whose date falls in the month.
    pub connected_in_month: u64,
    /// Whose date is before the month.
    pub connected_earlier: u64,
    /// Empty date: never connected, proven (logins covered for its whole life).
    pub never: u64,
    /// `1900-01-01 00:00:00`: no information.
    pub unknown: u64,
    /// Personal BALs never connected, or whose last connexion is before the
    /// first day of the month two months earlier (none in the three months
    /// ending with this one): delete them or put them on the red list.
    pub to_act: Vec<ToAct>,
    /// Personal BALs attached to no FINESS ("de ville").
    pub personal_without_finess: Vec<String>,
    /// Every BAL of the structure in the Connexions files, with the exact
    /// date written and the rule that gave it.
    pub lines: Vec<ConnexionLine>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ToAct {
    pub bal: String,
    /// The date written in the Connexions file (empty: never).
    pub date: String,
    /// `never` or `over_3_months`.
    pub why: &'static str,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConnexionLine {
    pub bal: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub date: String,
    pub rule: Rule,
}

/// The headline figures, for the comparison columns.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub messages: u64,
    pub rows: u64,
    pub bytes: u64,
    /// BALs in the Connexions files.
    pub mailboxes: u64,
    pub connected_in_month: u64,
    pub never: u64,
}

/// Reads one headline figure of a [`Summary`].
pub type Pick = fn(&Summary) -> u64;

/// The headline figures, in report order (label key, figure).
pub const HEADLINES: [(&str, Pick); 6] = [
    ("messages", |s| s.messages),
    ("rows", |s| s.rows),
    ("bytes", |s| s.bytes),
    ("mailboxes", |s| s.mailboxes),
    ("connected_in_month", |s| s.connected_in_month),
    ("never", |s| s.never),
];

/// What was sent to the ANS for the month (`mss-export` state).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Files {
    /// The archive(s) built for the month.
    pub archives: Vec<String>,
    /// `built`, `validated`, `submitted`, `report_pending`, `accepted`,
    /// `rejected`; `null`: not built yet.
    pub state: Option<String>,
}

/// Which structures to report on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Select {
    All,
    /// A FINESS (EG or EJ).
    Structure(String),
    /// Every structure with a BAL in this operator domain.
    Domain(String),
}

impl Report {
    pub fn summary(&self) -> Summary {
        Summary {
            messages: self.sent.messages,
            rows: self.sent.rows,
            bytes: self.sent.bytes,
            mailboxes: self.mailboxes.by_type.iter().map(|t| t.included).sum(),
            connected_in_month: self.connexions.connected_in_month,
            never: self.connexions.never,
        }
    }

    /// `AAAAMM_<structure>`: the file name stem of the report.
    pub fn stem(&self) -> String {
        let m = self.month.replace('-', "");
        format!("{m}_{}", self.structure.file_id())
    }
}

/// Every structure's report for `month` (sorted by structure), figures
/// compared with the month before and a year earlier when captured.
///
/// # Errors
/// Store errors; [`crate::Error::TooOld`] when `month` is purged.
pub fn build(
    cfg: &Config,
    cap: &CaptureStore,
    reg: Option<&RegistryStore>,
    month: Month,
    now: Timestamp,
    select: &Select,
) -> Result<Vec<Report>> {
    let liste = cfg
        .policy
        .as_ref()
        .and_then(|p| ListeBlanche::load(&p.liste_blanche).ok());
    let mut reports = gather::gather(cfg, cap, reg, month, now, liste.as_ref())?;
    let before = |m: Month| -> Result<Option<BTreeMap<StructureKey, Summary>>> {
        if m < oldest_kept(cfg, now) || !captured(cap, m)? {
            return Ok(None);
        }
        let r = gather::gather(cfg, cap, reg, m, now, None)?;
        Ok(Some(
            r.values()
                .map(|r| (r.structure.clone(), r.summary()))
                .collect(),
        ))
    };
    let prev = before(month.prev())?;
    let year = before((0..12).fold(month, |m, _| m.prev()))?;
    let files = files(reg, month)?;
    let contacts = structure::contacts(reg)?;
    let mut out = vec![];
    for (key, mut r) in std::mem::take(&mut reports) {
        let keep = match select {
            Select::All => true,
            Select::Structure(f) => key.finess() == Some(f.as_str()),
            Select::Domain(d) => r.domains.iter().any(|x| x == d),
        };
        if !keep {
            continue;
        }
        let get = |s: &Option<BTreeMap<StructureKey, Summary>>| {
            s.as_ref().map(|s| s.get(&key).copied().unwrap_or_default())
        };
        r.previous_month = get(&prev);
        r.year_before = get(&year);
        r.files = files.clone();
        if let Some(c) = key.finess().and_then(|f| contacts.get(f)) {
            r.name.clone_from(&c.name);
            r.contact.clone_from(&c.contact);
        }
        out.push(r);
    }
    Ok(out)
}

/// Whether the capture store holds anything of month `m`.
fn captured(cap: &CaptureStore, m: Month) -> Result<bool> {
    Ok(!cap.sent(m)?.is_empty() || !cap.logins(m)?.is_empty() || !cap.received(m)?.is_empty())
}

fn files(reg: Option<&RegistryStore>, month: Month) -> Result<Files> {
    let Some(rec) = reg
        .map(|r| r.get_meta(&format!("sipil/month/{month}")))
        .transpose()?
        .flatten()
    else {
        return Ok(Files::default());
    };
    Ok(Files {
        archives: rec["archives"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x["file"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        state: rec["state"].as_str().map(str::to_string),
    })
}
