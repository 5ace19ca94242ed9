//! Machine output (`--json`) structs: stable, snake_case, versioned by their
//! field set. Human output is rendered from the same structs.

use serde::{Deserialize, Serialize};

/// `mss-admin counts --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// `YYYY-MM`
    pub month: String,
    pub domains: Vec<DomainCounts>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainCounts {
    pub domain: String,
    /// Distinct messages sent by the domain's BALs.
    pub messages: u64,
    /// Echanges rows written in the file (one per accepted recipient).
    pub rows: u64,
    /// Rows left out: sender a test BAL, or suspended/deleted before the month.
    pub excluded_rows: u64,
    /// Rows of SRS-rewritten senders on an operator domain (forwards).
    pub forwarded_rows: u64,
    /// Rows that cannot be written validly (`AAAAMM_quarantine.csv`).
    pub quarantined_rows: u64,
    /// Written rows rebuilt from Postfix's log by `mss-admin reconcile
    /// --fill` (TAILLE estimated), among `rows`; absent when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub filled_rows: u64,
    /// Sum of TAILLE over messages (each message counted once).
    pub bytes: u64,
    /// Distinct senders.
    pub senders: u64,
    /// Distinct BALs of the domain seen this month (senders, recipients,
    /// logins); the registry adds mailboxes never seen.
    pub mailboxes: u64,
    /// Successful login events.
    pub logins: u64,
    /// Recipients outside the Espace de Confiance asked for by the domain's
    /// BALs (liste blanche policy; refused or reported).
    pub outside_trust_space: u64,
    /// Per local day, only days with traffic.
    pub days: Vec<DayCounts>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl DomainCounts {
    pub fn new(domain: &str) -> Self {
        DomainCounts {
            domain: domain.to_string(),
            messages: 0,
            rows: 0,
            excluded_rows: 0,
            forwarded_rows: 0,
            quarantined_rows: 0,
            filled_rows: 0,
            bytes: 0,
            senders: 0,
            mailboxes: 0,
            logins: 0,
            outside_trust_space: 0,
            days: vec![],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCounts {
    /// `YYYY-MM-DD`, local (operator.timezone).
    pub day: String,
    pub messages: u64,
    pub rows: u64,
}
