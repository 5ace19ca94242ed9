//! Matching logged messages with the month's rows, streaming: the rows are
//! read once into a compact index (a 128-bit hash of (queue id, recipient),
//! time, size, source: 40 bytes a row), each logged message is matched as
//! soon as Postfix has finished with it, and the rows left unused are found
//! again by a second read of the store (phantoms). Memory is the index plus
//! the missing recipients, never the whole log.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use jiff::tz::TimeZone;

use mss_shared::month::{format_csv_date, from_micros};
use mss_shared::store::capture::OutRow;
use mss_shared::store::filled::SOURCE_LOG;

use super::episodes::{Message, Origin};
use super::missing::MissingList;
use super::{Coverage, DayReport, DomainReport, Figures, Phantom, Report, WINDOW_US};

#[derive(Debug, Clone, Copy)]
struct Entry {
    h: u128,
    time_us: i64,
    size: u64,
    filled: bool,
    used: bool,
}

fn key_hash(queue_id: &str, recipient: &str) -> u128 {
    let half = |salt: u8| {
        let mut s = std::hash::DefaultHasher::new();
        (salt, queue_id, recipient).hash(&mut s);
        s.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

pub struct Matcher {
    tz: TimeZone,
    index: Vec<Entry>,
    per: BTreeMap<String, BTreeMap<String, Figures>>,
    matched: u64,
    filled: u64,
    missing: MissingList,
    overhead: Vec<(Origin, i64)>,
}

impl Matcher {
    /// An empty index: add every row with [`Matcher::index_row`], then
    /// [`Matcher::seal`] before the first message.
    pub fn new(tz: TimeZone) -> Matcher {
        Matcher {
            missing: MissingList::new(tz.clone()),
            tz,
            index: vec![],
            per: BTreeMap::new(),
            matched: 0,
            filled: 0,
            overhead: vec![],
        }
    }

    /// Index one row (a row without a queue id cannot match: it is judged
    /// by [`Matcher::finish`] only).
    pub fn index_row(&mut self, r: &OutRow) {
        if let Some(q) = r.queue_id.as_deref() {
            self.index.push(Entry {
                h: key_hash(q, &r.recipient),
                time_us: r.time_us,
                size: r.size,
                filled: r.frontend == SOURCE_LOG,
                used: false,
            });
        }
    }

    /// Sort the index for lookups.
    pub fn seal(&mut self) {
        self.index.sort_unstable_by_key(|e| (e.h, e.time_us));
        self.index.shrink_to_fit();
    }

    fn day(&self, us: i64) -> String {
        format_csv_date(from_micros(us), &self.tz)[..10].to_string()
    }

    /// The nearest unused row of (queue id, recipient) within the window.
    fn take(&mut self, queue_id: &str, rcpt: &str, time_us: i64) -> Option<Entry> {
        let h = key_hash(queue_id, rcpt);
        let lo = self.index.partition_point(|e| e.h < h);
        let hi = lo + self.index[lo..].partition_point(|e| e.h == h);
        let best = (lo..hi)
            .filter(|i| {
                let e = &self.index[*i];
                !e.used && (e.time_us - time_us).abs() <= WINDOW_US
            })
            .min_by_key(|i| (self.index[*i].time_us - time_us).abs())?;
        self.index[best].used = true;
        Some(self.index[best])
    }

    /// One logged outbound message of operator `domain`.
    pub fn message(&mut self, domain: &str, m: &Message) {
        let day = self.day(m.time_us);
        let mut sampled = false;
        let mut lost: Vec<&str> = vec![];
        let (mut matched, mut filled) = (0, 0);
        for rcpt in &m.recipients {
            match self.take(&m.queue_id, rcpt, m.time_us) {
                Some(e) if e.filled => filled += 1,
                Some(e) => {
                    matched += 1;
                    if !sampled {
                        sampled = true;
                        self.overhead
                            .push((m.origin, m.size as i64 - e.size as i64));
                    }
                }
                None => lost.push(rcpt),
            }
        }
        let f = self
            .per
            .entry(domain.to_string())
            .or_default()
            .entry(day)
            .or_default();
        f.matched += matched;
        f.filled += filled;
        f.missing += lost.len() as u64;
        self.matched += matched;
        self.filled += filled;
        self.missing.add(domain, m, lost.into_iter());
    }

    /// The report. `rows` reads the month's rows again (same filter as for
    /// [`Matcher::new`]); a row not used by a message is a phantom when it
    /// lies inside the logs' span, else counted in
    /// `coverage.rows_outside_logs`.
    pub fn finish<E>(
        mut self,
        month: String,
        mut cov: Coverage,
        log_span: Option<(i64, i64)>,
        rows: impl FnOnce(&mut dyn FnMut(OutRow)) -> Result<(), E>,
    ) -> Result<Report, E> {
        let mut phantom = vec![];
        let tz = self.tz.clone();
        let fmt = |us: i64| format_csv_date(from_micros(us), &tz);
        let index = &mut self.index;
        let per = &mut self.per;
        rows(&mut |r: OutRow| {
            if let Some(q) = r.queue_id.as_deref() {
                let h = key_hash(q, &r.recipient);
                let lo = index.partition_point(|e| (e.h, e.time_us) < (h, r.time_us));
                // Each used entry accounts for one row (two rows may share
                // a key and a time).
                if let Some(e) = index[lo..]
                    .iter_mut()
                    .take_while(|e| (e.h, e.time_us) == (h, r.time_us))
                    .find(|e| e.used)
                {
                    e.used = false;
                    return;
                }
            }
            if !log_span.is_some_and(|(a, b)| r.time_us >= a && r.time_us <= b) {
                cov.rows_outside_logs += 1;
                return;
            }
            let day = fmt(r.time_us)[..10].to_string();
            per.entry(r.domain.clone())
                .or_default()
                .entry(day)
                .or_default()
                .phantom += 1;
            phantom.push(Phantom {
                mail_id: r.mail_id,
                queue_id: r.queue_id,
                sender: r.sender,
                recipient: r.recipient,
                time: fmt(r.time_us),
            });
        })?;
        self.missing.sort();
        let by_domain = self
            .per
            .into_iter()
            .map(|(domain, days)| {
                let mut figures = Figures::default();
                for f in days.values() {
                    figures.matched += f.matched;
                    figures.filled += f.filled;
                    figures.missing += f.missing;
                    figures.phantom += f.phantom;
                }
                DomainReport {
                    domain,
                    figures,
                    days: days
                        .into_iter()
                        .map(|(day, figures)| DayReport { day, figures })
                        .collect(),
                }
            })
            .collect();
        Ok(Report {
            month,
            matched: self.matched,
            filled: self.filled,
            missing: self.missing,
            phantom,
            by_domain,
            coverage: cov,
            overhead: self.overhead,
        })
    }
}
