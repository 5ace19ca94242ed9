//! `mss-admin reconcile`: prove a month's captured rows against Postfix's
//! own logs.
//!
//! - [`parse`]: streaming line reader (plain/.gz, three timestamp forms).
//! - [`episodes`]: one message per (instance, queue id, episode).
//! - [`windows`]: the sidecar's own start/stop marks → down windows.
//! - [`fill`]: `--fill`, rows rebuilt for `milter_down` gaps only (TAILLE
//!   estimated), kept in the registry.
//! - here: the sender rule, matching with the rows on (queue id, recipient)
//!   within [`WINDOW_US`], the report and its exit code.

pub mod episodes;
pub mod fill;
pub mod parse;
pub mod windows;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use jiff::tz::TimeZone;
use serde::Serialize;

use mss_shared::config::{domain_of, Config};
use mss_shared::month::{format_csv_date, from_micros, Month};
use mss_shared::store::capture::{Classifier, OutRow};
use mss_shared::store::filled::SOURCE_LOG;
use mss_shared::{exit, Error};

use episodes::{Episodes, Message, Origin};

/// A row and a logged message of the same (queue id, recipient) match when
/// their times are this close (capture time is end of data; the log's origin
/// line is the start of the SMTP transaction or the pickup).
pub const WINDOW_US: i64 = 15 * 60 * 1_000_000;

/// A silence in the logs longer than this is reported as a coverage gap.
pub const GAP_US: i64 = 3600 * 1_000_000;

/// Whether `sender` (as logged, lower-cased) makes an Echanges row, and for
/// which operator domain: an operator domain, not the null sender, not
/// Postfix's `double-bounce`, not an SRS-rewritten forward. A sub-address
/// (`alice+tag@`) keeps its domain.
///
/// To switch to `mss_shared::indicators::address` once issue 21 lands.
pub fn sender_domain(sender: &str, cls: &Classifier) -> Option<String> {
    if sender.is_empty() {
        return None;
    }
    let local = sender.rsplit_once('@')?.0;
    if local == "double-bounce" || local.starts_with("srs0=") || local.starts_with("srs1=") {
        return None;
    }
    let d = domain_of(sender)?;
    cls.domains.contains(&d).then_some(d)
}

/// One recipient Postfix accepted with no row.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Missing {
    pub queue_id: String,
    pub sender: String,
    pub recipient: String,
    /// Local time, `YYYY-MM-DD HH:MM:SS`.
    pub time: String,
    /// `milter_down`, `proxy_down` or `unexplained`.
    pub reason: String,
    #[serde(skip)]
    pub origin: Option<Origin>,
    /// The sender's operator domain.
    #[serde(skip)]
    pub domain: String,
    #[serde(skip)]
    pub size: u64,
    #[serde(skip)]
    pub time_us: i64,
}

