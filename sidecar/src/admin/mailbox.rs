//! `mss-admin mailbox …`: the registry of BALs (type, dated status history,
//! test flag, FINESS, login tracking) that the Connexions file and the
//! exclusions depend on.
//!
//! Import CSV (`;`, header row):
//! `bal;type;status;status_date;test;finess_ej;finess_eg;login_tracking`.
//! Every bad line is reported with its number; a file with any error changes
//! nothing (one atomic batch). Status changes are appended with their date
//! and the day they were recorded, never rewritten: re-importing a file
//! changes nothing, an undated change takes effect the day it is recorded, a
//! future date is refused, and a change that would alter a month the ANS
//! already accepted is refused without `--force` (exit 14, months named).

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use jiff::civil::Date;

use mss_shared::config::{domain_of, Config};
use mss_shared::model::normalize_address;
use mss_shared::month::Month;
use mss_shared::store::registry::{BalType, Mailbox, RegistryStore, Status, StatusChange};
use mss_shared::{exit, Error};

pub const HEADER: [&str; 8] = [
    "bal",
    "type",
    "status",
    "status_date",
    "test",
    "finess_ej",
    "finess_eg",
    "login_tracking",
];

/// One valid import line.
#[derive(Debug, Clone)]
pub struct Row {
    pub line: u64,
    pub bal: String,
    pub kind: BalType,
    pub status: Status,
    pub date: Option<Date>,
    pub test: bool,
    pub finess_ej: Option<String>,
    pub finess_eg: Option<String>,
    pub login_tracking: bool,
}

fn yes_no(v: &str, empty: bool) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "" => Some(empty),
        "yes" | "oui" | "true" | "1" => Some(true),
        "no" | "non" | "false" | "0" => Some(false),
        _ => None,
    }
}

fn finess(v: &str) -> Result<Option<String>, String> {
    let v = v.trim();
    if v.is_empty() {
        Ok(None)
    } else if v.len() == 9 && v.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(Some(v.to_ascii_uppercase()))
    } else {
        Err(format!("FINESS {v:?} is not 9 characters"))
    }
}

fn valid_address(a: &str) -> bool {
    mss_shared::indicators::address::valid_bal(a)
}

/// Parse and check an import file. `Err` lists every problem as
/// `line N: reason`.
pub fn parse(
    input: impl std::io::Read,
    domains: &[String],
    only: Option<&str>,
) -> Result<Vec<Row>, Vec<String>> {
    let mut problems = vec![];
    let mut rows = vec![];
    let mut seen = HashSet::new();
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(b';')
        .has_headers(false)
        .flexible(true)
        .from_reader(input);
    let mut first = true;
    for (i, rec) in rdr.records().enumerate() {
        let line = rec
            .as_ref()
            .ok()
            .and_then(|r| r.position())
            .map_or(i as u64 + 1, |p| p.line());
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("line {line}: unreadable: {e}"));
                continue;
            }
        };
        if first {
            first = false;
            let got: Vec<String> = rec
                .iter()
                .map(|f| f.trim().trim_start_matches('\u{feff}').to_ascii_lowercase())
                .collect();
            if got != HEADER {
                problems.push(format!(
                    "line {line}: header must be {:?}",
                    HEADER.join(";")
                ));
                return Err(problems);
            }
            continue;
        }
        if rec.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if rec.len() != HEADER.len() {
            problems.push(format!(
                "line {line}: {} fields, {} expected",
                rec.len(),
                HEADER.len()
            ));
            continue;
        }
        let mut why = vec![];
        let bal = normalize_address(&rec[0]);
        let dom = domain_of(&bal).unwrap_or_default();
        if !valid_address(&bal) {
            why.push(format!("bal {:?} is not an address", &rec[0]));
        } else if !domains.contains(&dom) {
            why.push(format!("bal {bal}: {dom} is not one of operator.domains"));
        } else if only.is_some_and(|d| d != dom) {
            why.push(format!(
                "bal {bal} is not on --domain {}",
                only.unwrap_or_default()
            ));
        } else if !seen.insert(bal.clone()) {
            why.push(format!("bal {bal} appears twice in the file"));
        }
        let kind = BalType::parse(&rec[1]);
        if kind.is_none() {
            why.push(format!(
                "type {:?} is not personnelle, organisationnelle or applicative",
                &rec[1]
            ));
        }
        let status = Status::parse(&rec[2]);
        if status.is_none() {
            why.push(format!(
                "status {:?} is not active, suspended or deleted",
                &rec[2]
            ));
        }
        let date = match rec[3].trim() {
            "" => None,
            d => match d.parse::<Date>() {
                Ok(d) if d.to_string().len() == 10 => Some(d),
                _ => {
                    why.push(format!("status_date {d:?} is not YYYY-MM-DD"));
                    None
                }
            },
        };
        if date.is_none() && rec[3].trim().is_empty() && status.is_some_and(|s| s != Status::Active)
        {
            why.push("status_date is required for a suspended or deleted BAL".into());
        }
        let test = yes_no(&rec[4], false);
        if test.is_none() {
            why.push(format!("test {:?} is not yes or no", &rec[4]));
        }
        let ej = finess(&rec[5])
            .map_err(|e| why.push(format!("finess_ej: {e}")))
            .ok()
            .flatten();
        let eg = finess(&rec[6])
            .map_err(|e| why.push(format!("finess_eg: {e}")))
            .ok()
            .flatten();
        let tracking = yes_no(&rec[7], true);
        if tracking.is_none() {
            why.push(format!("login_tracking {:?} is not yes or no", &rec[7]));
        }
        if why.is_empty() {
            rows.push(Row {
                line,
                bal,
                kind: kind.expect("checked"),
                status: status.expect("checked"),
                date,
                test: test.expect("checked"),
                finess_ej: ej,
                finess_eg: eg,
                login_tracking: tracking.expect("checked"),
            });
        } else {
            for w in why {
                problems.push(format!("line {line}: {w}"));
            }
        }
    }
    if first {
        problems.push("empty file: the header line is required".into());
    }
    if problems.is_empty() {
        Ok(rows)
    } else {
        Err(problems)
    }
}

