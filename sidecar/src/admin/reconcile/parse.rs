//! Streaming reader of Postfix log lines: plain or `.gz`, three timestamp
//! forms (`maillog_file` `Dec 02 17:43:31`, syslog `Dec  2 17:43:31 host`,
//! RFC 3339 `2026-12-02T17:43:31.123456+01:00 host`), year inferred as the
//! one nearest the reconciled month (a December log read for January), local
//! time in `operator.timezone`.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::Timestamp;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// One log line split into its parts (borrowed from the line buffer).
#[derive(Debug, PartialEq, Eq)]
pub struct Line<'a> {
    /// UTC microseconds.
    pub time_us: i64,
    /// The part of the program name before `/` (`postfix`, `postfix-out`, or
    /// `mss-sidecar` for our own marks).
    pub instance: &'a str,
    /// The part after `/` (`smtpd`, `cleanup`, `qmgr`, …), empty if none.
    pub service: &'a str,
    pub pid: u32,
    /// The text after `prog[pid]: `.
    pub msg: &'a str,
}

/// Turns timestamps into instants, caching the last second read (most lines
/// of a busy log share their second with the line before).
pub struct Clock {
    tz: TimeZone,
    /// Year and month (1-12) the reconciled month is in.
    year: i16,
    month: i8,
    last_key: String,
    last_us: i64,
}

impl Clock {
    pub fn new(tz: TimeZone, year: i16, month: i8) -> Self {
        Clock {
            tz,
            year,
            month,
            last_key: String::new(),
            last_us: 0,
        }
    }

    /// Split `line` into time, program and message; `None` when it is not a
    /// `prog[pid]: msg` line with a readable date.
    pub fn split<'a>(&mut self, line: &'a str) -> Option<Line<'a>> {
        let (time_us, rest) = self.time(line)?;
        // After the date: either `prog[pid]: msg` (maillog_file without a
        // host) or `host prog[pid]: msg`.
        let rest = rest.trim_start();
        let (w1, after1) = rest.split_once(' ')?;
        let (prog, msg) = if w1.ends_with(':') && w1.contains('[') {
            (w1, after1)
        } else {
            let (w2, after2) = after1.trim_start().split_once(' ')?;
            (w2, after2)
        };
        let prog = prog.strip_suffix(':')?;
        let (name, pid) = match prog.split_once('[') {
            Some((n, p)) => (n, p.strip_suffix(']')?.parse().ok()?),
            None => (prog, 0),
        };
        let (instance, service) = name.split_once('/').unwrap_or((name, ""));
        Some(Line {
            time_us,
            instance,
            service,
            pid,
            msg,
        })
    }

    /// The time at the start of `line` and the rest of the line.
    fn time<'a>(&mut self, line: &'a str) -> Option<(i64, &'a str)> {
        let b = line.as_bytes();
        if b.len() > 10 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' {
            let end = line.find(' ')?;
            let ts: Timestamp = line[..end].parse().ok()?;
            return Some((ts.as_microsecond(), &line[end..]));
        }
        // "Mmm dd HH:MM:SS" with the day padded by a space or a zero.
        if line.len() < 15 {
            return None;
        }
        let key = line.get(..15)?;
        if key == self.last_key {
            return Some((self.last_us, &line[15..]));
        }
        let mon = MONTHS.iter().position(|m| *m == &key[..3])? as i8 + 1;
        let day: i8 = key[4..6].trim().parse().ok()?;
        let h: i8 = key[7..9].parse().ok()?;
        let mi: i8 = key[10..12].parse().ok()?;
        let s: i8 = key[13..15].parse().ok()?;
        if &key[9..10] != ":" || &key[12..13] != ":" {
            return None;
        }
        // The year that puts this month nearest the reconciled one.
        let diff = i32::from(mon) - i32::from(self.month);
        let year = if diff > 6 {
            self.year - 1
        } else if diff < -6 {
            self.year + 1
        } else {
            self.year
        };
        let dt = DateTime::new(year, mon, day, h, mi, s, 0).ok()?;
        let us = dt
            .to_zoned(self.tz.clone())
            .ok()?
            .timestamp()
            .as_microsecond();
        self.last_key.clear();
        self.last_key.push_str(key);
        self.last_us = us;
        Some((us, &line[15..]))
    }
}

/// Open a log file, decompressing `.gz` (by name or by magic bytes).
pub fn open(path: &Path) -> std::io::Result<Box<dyn BufRead>> {
    let mut f = File::open(path)?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic)?;
    let f = File::open(path)?;
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(BufReader::with_capacity(
            1 << 16,
            flate2::read::MultiGzDecoder::new(BufReader::new(f)),
        )))
    } else {
        Ok(Box::new(BufReader::with_capacity(1 << 16, f)))
    }
}

/// Call `f` with every line of `input` (lossy UTF-8, without the newline).
pub fn for_each_line(mut input: impl BufRead, mut f: impl FnMut(&str)) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf)? == 0 {
            return Ok(());
        }
        while buf.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
            buf.pop();
        }
        match std::str::from_utf8(&buf) {
            Ok(s) => f(s),
            Err(_) => f(&String::from_utf8_lossy(&buf)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> Clock {
        Clock::new(TimeZone::get("Europe/Paris").unwrap(), 2026, 12)
    }

    #[test]
    fn three_forms() {
        let mut c = clock();
        let a = c
            .split("Dec 02 17:43:31 postfix/smtpd[12]: ABC: client=x[1.2.3.4]")
            .unwrap();
        assert_eq!(
            (a.instance, a.service, a.pid, a.msg),
            ("postfix", "smtpd", 12, "ABC: client=x[1.2.3.4]")
        );
        let b = c
            .split("Dec  2 17:43:31 mx1 postfix-out/qmgr[7]: ABC: removed")
            .unwrap();
        assert_eq!(
            (b.instance, b.service, b.msg),
            ("postfix-out", "qmgr", "ABC: removed")
        );
        assert_eq!(a.time_us, b.time_us);
        let r = c
            .split("2026-12-02T17:43:31.000000+01:00 mx1 postfix/cleanup[9]: ABC: message-id=<m>")
            .unwrap();
        assert_eq!(r.time_us, a.time_us);
        assert_eq!(
            Timestamp::from_microsecond(a.time_us).unwrap().to_string(),
            "2026-12-02T16:43:31Z"
        );
        assert!(c.split("garbage").is_none());
    }

    #[test]
    fn year_across_new_year() {
        let mut c = Clock::new(TimeZone::UTC, 2027, 1);
        let a = c.split("Dec 31 23:59:59 h postfix/qmgr[1]: x").unwrap();
        assert_eq!(
            Timestamp::from_microsecond(a.time_us).unwrap().to_string(),
            "2026-12-31T23:59:59Z"
        );
        let mut c = Clock::new(TimeZone::UTC, 2026, 12);
        let b = c.split("Jan  1 00:00:01 h postfix/qmgr[1]: x").unwrap();
        assert_eq!(
            Timestamp::from_microsecond(b.time_us).unwrap().to_string(),
            "2027-01-01T00:00:01Z"
        );
    }
}
