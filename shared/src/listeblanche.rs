//! The ANS *liste blanche MSSanté*: the domains of the Espace de Confiance.
//!
//! The XML (`https://listeblanche.mssante.fr/schema`) has one `<Domaine>` per
//! (domain, operator certificate) with `<Nom>`, `<DNCertificatOperateur>`,
//! …, under `<ListeDomaines>`, and a `<DateDeGeneration>`. Parsed streaming
//! (quick-xml), tolerating what real copies contain: a document cut short
//! (no closing root tag, or cut inside an entry: entries completed so far
//! are kept), the same name repeated (once per certificate, sometimes under
//! several operators), raw newlines and non-ASCII text. Lookups are O(1)
//! (a hash set of lower-cased names).

use std::collections::HashSet;
use std::io::BufRead;

use quick_xml::events::Event;

/// A parsed list.
#[derive(Debug, Clone, Default)]
pub struct ListeBlanche {
    domains: HashSet<String>,
    /// `<Domaine>` entries read (duplicates included).
    pub entries: usize,
    /// Distinct operator certificate DNs.
    pub operators: usize,
    /// `<DateDeGeneration>` as written, if present.
    pub generated: Option<String>,
    /// Whether the document ended properly (`</ListeBlancheMSSante>`).
    pub complete: bool,
}

