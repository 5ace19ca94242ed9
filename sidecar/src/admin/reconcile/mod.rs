//! `mss-admin reconcile`: prove a month's captured rows against Postfix's
//! own logs.
//!
//! - [`parse`]: streaming line reader (plain/.gz, three timestamp forms).
//! - [`episodes`]: one message per (instance, queue id, episode).
//! - [`windows`]: the sidecar's own start/stop marks → down windows.
//! - [`matcher`]: the rows' compact index, each message matched as it ends,
//!   phantoms by a second read of the store.
//! - [`missing`]: the missing recipients, compact, serialised on the fly.
//! - [`fill`]: `--fill`, rows rebuilt for `milter_down` gaps only (TAILLE
//!   estimated), kept in the registry.
//! - [`render`]: the human view.
//! - here: the sender rule, the report's types, reading the logs, `run`.

pub mod episodes;
pub mod fill;
pub mod matcher;
pub mod missing;
pub mod parse;
pub mod render;
pub mod windows;

use std::path::PathBuf;

use jiff::tz::TimeZone;
use serde::Serialize;

use mss_shared::config::{domain_of, Config};
use mss_shared::month::{format_csv_date, from_micros, Month};
use mss_shared::store::capture::{Classifier, OutRow};
use mss_shared::{exit, Error};

use episodes::{Episodes, Message, Origin};
use matcher::Matcher;
use missing::{MissingList, Reason};

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

/// One recipient Postfix accepted with no row (an owned view of
/// [`MissingList`]'s compact entries).
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
    pub missing: MissingList,
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

    /// After `--fill`: every `milter_down` recipient now has a (filled) row.
    pub fn absorb_filled(&mut self) {
        for m in self.missing.iter().filter(|m| m.reason == "milter_down") {
            let day = &m.time[..10];
            self.filled += 1;
            if let Some(d) = self.by_domain.iter_mut().find(|d| d.domain == m.domain) {
                d.figures.missing -= 1;
                d.figures.filled += 1;
                if let Some(x) = d.days.iter_mut().find(|x| x.day == day) {
                    x.figures.missing -= 1;
                    x.figures.filled += 1;
                }
            }
        }
        self.missing.remove(Reason::MilterDown);
    }
}

/// Stream the logs: each outbound message of the month (by the sender
/// rule) is handed to `f` with its operator domain as soon as Postfix is
/// done with it (not in time order).
pub fn stream_logs(
    paths: &[PathBuf],
    month: Month,
    cls: &Classifier,
    cov: &mut Coverage,
    mut f: impl FnMut(String, Message),
) -> Result<(), Error> {
    let tz = cls.tz.clone();
    let (start, end) = (
        month.start(&tz).as_microsecond(),
        month.end(&tz).as_microsecond(),
    );
    let mut clock = parse::Clock::new(tz.clone(), month.year, month.month);
    let mut eps = Episodes::default();
    let mut keep = |m: Message| {
        if m.time_us < start || m.time_us >= end || m.recipients.is_empty() {
            return;
        }
        if let Some(d) = sender_domain(&m.sender, cls) {
            f(d, m);
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
    Ok(())
}

/// The month's messages, in log time order (tests; `run` streams).
pub fn read_logs(
    paths: &[PathBuf],
    month: Month,
    cls: &Classifier,
    cov: &mut Coverage,
) -> Result<Vec<(String, Message)>, Error> {
    let mut out = vec![];
    stream_logs(paths, month, cls, cov, |d, m| out.push((d, m)))?;
    out.sort_by_key(|(_, m)| (m.time_us, m.seq));
    Ok(out)
}

/// Match messages already read with `rows` (tests and small inputs).
pub fn reconcile(
    month: Month,
    tz: &TimeZone,
    msgs: &[(String, Message)],
    rows: &[OutRow],
    cov: Coverage,
    log_span: Option<(i64, i64)>,
) -> Report {
    let mut m = Matcher::new(tz.clone());
    rows.iter().for_each(|r| m.index_row(r));
    m.seal();
    for (d, msg) in msgs {
        m.message(d, msg);
    }
    let name = format!("{:04}-{:02}", month.year, month.month);
    let r: Result<Report, std::convert::Infallible> = m.finish(name, cov, log_span, |f| {
        rows.iter().cloned().for_each(f);
        Ok(())
    });
    match r {
        Ok(r) => r,
        Err(e) => match e {},
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
    let sec = crate::admin::SecondaryCapture::open(&cfg)?;
    // `--fill` writes the registry: open it for writing first, so a busy
    // registry stops the run before any work is done.
    let reg = if fill {
        Some(mss_shared::central::registry::open_write(&cfg)?)
    } else {
        mss_shared::central::registry::open_read(&cfg)?
    };
    let prefix = node.map(|n| format!("{n}."));
    let mine = |r: &OutRow| prefix.as_deref().is_none_or(|p| r.mail_id.starts_with(p));
    let filled = match &reg {
        Some(r) => r.filled(month)?,
        None => vec![],
    };
    // Every row of the month (captured, then filled), for one node.
    let each_row = |f: &mut dyn FnMut(OutRow)| -> Result<(), Error> {
        sec.store.for_each_out(month, None, |r| {
            if mine(&r) {
                f(r);
            }
        })?;
        filled
            .iter()
            .map(|x| x.to_row())
            .filter(|r| mine(r))
            .for_each(f);
        Ok(())
    };
    let mut matcher = Matcher::new(tz.clone());
    each_row(&mut |r| matcher.index_row(&r))?;
    matcher.seal();
    let mut cov = Coverage::default();
    stream_logs(logs, month, &cls, &mut cov, |d, m| matcher.message(&d, &m))?;
    let span = span_of(&cov, &tz);
    let mut report = matcher.finish(month.to_string(), cov, span, each_row)?;
    if let (true, Some(r)) = (fill, &reg) {
        let me = node.unwrap_or(&cfg.operator.node);
        let (mut written, mut proposed) = (0, 0);
        let new = fill::rows(&report, me);
        for chunk in new.chunks(10_000) {
            proposed += chunk.len();
            written += r.add_filled(month, chunk)?;
        }
        let oldest = mss_shared::figures::oldest_kept(&cfg, jiff::Timestamp::now());
        r.purge_filled_before(oldest)?;
        eprintln!(
            "reconcile --fill: {written} row(s) rebuilt from the log for milter_down gaps ({} already there); other gaps are reported, never filled",
            proposed - written
        );
        report.absorb_filled();
    }
    if let Some(r) = reg {
        r.commit()?;
    }
    let out = std::io::stdout().lock();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    let written = if json {
        serde_json::to_writer_pretty(&mut out, &report)
            .map_err(std::io::Error::other)
            .and_then(|()| std::io::Write::write_all(&mut out, b"\n"))
    } else {
        render::write(&mut out, &report)
    };
    written
        .and_then(|()| std::io::Write::flush(&mut out))
        .map_err(|e| Error::Other(format!("writing the report: {e}")))?;
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

#[cfg(test)]
mod tests;
