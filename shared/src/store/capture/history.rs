//! Reading the capture store beyond one month key.
//!
//! - The per-BAL summary (`bal` column family, key BAL, value three u64 BE µs:
//!   last login, last sent, last received, merged with *max*): what retention
//!   folds in before it purges a month, so a login 14 months old still
//!   decides a Connexions date. It holds dates only, one key per BAL.
//! - Last dates up to the end of a month: every month key up to it plus the
//!   summary.
//! - A month's rows by their UTC time: month keys are the local month at
//!   capture, so after an `operator.timezone` change a month's rows may sit
//!   under the neighbouring key; the export reads the three keys around the
//!   month and keeps the rows inside its bounds in today's time zone.

use std::collections::{BTreeSet, HashMap};

use super::keys::{bal_of, read3, read_u64, split_login, OutRow, CF_BAL, CF_LOGIN, CF_RCV, CF_SNT};
use super::CaptureStore;
use crate::error::Result;
use crate::month::Month;

/// Last known dates per BAL (µs UTC), as captured (addresses as stored).
#[derive(Debug, Default, Clone)]
pub struct LastDates {
    pub login: HashMap<String, i64>,
    pub sent: HashMap<String, i64>,
    pub received: HashMap<String, i64>,
}

pub fn bump(map: &mut HashMap<String, i64>, k: &str, t: i64) {
    match map.get_mut(k) {
        Some(e) => *e = (*e).max(t),
        None => {
            map.insert(k.to_string(), t);
        }
    }
}

impl CaptureStore {
    /// Last login, sent and received per BAL at or before `end_us`: every
    /// month key up to `month.next()` (a time zone change shifts boundaries
    /// by hours) plus the summary of purged months.
    pub fn last_dates(&self, month: Month, end_us: i64) -> Result<LastDates> {
        let mut d = LastDates::default();
        let hi = month.next().next().key();
        for (cf, map) in [
            (CF_LOGIN, &mut d.login),
            (CF_SNT, &mut d.sent),
            (CF_RCV, &mut d.received),
        ] {
            self.scan_range(cf, b"", &hi, |k, v| {
                let t = read_u64(v) as i64;
                if t <= end_us {
                    bump(map, &String::from_utf8_lossy(bal_of(k)), t);
                }
            })?;
        }
        self.scan_range(CF_BAL, b"", &[0xff; 8], |k, v| {
            let bal = String::from_utf8_lossy(k);
            let [l, s, r] = read3(v);
            for (map, t) in [(&mut d.login, l), (&mut d.sent, s), (&mut d.received, r)] {
                if t > 0 && (t as i64) <= end_us {
                    bump(map, &bal, t as i64);
                }
            }
        })?;
        Ok(d)
    }

    /// BALs with a captured login in `[start_us, end_us)` (month keys around
    /// `month`).
    pub fn logins_between(
        &self,
        month: Month,
        start_us: i64,
        end_us: i64,
    ) -> Result<BTreeSet<String>> {
        let mut out = BTreeSet::new();
        self.scan_range(
            CF_LOGIN,
            &month.prev().key(),
            &month.next().next().key(),
            |k, v| {
                let t = split_login(v).0 as i64;
                if (start_us..end_us).contains(&t) {
                    out.insert(String::from_utf8_lossy(bal_of(k)).into_owned());
                }
            },
        )?;
        Ok(out)
    }

    /// The rows of one domain accepted in `[start_us, end_us)`, in date then
    /// MAIL_ID order: the month keys `month - 1`, `month`, `month + 1` in turn.
    pub fn for_each_out_between(
        &self,
        month: Month,
        domain: &str,
        start_us: i64,
        end_us: i64,
        mut f: impl FnMut(OutRow),
    ) -> Result<()> {
        for m in [month.prev(), month, month.next()] {
            self.for_each_out(m, Some(domain), |r| {
                if (start_us..end_us).contains(&r.time_us) {
                    f(r);
                }
            })?;
        }
        Ok(())
    }
}
