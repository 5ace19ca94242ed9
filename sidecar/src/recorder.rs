//! The one recording path. The front ends (proxy, milter) hand the
//! [`Recorder`] what they saw — a finished [`Transaction`], a login, a
//! recipient outside the Espace de Confiance — and it alone classifies the
//! message (outbound, inbound, ignored), makes the MAIL_ID, builds the
//! record, commits it with the capture writer's bounded wait and counts it.

use std::sync::Arc;

use mss_shared::model::{LoginRecord, MailIdGen, MessageRecord, OutsideRecord, Record};
use mss_shared::store::capture::Classifier;

use crate::capture::Capture;
use crate::metrics::Metrics;
use crate::policy::Policy;

/// A transaction the next hop accepted, front-end neutral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// Envelope sender, normalised.
    pub sender: String,
    /// The recipients the next hop accepted (with the message).
    pub recipients: Vec<String>,
    /// TAILLE: the message as received on the wire.
    pub size: u64,
    /// The MTA's queue id, when known (part of the MAIL_ID).
    pub queue_id: Option<String>,
    pub message_id: Option<String>,
    /// The SASL identity of the session, when authenticated.
    pub auth: Option<String>,
    /// `proxy` or `milter`.
    pub frontend: &'static str,
    /// When the next hop accepted it (µs UTC).
    pub time_us: i64,
}

/// Who a message concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Direction {
    /// From a BAL of operator domain `domain`: one Echanges row per recipient.
    Outbound { domain: String },
    /// Only to operator BALs: their last reception, no row.
    Inbound,
    /// Neither: nothing recorded.
    Ignored,
}

/// Shared by every session of every front end.
#[derive(Clone)]
pub struct Recorder {
    capture: Capture,
    classifier: Classifier,
    ids: Arc<MailIdGen>,
    policy: Option<Arc<Policy>>,
}

