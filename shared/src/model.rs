//! The data model: what a front end hands to the capture writer.
//!
//! A [`Record`] is self-contained and serialisable (the fallback journal holds
//! one JSON record per line), and applying it to the store is idempotent for
//! messages (keys are derived from MAIL_ID and recipient), so a journal can be
//! replayed after a crash without creating phantom rows.

use serde::{Deserialize, Serialize};

/// One accepted message: the next hop answered 2xx to end-of-data (proxy) or
/// Postfix reached end-of-message (milter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// MAIL_ID: `<node>.<UTC yyyymmddHHMMSS>.<queue id or sequence>`, ≤ 255 chars.
    pub mail_id: String,
    /// Postfix queue id, when the next hop told it (`queued as …`) or the milter saw `i`.
    pub queue_id: Option<String>,
    /// Message-ID header, for cross-reference with logs (never the body).
    pub message_id: Option<String>,
    /// Envelope sender (lower-cased; empty for the null sender `<>`).
    pub sender: String,
    /// Recipients the next hop accepted, in RCPT order (lower-cased).
    pub recipients: Vec<String>,
    /// TAILLE: message bytes after dot-unstuffing (or BDAT chunk bytes).
    pub size: u64,
    /// When the next hop accepted the message, UTC microseconds.
    pub time_us: i64,
    /// Front end that saw it: `proxy` or `milter`.
    pub frontend: String,
}

/// One successful authentication / login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRecord {
    /// The mailbox (BAL) address, lower-cased.
    pub bal: String,
    /// UTC microseconds.
    pub time_us: i64,
    /// imap, pop3, submission, smtp, webmail, …
    pub service: String,
    /// Where we learned it: proxy, milter, dovecot, dict, api, import.
    pub source: String,
}

/// A recipient outside the Espace de Confiance asked for by an operator
/// BAL (liste blanche policy): domains only, never full addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutsideRecord {
    pub sender_domain: String,
    pub recipient_domain: String,
    /// UTC microseconds.
    pub time_us: i64,
    /// Refused (enforce mode) or only reported.
    pub refused: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Message(MessageRecord),
    Login(LoginRecord),
    Outside(OutsideRecord),
}

/// Lower-case an address for storage and comparison. MSSanté addresses are
/// compared case-insensitively by every operator tool; the ANS files use them
/// as identifiers, so one spelling per mailbox is what we want.
pub fn normalize_address(a: &str) -> String {
    a.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_lowercase()
}

/// Builds MAIL_IDs: unique across nodes (node name), across time (UTC second)
/// and within one second (Postfix queue id, else a per-process sequence with
/// the process start time).
#[derive(Debug)]
pub struct MailIdGen {
    node: String,
    boot: String,
    seq: std::sync::atomic::AtomicU64,
}

impl MailIdGen {
    pub fn new(node: &str) -> Self {
        let boot = format!("{:x}", jiff::Timestamp::now().as_microsecond());
        MailIdGen {
            node: node.to_string(),
            boot,
            seq: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A MAIL_ID for a message accepted at `time_us` with this queue id.
    pub fn make(&self, time_us: i64, queue_id: Option<&str>) -> String {
        let ts = jiff::Timestamp::from_microsecond(time_us).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let dt = jiff::tz::TimeZone::UTC.to_datetime(ts);
        let stamp = format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}",
            dt.year(),
            dt.month(),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        );
        let tail = match queue_id
            .filter(|q| !q.is_empty() && q.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            Some(q) => q.to_string(),
            None => {
                let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                format!("{}x{n}", self.boot)
            }
        };
        let mut id = format!("{}.{stamp}.{tail}", self.node);
        id.truncate(255);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_id_shape() {
        let g = MailIdGen::new("mx1");
        let t = jiff::Timestamp::from_second(1_790_000_000)
            .unwrap()
            .as_microsecond();
        assert_eq!(g.make(t, Some("4XyZ12AbC")), "mx1.20260921141320.4XyZ12AbC");
        let a = g.make(t, None);
        let b = g.make(t, None);
        assert_ne!(a, b);
        assert!(a.starts_with("mx1.20260921141320."));
        // A queue id with odd characters is not trusted into the id.
        assert!(!g.make(t, Some("a b")).contains(' '));
    }

    #[test]
    fn records_roundtrip_as_json_lines() {
        let r = Record::Login(LoginRecord {
            bal: "a@b.fr".into(),
            time_us: 1,
            service: "imap".into(),
            source: "dovecot".into(),
        });
        let s = serde_json::to_string(&r).unwrap();
        assert!(s.starts_with("{\"kind\":\"login\""), "{s}");
        assert_eq!(serde_json::from_str::<Record>(&s).unwrap(), r);
        assert_eq!(normalize_address("<Dr.Who@CH.fr>"), "dr.who@ch.fr");
    }
}
