//! `mss-export status [--json]`: every month's delivery record, with the
//! rows its build quarantined.

use mss_shared::config::Config;
use mss_shared::month::Month;
use mss_shared::{exit, Error};

use crate::sipil;
use crate::state;

/// `mss-export status [--json]`.
pub fn status(cfg: &Config, json: bool) -> Result<i32, Error> {
    let recs = crate::state::with_reg(cfg, state::list)?;
    let out = state::StatusOutput {
        months: recs
            .iter()
            .map(|r| {
                let mut m = state::MonthStatus::from(r);
                m.quarantined_rows = Month::parse(&m.month)
                    .map_or(0, |mo| crate::quarantine::count(&cfg.export.out_dir, mo));
                m
            })
            .collect(),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| Error::Other(e.to_string()))?
        );
        return Ok(exit::OK);
    }
    if out.months.is_empty() {
        println!("no month delivered yet");
    }
    for m in &out.months {
        println!(
            "{}  {:<14} deposits: {}  updated {}",
            m.month,
            m.state.to_string(),
            if m.deposit_ids.is_empty() {
                "-".into()
            } else {
                m.deposit_ids.join(", ")
            },
            m.updated
        );
        for a in &m.archives {
            println!("    {} ({} bytes, sha256 {})", a.file, a.size, a.sha256);
        }
        if let Some(r) = &m.last_report {
            println!(
                "    last report {} (deposit {}): {}: {}",
                r.time,
                r.deposit_id,
                r.verdict,
                sipil::excerpt(&r.raw)
            );
        }
        if let Some(e) = &m.last_error {
            println!("    last error: {e}");
        }
        if let Some(line) = crate::quarantine::status_line(&cfg.export.out_dir, &m.month) {
            println!("    {line}");
        }
    }
    Ok(exit::OK)
}