/// A row with no message in the logs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Phantom {
    pub mail_id: String,
    pub queue_id: Option<String>,
    pub sender: String,
    pub recipient: String,
    pub time: String,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Figures {
    pub matched: u64,
    /// Recipients whose only row is one `--fill` rebuilt from the log.
    pub filled: u64,
    pub missing: u64,
    pub phantom: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DomainReport {
    pub domain: String,
    #[serde(flatten)]
    pub figures: Figures,
    pub days: Vec<DayReport>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DayReport {
    pub day: String,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Coverage {
    pub files: u64,
    pub lines: u64,
    /// Lines without a readable date and program.
    pub unreadable: u64,
    pub first_line: Option<String>,
    pub last_line: Option<String>,
    /// Silences longer than an hour: `[from, to]`.
    pub gaps: Vec<[String; 2]>,
    /// Messages whose origin line (`client=`/`uid=`) is not in the logs.
    pub without_origin: u64,
    /// Rows of the month outside the logs' first..last line (not judged).
    pub rows_outside_logs: u64,
    /// When the sidecar was down, from its own marks in the log.
    pub sidecar_down: Vec<windows::DownWindow>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Report {
    pub month: String,
    pub matched: u64,
    /// Recipients whose only row is one `--fill` rebuilt from the log.
    pub filled: u64,
    pub missing: Vec<Missing>,
    pub phantom: Vec<Phantom>,
    pub by_domain: Vec<DomainReport>,
    pub coverage: Coverage,
    /// `size= − TAILLE` of each matched captured message, per origin: what
    /// `--fill` estimates TAILLE from.
    #[serde(skip)]
    pub overhead: Vec<(Origin, i64)>,
}

impl Report {
    pub fn reconciled(&self) -> bool {
        self.missing.is_empty() && self.phantom.is_empty()
    }
}

/// Read the logs into the month's messages (outbound, by the sender rule).
pub fn read_logs(
    paths: &[PathBuf],
    month: Month,
    cls: &Classifier,
    cov: &mut Coverage,
) -> Result<Vec<(String, Message)>, Error> {
    let tz = cls.tz.clone();
    let (start, end) = (
        month.start(&tz).as_microsecond(),
        month.end(&tz).as_microsecond(),
    );
    let mut clock = parse::Clock::new(tz.clone(), month.year, month.month);
    let mut eps = Episodes::default();
    let mut out = Vec::new();
    let mut keep = |m: Message| {
        if m.time_us < start || m.time_us >= end || m.recipients.is_empty() {
            return;
        }
        if let Some(d) = sender_domain(&m.sender, cls) {
            out.push((d, m));
        }
    };
    let (mut first, mut last): (Option<i64>, Option<i64>) = (None, None);
    let mut gaps = Vec::new();
    let mut down = windows::Windows::default();
    for p in paths {
        cov.files += 1;
        let input =
            parse::open(p).map_err(|e| Error::Usage(format!("--log {}: {e}", p.display())))?;
        parse::for_each_line(input, |s| {
            cov.lines += 1;
            let Some(l) = clock.split(s) else {
                cov.unreadable += 1;
                return;
            };
            if let Some(prev) = last {
                if l.time_us - prev > GAP_US {
                    gaps.push((prev, l.time_us));
                }
            }
            first = Some(first.map_or(l.time_us, |f| f.min(l.time_us)));
            last = Some(last.map_or(l.time_us, |x| x.max(l.time_us)));
            if l.instance == crate::marks::TAG {
                down.mark(l.time_us, l.msg);
                return;
            }
            eps.line(&l, &mut keep);
        })
        .map_err(|e| Error::Other(format!("{}: {e}", p.display())))?;
    }
    cov.without_origin = eps.without_origin;
    eps.finish(&mut keep);
    let fmt = |us: i64| format_csv_date(from_micros(us), &tz);
    cov.first_line = first.map(fmt);
    cov.last_line = last.map(fmt);
    cov.gaps = gaps.into_iter().map(|(a, b)| [fmt(a), fmt(b)]).collect();
    cov.sidecar_down = down.finish(fmt);
    out.sort_by_key(|(_, m)| (m.time_us, m.seq));
    Ok(out)
}

/// Match the logged messages with the month's rows.
pub fn reconcile(
    month: Month,
    tz: &TimeZone,
    msgs: &[(String, Message)],
    rows: &[OutRow],
    mut cov: Coverage,
    log_span: Option<(i64, i64)>,
) -> Report {
    // (queue id, recipient) → indexes of rows, for nearest-in-time matching.
    let mut index: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        if let Some(q) = &r.queue_id {
            index
                .entry((q.as_str(), r.recipient.as_str()))
                .or_default()
                .push(i);
        }
    }
    let mut used = vec![false; rows.len()];
    let mut per: BTreeMap<String, BTreeMap<String, Figures>> = BTreeMap::new();
    let day = |us: i64| format_csv_date(from_micros(us), tz)[..10].to_string();
    let (mut matched, mut filled) = (0u64, 0u64);
    let mut missing = Vec::new();
    let mut overhead = Vec::new();
    for (domain, m) in msgs {
        let mut sampled = None;
        for rcpt in &m.recipients {
            let hit = index
                .get(&(m.queue_id.as_str(), rcpt.as_str()))
                .and_then(|c| {
                    c.iter()
                        .copied()
                        .filter(|i| !used[*i] && (rows[*i].time_us - m.time_us).abs() <= WINDOW_US)
                        .min_by_key(|i| (rows[*i].time_us - m.time_us).abs())
                });
            let f = per
                .entry(domain.clone())
                .or_default()
                .entry(day(m.time_us))
                .or_default();
            if let Some(i) = hit {
                used[i] = true;
                if rows[i].frontend == SOURCE_LOG {
                    filled += 1;
                    f.filled += 1;
                } else {
                    matched += 1;
                    f.matched += 1;
                    if sampled != Some(m.seq) {
                        sampled = Some(m.seq);
                        overhead.push((m.origin, m.size as i64 - rows[i].size as i64));
                    }
                }
            } else {
                f.missing += 1;
                let reason = if m.milter_down {
                    "milter_down"
                } else if m.proxy_down {
                    "proxy_down"
                } else {
                    "unexplained"
                };
                missing.push(Missing {
                    queue_id: m.queue_id.clone(),
                    sender: m.sender.clone(),
                    recipient: rcpt.clone(),
                    time: format_csv_date(from_micros(m.time_us), tz),
                    reason: reason.into(),
                    origin: Some(m.origin),
                    domain: domain.clone(),
                    size: m.size,
                    time_us: m.time_us,
                });
            }
        }
    }
    let mut phantom = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        if used[i] {
            continue;
        }
        let inside = log_span.is_some_and(|(a, b)| r.time_us >= a && r.time_us <= b);
        if !inside {
            cov.rows_outside_logs += 1;
            continue;
        }
        per.entry(r.domain.clone())
            .or_default()
            .entry(day(r.time_us))
            .or_default()
            .phantom += 1;
        phantom.push(Phantom {
            mail_id: r.mail_id.clone(),
            queue_id: r.queue_id.clone(),
            sender: r.sender.clone(),
            recipient: r.recipient.clone(),
            time: format_csv_date(from_micros(r.time_us), tz),
        });
    }
    let by_domain = per
        .into_iter()
        .map(|(domain, days)| {
            let mut figures = Figures::default();
            for f in days.values() {
                figures.matched += f.matched;
                figures.filled += f.filled;
                figures.missing += f.missing;
                figures.phantom += f.phantom;
            }
            DomainReport {
                domain,
                figures,
                days: days
                    .into_iter()
                    .map(|(day, figures)| DayReport { day, figures })
                    .collect(),
            }
        })
        .collect();
    Report {
        month: format!("{:04}-{:02}", month.year, month.month),
        matched,
        filled,
        missing,
        phantom,
        by_domain,
        coverage: cov,
        overhead,
    }
}

/// `mss-admin reconcile --month M --log PATH… [--node N] [--json] [--fill]`.
pub fn run(
    config: &std::path::Path,
    month: &str,
    logs: &[PathBuf],
    node: Option<&str>,
    json: bool,
    fill: bool,
) -> Result<i32, Error> {
    let cfg = Config::load(config)?;
    let month = Month::parse(month)?;
    let cls = Classifier::from_config(&cfg);
    let tz = cfg.tz();
    let mut cov = Coverage::default();
    let msgs = read_logs(logs, month, &cls, &mut cov)?;
    let sec = crate::admin::SecondaryCapture::open(&cfg)?;
    let mut rows = Vec::new();
    let prefix = node.map(|n| format!("{n}."));
    let mine = |r: &OutRow| prefix.as_deref().is_none_or(|p| r.mail_id.starts_with(p));
    sec.store.for_each_out(month, None, |r| {
        if mine(&r) {
            rows.push(r);
        }
    })?;
    let captured = rows.len();
    let reg_path = &cfg.store.registry_path;
    // `--fill` writes the registry: open it for writing first, so a busy
    // registry stops the run before any work is reported.
    let reg = if fill {
        Some(mss_shared::store::registry::RegistryStore::open(reg_path)?)
    } else {
        mss_shared::store::registry::RegistryStore::open_read_only(reg_path)?
    };
    if let Some(r) = &reg {
        rows.extend(
            r.filled(month)?
                .iter()
                .map(|f| f.to_row())
                .filter(|r| mine(r)),
        );
    }
    let span = span_of(&cov, &tz);
    let mut report = reconcile(month, &tz, &msgs, &rows, cov.clone(), span);
    if let (true, Some(r)) = (fill, &reg) {
        let me = node.unwrap_or(&cfg.operator.node);
        let new = fill::rows(&report, me);
        let written = r.add_filled(month, &new)?;
        let oldest = mss_shared::figures::oldest_kept(&cfg, jiff::Timestamp::now());
        r.purge_filled_before(oldest)?;
        eprintln!(
            "reconcile --fill: {written} row(s) rebuilt from the log for milter_down gaps ({} already there); other gaps are reported, never filled",
            new.len() - written
        );
        if written > 0 {
            rows.truncate(captured);
            rows.extend(
                r.filled(month)?
                    .iter()
                    .map(|f| f.to_row())
                    .filter(|r| mine(r)),
            );
            report = reconcile(month, &tz, &msgs, &rows, cov, span);
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("serialisable")
        );
    } else {
        print!("{}", render(&report));
    }
    Ok(if report.reconciled() {
        exit::OK
    } else {
        exit::UNRECONCILED
    })
}

/// The logs' first and last line as µs (from the coverage's local times).
fn span_of(cov: &Coverage, tz: &TimeZone) -> Option<(i64, i64)> {
    let p = |s: &String| -> Option<i64> {
        let dt: jiff::civil::DateTime = s.replace(' ', "T").parse().ok()?;
        Some(dt.to_zoned(tz.clone()).ok()?.timestamp().as_microsecond())
    };
    Some((
        p(cov.first_line.as_ref()?)?,
        p(cov.last_line.as_ref()?)? + 999_999,
    ))
}

/// Human view.
pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
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
    );
    let c = &r.coverage;
    let _ = writeln!(
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
    );
    for d in &r.by_domain {
        let f = &d.figures;
        let _ = writeln!(
            o,
            "{}: matched {}  filled {}  missing {}  phantom {}",
            d.domain, f.matched, f.filled, f.missing, f.phantom
        );
    }
    for m in &r.missing {
        let _ = writeln!(
            o,
            "missing {} {} {} -> {} {}",
            m.time, m.queue_id, m.sender, m.recipient, m.reason
        );
    }
    for p in &r.phantom {
        let _ = writeln!(
            o,
            "phantom {} {} {} -> {}",
            p.time, p.mail_id, p.sender, p.recipient
        );
    }
    o
}

#[cfg(test)]
mod tests;
