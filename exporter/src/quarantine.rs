//! `AAAAMM_quarantine.csv`: captured rows the build could not write validly.
//!
//! Written beside the archive (never inside it), only when at least one row is
//! quarantined; a rebuild without quarantined rows removes a stale one. Columns:
//! `MAIL_ID;EXPEDITEUR;DESTINATAIRE;DATE;TAILLE;RAISON` (same delimiter and line
//! ends as the archive's files), reasons from
//! [`mss_shared::indicators::admission::Reason`].

use std::path::{Path, PathBuf};

use mss_shared::config::Config;
use mss_shared::month::Month;
use mss_shared::Error;

pub const HEADER: [&str; 6] = [
    "MAIL_ID",
    "EXPEDITEUR",
    "DESTINATAIRE",
    "DATE",
    "TAILLE",
    "RAISON",
];

/// One quarantined row, as captured (address canonicalised), with its reason.
#[derive(Debug, Clone)]
pub struct Row {
    pub mail_id: String,
    pub sender: String,
    pub recipient: String,
    pub date: String,
    pub size: u64,
    pub reason: &'static str,
}

/// The quarantine file's name for `month`.
pub fn file_name(month: Month) -> String {
    format!("{}_quarantine.csv", month.compact())
}

/// Write (or, with no rows, remove) `dir/AAAAMM_quarantine.csv`.
///
/// # Errors
/// The file cannot be written.
pub fn write(
    cfg: &Config,
    dir: &Path,
    month: Month,
    rows: &[Row],
) -> Result<Option<PathBuf>, Error> {
    let path = dir.join(file_name(month));
    if rows.is_empty() {
        let _ = std::fs::remove_file(&path);
        return Ok(None);
    }
    let err = |e: &dyn std::fmt::Display| Error::Other(format!("{}: {e}", path.display()));
    let f = std::fs::File::create(&path).map_err(|e| err(&e))?;
    let mut w = csv::WriterBuilder::new()
        .delimiter(cfg.export.delimiter.as_bytes()[0])
        .terminator(if cfg.export.crlf {
            csv::Terminator::CRLF
        } else {
            csv::Terminator::Any(b'\n')
        })
        .from_writer(std::io::BufWriter::new(f));
    w.write_record(HEADER).map_err(|e| err(&e))?;
    for r in rows {
        let size = r.size.to_string();
        w.write_record([
            r.mail_id.as_str(),
            &r.sender,
            &r.recipient,
            &r.date,
            &size,
            r.reason,
        ])
        .map_err(|e| err(&e))?;
    }
    w.flush().map_err(|e| err(&e))?;
    Ok(Some(path))
}

/// Rows in an existing quarantine file of `month` in `dir` (0 when absent).
pub fn count(dir: &Path, month: Month) -> u64 {
    csv::ReaderBuilder::new()
        .delimiter(b';')
        .flexible(true)
        .from_path(dir.join(file_name(month)))
        .map(|mut r| r.records().count() as u64)
        .unwrap_or(0)
}

/// Move a build's quarantine file from `staged` (the build directory) to
/// `out` beside the installed archives, warning with its count; remove a
/// stale one when the build quarantined nothing.
///
/// # Errors
/// The move fails.
pub fn install(staged: Option<&Path>, out: &Path, month: Month) -> Result<(), Error> {
    let name = file_name(month);
    let dest = out.join(&name);
    match staged.map(|d| d.join(&name)) {
        Some(src) if src.exists() => {
            std::fs::rename(&src, &dest)
                .map_err(|e| Error::Other(format!("{}: {e}", dest.display())))?;
            eprintln!(
                "warning: {month}: {} row(s) quarantined (left out of the files): see {}",
                count(out, month),
                dest.display()
            );
        }
        _ => {
            let _ = std::fs::remove_file(&dest);
        }
    }
    Ok(())
}

/// `quarantined rows: N (see FILE)` for `mss-export status`, when any.
pub fn status_line(out: &Path, month: &str) -> Option<String> {
    let month = Month::parse(month).ok()?;
    let q = count(out, month);
    (q > 0).then(|| {
        format!(
            "quarantined rows: {q} (see {})",
            out.join(file_name(month)).display()
        )
    })
}
