//! `mss-admin counts` and `mss-admin connexions`: a month's figures through
//! [`mss_shared::figures`], the same iterator and rules as the exporter's
//! files (the counts are the files' row counts by construction).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use mss_shared::config::Config;
use mss_shared::figures::{Context, Fate};
use mss_shared::indicators::connexions::Rule;
use mss_shared::indicators::membership::Excluded;
use mss_shared::month::{format_csv_date, from_micros, Month};
use mss_shared::output::{Counts, DayCounts, DomainCounts};
use mss_shared::{exit, Error};

use crate::admin::SecondaryCapture;

fn domains(cfg: &Config, only: Option<&str>) -> Result<Vec<String>, Error> {
    let mut all = cfg.operator.domains.clone();
    all.sort();
    match only.map(str::to_ascii_lowercase) {
        None => Ok(all),
        Some(d) if all.contains(&d) => Ok(vec![d]),
        Some(d) => Err(Error::Usage(format!(
            "--domain {d}: not one of operator.domains ({})",
            cfg.operator.domains.join(", ")
        ))),
    }
}

/// The capture store (as a secondary) and the month read through it.
fn open_month(cfg: &Config, month: Month) -> Result<(SecondaryCapture, Context), Error> {
    let sec = SecondaryCapture::open(cfg)?;
    let reg = mss_shared::central::registry::open_read(cfg)?;
    let ctx = Context::load(
        cfg,
        &sec.store,
        reg.as_deref(),
        month,
        jiff::Timestamp::now(),
    )?;
    Ok((sec, ctx))
}

/// `mss-admin counts --month YYYY-MM [--domain D] [--json]`.
pub fn counts(config: &Path, month: &str, domain: Option<&str>, json: bool) -> Result<i32, Error> {
    let cfg = Config::load(config)?;
    let month = Month::parse(month)?;
    let wanted = domains(&cfg, domain)?;
    let (sec, ctx) = open_month(&cfg, month)?;
    let outside = sec.store.outside(month)?;
    let mut out = vec![];
    for d in &wanted {
        let mut c = DomainCounts::new(d);
        let mut days: BTreeMap<String, DayCounts> = BTreeMap::new();
        let mut last_id = String::new();
        let tally = ctx.rows(&sec.store, d, |r| {
            if r.fate != Fate::Written {
                return;
            }
            let day = format_csv_date(from_micros(r.time_us), &ctx.tz)[..10].to_string();
            let dc = days.entry(day.clone()).or_insert_with(|| DayCounts {
                day,
                messages: 0,
                rows: 0,
            });
            dc.rows += 1;
            if r.mail_id != last_id {
                c.messages += 1;
                c.bytes += r.size;
                dc.messages += 1;
                last_id.clone_from(&r.mail_id);
            }
        })?;
        c.rows = tally.written;
        c.excluded_rows = tally.excluded;
        c.forwarded_rows = tally.forwarded;
        c.quarantined_rows = tally.quarantined;
        c.filled_rows = tally.filled;
        c.senders = tally.senders.len() as u64;
        // `mailboxes`: the rows of the month's Connexions file.
        c.mailboxes = ctx
            .connexions(d, &tally.senders)
            .iter()
            .filter(|l| l.included)
            .count() as u64;
        // `logins`: BALs with a login in the month (captured or imported).
        c.logins = ctx
            .logins_in_month()
            .iter()
            .filter(|b| mss_shared::indicators::address::domain(b).as_deref() == Some(d.as_str()))
            .count() as u64;
        c.outside_trust_space = outside
            .iter()
            .filter(|((s, _), _)| s == d)
            .map(|(_, n)| n)
            .sum();
        c.days = days.into_values().collect();
        out.push(c);
    }
    let counts = Counts {
        month: month.to_string(),
        domains: out,
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&counts).expect("serialisable")
        );
    } else {
        print!("{}", render_counts(&counts));
    }
    Ok(exit::OK)
}

