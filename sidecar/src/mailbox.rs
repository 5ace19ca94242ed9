//! `mss-admin mailbox …`: the registry of BALs (type, dated status history,
//! test flag, FINESS, login tracking) that the Connexions file and the
//! exclusions depend on.
//!
//! Import CSV (`;`, header row):
//! `bal;type;status;status_date;test;finess_ej;finess_eg;login_tracking`.
//! Every bad line is reported with its number; a file with any error changes
//! nothing (one atomic batch). Status changes are appended with their date,
//! never rewritten, so re-importing a file changes nothing and old months
//! export the same.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use jiff::civil::Date;
use serde::Serialize;

use mss_shared::config::{domain_of, Config};
use mss_shared::model::normalize_address;
use mss_shared::month::{format_csv_date, from_micros, Month};
use mss_shared::store::registry::{BalType, Mailbox, RegistryStore, Status, StatusChange};
use mss_shared::{exit, Error};

use crate::admin::SecondaryCapture;

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
    crate::events::valid_bal(a)
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

/// Merge a row into the existing mailbox (or a new one).
pub fn merge(old: Option<&Mailbox>, r: &Row) -> (Mailbox, Change) {
    let change = StatusChange {
        status: r.status,
        date: r.date,
    };
    match old {
        None => (
            Mailbox {
                bal: r.bal.clone(),
                kind: r.kind,
                test: r.test,
                finess_ej: r.finess_ej.clone(),
                finess_eg: r.finess_eg.clone(),
                login_tracking: r.login_tracking,
                history: vec![change],
            },
            Change::Added,
        ),
        Some(m) => {
            let mut n = m.clone();
            n.kind = r.kind;
            n.test = r.test;
            n.finess_ej = r.finess_ej.clone();
            n.finess_eg = r.finess_eg.clone();
            n.login_tracking = r.login_tracking;
            if n.status().map(|c| c.status) != Some(r.status) {
                n.record(change);
            }
            let c = if n == *m {
                Change::Unchanged
            } else {
                Change::Updated
            };
            (n, c)
        }
    }
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
    let reg = RegistryStore::open(&cfg.store.registry_path)?;
    let mut out = vec![];
    let (mut added, mut updated, mut unchanged) = (0, 0, 0);
    let in_file: BTreeSet<&str> = rows.iter().map(|r| r.bal.as_str()).collect();
    for r in &rows {
        let old = reg.get(&r.bal)?;
        let (m, c) = merge(old.as_ref(), r);
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
    let mut deleted = 0;
    if replace {
        let d = domain.as_deref().expect("checked");
        let day = today(&cfg);
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
            });
            deleted += 1;
            out.push(m);
        }
    }
    if !dry_run {
        reg.put_all(&out)?;
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
        _ => base
            .and_then(|m| m.status().and_then(|c| c.date.map(|d| d.to_string())))
            .unwrap_or_default(),
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
    let reg = RegistryStore::open(&cfg.store.registry_path)?;
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
    let (m, _) = merge(None, &r);
    reg.put_all(&[m])?;
    println!("added {bal}");
    Ok(exit::OK)
}

/// `mss-admin mailbox set BAL …`.
pub fn set(config: &Path, bal: &str, e: &Edit) -> Result<i32, Error> {
    let cfg = Config::load(config)?;
    let reg = RegistryStore::open(&cfg.store.registry_path)?;
    let bal = normalize_address(bal);
    let Some(old) = reg.get(&bal)? else {
        return Err(Error::Usage(format!(
            "{bal} is not registered: use `mss-admin mailbox add`"
        )));
    };
    let r = edit_row(&cfg, &bal, e, Some(&old))?;
    let (mut m, _) = merge(Some(&old), &r);
    // An explicit dated status is recorded even if it repeats the status (a new date).
    if e.status.is_some()
        && e.date.is_some()
        && m.status().map(|c| (c.status, c.date)) != Some((r.status, r.date))
    {
        m.record(StatusChange {
            status: r.status,
            date: r.date,
        });
    }
    if m == old {
        println!("{bal}: unchanged");
    } else {
        reg.put_all(&[m])?;
        println!("updated {bal}");
    }
    Ok(exit::OK)
}

