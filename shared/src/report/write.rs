//! Writing a report's files: `AAAAMM_<structure>.{html,json,csv}` in a
//! directory, each through a temporary file renamed into place (a reader
//! never sees half a report).

use std::path::{Path, PathBuf};

use super::text::{csv, Lang};
use super::{html, Report};
use crate::error::{Error, Result};

/// One output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Json,
    Csv,
}

impl Format {
    /// `html,json,csv` (any subset, any order).
    ///
    /// # Errors
    /// [`Error::Usage`] naming the unknown format.
    pub fn parse_list(s: &str) -> Result<Vec<Format>> {
        let mut out = vec![];
        for f in s.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            let v = match f {
                "html" => Format::Html,
                "json" => Format::Json,
                "csv" => Format::Csv,
                _ => {
                    return Err(Error::Usage(format!(
                        "--format {f}: expected html, json or csv (comma-separated)"
                    )))
                }
            };
            if !out.contains(&v) {
                out.push(v);
            }
        }
        if out.is_empty() {
            return Err(Error::Usage("--format: give html, json or csv".into()));
        }
        Ok(out)
    }

    pub fn ext(self) -> &'static str {
        match self {
            Format::Html => "html",
            Format::Json => "json",
            Format::Csv => "csv",
        }
    }
}

/// The content of `r` in format `f`.
pub fn render(r: &Report, f: Format, lang: Lang) -> String {
    match f {
        Format::Html => html::render(r, lang),
        Format::Json => serde_json::to_string_pretty(r).expect("json") + "\n",
        Format::Csv => csv(r),
    }
}

/// Write `r` in every format of `formats` into `dir` (created if needed).
///
/// # Errors
/// [`Error::Other`] naming the file that cannot be written.
pub fn write(r: &Report, dir: &Path, formats: &[Format], lang: Lang) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Other(format!("--out {}: {e}", dir.display())))?;
    let mut out = vec![];
    for f in formats {
        let path = dir.join(format!("{}.{}", r.stem(), f.ext()));
        let tmp = dir.join(format!(".{}.{}.tmp", r.stem(), f.ext()));
        std::fs::write(&tmp, render(r, *f, lang))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| Error::Other(format!("{}: {e}", path.display())))?;
        out.push(path);
    }
    Ok(out)
}