/// One line of `mss-admin connexions --json` (contract).
#[derive(Debug, Serialize)]
pub struct ConnexionsLine {
    pub bal: String,
    pub domain: String,
    /// The exact string written in the file; `null` when not in it.
    pub date: Option<String>,
    pub rule: Option<Rule>,
    pub included: bool,
    pub excluded_because: Option<Excluded>,
}

#[derive(Debug, Serialize)]
pub struct ConnexionsOut {
    pub month: String,
    pub mailboxes: Vec<ConnexionsLine>,
}

/// `mss-admin connexions --month YYYY-MM [--domain D] [--bal B] [--json]`:
/// every BAL of the month's Connexions files with its date and the rule
/// that produced it; excluded BALs with why.
pub fn connexions(
    config: &Path,
    month: &str,
    domain: Option<&str>,
    bal: Option<&str>,
    json: bool,
) -> Result<i32, Error> {
    let cfg = Config::load(config)?;
    let month = Month::parse(month)?;
    let bal = bal.map(mss_shared::model::normalize_address);
    let only = domain.map(str::to_string).or_else(|| {
        bal.as_deref()
            .and_then(mss_shared::indicators::address::domain)
    });
    let wanted = domains(&cfg, only.as_deref())?;
    let (sec, ctx) = open_month(&cfg, month)?;
    let want_bal = bal.as_deref().map(|b| ctx.canonical(b));
    let mut lines = vec![];
    for d in &wanted {
        let mut senders = BTreeSet::new();
        ctx.rows(&sec.store, d, |_| {})
            .map(|t| senders = t.senders)?;
        for l in ctx.connexions(d, &senders) {
            if want_bal.as_ref().is_some_and(|b| *b != l.bal) {
                continue;
            }
            lines.push(ConnexionsLine {
                bal: l.bal,
                domain: l.domain,
                date: l.date,
                rule: l.rule,
                included: l.included,
                excluded_because: l.excluded_because,
            });
        }
    }
    let out = ConnexionsOut {
        month: month.to_string(),
        mailboxes: lines,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&out).expect("json"));
        return Ok(exit::OK);
    }
    for l in &out.mailboxes {
        match (&l.date, l.rule, l.excluded_because) {
            (Some(d), Some(r), _) => println!(
                "{:<40} {:<19} {}",
                l.bal,
                if d.is_empty() { "(empty)" } else { d },
                r.as_str()
            ),
            (_, _, Some(e)) => println!("{:<40} {:<19} excluded: {}", l.bal, "-", e.as_str()),
            _ => {}
        }
    }
    eprintln!(
        "{}: {} BAL(s) in the Connexions files, {} excluded",
        out.month,
        out.mailboxes.iter().filter(|l| l.included).count(),
        out.mailboxes.iter().filter(|l| !l.included).count()
    );
    Ok(exit::OK)
}

/// Human view: one block per domain, a per-day bar chart of rows.
pub fn render_counts(c: &Counts) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "month {}", c.month);
    for d in &c.domains {
        let _ = writeln!(
            o,
            "\n{}\n  messages {}  rows {}  bytes {}  senders {}  mailboxes {}  logins {}  outside_trust_space {}",
            d.domain, d.messages, d.rows, d.bytes, d.senders, d.mailboxes, d.logins, d.outside_trust_space
        );
        if d.excluded_rows + d.forwarded_rows + d.quarantined_rows > 0 {
            let _ = writeln!(
                o,
                "  not in the file: excluded {}  forwarded {}  quarantined {}",
                d.excluded_rows, d.forwarded_rows, d.quarantined_rows
            );
        }
        if d.filled_rows > 0 {
            let _ = writeln!(
                o,
                "  of which rebuilt from Postfix's log (reconcile --fill, TAILLE estimated): {}",
                d.filled_rows
            );
        }
        let max = d.days.iter().map(|x| x.rows).max().unwrap_or(0);
        for day in &d.days {
            let width = if max == 0 {
                0
            } else {
                (day.rows * 40).div_ceil(max) as usize
            };
            let _ = writeln!(
                o,
                "  {}  {:>8} msg {:>8} rows  {}",
                day.day,
                day.messages,
                day.rows,
                "#".repeat(width)
            );
        }
    }
    o
}
