//! `mss-admin report` (a structure's monthly report, through
//! [`mss_shared::report`]) and `mss-admin structure` (the registry's
//! per-structure name and contact).

use std::path::{Path, PathBuf};

use mss_shared::config::Config;
use mss_shared::indicators::admission;
use mss_shared::month::Month;
use mss_shared::report::structure::{self, check_finess, Contact};
use mss_shared::report::text::Lang;
use mss_shared::report::write::{write, Format};
use mss_shared::report::{build, Select};
use mss_shared::{exit, Error};

use crate::admin::SecondaryCapture;

/// What `mss-admin report` was asked for.
pub struct ReportArgs {
    pub month: String,
    pub structure: Option<String>,
    pub domain: Option<String>,
    pub all: bool,
    pub out: PathBuf,
    pub format: String,
    pub lang: String,
}

fn select(cfg: &Config, a: &ReportArgs) -> Result<Select, Error> {
    match (&a.structure, &a.domain, a.all) {
        (Some(f), None, false) => {
            check_finess(f)?;
            Ok(Select::Structure(f.clone()))
        }
        (None, Some(d), false) => {
            let d = d.to_ascii_lowercase();
            if !cfg.operator.domains.contains(&d) {
                return Err(Error::Usage(format!(
                    "--domain {d}: not one of operator.domains ({})",
                    cfg.operator.domains.join(", ")
                )));
            }
            Ok(Select::Domain(d))
        }
        (None, None, true) => Ok(Select::All),
        _ => Err(Error::Usage(
            "give exactly one of --structure FINESS, --domain D or --all".into(),
        )),
    }
}

/// `mss-admin report --month YYYY-MM (--structure F | --domain D | --all)
/// --out DIR [--format html,json,csv] [--lang fr|en]`.
pub fn report(config: &Path, a: &ReportArgs) -> Result<i32, Error> {
    let cfg = Config::load(config)?;
    let month = Month::parse(&a.month)?;
    let sel = select(&cfg, a)?;
    let formats = Format::parse_list(&a.format)?;
    let lang = Lang::parse(&a.lang)
        .ok_or_else(|| Error::Usage(format!("--lang {}: expected fr or en", a.lang)))?;
    let sec = SecondaryCapture::open(&cfg)?;
    let reg = mss_shared::central::registry::open_read(&cfg)?;
    let reports = build(
        &cfg,
        &sec.store,
        reg.as_deref(),
        month,
        jiff::Timestamp::now(),
        &sel,
    )?;
    if reports.is_empty() {
        return Err(Error::Usage(match sel {
            Select::Structure(f) => format!(
                "FINESS {f}: no BAL of the registry is attached to it, and none of its BALs sent mail or logged in during {month}"
            ),
            Select::Domain(d) => format!(
                "{d}: no BAL of this domain in the registry, and none sent mail or logged in during {month}"
            ),
            Select::All => format!("{month}: no BAL in the registry and no mail or login captured"),
        }));
    }
    for r in &reports {
        for p in write(r, &a.out, &formats, lang)? {
            println!("{}", p.display());
        }
    }
    eprintln!(
        "{month}: {} report(s) in {}",
        reports.len(),
        a.out.display()
    );
    Ok(exit::OK)
}

/// `mss-admin structure set FINESS [--name N] [--contact ADDRESS]`.
pub fn set(
    config: &Path,
    finess: &str,
    name: Option<&str>,
    contact: Option<&str>,
) -> Result<i32, Error> {
    let cfg = Config::load(config)?;
    check_finess(finess)?;
    if let Some(c) = contact {
        if !admission::is_address(c) {
            return Err(Error::Usage(format!("--contact {c:?}: not a mail address")));
        }
    }
    let reg = mss_shared::central::registry::open_write(&cfg)?;
    let mut cur = structure::contacts(Some(&reg))?
        .remove(finess)
        .unwrap_or_else(|| Contact {
            finess: finess.to_string(),
            ..Contact::default()
        });
    if let Some(n) = name {
        cur.name = (!n.is_empty()).then(|| n.to_string());
    }
    if let Some(c) = contact {
        cur.contact = Some(c.to_string());
    }
    structure::put(&reg, &cur)?;
    reg.commit()?;
    println!("{finess}: recorded");
    Ok(exit::OK)
}

/// `mss-admin structure list [--json]`.
pub fn list(config: &Path, json: bool) -> Result<i32, Error> {
    let cfg = Config::load(config)?;
    let reg = mss_shared::central::registry::open_read(&cfg)?;
    let all: Vec<Contact> = structure::contacts(reg.as_deref())?.into_values().collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&all).expect("json"));
    } else {
        for c in &all {
            println!(
                "{}  {:<40} {}",
                c.finess,
                c.name.as_deref().unwrap_or("-"),
                c.contact.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(exit::OK)
}
