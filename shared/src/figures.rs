//! The month's figures: the stores read once, every rule decided by
//! [`crate::indicators`]. The exporter's files, `mss-admin counts`,
//! `mss-admin connexions` and `mailbox show` all go through [`Context`], so
//! their figures are the files' by construction (same iterator, same rules).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Serialize;

use crate::config::Config;
use crate::coverage::Coverage;
use crate::error::{Error, Result};
use crate::indicators::address;
use crate::indicators::admission::{self, Reason};
use crate::indicators::connexions::{self, Facts, Rule};
use crate::indicators::membership::{self, Excluded, Exclusion};
use crate::month::{format_csv_date, from_micros, to_micros, Month};
use crate::store::capture::{bump, LastDates};
use crate::store::capture::{CaptureStore, OutRow};
use crate::store::registry::{BalType, Mailbox, RegistryStore};

/// What happens to one captured row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Written in the Echanges file.
    Written,
    /// Its sender is a test BAL, or suspended/deleted before the month.
    Excluded,
    /// An SRS-rewritten sender on an operator domain: a forward, not a BAL's mail.
    Forwarded,
    /// Cannot be written validly: listed in `AAAAMM_quarantine.csv`.
    Quarantined(Reason),
    /// Same MAIL_ID and recipient as the previous row once canonicalised.
    Duplicate,
}

/// One captured row, addresses canonicalised, with its fate.
#[derive(Debug, Clone)]
pub struct Row {
    pub mail_id: String,
    pub sender: String,
    pub recipient: String,
    pub time_us: i64,
    pub size: u64,
    pub fate: Fate,
    /// Rebuilt from Postfix's log by `mss-admin reconcile --fill` (TAILLE
    /// estimated), not captured.
    pub estimated: bool,
}

/// What one domain's pass over its rows found.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub written: u64,
    pub excluded: u64,
    pub forwarded: u64,
    pub quarantined: u64,
    /// Written rows rebuilt from the log (`reconcile --fill`), among `written`.
    pub filled: u64,
    /// Senders of written rows.
    pub senders: BTreeSet<String>,
}

/// One BAL of a month's Connexions file (or left out of it, and why).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BalLine {
    pub bal: String,
    pub domain: String,
    /// The exact string written in the file (`None`: not in the file).
    pub date: Option<String>,
    pub rule: Option<Rule>,
    pub included: bool,
    pub excluded_because: Option<Excluded>,
    /// Why excluded, for humans (`suspended since 2026-09-30, before 2026-10`).
    pub detail: Option<String>,
    /// In the registry (as recorded by the month's cut-off).
    pub registered: bool,
    /// The registry dates its creation after the month, yet it sent mail or
    /// logged in during it: kept, and reported.
    pub inconsistent: bool,
}

/// The stores read for one month.
pub struct Context {
    pub month: Month,
    pub tz: TimeZone,
    pub start_us: i64,
    pub end_us: i64,
    /// The registry as recorded by the month's cut-off (end of
    /// `sipil.deadline_day` of the month after, or today if earlier).
    pub cutoff: Date,
    delim: String,
    coverage: Coverage,
    registry: BTreeMap<String, Vec<Mailbox>>,
    last: LastDates,
    logins_in_month: BTreeSet<String>,
    /// Rows `reconcile --fill` rebuilt, per domain, in capture key order.
    filled: BTreeMap<String, Vec<OutRow>>,
}

/// The day after which registry changes no longer alter month `m`.
pub fn cutoff(cfg: &Config, m: Month, today: Date) -> Date {
    let day = cfg.sipil.as_ref().map_or(5, |s| s.deadline_day);
    let due = m
        .next()
        .first_day()
        .checked_add(jiff::Span::new().days(i64::from(day) - 1))
        .unwrap_or(today);
    due.min(today)
}

/// The oldest month still whole in the capture store: retention keeps the
/// current month and the `store.retention_months` before it.
pub fn oldest_kept(cfg: &Config, now: Timestamp) -> Month {
    let tz = cfg.tz();
    (0..cfg.store.retention_months).fold(Month::of(now, &tz), |m, _| m.prev())
}

