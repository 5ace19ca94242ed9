//! `mss-export validate`: check a ZIP or CSV against SPEC.md, listing every
//! problem (file, line, what is wrong).

use std::io::Read;
use std::path::Path;

use jiff::civil::DateTime;

pub const ECHANGES_HEADER: [&str; 5] = ["MAIL_ID", "EXPEDITEUR", "DESTINATAIRE", "DATE", "TAILLE"];
pub const CONNEXIONS_HEADER: [&str; 2] = ["BAL", "DATE_DERNIERE_CONNEXION"];

/// What the files must look like (from the configuration).
#[derive(Debug, Clone)]
pub struct Rules {
    pub delimiter: u8,
    pub crlf: bool,
    pub max_archive_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Echanges,
    Connexions,
}

/// `AAAAMM_EchangesMSSante_<domain>.csv` → (AAAAMM, kind, domain).
pub fn parse_name(name: &str) -> Option<(String, Kind, String)> {
    let stem = name.strip_suffix(".csv")?;
    let (ym, rest) = stem.split_once('_')?;
    if ym.len() != 6 || !ym.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let month: u8 = ym[4..].parse().ok()?;
    if !(1..=12).contains(&month) {
        return None;
    }
    let (kind, domain) = if let Some(d) = rest.strip_prefix("EchangesMSSante_") {
        (Kind::Echanges, d)
    } else if let Some(d) = rest.strip_prefix("ConnexionsMSSante_") {
        (Kind::Connexions, d)
    } else {
        return None;
    };
    if domain.is_empty() || domain.contains('/') || !domain.contains('.') {
        return None;
    }
    Some((ym.to_string(), kind, domain.to_string()))
}

fn is_email(s: &str) -> bool {
    match s.rsplit_once('@') {
        Some((l, d)) => {
            !l.is_empty()
                && !d.is_empty()
                && d.contains('.')
                && !s
                    .chars()
                    .any(|c| c.is_whitespace() || c == '<' || c == '>' || c == ',' || c == ';')
        }
        None => false,
    }
}

/// A `AAAA-MM-JJ HH:mm:SS` date, or `None` if malformed.
pub fn parse_date(s: &str) -> Option<DateTime> {
    let b = s.as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    s.replacen(' ', "T", 1).parse::<DateTime>().ok()
}

