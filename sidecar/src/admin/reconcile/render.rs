//! `mss-admin reconcile` without `--json`: a summary, then one line per
//! missing recipient and per phantom row, written as they are made.

use std::io::{Result, Write};

use super::Report;

/// Write the human view of `r` to `o`.
pub fn write(o: &mut impl Write, r: &Report) -> Result<()> {
    writeln!(
        o,
        "month {}: matched {}  filled {}  missing {}  phantom {}  ({})",
        r.month,
        r.matched,
        r.filled,
        r.missing.len(),
        r.phantom.len(),
        if r.reconciled() {
            "reconciled"
        } else {
            "NOT reconciled"
        }
    )?;
    let c = &r.coverage;
    writeln!(
        o,
        "logs: {} files, {} lines ({} unreadable), {} .. {}, {} gaps, {} messages without origin line, {} rows outside the logs",
        c.files,
        c.lines,
        c.unreadable,
        c.first_line.as_deref().unwrap_or("-"),
        c.last_line.as_deref().unwrap_or("-"),
        c.gaps.len(),
        c.without_origin,
        c.rows_outside_logs
    )?;
    for w in &c.sidecar_down {
        writeln!(
            o,
            "sidecar down from {} to {}{}",
            w.from
                .as_deref()
                .unwrap_or("? (no stopping mark: killed or crashed)"),
            w.to.as_deref().unwrap_or("the end of the logs"),
            if w.clean { "" } else { " (unclean restart)" }
        )?;
    }
    for d in &r.by_domain {
        let f = &d.figures;
        writeln!(
            o,
            "{}: matched {}  filled {}  missing {}  phantom {}",
            d.domain, f.matched, f.filled, f.missing, f.phantom
        )?;
    }
    for m in r.missing.iter() {
        writeln!(
            o,
            "missing {} {} {} -> {} {}",
            m.time, m.queue_id, m.sender, m.recipient, m.reason
        )?;
    }
    for p in &r.phantom {
        writeln!(
            o,
            "phantom {} {} {} -> {}",
            p.time, p.mail_id, p.sender, p.recipient
        )?;
    }
    Ok(())
}