/// What applying a row does to the registry.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    Added,
    Updated,
    Unchanged,
}

/// Merge a row into the existing mailbox (or a new one), recorded on `today`:
/// - a first registration keeps its date (none: "exists since an unknown
///   date", never a proof of creation);
/// - a status *change* without a date takes effect `today`; the current
///   status again (with or without a date) changes nothing;
/// - a date after `today` is refused.
///
/// # Errors
/// The refusal, for the caller to report.
pub fn merge(old: Option<&Mailbox>, r: &Row, today: Date) -> Result<(Mailbox, Change), String> {
    if let Some(d) = r.date.filter(|d| *d > today) {
        return Err(format!(
            "{}: status_date {d} is in the future (today is {today}): record a change on the day it happens",
            r.bal
        ));
    }
    match old {
        None => Ok((
            Mailbox {
                bal: r.bal.clone(),
                kind: r.kind,
                test: r.test,
                finess_ej: r.finess_ej.clone(),
                finess_eg: r.finess_eg.clone(),
                login_tracking: r.login_tracking,
                history: vec![StatusChange {
                    status: r.status,
                    date: r.date,
                    recorded: Some(today),
                }],
            },
            Change::Added,
        )),
        Some(m) => {
            let mut n = m.clone();
            n.kind = r.kind;
            n.test = r.test;
            n.finess_ej = r.finess_ej.clone();
            n.finess_eg = r.finess_eg.clone();
            n.login_tracking = r.login_tracking;
            if n.status().map(|c| c.status) != Some(r.status) {
                n.record(StatusChange {
                    status: r.status,
                    date: Some(r.date.unwrap_or(today)),
                    recorded: Some(today),
                });
            }
            let c = if n == *m {
                Change::Unchanged
            } else {
                Change::Updated
            };
            Ok((n, c))
        }
    }
}

/// Months accepted by the ANS whose files `new` would change compared with
/// `old` (months whose cut-off is past are never changed: rebuilds read the
/// registry as recorded by then).
pub fn alters_accepted(
    cfg: &Config,
    reg: &RegistryStore,
    old: Option<&Mailbox>,
    new: &Mailbox,
    today: Date,
) -> Result<Vec<Month>, Error> {
    use mss_shared::indicators::membership::{created, excluded};
    let mut out = vec![];
    for m in reg.accepted_months()? {
        let cut = mss_shared::figures::cutoff(cfg, m, today);
        if cut < today {
            continue;
        }
        let view = |b: Option<&Mailbox>| {
            b.map(|b| {
                let b = b.as_recorded_by(today);
                (
                    excluded(b.test, &b.history, m).map(|e| e.kind),
                    created(&b.history),
                )
            })
        };
        let before = view(old);
        let after = view(Some(new));
        // An undated first registration claims nothing about past months.
        let undated_new = old.is_none() && new.history.first().is_some_and(|c| c.date.is_none());
        if before != after && !undated_new {
            out.push(m);
        }
    }
    Ok(out)
}