/// Why a list was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("not a liste blanche: no <Domaine><Nom> entry found{0}")]
    Empty(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl ListeBlanche {
    /// Parse a document; damaged endings keep what was read before them.
    ///
    /// # Errors
    /// I/O errors, or a document without a single entry (garbage, an HTML
    /// error page, an empty file): never replace a good list with that.
    pub fn parse(input: impl BufRead) -> Result<Self, ParseError> {
        let mut r = quick_xml::Reader::from_reader(input);
        r.config_mut().trim_text(true);
        // Real copies are not always well-formed: do not fail on a mismatch.
        r.config_mut().check_end_names = false;
        let mut buf = Vec::new();
        let mut list = ListeBlanche::default();
        let mut operators = HashSet::new();
        let mut path: Vec<Vec<u8>> = Vec::new();
        let (mut nom, mut dn) = (None::<String>, None::<String>);
        let mut text = String::new();
        let mut last_error = String::new();
        loop {
            match r.read_event_into(&mut buf) {
                Ok(Event::Start(e)) => {
                    path.push(e.local_name().as_ref().to_vec());
                    text.clear();
                    if e.local_name().as_ref() == b"Domaine" {
                        nom = None;
                        dn = None;
                    }
                }
                Ok(Event::Text(t)) => match t.unescape() {
                    Ok(s) => text.push_str(&s),
                    Err(_) => text.push_str(&String::from_utf8_lossy(&t)),
                },
                Ok(Event::CData(t)) => text.push_str(&String::from_utf8_lossy(&t)),
                Ok(Event::End(e)) => {
                    let name = e.local_name().as_ref().to_vec();
                    let value = text.split_whitespace().collect::<Vec<_>>().join(" ");
                    match name.as_slice() {
                        b"Nom" if path.iter().any(|p| p == b"Domaine") => nom = Some(value),
                        b"DNCertificatOperateur" => dn = Some(value),
                        b"DateDeGeneration" => list.generated = Some(value),
                        b"Domaine" => {
                            if let Some(n) = nom.take().and_then(|n| normalize_domain(&n)) {
                                list.entries += 1;
                                list.domains.insert(n);
                                if let Some(d) = dn.take() {
                                    operators.insert(d);
                                }
                            }
                        }
                        b"ListeBlancheMSSante" => list.complete = true,
                        _ => {}
                    }
                    text.clear();
                    // Pop up to and including the matching start (tolerates mismatches).
                    if let Some(i) = path.iter().rposition(|p| *p == name) {
                        path.truncate(i);
                    }
                }
                Ok(Event::Eof) => break,
                Ok(_) => {}
                Err(e) => {
                    // Syntax damage: keep the entries read so far and stop.
                    last_error = format!(" (XML error at byte {}: {e})", r.error_position());
                    break;
                }
            }
            buf.clear();
        }
        if list.domains.is_empty() {
            return Err(ParseError::Empty(last_error));
        }
        list.operators = operators.len();
        Ok(list)
    }

    /// Parse a file.
    ///
    /// # Errors
    /// As [`ListeBlanche::parse`], plus the file cannot be opened.
    pub fn load(path: &std::path::Path) -> Result<Self, ParseError> {
        let f = std::fs::File::open(path)?;
        Self::parse(std::io::BufReader::new(f))
    }

    /// Distinct domain names.
    pub fn len(&self) -> usize {
        self.domains.len()
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// Whether `domain` (any case, trailing dot ignored) is in the list.
    pub fn contains(&self, domain: &str) -> bool {
        normalize_domain(domain).is_some_and(|d| self.domains.contains(&d))
    }

    /// Whether replacing `self` by `new` is plausible: not more than
    /// `max_drop_percent` % of the domains lost at once.
    pub fn plausible_successor(&self, new: &ListeBlanche, max_drop_percent: u32) -> bool {
        if self.is_empty() {
            return !new.is_empty();
        }
        let lost = self.len().saturating_sub(new.len());
        lost * 100 <= self.len() * max_drop_percent as usize
    }
}

fn normalize_domain(s: &str) -> Option<String> {
    let d = s.trim().trim_end_matches('.').to_lowercase();
    (!d.is_empty() && !d.contains(char::is_whitespace) && d.contains('.')).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real() -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/data/listeblanchemssante-2025-03-13.xml");
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn the_real_file_parses_with_its_quirks() {
        let l = ListeBlanche::parse(&real()[..]).unwrap();
        assert_eq!(l.entries, 6554);
        assert_eq!(l.len(), 5002);
        assert_eq!(l.operators, 392);
        assert_eq!(l.generated.as_deref(), Some("2025-03-13T14:54:10Z"));
        assert!(!l.complete, "this copy has no closing root tag");
        assert!(l.contains("adsea29.mssante.fr"));
        assert!(l.contains("ADSEA29.MSSANTE.FR."));
        assert!(!l.contains("gmail.com"));
    }

    #[test]
    fn damaged_copies_keep_what_was_read_or_are_refused() {
        let data = real();
        // Cut in the middle: the entries before the cut are kept.
        let half = ListeBlanche::parse(&data[..data.len() / 2]).unwrap();
        assert!(
            half.entries > 3000 && half.entries < 3400,
            "{}",
            half.entries
        );
        // Garbage in the middle of the document: stops there, keeps the rest before.
        let mut bad = data[..200_000].to_vec();
        bad.extend_from_slice(b"<<<&&&\x00 garbage");
        bad.extend_from_slice(&data[200_000..]);
        let l = ListeBlanche::parse(&bad[..]).unwrap();
        assert!(l.entries > 100, "{}", l.entries);
        // Nothing usable: refused, with a reason.
        for junk in [
            &b""[..],
            b"<html><body>502 Bad Gateway</body></html>",
            b"\xff\xfe garbage",
            b"<ListeBlancheMSSante/>",
        ] {
            let e = ListeBlanche::parse(junk).unwrap_err();
            assert!(e.to_string().contains("no <Domaine><Nom> entry"), "{e}");
        }
        // Raw newlines and entities inside values.
        let l = ListeBlanche::parse(
            &b"<L xmlns=\"https://listeblanche.mssante.fr/schema\"><ListeDomaines><Domaine><Nom>\n  Ch-X.MSSante.fr\n</Nom><DNCertificatOperateur>CN=a &amp; b,\nO=\xc3\x89tat</DNCertificatOperateur></Domaine>"[..],
        )
        .unwrap();
        assert!(l.contains("ch-x.mssante.fr"));
        assert_eq!((l.entries, l.operators), (1, 1));
    }

    #[test]
    fn plausibility() {
        let full = ListeBlanche::parse(&real()[..]).unwrap();
        let data = real();
        let half = ListeBlanche::parse(&data[..data.len() / 2]).unwrap();
        assert!(full.plausible_successor(&full, 10));
        assert!(!full.plausible_successor(&half, 10));
        assert!(half.plausible_successor(&full, 10));
    }
}
