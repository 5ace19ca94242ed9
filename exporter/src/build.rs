//! `mss-export build`: the month's CSV files and ZIP archive(s).
//!
//! One pass over the month's capture rows (keys are domain-first inside the
//! month, so each domain is one contiguous range), CSV written straight into
//! a deflated ZIP entry (bounded memory whatever the volume), then the
//! entries are raw-copied (no recompression) into archives of at most
//! `export.max_archive_bytes`, split at file boundaries.
//!
//! Deflate runs on its own thread ([`ZipPipe`]): the reading/formatting
//! thread hands it 256 KiB chunks through a bounded channel, so the two
//! halves of the work use two cores and memory stays bounded.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use mss_shared::config::Config;
use mss_shared::figures::{Context, Fate};
use mss_shared::month::{from_micros, CsvDates, Month};
use mss_shared::store::capture::CaptureStore;
use mss_shared::store::registry::RegistryStore;
use mss_shared::Error;
use serde::Serialize;
use zip::write::SimpleFileOptions;

use crate::quarantine;
use crate::validate::{self, Rules, CONNEXIONS_HEADER, ECHANGES_HEADER};

/// What the formatting thread sends the compression thread.
enum Chunk {
    Start(String),
    Data(Vec<u8>),
}

const CHUNK: usize = 256 * 1024;

/// A ZIP archive written by a compression thread: `start_file` then
/// `Write` the entry's bytes; `finish` waits for the thread and returns its
/// first error, if any (a write after the thread failed returns that error).
struct ZipPipe {
    tx: Option<SyncSender<Chunk>>,
    buf: Vec<u8>,
    failed: Arc<Mutex<Option<String>>>,
    thread: Option<JoinHandle<Result<(), Error>>>,
}

impl ZipPipe {
    fn create(path: &Path) -> Result<Self, Error> {
        let file = std::fs::File::create(path).map_err(io_err(path.display()))?;
        let (tx, rx) = sync_channel::<Chunk>(8);
        let failed = Arc::new(Mutex::new(None));
        let seen = Arc::clone(&failed);
        let where_ = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("deflate".into())
            .spawn(move || {
                let run = || -> Result<(), Error> {
                    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
                    let opts = SimpleFileOptions::default()
                        .compression_method(zip::CompressionMethod::Deflated)
                        .compression_level(Some(6))
                        .large_file(false);
                    let mut current = where_.clone();
                    for chunk in rx {
                        match chunk {
                            Chunk::Start(name) => {
                                zip.start_file(&name, opts).map_err(zip_err(&name))?;
                                current = name;
                            }
                            Chunk::Data(d) => zip.write_all(&d).map_err(io_err(&current))?,
                        }
                    }
                    let mut inner = zip.finish().map_err(zip_err(&where_))?;
                    inner.flush().map_err(io_err(&where_))
                };
                let r = run();
                if let Err(e) = &r {
                    *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                }
                r
            })
            .map_err(|e| Error::Other(format!("cannot start the compression thread: {e}")))?;
        Ok(ZipPipe {
            tx: Some(tx),
            buf: Vec::with_capacity(CHUNK),
            failed,
            thread: Some(thread),
        })
    }

    fn send(&mut self, c: Chunk) -> std::io::Result<()> {
        let sent = self.tx.as_ref().map(|tx| tx.send(c).is_ok());
        if sent == Some(true) {
            return Ok(());
        }
        let why = self
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Err(std::io::Error::other(
            why.unwrap_or_else(|| "the compression thread stopped".into()),
        ))
    }

    fn send_buf(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.send(Chunk::Data(full))
    }

    fn start_file(&mut self, name: &str) -> Result<(), Error> {
        self.send_buf()
            .and_then(|()| self.send(Chunk::Start(name.to_string())))
            .map_err(io_err(name))
    }

    fn finish(mut self) -> Result<(), Error> {
        let flushed = self.send_buf();
        self.tx = None;
        let joined = self
            .thread
            .take()
            .expect("finish once")
            .join()
            .unwrap_or_else(|_| Err(Error::Other("the compression thread panicked".into())));
        joined?;
        flushed.map_err(io_err("archive"))
    }
}