fn refuse_accepted(bal: &str, months: &[Month]) -> Error {
    let list: Vec<String> = months.iter().map(Month::to_string).collect();
    Error::Refused(format!(
        "{bal}: this change would alter the files of {} already accepted by the ANS; record it with its real date only if those figures were wrong, with --force",
        list.join(", ")
    ))
}

fn today(cfg: &Config) -> Date {
    jiff::Timestamp::now().to_zoned(cfg.tz()).date()
}

/// `mss-admin mailbox import FILE [--domain D] [--replace] [--dry-run]`.
pub fn import(
    config: &Path,
    file: &Path,
    domain: Option<&str>,
    replace: bool,
    dry_run: bool,
    force: bool,
) -> Result<i32, Error> {
    let cfg = Config::load(config)?;
    if replace && domain.is_none() {
        return Err(Error::Usage(
            "--replace needs --domain: it deletes the BALs of that domain absent from the file"
                .into(),
        ));
    }
    let domain = domain.map(str::to_ascii_lowercase);
    if let Some(d) = &domain {
        if !cfg.operator.domains.contains(d) {
            return Err(Error::Usage(format!(
                "--domain {d}: not one of operator.domains"
            )));
        }
    }
    let f =
        std::fs::File::open(file).map_err(|e| Error::Usage(format!("{}: {e}", file.display())))?;
    let rows = match parse(
        std::io::BufReader::new(f),
        &cfg.operator.domains,
        domain.as_deref(),
    ) {
        Ok(r) => r,
        Err(problems) => {
            for p in &problems {
                eprintln!("{}: {p}", file.display());
            }
            return Err(Error::Usage(format!(
                "{}: {} problem(s); nothing was imported",
                file.display(),
                problems.len()
            )));
        }
    };
    let reg = mss_shared::central::registry::open_write(&cfg)?;
    let mut out = vec![];
    let (mut added, mut updated, mut unchanged) = (0, 0, 0);
    let in_file: BTreeSet<&str> = rows.iter().map(|r| r.bal.as_str()).collect();
    let day = today(&cfg);
    let mut refused = vec![];
    for r in &rows {
        let old = reg.get(&r.bal)?;
        let (m, c) = match merge(old.as_ref(), r, day) {
            Ok(x) => x,
            Err(why) => {
                refused.push(format!("line {}: {why}", r.line));
                continue;
            }
        };
        if c != Change::Unchanged && !force {
            let months = alters_accepted(&cfg, &reg, old.as_ref(), &m, day)?;
            if !months.is_empty() {
                refused.push(format!(
                    "line {}: {}",
                    r.line,
                    refuse_accepted(&r.bal, &months)
                ));
                continue;
            }
        }
        match c {
            Change::Added => added += 1,
            Change::Updated => updated += 1,
            Change::Unchanged => unchanged += 1,
        }
        if c != Change::Unchanged {
            if dry_run {
                println!(
                    "would {} {}",
                    if c == Change::Added { "add" } else { "update" },
                    m.bal
                );
            }
            out.push(m);
        }
    }
    if !refused.is_empty() {
        for p in &refused {
            eprintln!("{}: {p}", file.display());
        }
        return Err(Error::Refused(format!(
            "{}: {} change(s) refused; nothing was imported",
            file.display(),
            refused.len()
        )));
    }
    let mut deleted = 0;
    if replace {
        let d = domain.as_deref().expect("checked");
        for mut m in reg.list(Some(d))? {
            if in_file.contains(m.bal.as_str())
                || m.status().is_some_and(|c| c.status == Status::Deleted)
            {
                continue;
            }
            println!(
                "{} {} (absent from the file): deleted on {day}",
                if dry_run { "would delete" } else { "deleting" },
                m.bal
            );
            m.record(StatusChange {
                status: Status::Deleted,
                date: Some(day),
                recorded: Some(day),
            });
            deleted += 1;
            out.push(m);
        }
    }
    if !dry_run {
        reg.put_all(&out)?;
        reg.commit()?;
    }
    println!(
        "{}{added} added, {updated} updated, {unchanged} unchanged, {deleted} deleted",
        if dry_run {
            "dry run, nothing changed: "
        } else {
            ""
        }
    );
    Ok(exit::OK)
}

/// Options of `mailbox add` / `mailbox set`.
#[derive(Debug, Default)]
pub struct Edit {
    pub kind: Option<String>,
    pub status: Option<String>,
    pub date: Option<String>,
    pub test: Option<bool>,
    pub login_tracking: Option<bool>,
    pub finess_ej: Option<String>,
    pub finess_eg: Option<String>,
    /// Record a change that alters a month already accepted by the ANS.
    pub force: bool,
}

