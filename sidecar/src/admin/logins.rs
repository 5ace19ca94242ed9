//! `mss-admin logins import --format dovecot|postfix FILE…`: login history
//! from mail logs, for the months before the sidecar was installed and for
//! gaps (Dovecot drops events it could not deliver).
//!
//! Lines recognised (plain or `.gz` files):
//! - Dovecot: `imap-login: [Info: ]Login: user=<alice@x>, method=…` (and
//!   `pop3-login`, `submission-login`, `managesieve-login`) → service `imap`,
//!   `pop3`, …;
//! - Postfix: `…/smtpd[PID]: QID: client=…, sasl_method=PLAIN,
//!   sasl_username=alice@x` → service `smtp`.
//!
//! Timestamps: RFC 3339 (`2026-11-22T10:00:01.123+01:00`, rsyslog/journald
//! high precision) or classic syslog `Nov 22 10:00:01`, read in
//! `operator.timezone`, the year inferred as the latest one that does not put
//! the line in the future of the file (its modification time): a file
//! spanning December and January gets both years right. Imported logins go to
//! the registry DB (the capture DB has one writer, the running sidecar) and
//! keep the latest login per month, BAL and service: importing the same file
//! twice changes nothing.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::Timestamp;

use mss_shared::config::{domain_of, Config};
use mss_shared::model::normalize_address;
use mss_shared::{exit, Error};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Dovecot,
    Postfix,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "dovecot" => Some(Format::Dovecot),
            "postfix" => Some(Format::Postfix),
            _ => None,
        }
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The line's time, µs. `reference`: no syslog date may be later than this.
pub fn line_time(line: &str, tz: &TimeZone, reference: Timestamp) -> Option<i64> {
    let first = line.split_whitespace().next()?;
    if let Ok(t) = first.parse::<Timestamp>() {
        return Some(t.as_microsecond());
    }
    // Syslog: "Mmm dd HH:MM:SS" (day padded with a space or not).
    let mut it = line.split_whitespace();
    let m0 = it.next()?;
    let mon = MONTHS.iter().position(|m| *m == m0)? as i8 + 1;
    let day: i8 = it.next()?.parse().ok()?;
    let hms = it.next()?;
    let mut p = hms.split(':');
    let (h, mi, s): (i8, i8, i8) = (
        p.next()?.parse().ok()?,
        p.next()?.parse().ok()?,
        p.next()?.split('.').next()?.parse().ok()?,
    );
    let ref_year = reference.to_zoned(tz.clone()).year();
    for year in [ref_year, ref_year - 1] {
        let Ok(dt) = DateTime::new(year, mon, day, h, mi, s, 0) else {
            continue; // 29 February of a non-leap year: try the year before
        };
        let Ok(z) = dt.to_zoned(tz.clone()) else {
            continue;
        };
        // A day of slack for clock skew between hosts.
        if z.timestamp().as_second() <= reference.as_second() + 86_400 {
            return Some(z.timestamp().as_microsecond());
        }
    }
    None
}

/// (bal, service) of a login line, if it is one.
pub fn line_login(line: &str, format: Format) -> Option<(String, String)> {
    match format {
        Format::Dovecot => {
            let i = line.find("-login: ")?;
            let service = line[..i]
                .rsplit(|c: char| c.is_whitespace() || c == ':')
                .next()?
                .to_string();
            let rest = &line[i + 8..];
            let rest = rest.strip_prefix("Info: ").unwrap_or(rest);
            let rest = rest.strip_prefix("Login: user=<")?;
            let user = &rest[..rest.find('>')?];
            Some((normalize_address(user), service.to_ascii_lowercase()))
        }
        Format::Postfix => {
            if !line.contains("smtpd[") {
                return None;
            }
            let i = line.find("sasl_username=")?;
            let user = line[i + 14..].split([',', ' ']).next()?;
            Some((normalize_address(user), "smtp".into()))
        }
    }
}

/// What one file gave.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FileReport {
    pub lines: u64,
    pub logins: Vec<(String, String, i64)>,
    /// Login lines whose date could not be read: (line number, line).
    pub undated: Vec<(u64, String)>,
    /// Logins for BALs outside operator.domains (ignored).
    pub foreign: u64,
}

/// Parse one log stream.
pub fn read(
    input: impl Read,
    format: Format,
    tz: &TimeZone,
    reference: Timestamp,
    domains: &[String],
) -> std::io::Result<FileReport> {
    let mut r = FileReport::default();
    let mut buf = Vec::new();
    let mut rd = BufReader::new(input);
    loop {
        buf.clear();
        if rd.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        r.lines += 1;
        let line = String::from_utf8_lossy(&buf);
        let Some((bal, service)) = line_login(&line, format) else {
            continue;
        };
        if !domain_of(&bal).is_some_and(|d| domains.contains(&d))
            || !mss_shared::indicators::address::valid_bal(&bal)
        {
            r.foreign += 1;
            continue;
        }
        match line_time(&line, tz, reference) {
            Some(t) => r.logins.push((bal, service, t)),
            None => r.undated.push((r.lines, line.trim_end().to_string())),
        }
    }
    Ok(r)
}

