//! Counters shared by every front end, rendered in the Prometheus text format.
//!
//! Hand-rolled on atomics: a handful of counters and one histogram do not
//! justify a registry crate on the SMTP hot path.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mss_shared::model::Record;

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Latency histogram with fixed buckets (seconds).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    sum_us: AtomicU64,
    count: AtomicU64,
}

const LATENCY_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            bounds: LATENCY_BOUNDS,
            buckets: LATENCY_BOUNDS.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (b, c) in self.bounds.iter().zip(&self.buckets) {
            if s <= *b {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, name: &str, out: &mut String) {
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{b}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let n = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {n}");
    }
}

/// Per front end counters.
#[derive(Debug, Default)]
pub struct Frontend {
    pub sessions: Counter,
    pub transactions: Counter,
    pub rows: Counter,
    pub aborted: Counter,
    pub upstream_errors: Counter,
    pub protocol_errors: Counter,
}

#[derive(Debug, Default)]
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
    pub login_sources: LabelCounters,
    /// Recipients outside the Espace de Confiance, by mode (refused / reported).
    pub outside: LabelCounters,
    /// Login events refused by the events endpoint, by reason.
    pub events_rejected: LabelCounters,
    /// Rows captured by front end and operator domain (label value
    /// `<frontend>",domain="<domain>`: operator domains only, a bounded set).
    pub rows_by_domain: LabelCounters,
    /// Messages and bytes (TAILLE, once per message) captured, same labels.
    pub messages_by_domain: LabelCounters,
    pub bytes_by_domain: LabelCounters,
    /// Login events stored, by operator domain (`other` for any other).
    pub logins_by_domain: LabelCounters,
    /// Capture store size on disk (SST files), refreshed by the writer.
    pub store_bytes: Counter,
    /// Export state and certificate expiry ([`crate::export_watch`]).
    pub export: std::sync::Mutex<crate::export_watch::ExportGauges>,
    /// The operator domains: the only `domain` label values besides `other`.
    pub domains: Vec<String>,
}

/// Counters keyed by a label value (a handful of distinct values).
#[derive(Debug, Default)]
pub struct LabelCounters(std::sync::Mutex<std::collections::BTreeMap<String, u64>>);

impl LabelCounters {
    pub fn inc(&self, label: &str) {
        self.add(label, 1);
    }

    pub fn add(&self, label: &str, n: u64) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match m.get_mut(label) {
            Some(v) => *v += n,
            None => {
                m.insert(label.to_string(), n);
            }
        }
    }

    pub fn get(&self, label: &str) -> u64 {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.get(label).copied().unwrap_or(0)
    }

    fn render(&self, name: &str, help: &str, label: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (k, v) in m.iter() {
            let _ = writeln!(out, "{name}{{{label}=\"{k}\"}} {v}");
        }
    }
}

impl Metrics {
    /// Metrics whose `domain` labels are `domains` (and `other`).
    pub fn for_domains(domains: &[String]) -> Metrics {
        Metrics {
            domains: domains.to_vec(),
            ..Metrics::default()
        }
    }

    fn domain_label<'a>(&'a self, domain: &'a str) -> &'a str {
        if self.domains.iter().any(|d| d == domain) {
            domain
        } else {
            "other"
        }
    }