#[derive(Serialize)]
struct ListItem<'a> {
    bal: &'a str,
    #[serde(rename = "type")]
    kind: BalType,
    status: &'static str,
    status_date: Option<String>,
    test: bool,
    login_tracking: bool,
}

/// BALs seen sending or logging in on an operator domain over the
/// retention window but absent from the registry.
pub fn unregistered(cfg: &Config, reg: Option<&RegistryStore>) -> Result<BTreeSet<String>, Error> {
    let sec = SecondaryCapture::open(cfg)?;
    let known: HashSet<String> = match reg {
        Some(r) => r.list(None)?.into_iter().map(|m| m.bal).collect(),
        None => HashSet::new(),
    };
    let mut seen = BTreeSet::new();
    let mut m = Month::current(&cfg.tz());
    for _ in 0..cfg.store.retention_months.max(1) {
        seen.extend(sec.store.sent(m)?.into_keys());
        seen.extend(sec.store.logins(m)?.into_keys().map(|(b, _)| b));
        if let Some(r) = reg {
            seen.extend(r.imported_logins(m)?.into_keys());
        }
        m = m.prev();
    }
    Ok(seen
        .into_iter()
        .filter(|b| domain_of(b).is_some_and(|d| cfg.operator.domains.contains(&d)))
        .filter(|b| !known.contains(b))
        .collect())
}

/// `mss-admin mailbox list [--domain D] [--unregistered] [--json]`.
pub fn list(config: &Path, domain: Option<&str>, unreg: bool, json: bool) -> Result<i32, Error> {
    let cfg = Config::load(config)?;
    let reg = RegistryStore::open_read_only(&cfg.store.registry_path)?;
    if unreg {
        let u: Vec<String> = unregistered(&cfg, reg.as_ref())?
            .into_iter()
            .filter(|b| domain.is_none_or(|d| domain_of(b).as_deref() == Some(d)))
            .collect();
        if json {
            println!("{}", serde_json::to_string_pretty(&u).expect("json"));
        } else {
            for b in &u {
                println!("{b}");
            }
            eprintln!(
                "{} unregistered BAL(s): seen sending or logging in, absent from the registry",
                u.len()
            );
        }
        return Ok(exit::OK);
    }
    let boxes = match &reg {
        Some(r) => r.list(domain)?,
        None => vec![],
    };
    let items: Vec<ListItem> = boxes
        .iter()
        .map(|m| ListItem {
            bal: &m.bal,
            kind: m.kind,
            status: m.status().map_or("active", |c| c.status.as_str()),
            status_date: m.status().and_then(|c| c.date.map(|d| d.to_string())),
            test: m.test,
            login_tracking: m.login_tracking,
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&items).expect("json"));
    } else {
        for i in &items {
            println!(
                "{:<40} {:<17} {:<9} {:<10} {}{}",
                i.bal,
                format!("{:?}", i.kind).to_lowercase(),
                i.status,
                i.status_date.as_deref().unwrap_or("-"),
                if i.test { "test " } else { "" },
                if i.login_tracking {
                    ""
                } else {
                    "no-login-tracking"
                }
            );
        }
        eprintln!("{} mailbox(es)", items.len());
    }
    Ok(exit::OK)
}

#[derive(Serialize)]
struct Show {
    bal: String,
    registered: Option<Mailbox>,
    last_login: Option<String>,
    last_sent: Option<String>,
    last_received: Option<String>,
    month: String,
    in_files: bool,
    why_not: Option<String>,
}

