//! Month and time-zone rules.
//!
//! Every instant is stored as UTC microseconds since the Unix epoch; the month
//! a row belongs to and the `DATE` printed in the CSV are computed in
//! `operator.timezone` (default `Europe/Paris`). A mail accepted at 22:30 UTC
//! on 31 July is in August in Paris (UTC+2 in summer).

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

use crate::error::{Error, Result};

/// A calendar month, `YYYY-MM` on the command line, `AAAAMM` in file names
/// and in store keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    pub year: i16,
    pub month: i8,
}

impl Month {
    /// Parse `YYYY-MM` (the command-line form).
    ///
    /// # Errors
    /// [`Error::Usage`] when the text is not a month.
    pub fn parse(s: &str) -> Result<Month> {
        let bad = || {
            Error::Usage(format!(
                "{s:?} is not a month: expected YYYY-MM, e.g. 2026-10"
            ))
        };
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let year: i16 = y.parse().map_err(|_| bad())?;
        let month: i8 = m.parse().map_err(|_| bad())?;
        if !(1..=12).contains(&month) || !(1900..=9999).contains(&year) {
            return Err(bad());
        }
        Ok(Month { year, month })
    }

    /// The month containing `ts` in `tz`.
    pub fn of(ts: Timestamp, tz: &TimeZone) -> Month {
        let dt = tz.to_datetime(ts);
        Month {
            year: dt.year(),
            month: dt.month(),
        }
    }

    /// The month containing now, in `tz`.
    pub fn current(tz: &TimeZone) -> Month {
        Month::of(Timestamp::now(), tz)
    }