impl Context {
    /// Read what month `m` needs. `reg` is `None` when no registry exists.
    ///
    /// # Errors
    /// Store errors; [`Error::TooOld`] naming retention for a month older
    /// than what the store keeps ([`Error::TooOld`], exit 13).
    pub fn load(
        cfg: &Config,
        cap: &CaptureStore,
        reg: Option<&RegistryStore>,
        month: Month,
        now: Timestamp,
    ) -> Result<Self> {
        let tz = cfg.tz();
        let oldest = oldest_kept(cfg, now);
        if month < oldest {
            return Err(Error::TooOld(format!(
                "{month} is older than store.retention_months = {} (the oldest month kept is {oldest}): its rows are purged, its files cannot be built again",
                cfg.store.retention_months
            )));
        }
        let start_us = to_micros(month.start(&tz));
        let end_us = to_micros(month.end(&tz));
        let delim = cfg.operator.recipient_delimiter.clone();
        let canon = |b: &str| address::canonical(b, &delim);
        let today = now.to_zoned(tz.clone()).date();
        let cutoff = cutoff(cfg, month, today);
        let mut registry: BTreeMap<String, Vec<Mailbox>> = BTreeMap::new();
        let mut imported = vec![];
        let mut filled: BTreeMap<String, Vec<OutRow>> = BTreeMap::new();
        if let Some(r) = reg {
            for f in r.filled(month)? {
                filled.entry(f.domain.clone()).or_default().push(f.to_row());
            }
            for m in r.list(None)? {
                registry
                    .entry(m.domain())
                    .or_default()
                    .push(m.as_recorded_by(cutoff));
            }
            imported = r.imported_logins_all()?;
        }
        // Last dates up to the end of the month, any age, canonical BALs.
        let raw = cap.last_dates(month, end_us - 1)?;
        let mut last = LastDates::default();
        for (from, to) in [
            (&raw.login, &mut last.login),
            (&raw.sent, &mut last.sent),
            (&raw.received, &mut last.received),
        ] {
            for (b, t) in from {
                bump(to, &canon(b), *t);
            }
        }
        // A filled row is a message the log proves the BAL sent.
        for r in filled.values().flatten() {
            bump(&mut last.sent, &canon(&r.sender), r.time_us);
        }
        let mut logins_in_month: BTreeSet<String> = cap
            .logins_between(month, start_us, end_us)?
            .iter()
            .map(|b| canon(b))
            .collect();
        for (b, t) in imported {
            let b = canon(&b);
            if t < end_us {
                bump(&mut last.login, &b, t);
            }
            if (start_us..end_us).contains(&t) {
                logins_in_month.insert(b);
            }
        }
        Ok(Context {
            month,
            tz,
            start_us,
            end_us,
            cutoff,
            delim,
            coverage: cfg.coverage.clone(),
            registry,
            last,
            logins_in_month,
            filled,
        })
    }

    /// The registry BALs of `domain` (as recorded by the cut-off).
    pub fn mailboxes(&self, domain: &str) -> &[Mailbox] {
        self.registry.get(domain).map_or(&[], Vec::as_slice)
    }

    /// The BAL `addr` stands for (`recipient_delimiter`, trailing dot).
    pub fn canonical(&self, addr: &str) -> String {
        address::canonical(addr, &self.delim)
    }

    fn exclusions(&self, domain: &str) -> HashMap<&str, Exclusion> {
        self.mailboxes(domain)
            .iter()
            .filter_map(|m| {
                membership::excluded(m.test, &m.history, self.month).map(|e| (m.bal.as_str(), e))
            })
            .collect()
    }

    /// Every captured row of `domain` in the month, in file order, with its
    /// fate; `f` sees each. Returns the tally.
    ///
    /// # Errors
    /// Store errors.
    pub fn rows(&self, cap: &CaptureStore, domain: &str, mut f: impl FnMut(&Row)) -> Result<Tally> {
        let exclusions = self.exclusions(domain);
        let mut t = Tally::default();
        let (mut cur_id, mut cur_rcpts) = (String::new(), HashSet::<String>::new());
        let mut judge = |r: OutRow| {
            let sender = self.canonical(&r.sender);
            let recipient = address::canonical(&r.recipient, "");
            let estimated = r.frontend == crate::store::filled::SOURCE_LOG;
            if r.mail_id != cur_id {
                cur_id.clone_from(&r.mail_id);
                cur_rcpts.clear();
            }
            // Rows are keyed by an operator domain: an SRS sender there is a forward.
            let fate = if address::is_srs_forward(&r.sender, |_| true) {
                t.forwarded += 1;
                Fate::Forwarded
            } else if exclusions
                .get(sender.as_str())
                .is_some_and(|e| e.kind.drops_rows())
            {
                t.excluded += 1;
                Fate::Excluded
            } else if !cur_rcpts.insert(recipient.clone()) {
                Fate::Duplicate
            } else if let Err(why) = admission::admit(&r.mail_id, &sender, &recipient) {
                t.quarantined += 1;
                Fate::Quarantined(why)
            } else {
                t.written += 1;
                t.filled += u64::from(estimated);
                if !t.senders.contains(&sender) {
                    t.senders.insert(sender.clone());
                }
                Fate::Written
            };
            f(&Row {
                mail_id: r.mail_id,
                sender,
                recipient,
                time_us: r.time_us,
                size: r.size,
                fate,
                estimated,
            });
        };
        // Filled rows interleaved in key order (date, MAIL_ID, recipient).
        let mut filled = self
            .filled
            .get(domain)
            .map_or(&[][..], Vec::as_slice)
            .iter();
        let mut next = filled.next();
        fn order(r: &OutRow) -> (i64, &str, &str) {
            (r.time_us, &r.mail_id, &r.recipient)
        }
        cap.for_each_out_between(self.month, domain, self.start_us, self.end_us, |r| {
            while let Some(f) = next.filter(|f| order(f) < order(&r)) {
                judge(f.clone());
                next = filled.next();
            }
            judge(r);
        })?;
        while let Some(f) = next {
            judge(f.clone());
            next = filled.next();
        }
        Ok(t)
    }