/// Check one CSV file's bytes; `name` decides its kind. Problems are appended.
pub fn check_csv(name: &str, bytes: &[u8], rules: &Rules, problems: &mut Vec<String>) {
    let mut p = |line: usize, msg: String| {
        if line == 0 {
            problems.push(format!("{name}: {msg}"));
        } else {
            problems.push(format!("{name}:{line}: {msg}"));
        }
    };
    let Some((ym, kind, domain)) = parse_name(name) else {
        p(0, "file name is not AAAAMM_EchangesMSSante_<domaine>.csv or AAAAMM_ConnexionsMSSante_<domaine>.csv".into());
        return;
    };
    let Ok(text) = std::str::from_utf8(bytes) else {
        p(0, "not UTF-8".into());
        return;
    };
    if text.starts_with('\u{feff}') {
        p(1, "starts with a byte-order mark".into());
    }
    if rules.crlf {
        for (i, w) in bytes.iter().enumerate() {
            if *w == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
                let line = bytes[..i].iter().filter(|&&b| b == b'\n').count() + 1;
                p(line, "line ends with LF, CRLF expected".into());
                break;
            }
        }
    }
    let header: &[&str] = match kind {
        Kind::Echanges => &ECHANGES_HEADER,
        Kind::Connexions => &CONNEXIONS_HEADER,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(rules.delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut seen = std::collections::HashSet::new();
    let month_prefix = format!("{}-{}", &ym[..4], &ym[4..]);
    let mut rows = 0usize;
    for (i, rec) in rdr.records().enumerate() {
        let line = i + 1;
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                p(line, format!("unreadable CSV: {e}"));
                continue;
            }
        };
        if i == 0 {
            let got: Vec<&str> = rec.iter().collect();
            if got != header {
                p(
                    line,
                    format!(
                        "header must be exactly {:?}, found {:?}",
                        header.join(";"),
                        got.join(";")
                    ),
                );
            }
            continue;
        }
        rows += 1;
        if rec.len() != header.len() {
            p(
                line,
                format!("{} fields, {} expected", rec.len(), header.len()),
            );
            continue;
        }
        for (j, f) in rec.iter().enumerate() {
            if f.len() > 255 {
                p(line, format!("{} longer than 255 characters", header[j]));
            }
            if f.eq_ignore_ascii_case("null") {
                p(
                    line,
                    format!("{} is the text \"null\" (leave it empty)", header[j]),
                );
            }
        }
        match kind {
            Kind::Echanges => {
                if rec[0].is_empty() {
                    p(line, "MAIL_ID is empty".into());
                }
                if !is_email(&rec[1]) {
                    p(line, format!("EXPEDITEUR {:?} is not an address", &rec[1]));
                } else if !rec[1].to_ascii_lowercase().ends_with(&format!("@{domain}")) {
                    p(line, format!("EXPEDITEUR {:?} is not on {domain}", &rec[1]));
                }
                if !is_email(&rec[2]) {
                    p(
                        line,
                        format!("DESTINATAIRE {:?} is not an address", &rec[2]),
                    );
                }
                match parse_date(&rec[3]) {
                    None => p(
                        line,
                        format!("DATE {:?} is not AAAA-MM-JJ HH:mm:SS", &rec[3]),
                    ),
                    Some(_) if !rec[3].starts_with(&month_prefix) => p(
                        line,
                        format!("DATE {:?} is outside the month {month_prefix}", &rec[3]),
                    ),
                    Some(_) => {}
                }
                if rec[4].is_empty() || !rec[4].bytes().all(|b| b.is_ascii_digit()) {
                    p(
                        line,
                        format!("TAILLE {:?} is not a whole number of bytes", &rec[4]),
                    );
                }
            }
            Kind::Connexions => {
                if !is_email(&rec[0]) {
                    p(line, format!("BAL {:?} is not an address", &rec[0]));
                } else if !seen.insert(rec[0].to_ascii_lowercase()) {
                    p(line, format!("BAL {:?} appears twice", &rec[0]));
                }
                if !rec[1].is_empty() && parse_date(&rec[1]).is_none() {
                    p(
                        line,
                        format!(
                            "DATE_DERNIERE_CONNEXION {:?} is neither empty nor AAAA-MM-JJ HH:mm:SS",
                            &rec[1]
                        ),
                    );
                }
            }
        }
    }
    if rows == 0 && kind == Kind::Connexions {
        p(
            0,
            "no mailbox: the Connexions file lists every BAL of the domain".into(),
        );
    }
}