fn edit_row(cfg: &Config, bal: &str, e: &Edit, base: Option<&Mailbox>) -> Result<Row, Error> {
    let yn = |b: bool| if b { "yes" } else { "no" };
    let kind = e
        .kind
        .clone()
        .or(base.map(|m| format!("{:?}", m.kind).to_lowercase()))
        .unwrap_or_default();
    let status = e
        .status
        .clone()
        .or(base.and_then(|m| m.status().map(|c| c.status.as_str().to_string())))
        .unwrap_or_else(|| "active".into());
    let date = match (&e.date, &e.status) {
        (Some(d), _) => d.clone(),
        (None, Some(s)) if s != "active" => {
            return Err(Error::Usage(
                "--status suspended|deleted needs --date YYYY-MM-DD".into(),
            ))
        }
        // No date: a change takes effect today (see [`merge`]); the same
        // status is no change at all.
        _ => String::new(),
    };
    let line = [
        bal.to_string(),
        kind,
        status,
        date,
        yn(e.test.or(base.map(|m| m.test)).unwrap_or(false)).into(),
        e.finess_ej
            .clone()
            .or(base.and_then(|m| m.finess_ej.clone()))
            .unwrap_or_default(),
        e.finess_eg
            .clone()
            .or(base.and_then(|m| m.finess_eg.clone()))
            .unwrap_or_default(),
        yn(e.login_tracking
            .or(base.map(|m| m.login_tracking))
            .unwrap_or(true))
        .into(),
    ]
    .join(";");
    let text = format!("{}\n{line}\n", HEADER.join(";"));
    match parse(text.as_bytes(), &cfg.operator.domains, None) {
        Ok(mut r) => Ok(r.remove(0)),
        Err(p) => Err(Error::Usage(p.join("; ").replace("line 2: ", ""))),
    }
}

/// `mss-admin mailbox add BAL …`.
pub fn add(config: &Path, bal: &str, e: &Edit) -> Result<i32, Error> {
    let cfg = Config::load(config)?;
    let reg = mss_shared::central::registry::open_write(&cfg)?;
    let bal = normalize_address(bal);
    if reg.get(&bal)?.is_some() {
        return Err(Error::Usage(format!(
            "{bal} is already registered: use `mss-admin mailbox set`"
        )));
    }
    if e.kind.is_none() {
        return Err(Error::Usage(
            "--type personnelle|organisationnelle|applicative is required".into(),
        ));
    }
    let r = edit_row(&cfg, &bal, e, None)?;
    let day = today(&cfg);
    let (m, _) = merge(None, &r, day).map_err(Error::Refused)?;
    if !e.force {
        let months = alters_accepted(&cfg, &reg, None, &m, day)?;
        if !months.is_empty() {
            return Err(refuse_accepted(&bal, &months));
        }
    }
    reg.put_all(&[m])?;
    reg.commit()?;
    println!("added {bal}");
    Ok(exit::OK)
}

/// `mss-admin mailbox set BAL …`.
pub fn set(config: &Path, bal: &str, e: &Edit) -> Result<i32, Error> {
    let cfg = Config::load(config)?;
    let reg = mss_shared::central::registry::open_write(&cfg)?;
    let bal = normalize_address(bal);
    let Some(old) = reg.get(&bal)? else {
        return Err(Error::Usage(format!(
            "{bal} is not registered: use `mss-admin mailbox add`"
        )));
    };
    let r = edit_row(&cfg, &bal, e, Some(&old))?;
    let day = today(&cfg);
    let (mut m, _) = merge(Some(&old), &r, day).map_err(Error::Refused)?;
    // An explicit dated status is recorded even if it repeats the status (a new date).
    if e.status.is_some()
        && e.date.is_some()
        && m.status().map(|c| (c.status, c.date)) != Some((r.status, r.date))
    {
        m.record(StatusChange {
            status: r.status,
            date: r.date,
            recorded: Some(day),
        });
    }
    if m != old && !e.force {
        let months = alters_accepted(&cfg, &reg, Some(&old), &m, day)?;
        if !months.is_empty() {
            return Err(refuse_accepted(&bal, &months));
        }
    }
    if m == old {
        println!("{bal}: unchanged");
    } else {
        reg.put_all(&[m])?;
        reg.commit()?;
        println!("updated {bal}");
    }
    Ok(exit::OK)
}