fn open(path: &Path) -> std::io::Result<Box<dyn Read>> {
    let f = std::fs::File::open(path)?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(f)))
    } else {
        Ok(Box::new(f))
    }
}

/// `mss-admin logins import --format F FILE…`.
pub fn import(config: &Path, format: &str, files: &[std::path::PathBuf]) -> Result<i32, Error> {
    let cfg = Config::load(config)?;
    let Some(format) = Format::parse(format) else {
        return Err(Error::Usage(format!(
            "--format {format}: dovecot or postfix"
        )));
    };
    if files.is_empty() {
        return Err(Error::Usage("no log file given".into()));
    }
    let tz = cfg.tz();
    let mut all = vec![];
    for f in files {
        let reference = std::fs::metadata(f)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| Timestamp::try_from(t).ok())
            .unwrap_or_else(Timestamp::now)
            .min(Timestamp::now());
        let rep = open(f)
            .and_then(|r| read(r, format, &tz, reference, &cfg.operator.domains))
            .map_err(|e| Error::Usage(format!("{}: {e}", f.display())))?;
        println!(
            "{}: {} lines, {} logins{}{}",
            f.display(),
            rep.lines,
            rep.logins.len(),
            if rep.foreign > 0 {
                format!(", {} outside operator.domains (ignored)", rep.foreign)
            } else {
                String::new()
            },
            if rep.undated.is_empty() {
                String::new()
            } else {
                format!(
                    ", {} login lines without a readable date (skipped)",
                    rep.undated.len()
                )
            }
        );
        for (n, l) in rep.undated.iter().take(5) {
            eprintln!("{}:{n}: no readable date: {l}", f.display());
        }
        all.extend(rep.logins);
    }
    let reg = mss_shared::central::registry::open_write(&cfg)?;
    let changed = reg.import_logins(&all, &tz)?;
    reg.commit()?;
    println!(
        "{} logins read, {changed} new last-login values stored (the rest were already known)",
        all.len()
    );
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tz() -> TimeZone {
        TimeZone::get("Europe/Paris").unwrap()
    }

    #[test]
    fn dovecot_and_postfix_lines() {
        assert_eq!(
            line_login("Nov 22 10:00:01 mx dovecot: imap-login: Login: user=<Alice@CH.fr>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.2, mpid=12, TLS, session=<abc>", Format::Dovecot),
            Some(("alice@ch.fr".into(), "imap".into()))
        );
        assert_eq!(
            line_login("Nov 22 10:00:01 pop3-login: Info: Login: user=<b@ch.fr>, method=PLAIN, rip=192.0.2.1", Format::Dovecot),
            Some(("b@ch.fr".into(), "pop3".into()))
        );
        assert_eq!(line_login("Nov 22 10:00:01 mx dovecot: imap-login: Aborted login (auth failed, 1 attempts in 2 secs): user=<c@ch.fr>, method=PLAIN", Format::Dovecot), None);
        assert_eq!(
            line_login("2026-11-22T10:00:01.123456+01:00 mx postfix/submission/smtpd[812]: 4XyZ1: client=a[192.0.2.1], sasl_method=PLAIN, sasl_username=d@ch.fr", Format::Postfix),
            Some(("d@ch.fr".into(), "smtp".into()))
        );
        assert_eq!(
            line_login(
                "Nov 22 10:00:01 mx postfix/smtpd[812]: 4XyZ1: client=a[192.0.2.1]",
                Format::Postfix
            ),
            None
        );
    }

    #[test]
    fn years_are_inferred_across_new_year() {
        let reference: Timestamp = "2026-01-10T12:00:00Z".parse().unwrap();
        let t = |l: &str| {
            line_time(l, &tz(), reference)
                .map(|us| Timestamp::from_microsecond(us).unwrap().to_string())
        };
        assert_eq!(
            t("Dec 31 23:59:59 x").as_deref(),
            Some("2025-12-31T22:59:59Z")
        );
        assert_eq!(
            t("Jan  2 08:00:00 x").as_deref(),
            Some("2026-01-02T07:00:00Z")
        );
        assert_eq!(
            t("Jan 11 08:00:00 x").as_deref(),
            Some("2026-01-11T07:00:00Z"),
            "one day of slack"
        );
        assert_eq!(
            t("Jan 20 08:00:00 x").as_deref(),
            Some("2025-01-20T07:00:00Z")
        );
        assert_eq!(
            t("2026-01-05T10:00:00+01:00 x").as_deref(),
            Some("2026-01-05T09:00:00Z")
        );
        assert_eq!(t("garbage line"), None);
        // Summer time in syslog local time.
        let summer: Timestamp = "2026-08-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            line_time("Jul 14 12:00:00 x", &tz(), summer),
            Some(
                "2026-07-14T10:00:00Z"
                    .parse::<Timestamp>()
                    .unwrap()
                    .as_microsecond()
            )
        );
    }
}
