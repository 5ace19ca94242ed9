//! The daemon's metrics, on the official `prometheus-client` crate: typed
//! label sets, one registry, the OpenMetrics text format on `GET /metrics`
//! (served by [`crate::http`]).
//!
//! Names are those README.md documents (a counter registered as
//! `mss_sessions` is exposed as `mss_sessions_total`). `domain` labels only
//! take the operator's domains (and `other`): a bounded set.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter as PCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use mss_shared::model::Record;

/// A monotonic counter (`inc`, `inc_by`, `get`).
pub type Counter = PCounter<u64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FrontendLabel {
    pub frontend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FrontendDomain {
    pub frontend: String,
    pub domain: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DomainLabel {
    pub domain: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabel {
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExportLabel {
    pub month: String,
    pub state: String,
}

/// A label set of one value, built from it.
pub trait OneLabel: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug {
    fn of(v: &str) -> Self;
}

macro_rules! one_label {
    ($t:ident, $f:ident) => {
        impl OneLabel for $t {
            fn of(v: &str) -> Self {
                $t { $f: v.to_string() }
            }
        }
    };
}
one_label!(SourceLabel, source);
one_label!(ActionLabel, action);
one_label!(ReasonLabel, reason);
one_label!(DomainLabel, domain);

/// Counters keyed by one label value (a handful of distinct values).
#[derive(Debug)]
pub struct Labeled<L: OneLabel>(Family<L, Counter>);

impl<L: OneLabel + Send + Sync + 'static> Labeled<L> {
    fn new() -> Self {
        Labeled(Family::default())
    }

    /// Create these series with a zero value.
    fn init(&self, values: &[&str]) {
        for v in values {
            let _ = self.0.get_or_create(&L::of(v));
        }
    }

    pub fn inc(&self, v: &str) {
        self.0.get_or_create(&L::of(v)).inc();
    }

    pub fn add(&self, v: &str, n: u64) {
        self.0.get_or_create(&L::of(v)).inc_by(n);
    }

    pub fn get(&self, v: &str) -> u64 {
        self.0.get(&L::of(v)).map_or(0, |c| c.get())
    }
}

/// Label values created at start with a zero value, so every series exists
/// from the first scrape (`rate()` works at once, dashboards show 0, not
/// "no data"); others are still counted when they appear.
const LOGIN_SOURCES: [&str; 5] = ["dovecot", "dict", "api", "milter", "proxy"];
const OUTSIDE_ACTIONS: [&str; 2] = ["refused", "reported"];
const EVENT_REJECT_REASONS: [&str; 6] = [
    "bad_json",
    "missing_field",
    "bad_field",
    "bad_address",
    "bad_time",
    "too_large",
];

/// Latency buckets (seconds) of the capture commit.
const LATENCY_BOUNDS: [f64; 11] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Per front end counters (members of the `frontend`-labelled families).
#[derive(Debug, Default)]
pub struct Frontend {
    pub sessions: Counter,
    pub transactions: Counter,
    pub rows: Counter,
    pub aborted: Counter,
    pub upstream_errors: Counter,
    pub protocol_errors: Counter,
}

/// Export state and certificate expiry, read every minute ([`crate::export_watch`]).
#[derive(Debug, Default)]
pub struct ExportMetrics {
    pub state: Family<ExportLabel, Gauge>,
    pub cert_days_left: Gauge,
}

/// `[central]`: the outbox and the shipper ([`crate::shipper`]).
#[derive(Debug, Default)]
pub struct CentralMetrics {
    /// Records waiting in the outbox (read when the shipper reads a batch).
    pub outbox: Gauge,
    /// Records committed to PostgreSQL by this node.
    pub shipped: Counter,
    /// 1 while the shipper is connected and registered, else 0.
    pub up: Gauge,
}

#[derive(Debug)]
pub struct Metrics {
    pub proxy: Frontend,
    pub milter: Frontend,
    pub logins: Counter,
    pub batches: Counter,
    pub store_errors: Counter,
    pub journal_records: Counter,
    pub lost_records: Counter,
    pub stored_messages: Counter,
    pub commit_latency: Histogram,
    /// Login events received, by source (dovecot, dict, api, milter, proxy).
    pub login_sources: Labeled<SourceLabel>,
    /// Recipients outside the Espace de Confiance, by action (refused / reported).
    pub outside: Labeled<ActionLabel>,
    /// Login events refused by the events endpoint, by reason.
    pub events_rejected: Labeled<ReasonLabel>,
    /// Rows, messages and bytes (TAILLE, once per message) captured, by
    /// front end and operator domain.
    pub rows_by_domain: Family<FrontendDomain, Counter>,
    pub messages_by_domain: Family<FrontendDomain, Counter>,
    pub bytes_by_domain: Family<FrontendDomain, Counter>,
    /// Login events stored, by operator domain (`other` for any other).
    pub logins_by_domain: Labeled<DomainLabel>,
    /// Capture store size on disk (SST files), refreshed by the writer.
    pub store_bytes: Gauge,
    pub export: ExportMetrics,
    pub central: CentralMetrics,
    /// The operator domains: the only `domain` label values besides `other`.
    pub domains: Vec<String>,
    registry: Registry,
}

fn labeled<L: OneLabel + Send + Sync + 'static>(
    name: &str,
    help: &str,
    reg: &mut Registry,
) -> Labeled<L> {
    let l = Labeled::new();
    reg.register(name, help, l.0.clone());
    l
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(&[], false, false)
    }
}

impl Metrics {
    /// Metrics whose `domain` labels are `domains` (and `other`).
    pub fn for_domains(domains: &[String]) -> Metrics {
        Metrics::new(domains, false, false)
    }

    /// Metrics for a daemon configured by `cfg` (the certificate gauge only
    /// when `sipil.client_cert` is set).
    pub fn for_config(cfg: &mss_shared::config::Config) -> Metrics {
        let cert = cfg.sipil.as_ref().is_some_and(|s| s.client_cert.is_some());
        Metrics::new(&cfg.operator.domains, cert, cfg.central.is_some())
    }

    fn new(domains: &[String], cert: bool, central_on: bool) -> Metrics {
        let mut reg = Registry::default();
        let fe_family = |name: &str, help: &str, reg: &mut Registry| {
            let f: Family<FrontendLabel, Counter> = Family::default();
            reg.register(name, help, f.clone());
            let get = |n: &str| f.get_or_create_owned(&FrontendLabel { frontend: n.into() });
            (get("proxy"), get("milter"))
        };
        let (mut proxy, mut milter) = (Frontend::default(), Frontend::default());
        for (name, help, pick) in [
            (
                "mss_sessions",
                "client sessions accepted",
                (|f| &mut f.sessions) as fn(&mut Frontend) -> &mut Counter,
            ),
            (
                "mss_transactions",
                "messages accepted by the next hop and captured",
                |f| &mut f.transactions,
            ),
            ("mss_rows", "recipient rows captured", |f| &mut f.rows),
            (
                "mss_transactions_aborted",
                "transactions refused or aborted (no row)",
                |f| &mut f.aborted,
            ),
            (
                "mss_upstream_errors",
                "upstream unreachable, timed out or not speaking SMTP",
                |f| &mut f.upstream_errors,
            ),
            (
                "mss_protocol_errors",
                "client sessions closed for a protocol violation",
                |f| &mut f.protocol_errors,
            ),
        ] {
            let (p, m) = fe_family(name, help, &mut reg);
            *pick(&mut proxy) = p;
            *pick(&mut milter) = m;
        }
        let counter = |name: &str, help: &str, reg: &mut Registry| {
            let c = Counter::default();
            reg.register(name, help, c.clone());
            c
        };
        let logins = counter("mss_login_events", "login events stored", &mut reg);
        let batches = counter("mss_store_batches", "group commits", &mut reg);
        let store_errors = counter("mss_store_errors", "failed store writes", &mut reg);
        let journal_records = counter(
            "mss_journal_records",
            "records written to the fallback journal",
            &mut reg,
        );
        let lost_records = counter(
            "mss_lost_records",
            "records neither stored nor journaled",
            &mut reg,
        );
        let commit_latency = Histogram::new(LATENCY_BOUNDS);
        reg.register(
            "mss_capture_commit_seconds",
            "time to make a message's rows durable (group commit)",
            commit_latency.clone(),
        );
        let login_sources = labeled(
            "mss_login_events_received",
            "login events received, by source",
            &mut reg,
        );
        let outside = labeled(
            "mss_outside_trust_space",
            "recipients outside the Espace de Confiance (liste blanche policy)",
            &mut reg,
        );
        let events_rejected = labeled(
            "mss_login_events_rejected",
            "login events refused by the events endpoint, by reason",
            &mut reg,
        );
        let by_domain = |name: &str, help: &str, reg: &mut Registry| {
            let f: Family<FrontendDomain, Counter> = Family::default();
            reg.register(name, help, f.clone());
            f
        };
        let rows_by_domain = by_domain(
            "mss_domain_rows",
            "Echanges rows captured, by front end and operator domain",
            &mut reg,
        );
        let messages_by_domain = by_domain(
            "mss_domain_messages",
            "messages captured, by front end and operator domain",
            &mut reg,
        );
        let bytes_by_domain = by_domain(
            "mss_domain_bytes",
            "bytes (TAILLE, once per message) captured, by front end and operator domain",
            &mut reg,
        );
        let logins_by_domain = labeled(
            "mss_domain_logins",
            "login events stored, by operator domain (other: any other domain)",
            &mut reg,
        );
        let store_bytes = Gauge::default();
        reg.register(
            "mss_store_bytes",
            "capture store size on disk (SST files)",
            store_bytes.clone(),
        );
        let export = ExportMetrics::default();
        reg.register(
            "mss_export_state",
            "delivery state of a month at the ANS (1 for the current state), from mss-export",
            export.state.clone(),
        );
        if cert {
            reg.register(
                "mss_client_certificate_expiry_days",
                "days until sipil.client_cert expires (negative: expired)",
                export.cert_days_left.clone(),
            );
        }
        let central = CentralMetrics::default();
        if central_on {
            reg.register(
                "mss_central_outbox_records",
                "records waiting in the outbox for PostgreSQL ([central])",
                central.outbox.clone(),
            );
            reg.register(
                "mss_central_shipped_records",
                "records this node committed to PostgreSQL ([central])",
                central.shipped.clone(),
            );
            reg.register(
                "mss_central_up",
                "1 while the shipper is connected and registered ([central])",
                central.up.clone(),
            );
        }
        login_sources.init(&LOGIN_SOURCES);
        outside.init(&OUTSIDE_ACTIONS);
        events_rejected.init(&EVENT_REJECT_REASONS);
        let mut label_domains: Vec<String> = domains.to_vec();
        label_domains.push("other".into());
        for d in &label_domains {
            logins_by_domain.init(&[d.as_str()]);
            for fe in ["proxy", "milter"] {
                let l = FrontendDomain {
                    frontend: fe.into(),
                    domain: d.clone(),
                };
                for f in [&rows_by_domain, &messages_by_domain, &bytes_by_domain] {
                    let _ = f.get_or_create(&l);
                }
            }
        }
        Metrics {
            proxy,
            milter,
            logins,
            batches,
            store_errors,
            journal_records,
            lost_records,
            stored_messages: Counter::default(),
            commit_latency,
            login_sources,
            outside,
            events_rejected,
            rows_by_domain,
            messages_by_domain,
            bytes_by_domain,
            logins_by_domain,
            store_bytes,
            export,
            central,
            domains: domains.to_vec(),
            registry: reg,
        }
    }

    fn domain_label(&self, domain: &str) -> String {
        if self.domains.iter().any(|d| d == domain) {
            domain.to_string()
        } else {
            "other".to_string()
        }
    }

    /// One message captured by `frontend` from a BAL of operator domain
    /// `domain` (`None`: not an operator's mail), with `rows` Echanges rows.
    pub fn count_message(&self, frontend: &str, domain: Option<&str>, rows: u64, bytes: u64) {
        let fe = self.frontend(frontend);
        fe.transactions.inc();
        fe.rows.inc_by(rows);
        if let Some(d) = domain {
            let l = FrontendDomain {
                frontend: frontend.to_string(),
                domain: self.domain_label(d),
            };
            self.rows_by_domain.get_or_create(&l).inc_by(rows);
            self.messages_by_domain.get_or_create(&l).inc();
            self.bytes_by_domain.get_or_create(&l).inc_by(bytes);
        }
    }

    pub fn frontend(&self, name: &str) -> &Frontend {
        match name {
            "milter" => &self.milter,
            _ => &self.proxy,
        }
    }

    pub(crate) fn count_stored(&self, r: &Record) {
        match r {
            Record::Message(_) => {
                self.stored_messages.inc();
            }
            Record::Login(l) => {
                self.logins.inc();
                let d = mss_shared::config::domain_of(&l.bal).unwrap_or_default();
                self.logins_by_domain.inc(&self.domain_label(&d));
            }
            Record::Outside(_) => {}
        }
    }

    /// Replace the export gauges with what [`crate::export_watch::read`] found.
    pub fn set_export(&self, g: &crate::export_watch::ExportGauges) {
        self.export.state.clear();
        for (month, state) in &g.months {
            for s in crate::export_watch::STATES {
                self.export
                    .state
                    .get_or_create(&ExportLabel {
                        month: month.clone(),
                        state: s.to_string(),
                    })
                    .set(i64::from(s == state));
            }
        }
        if let Some(d) = g.cert_days_left {
            self.export.cert_days_left.set(d);
        }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut o = String::new();
        prometheus_client::encoding::text::encode(&mut o, &self.registry)
            .expect("writing to a String");
        o
    }
}
