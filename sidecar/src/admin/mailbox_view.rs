//! `mss-admin mailbox list` and `mailbox show`: reading the registry beside
//! what was captured (last dates through [`mss_shared::figures`]).

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use serde::Serialize;

use mss_shared::config::{domain_of, Config};
use mss_shared::figures::Context;
use mss_shared::model::normalize_address;
use mss_shared::month::{format_csv_date, from_micros, Month};
use mss_shared::store::registry::{BalType, Mailbox, RegistryStore};
use mss_shared::{exit, Error};

use crate::admin::SecondaryCapture;

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
    let reg = mss_shared::central::registry::open_read(&cfg)?;
    if unreg {
        let u: Vec<String> = unregistered(&cfg, reg.as_deref())?
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
    let reg = mss_shared::central::registry::open_read(&cfg)?;
    let m = match &reg {
        Some(r) => r.get(&bal)?,
        None => None,
    };
    let sec = SecondaryCapture::open(&cfg)?;
    let now = Month::current(&tz);
    let ctx = Context::load(
        &cfg,
        &sec.store,
        reg.as_deref(),
        now,
        jiff::Timestamp::now(),
    )?;
    let [login, sent, rcv] = ctx.last_of(&ctx.canonical(&bal));
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