    pub fn prev(self) -> Month {
        if self.month == 1 {
            Month {
                year: self.year - 1,
                month: 12,
            }
        } else {
            Month {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    pub fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// `AAAAMM`, the 6-byte prefix of every store key and of file names.
    pub fn key(self) -> [u8; 6] {
        let s = format!("{:04}{:02}", self.year, self.month);
        s.as_bytes().try_into().expect("6 digits")
    }

    pub fn compact(self) -> String {
        format!("{:04}{:02}", self.year, self.month)
    }

    /// First instant of the month in `tz`.
    pub fn start(self, tz: &TimeZone) -> Timestamp {
        let d = Date::new(self.year, self.month, 1).expect("valid month");
        tz.to_ambiguous_zoned(d.to_datetime(jiff::civil::Time::midnight()))
            .compatible()
            .expect("in range")
            .timestamp()
    }

    /// First instant of the next month in `tz` (exclusive end).
    pub fn end(self, tz: &TimeZone) -> Timestamp {
        self.next().start(tz)
    }

    pub fn first_day(self) -> Date {
        Date::new(self.year, self.month, 1).expect("valid month")
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// `AAAA-MM-JJ HH:mm:SS` in `tz`, the CSV `DATE` format.
pub fn format_csv_date(ts: Timestamp, tz: &TimeZone) -> String {
    let dt: DateTime = tz.to_datetime(ts);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

/// [`format_csv_date`] for many instants in a row (the exporter's hot loop):
/// the civil time of the current UTC hour is computed once and reused while
/// the zone keeps one offset over that whole hour, and the text is written
/// into a reused buffer. Same output as [`format_csv_date`] for every
/// instant (tested across DST changes and half-hour zones).
pub struct CsvDates {
    tz: TimeZone,
    hour: i64,
    /// Civil time at the start of `hour`, when the offset is constant over it.
    base: Option<DateTime>,
    buf: String,
}

impl CsvDates {
    pub fn new(tz: TimeZone) -> Self {
        CsvDates {
            tz,
            hour: i64::MIN,
            base: None,
            buf: String::with_capacity(19),
        }
    }

    pub fn format(&mut self, ts: Timestamp) -> &str {
        let secs = ts.as_second();
        let hour = secs.div_euclid(3600);
        if hour != self.hour {
            self.hour = hour;
            self.base = match (
                Timestamp::from_second(hour * 3600),
                Timestamp::from_second(hour * 3600 + 3599),
            ) {
                (Ok(a), Ok(b)) if self.tz.to_offset(a) == self.tz.to_offset(b) => {
                    Some(self.tz.to_datetime(a))
                }
                _ => None,
            };
        }
        let within = secs.rem_euclid(3600);
        let fields = match self.base {
            Some(b) if i64::from(b.minute()) * 60 + i64::from(b.second()) + within < 3600 => {
                let t = i64::from(b.minute()) * 60 + i64::from(b.second()) + within;
                (
                    i64::from(b.year()),
                    i64::from(b.month()),
                    i64::from(b.day()),
                    i64::from(b.hour()),
                    t / 60,
                    t % 60,
                )
            }
            _ => {
                let d = self.tz.to_datetime(ts);
                (
                    i64::from(d.year()),
                    i64::from(d.month()),
                    i64::from(d.day()),
                    i64::from(d.hour()),
                    i64::from(d.minute()),
                    i64::from(d.second()),
                )
            }
        };
        let (y, mo, d, h, mi, s) = fields;
        self.buf.clear();
        if !(0..=9999).contains(&y) {
            self.buf.push_str(&format_csv_date(ts, &self.tz));
            return &self.buf;
        }
        let mut push = |v: i64, width: u32, sep: Option<char>| {
            for p in (0..width).rev() {
                let digit = (v / 10i64.pow(p)) % 10;
                self.buf.push(char::from(b'0' + digit as u8));
            }
            if let Some(c) = sep {
                self.buf.push(c);
            }
        };
        push(y, 4, Some('-'));
        push(mo, 2, Some('-'));
        push(d, 2, Some(' '));
        push(h, 2, Some(':'));
        push(mi, 2, Some(':'));
        push(s, 2, None);
        &self.buf
    }
}

/// UTC microseconds since the epoch, the stored form of every instant.
pub fn to_micros(ts: Timestamp) -> i64 {
    ts.as_microsecond()
}

pub fn from_micros(us: i64) -> Timestamp {
    Timestamp::from_microsecond(us).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Now, as a zoned time (for logs and reports).
pub fn now_in(tz: &TimeZone) -> Zoned {
    Timestamp::now().to_zoned(tz.clone())
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_dates_match_format_csv_date_everywhere() {
        // Paris (both DST changes), a half-hour zone, a zone whose DST shift
        // is 30 minutes, UTC; every 7 minutes 13 s over two years, plus the
        // seconds around each hour boundary.
        for name in ["Europe/Paris", "Asia/Kolkata", "Australia/Lord_Howe", "UTC"] {
            let tz = TimeZone::get(name).unwrap();
            let mut fast = CsvDates::new(tz.clone());
            let start = Timestamp::from_second(1_767_225_600 - 3600)
                .unwrap()
                .as_second();
            let mut t = start;
            while t < start + 2 * 366 * 86_400 {
                for ts in [t, t - t.rem_euclid(3600), t - t.rem_euclid(3600) - 1] {
                    let ts = Timestamp::from_second(ts).unwrap();
                    assert_eq!(fast.format(ts), format_csv_date(ts, &tz), "{name} {ts}");
                }
                t += 433;
            }
        }
    }

    use super::*;

    fn paris() -> TimeZone {
        TimeZone::get("Europe/Paris").unwrap()
    }

    #[test]
    fn summer_month_edge_belongs_to_next_month_in_paris() {
        let ts: Timestamp = "2026-07-31T22:30:00Z".parse().unwrap();
        assert_eq!(Month::of(ts, &paris()).to_string(), "2026-08");
        assert_eq!(Month::of(ts, &TimeZone::UTC).to_string(), "2026-07");
        assert_eq!(format_csv_date(ts, &paris()), "2026-08-01 00:30:00");
    }

    #[test]
    fn winter_month_edge_is_one_hour() {
        let ts: Timestamp = "2026-12-31T23:30:00Z".parse().unwrap();
        assert_eq!(Month::of(ts, &paris()).to_string(), "2027-01");
        let ts: Timestamp = "2026-12-31T22:59:59Z".parse().unwrap();
        assert_eq!(Month::of(ts, &paris()).to_string(), "2026-12");
    }

    #[test]
    fn month_bounds_follow_dst() {
        // March 2026: starts in winter time (UTC+1), April starts in summer time (UTC+2).
        let m = Month::parse("2026-03").unwrap();
        assert_eq!(m.start(&paris()).to_string(), "2026-02-28T23:00:00Z");
        assert_eq!(m.end(&paris()).to_string(), "2026-03-31T22:00:00Z");
        assert_eq!(&m.key(), b"202603");
    }

    #[test]
    fn parse_rejects_bad_months() {
        for bad in ["2026-13", "2026-1", "26-01", "2026/01", "", "2026-00"] {
            assert!(Month::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Month::parse("2026-01").unwrap().prev().to_string(),
            "2025-12"
        );
    }
}