    /// One message captured by `frontend` from a BAL of operator domain
    /// `domain` (`None`: not an operator's mail), with `rows` Echanges rows.
    pub fn count_message(&self, frontend: &str, domain: Option<&str>, rows: u64, bytes: u64) {
        let fe = self.frontend(frontend);
        fe.transactions.inc();
        fe.rows.add(rows);
        if let Some(d) = domain {
            let label = format!("{frontend}\",domain=\"{}", self.domain_label(d));
            self.rows_by_domain.add(&label, rows);
            self.messages_by_domain.inc(&label);
            self.bytes_by_domain.add(&label, bytes);
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
            Record::Message(_) => self.stored_messages.inc(),
            Record::Login(l) => {
                self.logins.inc();
                let d = mss_shared::config::domain_of(&l.bal).unwrap_or_default();
                self.logins_by_domain.inc(self.domain_label(&d));
            }
            Record::Outside(_) => {}
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut o = String::new();
        type Pick = fn(&Frontend) -> &Counter;
        let fe: [(&str, &str, Pick); 6] = [
            ("mss_sessions_total", "client sessions accepted", |f| {
                &f.sessions
            }),
            (
                "mss_transactions_total",
                "messages accepted by the next hop and captured",
                |f| &f.transactions,
            ),
            ("mss_rows_total", "recipient rows captured", |f| &f.rows),
            (
                "mss_transactions_aborted_total",
                "transactions refused or aborted (no row)",
                |f| &f.aborted,
            ),
            (
                "mss_upstream_errors_total",
                "upstream unreachable, timed out or not speaking SMTP",
                |f| &f.upstream_errors,
            ),
            (
                "mss_protocol_errors_total",
                "client sessions closed for a protocol violation",
                |f| &f.protocol_errors,
            ),
        ];
        for (name, help, get) in fe {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter");
            for (label, f) in [("proxy", &self.proxy), ("milter", &self.milter)] {
                let _ = writeln!(o, "{name}{{frontend=\"{label}\"}} {}", get(f).get());
            }
        }
        for (name, help, c) in [
            (
                "mss_login_events_total",
                "login events stored",
                &self.logins,
            ),
            ("mss_store_batches_total", "group commits", &self.batches),
            (
                "mss_store_errors_total",
                "failed store writes",
                &self.store_errors,
            ),
            (
                "mss_journal_records_total",
                "records written to the fallback journal",
                &self.journal_records,
            ),
            (
                "mss_lost_records_total",
                "records neither stored nor journaled",
                &self.lost_records,
            ),
        ] {
            let _ = writeln!(
                o,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.get()
            );
        }
        self.commit_latency
            .render("mss_capture_commit_seconds", &mut o);
        self.login_sources.render(
            "mss_login_events_received_total",
            "login events received, by source",
            "source",
            &mut o,
        );
        self.outside.render(
            "mss_outside_trust_space_total",
            "recipients outside the Espace de Confiance (liste blanche policy)",
            "action",
            &mut o,
        );
        self.events_rejected.render(
            "mss_login_events_rejected_total",
            "login events refused by the events endpoint, by reason",
            "reason",
            &mut o,
        );
        self.rows_by_domain.render(
            "mss_domain_rows_total",
            "Echanges rows captured, by front end and operator domain",
            "frontend",
            &mut o,
        );
        self.messages_by_domain.render(
            "mss_domain_messages_total",
            "messages captured, by front end and operator domain",
            "frontend",
            &mut o,
        );
        self.bytes_by_domain.render(
            "mss_domain_bytes_total",
            "bytes (TAILLE, once per message) captured, by front end and operator domain",
            "frontend",
            &mut o,
        );
        self.logins_by_domain.render(
            "mss_domain_logins_total",
            "login events stored, by operator domain (other: any other domain)",
            "domain",
            &mut o,
        );
        let g = self
            .export
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let _ = writeln!(
            o,
            "# HELP mss_export_state delivery state of a month at the ANS (1 for the current state), from mss-export\n# TYPE mss_export_state gauge"
        );
        for (month, state) in &g.months {
            for s in crate::export_watch::STATES {
                let _ = writeln!(
                    o,
                    "mss_export_state{{month=\"{month}\",state=\"{s}\"}} {}",
                    u8::from(s == state)
                );
            }
        }
        if let Some(d) = g.cert_days_left {
            let _ = writeln!(
                o,
                "# HELP mss_client_certificate_expiry_days days until sipil.client_cert expires (negative: expired)\n# TYPE mss_client_certificate_expiry_days gauge\nmss_client_certificate_expiry_days {d}"
            );
        }
        let _ = writeln!(
            o,
            "# HELP mss_store_bytes capture store size on disk (SST files)\n# TYPE mss_store_bytes gauge\nmss_store_bytes {}",
            self.store_bytes.get()
        );
        o
    }
}