/// Check a `.zip` (entries at the root, names, size, each CSV) or one `.csv`.
///
/// # Errors
/// I/O errors reading `path` (problems in the content are returned as a list).
pub fn check_path(path: &Path, rules: &Rules) -> std::io::Result<Vec<String>> {
    let mut problems = vec![];
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.ends_with(".csv") {
        let bytes = std::fs::read(path)?;
        check_csv(&name, &bytes, rules, &mut problems);
        return Ok(problems);
    }
    let size = std::fs::metadata(path)?.len();
    if size > rules.max_archive_bytes {
        problems.push(format!(
            "{name}: {size} bytes, more than the {} allowed",
            rules.max_archive_bytes
        ));
    }
    let f = std::fs::File::open(path)?;
    let mut zip = match zip::ZipArchive::new(f) {
        Ok(z) => z,
        Err(e) => {
            problems.push(format!("{name}: not a readable ZIP archive: {e}"));
            return Ok(problems);
        }
    };
    if zip.is_empty() {
        problems.push(format!("{name}: empty archive"));
    }
    let mut names = std::collections::HashSet::new();
    for i in 0..zip.len() {
        let mut entry = match zip.by_index(i) {
            Ok(e) => e,
            Err(e) => {
                problems.push(format!("{name}: entry {i}: {e}"));
                continue;
            }
        };
        let en = match entry.name() {
            Ok(n) => n.into_owned(),
            Err(e) => {
                problems.push(format!("{name}: entry {i}: unreadable name: {e}"));
                continue;
            }
        };
        if en.contains('/') || en.contains('\\') {
            problems.push(format!(
                "{name}: {en}: files must be at the root of the archive"
            ));
            continue;
        }
        if !names.insert(en.clone()) {
            problems.push(format!("{name}: {en}: present twice"));
        }
        let mut bytes = Vec::new();
        if let Err(e) = entry.read_to_end(&mut bytes) {
            problems.push(format!("{name}: {en}: unreadable: {e}"));
            continue;
        }
        check_csv(&en, &bytes, rules, &mut problems);
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            delimiter: b';',
            crlf: true,
            max_archive_bytes: 73_400_320,
        }
    }

    #[test]
    fn good_files_pass() {
        let mut pb = vec![];
        check_csv(
            "202610_EchangesMSSante_ch-a.mssante.fr.csv",
            b"MAIL_ID;EXPEDITEUR;DESTINATAIRE;DATE;TAILLE\r\nmx1.1.A;x@ch-a.mssante.fr;y@b.fr;2026-10-01 00:30:00;123\r\n",
            &rules(),
            &mut pb,
        );
        check_csv(
            "202610_ConnexionsMSSante_ch-a.mssante.fr.csv",
            b"BAL;DATE_DERNIERE_CONNEXION\r\nx@ch-a.mssante.fr;\r\ny@ch-a.mssante.fr;1900-01-01 00:00:00\r\n",
            &rules(),
            &mut pb,
        );
        assert!(pb.is_empty(), "{pb:?}");
    }

    #[test]
    fn every_problem_is_listed_with_its_line() {
        let mut pb = vec![];
        check_csv(
            "202610_EchangesMSSante_ch-a.mssante.fr.csv",
            b"MAIL_ID;EXPEDITEUR;DESTINATAIRE;DATE;TAILLE;EXTRA\r\n;x@other.fr;nobody;2026-11-01 00:00:00;12a\nm;x@ch-a.mssante.fr;y@b.fr;2026-10-1 00:00:00;1\r\n",
            &rules(),
            &mut pb,
        );
        let all = pb.join("\n");
        for want in [
            ":1: header must be exactly",
            ":2: line ends with LF",
            ":2: MAIL_ID is empty",
            ":2: EXPEDITEUR \"x@other.fr\" is not on ch-a.mssante.fr",
            ":2: DESTINATAIRE \"nobody\"",
            ":2: DATE \"2026-11-01 00:00:00\" is outside the month 2026-10",
            ":2: TAILLE \"12a\"",
            ":3: DATE \"2026-10-1 00:00:00\" is not AAAA-MM-JJ HH:mm:SS",
        ] {
            assert!(all.contains(want), "{want} missing in:\n{all}");
        }
        let mut pb = vec![];
        check_csv(
            "202610_ConnexionsMSSante_ch-a.mssante.fr.csv",
            b"BAL;DATE_DERNIERE_CONNEXION\r\nx@ch-a.mssante.fr;null\r\nx@ch-a.mssante.fr;\r\n",
            &rules(),
            &mut pb,
        );
        let all = pb.join("\n");
        assert!(
            all.contains(":2: DATE_DERNIERE_CONNEXION is the text \"null\""),
            "{all}"
        );
        assert!(
            all.contains(":3: BAL \"x@ch-a.mssante.fr\" appears twice"),
            "{all}"
        );
        let mut pb = vec![];
        check_csv("2026-10_Echanges.csv", b"", &rules(), &mut pb);
        assert!(pb[0].contains("file name"), "{pb:?}");
    }
}