impl Recorder {
    pub fn new(
        capture: Capture,
        classifier: Classifier,
        ids: Arc<MailIdGen>,
        policy: Option<Arc<Policy>>,
    ) -> Recorder {
        Recorder {
            capture,
            classifier,
            ids,
            policy,
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        self.capture.metrics()
    }

    /// The liste blanche policy, when `[policy]` is configured.
    pub fn policy(&self) -> Option<&Arc<Policy>> {
        self.policy.as_ref()
    }

    /// Who the message of `sender` to `recipients` concerns.
    pub fn classify(&self, sender: &str, recipients: &[String]) -> Direction {
        if let Some(domain) = self.classifier.operator_domain(sender) {
            return Direction::Outbound { domain };
        }
        if recipients
            .iter()
            .any(|r| self.classifier.operator_domain(r).is_some())
        {
            return Direction::Inbound;
        }
        Direction::Ignored
    }

    /// Record a transaction the next hop accepted; returns its MAIL_ID, or
    /// `None` when it concerns no operator BAL (or has no recipient). Waits
    /// for the store at most `store.commit_timeout_ms` (then journals).
    pub async fn message(&self, t: Transaction) -> Option<String> {
        if t.recipients.is_empty() {
            return None;
        }
        let direction = self.classify(&t.sender, &t.recipients);
        let (domain, rows) = match &direction {
            Direction::Outbound { domain } => (Some(domain.clone()), t.recipients.len() as u64),
            Direction::Inbound => (None, 0),
            Direction::Ignored => return None,
        };
        let rec = MessageRecord {
            mail_id: self.ids.make(t.time_us, t.queue_id.as_deref()),
            queue_id: t.queue_id,
            message_id: t.message_id,
            sender: t.sender,
            recipients: t.recipients,
            size: t.size,
            time_us: t.time_us,
            frontend: t.frontend.into(),
        };
        let (mail_id, size) = (rec.mail_id.clone(), rec.size);
        tracing::debug!(%mail_id, rows, size, frontend = t.frontend, "message accepted by the next hop");
        self.capture.commit(Record::Message(rec)).await;
        self.metrics()
            .count_message(t.frontend, domain.as_deref(), rows, size);
        Some(mail_id)
    }

    /// Record a successful login (`source`: the front end that saw it).
    /// Never waits: the session goes on while it is committed.
    pub fn login(&self, user: String, service: &str, source: &str) {
        let rec = Record::Login(LoginRecord {
            bal: user,
            time_us: jiff::Timestamp::now().as_microsecond(),
            service: service.into(),
            source: source.into(),
        });
        let cap = self.capture.clone();
        tokio::spawn(async move { cap.commit(rec).await });
    }

    /// The liste blanche decision for one recipient: `Some(refused)` when
    /// it is outside the Espace de Confiance (counted and logged here),
    /// `None` when it is inside or no policy is configured.
    pub fn check_recipient(&self, frontend: &str, sender: &str, rcpt: &str) -> Option<bool> {
        let p = self.policy.as_ref()?;
        let (sd, rd) = p.outside(sender, rcpt)?;
        self.outside(frontend, sd, rd, p.enforce);
        Some(p.enforce)
    }

    /// Count, log (domains only, never the addresses) and store one
    /// recipient outside the Espace de Confiance.
    pub fn outside(
        &self,
        frontend: &str,
        sender_domain: String,
        recipient_domain: String,
        refused: bool,
    ) {
        let what = if refused { "refused" } else { "reported" };
        self.metrics().outside.inc(what);
        tracing::info!(
            frontend,
            from = %sender_domain,
            to = %recipient_domain,
            "{what} a recipient outside the Espace de Confiance"
        );
        let rec = Record::Outside(OutsideRecord {
            sender_domain,
            recipient_domain,
            time_us: jiff::Timestamp::now().as_microsecond(),
            refused,
        });
        let c = self.capture.clone();
        tokio::spawn(async move { c.commit(rec).await });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::capture::{Journal, Sink};

    /// Keeps what it is given, in memory.
    #[derive(Default)]
    struct Memory(Mutex<Vec<Record>>);

    impl Sink for Memory {
        fn commit(&self, records: &[Record]) -> Result<(), String> {
            self.0.lock().unwrap().extend_from_slice(records);
            Ok(())
        }
    }

    fn recorder(sink: Arc<Memory>, dir: &std::path::Path) -> Recorder {
        let journal = Arc::new(Journal::new(dir.join("journal")));
        let metrics = Arc::new(Metrics::for_domains(&["ch-a.fr".into()]));
        let capture = Capture::start(sink, journal, Duration::from_secs(1), metrics);
        let cls = Classifier::new(&["ch-a.fr".into()], jiff::tz::TimeZone::UTC);
        Recorder::new(capture, cls, Arc::new(MailIdGen::new("n1")), None)
    }

    fn txn(sender: &str, rcpts: &[&str]) -> Transaction {
        Transaction {
            sender: sender.into(),
            recipients: rcpts.iter().map(|r| r.to_string()).collect(),
            size: 1234,
            queue_id: Some("4ABC".into()),
            message_id: Some("m@x".into()),
            auth: None,
            frontend: "milter",
            time_us: 1_790_000_000_000_000,
        }
    }

    #[tokio::test]
    async fn classifies_builds_commits_and_counts_each_message_once() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(Memory::default());
        let r = recorder(sink.clone(), dir.path());
        let out = r
            .message(txn("dr.a@ch-a.fr", &["x@ext.fr", "y@ext.fr"]))
            .await
            .expect("outbound is recorded");
        assert!(r.message(txn("x@ext.fr", &["b@ch-a.fr"])).await.is_some());
        assert_eq!(r.message(txn("x@ext.fr", &["y@ext.fr"])).await, None);
        assert_eq!(r.message(txn("dr.a@ch-a.fr", &[])).await, None);
        let got = sink.0.lock().unwrap().clone();
        assert_eq!(got.len(), 2);
        match &got[0] {
            Record::Message(m) => {
                assert_eq!(m.mail_id, out);
                assert_eq!(
                    (
                        m.sender.as_str(),
                        m.recipients.len(),
                        m.size,
                        m.frontend.as_str()
                    ),
                    ("dr.a@ch-a.fr", 2, 1234, "milter")
                );
                assert_eq!(m.queue_id.as_deref(), Some("4ABC"));
            }
            other => panic!("{other:?}"),
        }
        let m = r.metrics();
        assert_eq!(m.milter.transactions.get(), 2);
        assert_eq!(m.milter.rows.get(), 2);
        let l = crate::metrics::FrontendDomain {
            frontend: "milter".into(),
            domain: "ch-a.fr".into(),
        };
        let get = |f: &prometheus_client::metrics::family::Family<_, crate::metrics::Counter>| {
            f.get(&l).map_or(0, |c| c.get())
        };
        assert_eq!(
            (
                get(&m.rows_by_domain),
                get(&m.messages_by_domain),
                get(&m.bytes_by_domain)
            ),
            (2, 1, 1234)
        );
        assert_eq!(
            r.classify("x@ext.fr", &["b@ch-a.fr".into()]),
            Direction::Inbound
        );
    }
}