impl Write for ZipPipe {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= CHUNK {
            self.send_buf()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ZipPipe {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `1900-01-01 00:00:00`: last connection unknown (SPEC.md).
pub use mss_shared::indicators::connexions::UNKNOWN_DATE;

/// What a build produced (`--json`).
#[derive(Debug, Serialize)]
pub struct BuildReport {
    pub month: String,
    pub archives: Vec<PathBuf>,
    pub domains: Vec<DomainReport>,
    /// Rows left out because they cannot be written validly, listed in `quarantine_file`.
    pub quarantined: u64,
    /// `AAAAMM_quarantine.csv` beside the archive, when a row was quarantined.
    pub quarantine_file: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct DomainReport {
    pub domain: String,
    pub echanges_rows: u64,
    pub excluded_rows: u64,
    /// Rows whose sender is an SRS forward on an operator domain (not a BAL's mail).
    pub forwarded_rows: u64,
    pub quarantined_rows: u64,
    pub connexions_rows: u64,
    /// BALs seen in traffic or logins but absent from the registry.
    pub discovered: u64,
    /// Registry BALs left out of both files, and why.
    pub excluded: Vec<ExcludedBal>,
    /// Registry BALs dated after the month that sent mail or logged in
    /// during it: kept (rows are never dropped for a date), to be fixed.
    pub inconsistent: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ExcludedBal {
    pub bal: String,
    pub reason: String,
}

fn csv_writer<W: Write>(w: W, cfg: &Config) -> csv::Writer<W> {
    csv::WriterBuilder::new()
        .delimiter(cfg.export.delimiter.as_bytes()[0])
        .terminator(if cfg.export.crlf {
            csv::Terminator::CRLF
        } else {
            csv::Terminator::Any(b'\n')
        })
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer(w)
}

fn io_err(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::Other(format!("{what}: {e}"))
}

fn zip_err(what: impl std::fmt::Display) -> impl FnOnce(zip::result::ZipError) -> Error {
    move |e| Error::Other(format!("{what}: {e}"))
}

/// Build the archive(s) of `month` into `out_dir`; returns what was written.
///
/// # Errors
/// Store errors (exit 3), an unwritable output directory, a single CSV file
/// larger than `export.max_archive_bytes` once compressed (named), or a
/// validation failure of our own output (a bug: the files are kept for
/// inspection under a `.invalid` name).
pub fn build(
    cfg: &Config,
    cap: &CaptureStore,
    reg: &RegistryStore,
    month: Month,
    out_dir: &Path,
) -> Result<BuildReport, Error> {
    build_with_progress(cfg, cap, reg, month, out_dir, &mut |_, _, _| {})
}

/// [`build`], calling `progress(done, total, domain)` before each domain.
///
/// # Errors
/// As [`build`].
pub fn build_with_progress(
    cfg: &Config,
    cap: &CaptureStore,
    reg: &RegistryStore,
    month: Month,
    out_dir: &Path,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<BuildReport, Error> {
    let ctx = Context::load(cfg, cap, Some(reg), month, jiff::Timestamp::now())?;
    std::fs::create_dir_all(out_dir)
        .map_err(io_err(format!("output directory {}", out_dir.display())))?;
    let mut quarantined: Vec<quarantine::Row> = vec![];
    let tmp_path = out_dir.join(format!(".{}-build.zip.tmp", month.compact()));
    let mut zip = ZipPipe::create(&tmp_path)?;
    let mut dates = CsvDates::new(ctx.tz.clone());
    let mut sizes = itoa::Buffer::new();
    let mut domains = cfg.operator.domains.clone();
    domains.sort();
    let mut reports = vec![];
    for (done, domain) in domains.iter().enumerate() {
        progress(done, domains.len(), domain);
        // Echanges: one contiguous range of the month, already in (date, MAIL_ID) order.
        let name = format!("{}_EchangesMSSante_{domain}.csv", month.compact());
        zip.start_file(&name)?;
        let mut w = csv_writer(&mut zip, cfg);
        w.write_record(ECHANGES_HEADER)
            .map_err(|e| Error::Other(format!("{name}: {e}")))?;
        let mut werr = None;
        let tally = ctx.rows(cap, domain, |r| {
            let date = dates.format(from_micros(r.time_us));
            match r.fate {
                Fate::Written => {
                    let size = sizes.format(r.size);
                    let row: [&[u8]; 5] = [
                        r.mail_id.as_bytes(),
                        r.sender.as_bytes(),
                        r.recipient.as_bytes(),
                        date.as_bytes(),
                        size.as_bytes(),
                    ];
                    if let Err(e) = w.write_record(row) {
                        werr.get_or_insert(e);
                    }
                }
                Fate::Quarantined(why) => quarantined.push(quarantine::Row {
                    mail_id: r.mail_id.clone(),
                    sender: r.sender.clone(),
                    recipient: r.recipient.clone(),
                    date: date.to_string(),
                    size: r.size,
                    reason: why.as_str(),
                }),
                _ => {}
            }
        })?;
        if let Some(e) = werr {
            return Err(Error::Other(format!("{name}: {e}")));
        }
        w.flush().map_err(io_err(&name))?;
        drop(w);

        // Connexions: registry BALs not excluded, plus BALs discovered in traffic.
        let lines = ctx.connexions(domain, &tally.senders);
        let name = format!("{}_ConnexionsMSSante_{domain}.csv", month.compact());
        zip.start_file(&name)?;
        let mut w = csv_writer(&mut zip, cfg);
        w.write_record(CONNEXIONS_HEADER)
            .map_err(|e| Error::Other(format!("{name}: {e}")))?;
        let mut report = DomainReport {
            domain: domain.clone(),
            echanges_rows: tally.written,
            excluded_rows: tally.excluded,
            forwarded_rows: tally.forwarded,
            quarantined_rows: tally.quarantined,
            connexions_rows: 0,
            discovered: 0,
            excluded: vec![],
            inconsistent: vec![],
        };
        for l in &lines {
            match &l.date {
                Some(date) => {
                    w.write_record([l.bal.as_str(), date])
                        .map_err(|e| Error::Other(format!("{name}: {e}")))?;
                    report.connexions_rows += 1;
                    report.discovered += u64::from(!l.registered);
                    if l.inconsistent {
                        report.inconsistent.push(l.bal.clone());
                    }
                }
                None => report.excluded.push(ExcludedBal {
                    bal: l.bal.clone(),
                    reason: l.detail.clone().unwrap_or_default(),
                }),
            }
        }
        w.flush().map_err(io_err(&name))?;
        drop(w);
        reports.push(report);
    }
    zip.finish()?;

    let archives = split(&tmp_path, out_dir, month, cfg.export.max_archive_bytes)?;
    let _ = std::fs::remove_file(&tmp_path);
    let rules = Rules {
        delimiter: cfg.export.delimiter.as_bytes()[0],
        crlf: cfg.export.crlf,
        max_archive_bytes: cfg.export.max_archive_bytes,
    };
    for a in &archives {
        let problems = validate::check_path(a, &rules).map_err(io_err(a.display()))?;
        if !problems.is_empty() {
            let bad = a.with_extension("zip.invalid");
            let _ = std::fs::rename(a, &bad);
            return Err(Error::Other(format!(
                "the built archive fails validation (kept as {}): {}",
                bad.display(),
                problems.join("; ")
            )));
        }
    }
    let quarantine_file = quarantine::write(cfg, out_dir, month, &quarantined)?;
    Ok(BuildReport {
        month: month.to_string(),
        archives,
        domains: reports,
        quarantined: quarantined.len() as u64,
        quarantine_file,
    })
}

/// The human summary of a build (stderr): totals, then per domain the rows,
/// the discovered BALs and the excluded ones with their reason.
pub fn summary(r: &BuildReport) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let sum = |f: fn(&DomainReport) -> u64| r.domains.iter().map(f).sum::<u64>();
    let _ = writeln!(
        o,
        "{}: {} domains, {} Echanges rows ({} left out: excluded senders), {} Connexions rows ({} discovered, not in the registry), {} excluded BALs, {} archive(s)",
        r.month,
        r.domains.len(),
        sum(|d| d.echanges_rows),
        sum(|d| d.excluded_rows),
        sum(|d| d.connexions_rows),
        sum(|d| d.discovered),
        sum(|d| d.excluded.len() as u64),
        r.archives.len()
    );
    if let Some(f) = &r.quarantine_file {
        let _ = writeln!(
            o,
            "warning: {} row(s) quarantined (cannot be written validly, left out of the files): see {}",
            r.quarantined,
            f.display()
        );
    }
    // Thousands of domains: detail only those with something to say.
    for d in &r.domains {
        if d.discovered == 0
            && d.excluded.is_empty()
            && d.inconsistent.is_empty()
            && r.domains.len() > 20
        {
            continue;
        }
        let _ = writeln!(
            o,
            "  {}: {} Echanges rows, {} Connexions rows, {} discovered",
            d.domain, d.echanges_rows, d.connexions_rows, d.discovered
        );
        for e in &d.excluded {
            let _ = writeln!(o, "    excluded {}: {}", e.bal, e.reason);
        }
        for b in &d.inconsistent {
            let _ = writeln!(
                o,
                "    inconsistent {b}: the registry dates it after {}, yet it sent mail or logged in during it (kept: fix its status date)",
                r.month
            );
        }
    }
    o
}

/// Central-directory and local-header overhead allowance per entry.
const ENTRY_OVERHEAD: u64 = 30 + 46 + 2 * 300;

/// Raw-copy the entries of `tmp` into archives of at most `max` bytes.
fn split(tmp: &Path, out_dir: &Path, month: Month, max: u64) -> Result<Vec<PathBuf>, Error> {
    let f = std::fs::File::open(tmp).map_err(io_err(tmp.display()))?;
    let mut src = zip::ZipArchive::new(f).map_err(zip_err(tmp.display()))?;
    // Plan: group entries greedily, in order, at file boundaries.
    let mut groups: Vec<Vec<usize>> = vec![vec![]];
    let mut used = 22u64; // end of central directory
    for i in 0..src.len() {
        let e = src.by_index_raw(i).map_err(zip_err(tmp.display()))?;
        let need = e.compressed_size() + ENTRY_OVERHEAD;
        if need + 22 > max {
            return Err(Error::Other(format!(
                "{} is {} bytes compressed, more than export.max_archive_bytes = {max}: it cannot fit in any archive",
                e.name().map(|n| n.into_owned()).unwrap_or_else(|_| format!("entry {i}")),
                e.compressed_size()
            )));
        }
        if used + need > max {
            groups.push(vec![]);
            used = 22;
        }
        used += need;
        groups.last_mut().expect("one group").push(i);
    }
    let n = groups.len();
    let mut out = vec![];
    for (g, idx) in groups.into_iter().enumerate() {
        let name = if n == 1 {
            format!("{}_IndicateursMSSante.zip", month.compact())
        } else {
            format!("{}_IndicateursMSSante_{}-{n}.zip", month.compact(), g + 1)
        };
        let path = out_dir.join(&name);
        let part = path.with_extension("zip.part");
        let f = std::fs::File::create(&part).map_err(io_err(part.display()))?;
        let mut w = zip::ZipWriter::new(std::io::BufWriter::new(f));
        for i in idx {
            let e = src.by_index_raw(i).map_err(zip_err(tmp.display()))?;
            w.raw_copy_file(e).map_err(zip_err(&name))?;
        }
        let mut inner = w.finish().map_err(zip_err(&name))?;
        inner.flush().map_err(io_err(&name))?;
        inner
            .into_inner()
            .map_err(|e| Error::Other(format!("{name}: {e}")))?
            .sync_all()
            .map_err(io_err(&name))?;
        std::fs::rename(&part, &path).map_err(io_err(path.display()))?;
        out.push(path);
    }
    Ok(out)
}