    fn facts(&self, bal: &str, m: Option<&Mailbox>) -> Facts {
        let last_exchange = [self.last.sent.get(bal), self.last.received.get(bal)]
            .into_iter()
            .flatten()
            .max()
            .copied();
        let domain = address::domain(bal).unwrap_or_default();
        Facts {
            applicative: m.is_some_and(|m| m.kind == BalType::Applicative),
            last_login: self.last.login.get(bal).copied(),
            last_exchange,
            created: m.and_then(|m| membership::created(&m.history)),
            // A BAL declared without login tracking is never "covered".
            logins_since: self
                .coverage
                .logins_since(&domain)
                .filter(|_| m.is_none_or(|m| m.login_tracking)),
        }
    }

    /// The Connexions lines of `domain`, sorted by BAL: registry BALs (with
    /// the excluded ones, `included: false`), then discovered ones (senders
    /// of written rows, logins of the month) absent from the registry.
    pub fn connexions(&self, domain: &str, senders: &BTreeSet<String>) -> Vec<BalLine> {
        let exclusions = self.exclusions(domain);
        let seen = |b: &str| senders.contains(b) || self.logins_in_month.contains(b);
        let fmt = |t: i64| format_csv_date(from_micros(t), &self.tz);
        let mut out: BTreeMap<String, BalLine> = BTreeMap::new();
        for m in self.mailboxes(domain) {
            let ex = exclusions.get(m.bal.as_str());
            let inconsistent =
                ex.is_some_and(|e| e.kind == Excluded::NotYetRegistered) && seen(&m.bal);
            let included = ex.is_none() || inconsistent;
            let d = included.then(|| connexions::decide(&self.facts(&m.bal, Some(m))));
            out.insert(
                m.bal.clone(),
                BalLine {
                    bal: m.bal.clone(),
                    domain: domain.to_string(),
                    date: d.map(|d| d.render(fmt)),
                    rule: d.map(|d| d.rule),
                    included,
                    excluded_because: ex.filter(|_| !included).map(|e| e.kind),
                    detail: ex.filter(|_| !included).map(|e| e.detail.clone()),
                    registered: true,
                    inconsistent,
                },
            );
        }
        let logins = self
            .logins_in_month
            .iter()
            .filter(|b| address::domain(b).as_deref() == Some(domain));
        for b in senders.iter().chain(logins) {
            if out.contains_key(b) || !admission::is_address(b) {
                continue;
            }
            let d = connexions::decide(&self.facts(b, None));
            out.insert(
                b.clone(),
                BalLine {
                    bal: b.clone(),
                    domain: domain.to_string(),
                    date: Some(d.render(fmt)),
                    rule: Some(d.rule),
                    included: true,
                    excluded_because: None,
                    detail: None,
                    registered: false,
                    inconsistent: false,
                },
            );
        }
        out.into_values().collect()
    }

    /// The last dates known for `bal` up to the end of the month (µs UTC):
    /// login (captured or imported), sent, received.
    pub fn last_of(&self, bal: &str) -> [Option<i64>; 3] {
        [
            self.last.login.get(bal).copied(),
            self.last.sent.get(bal).copied(),
            self.last.received.get(bal).copied(),
        ]
    }

    /// BALs with a login during the month (captured or imported).
    pub fn logins_in_month(&self) -> &BTreeSet<String> {
        &self.logins_in_month
    }
}