/// `mss-admin mailbox show BAL [--json]`.
pub fn show(config: &Path, bal: &str, json: bool) -> Result<i32, Error> {
    let cfg = Config::load(config)?;
    let tz = cfg.tz();
    let bal = normalize_address(bal);
    let reg = RegistryStore::open_read_only(&cfg.store.registry_path)?;
    let m = match &reg {
        Some(r) => r.get(&bal)?,
        None => None,
    };
    let sec = SecondaryCapture::open(&cfg)?;
    let (mut login, mut sent, mut rcv) = (None::<i64>, None::<i64>, None::<i64>);
    let now = Month::current(&tz);
    let mut month = now;
    let max = |a: Option<i64>, b: Option<i64>| a.max(b);
    for _ in 0..cfg.store.retention_months.max(1) {
        let l = sec
            .store
            .logins(month)?
            .into_iter()
            .filter(|((b, _), _)| *b == bal)
            .map(|(_, (t, _))| t)
            .max();
        login = max(login, l);
        if let Some(r) = &reg {
            login = max(login, r.imported_logins(month)?.get(&bal).copied());
        }
        sent = max(sent, sec.store.sent(month)?.get(&bal).copied());
        rcv = max(rcv, sec.store.received(month)?.get(&bal).copied());
        month = month.prev();
    }
    let fmt = |t: Option<i64>| t.map(|t| format_csv_date(from_micros(t), &tz));
    let on_domain = domain_of(&bal).is_some_and(|d| cfg.operator.domains.contains(&d));
    let why_not = if !on_domain {
        Some(format!(
            "not on one of operator.domains ({})",
            cfg.operator.domains.join(", ")
        ))
    } else {
        match &m {
            Some(m) => m.excluded_from(now),
            None => None,
        }
    };
    let s = Show {
        bal: bal.clone(),
        registered: m,
        last_login: fmt(login),
        last_sent: fmt(sent),
        last_received: fmt(rcv),
        month: now.to_string(),
        in_files: why_not.is_none(),
        why_not,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&s).expect("json"));
        return Ok(exit::OK);
    }
    println!("{}", s.bal);
    match &s.registered {
        None => println!("  not in the registry (a discovered BAL if it sends or logs in)"),
        Some(m) => {
            println!(
                "  type {}{}{}",
                format!("{:?}", m.kind).to_lowercase(),
                if m.test { ", test" } else { "" },
                if m.login_tracking {
                    ""
                } else {
                    ", no login tracking"
                }
            );
            if m.finess_ej.is_some() || m.finess_eg.is_some() {
                println!(
                    "  FINESS EJ {} EG {}",
                    m.finess_ej.as_deref().unwrap_or("-"),
                    m.finess_eg.as_deref().unwrap_or("-")
                );
            }
            for c in &m.history {
                println!(
                    "  {} since {}",
                    c.status.as_str(),
                    c.date.map_or("(unknown)".to_string(), |d| d.to_string())
                );
            }
        }
    }
    println!(
        "  last login    {}",
        s.last_login.as_deref().unwrap_or("never")
    );
    println!(
        "  last sent     {}",
        s.last_sent.as_deref().unwrap_or("never")
    );
    println!(
        "  last received {}",
        s.last_received.as_deref().unwrap_or("never")
    );
    match &s.why_not {
        None => println!("  in the {} files", s.month),
        Some(w) => println!("  NOT in the {} files: {w}", s.month),
    }
    Ok(exit::OK)
}

/// Registry BALs of `domain` in the Connexions file of `month`, plus the
/// discovered ones (senders, logins) not excluded.
pub fn connexions_count(
    reg: Option<&RegistryStore>,
    domain: &str,
    month: Month,
    discovered: &BTreeSet<String>,
) -> Result<u64, Error> {
    let boxes: BTreeMap<String, Mailbox> = match reg {
        Some(r) => r
            .list(Some(domain))?
            .into_iter()
            .map(|m| (m.bal.clone(), m))
            .collect(),
        None => BTreeMap::new(),
    };
    let n = boxes.values().filter(|m| m.included_in(month)).count()
        + discovered
            .iter()
            .filter(|b| domain_of(b).as_deref() == Some(domain) && !boxes.contains_key(*b))
            .count();
    Ok(n as u64)
}
