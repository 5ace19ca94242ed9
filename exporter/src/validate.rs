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
    mss_shared::indicators::admission::is_address(s)
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

/// Watches the raw bytes as the CSV reader pulls them: byte-order mark and
/// the first line ending that is not CRLF. Memory stays constant.
struct LineEnds<R> {
    inner: R,
    prev: Option<u8>,
    line: usize,
    started: bool,
    bom: bool,
    bare_lf: Option<usize>,
    in_quotes: bool,
}

impl<R: Read> Read for LineEnds<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if !self.started && n > 0 {
            self.started = true;
            self.bom = buf[..n].starts_with(&[0xEF, 0xBB, 0xBF]);
        }
        for &b in &buf[..n] {
            // A doubled quote toggles twice: the state stays right.
            if b == b'"' {
                self.in_quotes = !self.in_quotes;
            }
            if b == b'\n' {
                self.line += 1;
                if !self.in_quotes && self.prev != Some(b'\r') && self.bare_lf.is_none() {
                    self.bare_lf = Some(self.line);
                }
            }
            self.prev = Some(b);
        }
        Ok(n)
    }
}

fn hash_of(parts: &[&[u8]]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for p in parts {
        p.hash(&mut h);
    }
    h.finish()
}

/// Check one CSV file, streamed from `input`; `name` decides its kind.
/// Problems are appended.
///
/// Memory: constant, except the duplicate checks, which keep 8 bytes per
/// (MAIL_ID, DESTINATAIRE) pair and per MAIL_ID (64-bit hashes; a collision
/// — odds about n²/2⁶⁵ — could only report a false duplicate, never hide one).
///
/// # Errors
/// I/O errors reading `input`.
pub fn check_csv(
    name: &str,
    input: impl Read,
    rules: &Rules,
    problems: &mut Vec<String>,
) -> std::io::Result<()> {
    let mut p = |line: u64, msg: String| {
        if line == 0 {
            problems.push(format!("{name}: {msg}"));
        } else {
            problems.push(format!("{name}:{line}: {msg}"));
        }
    };
    let Some((ym, kind, domain)) = parse_name(name) else {
        p(0, "file name is not AAAAMM_EchangesMSSante_<domaine>.csv or AAAAMM_ConnexionsMSSante_<domaine>.csv".into());
        return Ok(());
    };
    let header: &[&str] = match kind {
        Kind::Echanges => &ECHANGES_HEADER,
        Kind::Connexions => &CONNEXIONS_HEADER,
    };
    let mut watch = LineEnds {
        inner: input,
        prev: None,
        line: 0,
        started: false,
        bom: false,
        bare_lf: None,
        in_quotes: false,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(rules.delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(&mut watch);
    let mut pairs = std::collections::HashSet::new();
    let mut messages: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    let mut bals = std::collections::HashSet::new();
    let month_prefix = format!("{}-{}", &ym[..4], &ym[4..]);
    let at_domain = format!("@{domain}");
    let mut rec = csv::StringRecord::new();
    let mut first = true;
    let mut next_line = 1u64;
    loop {
        // The csv crate's own line numbers lag; count them: one per record
        // plus the newlines inside its quoted fields.
        let ok = rdr.read_record(&mut rec);
        let line = next_line;
        next_line += 1 + rec
            .iter()
            .map(|f| f.matches('\n').count() as u64)
            .sum::<u64>();
        match ok {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                if let csv::ErrorKind::Io(io) = e.kind() {
                    return Err(std::io::Error::new(io.kind(), io.to_string()));
                }
                p(line, format!("unreadable CSV: {e}"));
                continue;
            }
        }
        if first {
            first = false;
            let got: Vec<&str> = rec.iter().collect();
            let got0 = got.first().map(|f| f.trim_start_matches('\u{feff}'));
            if got0 != header.first().copied() || got.get(1..) != header.get(1..) {
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
        if rec.len() != header.len() {
            p(
                line,
                format!("{} fields, {} expected", rec.len(), header.len()),
            );
            continue;
        }
        for (j, f) in rec.iter().enumerate() {
            if f.chars().count() > mss_shared::indicators::admission::MAX_FIELD_CHARS {
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
                let (id, from, to, date, size) = (&rec[0], &rec[1], &rec[2], &rec[3], &rec[4]);
                if id.is_empty() {
                    p(line, "MAIL_ID is empty".into());
                }
                if !is_email(from) {
                    p(line, format!("EXPEDITEUR {from:?} is not an address"));
                } else if !from.to_ascii_lowercase().ends_with(&at_domain) {
                    p(line, format!("EXPEDITEUR {from:?} is not on {domain}"));
                }
                if !is_email(to) {
                    p(line, format!("DESTINATAIRE {to:?} is not an address"));
                }
                match parse_date(date) {
                    None => p(line, format!("DATE {date:?} is not AAAA-MM-JJ HH:mm:SS")),
                    Some(_) if !date.starts_with(&month_prefix) => p(
                        line,
                        format!("DATE {date:?} is outside the month {month_prefix}"),
                    ),
                    Some(_) => {}
                }
                if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
                    p(
                        line,
                        format!("TAILLE {size:?} is not a whole number of bytes"),
                    );
                }
                if !id.is_empty() {
                    let to_l = to.to_ascii_lowercase();
                    if !pairs.insert(hash_of(&[id.as_bytes(), to_l.as_bytes()])) {
                        p(
                            line,
                            format!("MAIL_ID {id:?} with DESTINATAIRE {to:?} appears twice"),
                        );
                    }
                    let from_l = from.to_ascii_lowercase();
                    let what = hash_of(&[from_l.as_bytes(), size.as_bytes()]);
                    match messages.entry(hash_of(&[id.as_bytes()])) {
                        std::collections::hash_map::Entry::Vacant(v) => {
                            v.insert(what);
                        }
                        std::collections::hash_map::Entry::Occupied(o) if *o.get() != what => p(
                            line,
                            format!(
                                "MAIL_ID {id:?}: EXPEDITEUR or TAILLE differs from its earlier rows"
                            ),
                        ),
                        std::collections::hash_map::Entry::Occupied(_) => {}
                    }
                }
            }
            Kind::Connexions => {
                let (bal, date) = (&rec[0], &rec[1]);
                if !is_email(bal) {
                    p(line, format!("BAL {bal:?} is not an address"));
                } else if !bal.to_ascii_lowercase().ends_with(&at_domain) {
                    p(line, format!("BAL {bal:?} is not on {domain}"));
                } else if !bals.insert(hash_of(&[bal.to_ascii_lowercase().as_bytes()])) {
                    p(line, format!("BAL {bal:?} appears twice"));
                }
                if !date.is_empty() && parse_date(date).is_none() {
                    p(
                        line,
                        format!(
                            "DATE_DERNIERE_CONNEXION {date:?} is neither empty nor AAAA-MM-JJ HH:mm:SS"
                        ),
                    );
                }
            }
        }
    }
    drop(rdr);
    if first {
        p(0, "empty file: the header line is required".into());
    }
    if watch.bom {
        p(1, "starts with a byte-order mark".into());
    }
    if rules.crlf {
        if let Some(l) = watch.bare_lf {
            p(l as u64, "line ends with LF, CRLF expected".into());
        }
    }
    Ok(())
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
        let f = std::io::BufReader::new(std::fs::File::open(path)?);
        check_csv(&name, f, rules, &mut problems)?;
        return Ok(problems);
    }
    let size = std::fs::metadata(path)?.len();
    check_archive(
        &name,
        || std::fs::File::open(path),
        size,
        rules,
        &mut problems,
    )?;
    Ok(problems)
}

/// [`check_path`] on bytes in memory: `name` decides CSV (`.csv`) or ZIP.
/// No I/O (fuzzed).
pub fn check_bytes(name: &str, bytes: &[u8], rules: &Rules) -> Vec<String> {
    let mut problems = vec![];
    if name.ends_with(".csv") {
        if let Err(e) = check_csv(name, bytes, rules, &mut problems) {
            problems.push(format!("{name}: unreadable: {e}"));
        }
    } else {
        let open = || Ok(std::io::Cursor::new(bytes));
        if let Err(e) = check_archive(name, open, bytes.len() as u64, rules, &mut problems) {
            problems.push(format!("{name}: unreadable: {e}"));
        }
    }
    problems
}

/// Problems found per entry index.
type EntryProblems = Vec<(usize, Vec<String>)>;

/// The ZIP part of [`check_path`]: size, entries at the root, names, each
/// CSV. Names first (headers only, no decompression), then the CSV checks of
/// the entries on up to 4 threads, each with its own reader from `open`;
/// problems are reported in entry order whatever thread found them.
fn check_archive<R, F>(
    name: &str,
    open: F,
    size: u64,
    rules: &Rules,
    problems: &mut Vec<String>,
) -> std::io::Result<()>
where
    R: std::io::Read + std::io::Seek,
    F: Fn() -> std::io::Result<R> + Sync,
{
    if size > rules.max_archive_bytes {
        problems.push(format!(
            "{name}: {size} bytes, more than the {} allowed",
            rules.max_archive_bytes
        ));
    }
    let mut zip = match zip::ZipArchive::new(open()?) {
        Ok(z) => z,
        Err(e) => {
            problems.push(format!("{name}: not a readable ZIP archive: {e}"));
            return Ok(());
        }
    };
    if zip.is_empty() {
        problems.push(format!("{name}: empty archive"));
    }
    let mut names = std::collections::HashSet::new();
    let mut found: Vec<Vec<String>> = vec![];
    let mut todo: Vec<(usize, String)> = vec![];
    for i in 0..zip.len() {
        let mut here = vec![];
        match zip
            .by_index_raw(i)
            .map(|e| e.name().map(|n| n.into_owned()))
        {
            Err(e) => here.push(format!("{name}: entry {i}: {e}")),
            Ok(Err(e)) => here.push(format!("{name}: entry {i}: unreadable name: {e}")),
            Ok(Ok(en)) if en.contains('/') || en.contains('\\') => here.push(format!(
                "{name}: {en}: files must be at the root of the archive"
            )),
            Ok(Ok(en)) => {
                if !names.insert(en.clone()) {
                    here.push(format!("{name}: {en}: present twice"));
                }
                todo.push((found.len(), en));
            }
        }
        found.push(here);
    }
    drop(zip);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4)
        .min(todo.len().max(1));
    let checked: Vec<std::io::Result<EntryProblems>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let (todo, next, open) = (&todo, &next, &open);
                s.spawn(move || -> std::io::Result<EntryProblems> {
                    let mut z = zip::ZipArchive::new(open()?).map_err(std::io::Error::other)?;
                    let mut out = vec![];
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((i, en)) = todo.get(k) else { break };
                        let mut p = vec![];
                        match z.by_index(*i) {
                            Ok(mut entry) => {
                                if let Err(e) = check_csv(en, &mut entry, rules, &mut p) {
                                    p.push(format!("{name}: {en}: unreadable: {e}"));
                                }
                            }
                            Err(e) => p.push(format!("{name}: entry {i}: {e}")),
                        }
                        out.push((*i, p));
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("a check thread panicked")))
            })
            .collect()
    });
    for r in checked {
        for (i, p) in r? {
            found[i].extend(p);
        }
    }
    problems.extend(found.into_iter().flatten());
    Ok(())
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
            &b"MAIL_ID;EXPEDITEUR;DESTINATAIRE;DATE;TAILLE\r\nmx1.1.A;x@ch-a.mssante.fr;y@b.fr;2026-10-01 00:30:00;123\r\n"[..],
            &rules(),
            &mut pb,
        )
        .unwrap();
        check_csv(
            "202610_ConnexionsMSSante_ch-a.mssante.fr.csv",
            &b"BAL;DATE_DERNIERE_CONNEXION\r\nx@ch-a.mssante.fr;\r\ny@ch-a.mssante.fr;1900-01-01 00:00:00\r\n"[..],
            &rules(),
            &mut pb,
        )
        .unwrap();
        assert!(pb.is_empty(), "{pb:?}");
    }

    #[test]
    fn every_problem_is_listed_with_its_line() {
        let mut pb = vec![];
        check_csv(
            "202610_EchangesMSSante_ch-a.mssante.fr.csv",
            &b"MAIL_ID;EXPEDITEUR;DESTINATAIRE;DATE;TAILLE;EXTRA\r\n;x@other.fr;nobody;2026-11-01 00:00:00;12a\nm;x@ch-a.mssante.fr;y@b.fr;2026-10-1 00:00:00;1\r\n"[..],
            &rules(),
            &mut pb,
        )
        .unwrap();
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
            &b"BAL;DATE_DERNIERE_CONNEXION\r\nx@ch-a.mssante.fr;null\r\nx@ch-a.mssante.fr;\r\n"[..],
            &rules(),
            &mut pb,
        )
        .unwrap();
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
        check_csv("2026-10_Echanges.csv", &b""[..], &rules(), &mut pb).unwrap();
        assert!(pb[0].contains("file name"), "{pb:?}");
    }

    #[test]
    fn duplicates_and_inconsistent_messages_are_found() {
        let mut pb = vec![];
        check_csv(
            "202610_EchangesMSSante_ch-a.mssante.fr.csv",
            &b"MAIL_ID;EXPEDITEUR;DESTINATAIRE;DATE;TAILLE\r\n\
m1;x@ch-a.mssante.fr;y@b.fr;2026-10-01 00:30:00;10\r\n\
m1;x@ch-a.mssante.fr;Y@b.fr;2026-10-01 00:30:00;10\r\n\
m1;x@ch-a.mssante.fr;z@b.fr;2026-10-01 00:30:00;11\r\n\
m2;x@ch-a.mssante.fr;y@b.fr;2026-10-01 00:30:00;10\r\n"[..],
            &rules(),
            &mut pb,
        )
        .unwrap();
        assert_eq!(
            pb,
            [
                "202610_EchangesMSSante_ch-a.mssante.fr.csv:3: MAIL_ID \"m1\" with DESTINATAIRE \"Y@b.fr\" appears twice",
                "202610_EchangesMSSante_ch-a.mssante.fr.csv:4: MAIL_ID \"m1\": EXPEDITEUR or TAILLE differs from its earlier rows",
            ]
        );
        let mut pb = vec![];
        check_csv(
            "202610_ConnexionsMSSante_ch-a.mssante.fr.csv",
            &b"BAL;DATE_DERNIERE_CONNEXION\r\n\"a\nb\"@ch-a.mssante.fr;\r\nq@other.fr;\r\n"[..],
            &rules(),
            &mut pb,
        )
        .unwrap();
        // The quoted newline counts: the second row is on line 4.
        assert_eq!(
            pb,
            [
                "202610_ConnexionsMSSante_ch-a.mssante.fr.csv:2: BAL \"a\\nb@ch-a.mssante.fr\" is not an address",
                "202610_ConnexionsMSSante_ch-a.mssante.fr.csv:4: BAL \"q@other.fr\" is not on ch-a.mssante.fr",
            ]
        );
    }
}
