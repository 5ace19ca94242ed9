//! What `mss-export` and the operator's certificate say, as metrics: the
//! delivery state of recent months (read from the registry's `meta`
//! entries `sipil/month/YYYY-MM`, read-only) and the days left on
//! `sipil.client_cert`. Read every minute by a daemon task
//! (`daemon::watch_export`); never on the SMTP path.

use mss_shared::config::Config;
use mss_shared::month::Month;
use mss_shared::store::registry::RegistryStore;

/// The states `mss-export` records, in order (`mss_export_state` is one-hot
/// over them).
pub const STATES: [&str; 6] = [
    "built",
    "validated",
    "submitted",
    "report_pending",
    "accepted",
    "rejected",
];

/// The figures exposed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportGauges {
    /// (month, state) of the current month and the two before, when recorded.
    pub months: Vec<(String, String)>,
    /// Days until `sipil.client_cert` expires (negative: expired).
    pub cert_days_left: Option<i64>,
}

/// Read the gauges now (a missing registry or certificate gives none).
pub fn read(cfg: &Config) -> ExportGauges {
    let mut g = ExportGauges::default();
    let now = Month::current(&cfg.tz());
    match RegistryStore::open_read_only(&cfg.store.registry_path) {
        Ok(Some(reg)) => {
            for m in [now.prev().prev(), now.prev(), now] {
                if let Ok(Some(v)) = reg.get_meta(&format!("sipil/month/{m}")) {
                    if let Some(s) = v["state"].as_str() {
                        g.months.push((m.to_string(), s.to_string()));
                    }
                }
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "metrics: registry unreadable for the export state"),
    }
    if let Some(p) = cfg.sipil.as_ref().and_then(|s| s.client_cert.as_ref()) {
        match mss_shared::certificate::days_left(p) {
            Ok(d) => g.cert_days_left = Some(d),
            Err(e) => tracing::warn!(error = %e, "metrics: client certificate unreadable"),
        }
    }
    g
}
