//! `mss-admin central migrate | nodes | retire NODE | import-registry | purge`: the central
//! PostgreSQL of `[central]` (several nodes).

use std::path::Path;

use mss_shared::central::{self, nodes, schema};
use mss_shared::config::Config;
use mss_shared::month::{format_csv_date, from_micros};
use mss_shared::{exit, Error};

fn central_cfg(cfg: &Config) -> Result<&mss_shared::config::Central, Error> {
    cfg.central.as_ref().ok_or_else(|| {
        Error::Usage("no [central] section in the configuration: this is a single node".into())
    })
}

/// `mss-admin central migrate`: apply the embedded migrations.
pub fn migrate(config: &Path) -> Result<i32, Error> {
    let cfg = Config::load(config)?;
    let c = central_cfg(&cfg)?;
    let done = central::runtime()?.block_on(async {
        let mut client = central::connect(c).await?;
        schema::migrate(&mut client).await
    })?;
    if done.is_empty() {
        println!("schema already at version {}", schema::latest());
    } else {
        for v in done {
            println!("applied migration {v}");
        }
    }
    Ok(exit::OK)
}

/// `mss-admin central nodes [--json]`: each node, its lag, its last contact.
pub fn list(config: &Path, json: bool) -> Result<i32, Error> {
    let cfg = Config::load(config)?;
    let c = central_cfg(&cfg)?;
    let all = central::runtime()?.block_on(async {
        let client = central::connect(c).await?;
        schema::check(&client).await?;
        nodes::list(&client).await
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&all).expect("json"));
        return Ok(exit::OK);
    }
    let tz = cfg.tz();
    let now = jiff::Timestamp::now().as_microsecond();
    for n in &all {
        let until = if n.complete_until_us > 0 {
            format!(
                "complete until {} (lag {})",
                format_csv_date(from_micros(n.complete_until_us), &tz),
                human(now - n.complete_until_us)
            )
        } else {
            "nothing complete yet".into()
        };
        println!(
            "{}{}  id {}  shipped seq {}  {}  last contact {}",
            n.name,
            if n.retired { " (retired)" } else { "" },
            n.id,
            n.shipped_seq,
            until,
            n.last_contact.as_deref().unwrap_or("never")
        );
    }
    Ok(exit::OK)
}

/// A duration in µs for humans (`3 d 4 h`, `12 min`, `8 s`).
pub fn human(us: i64) -> String {
    let s = (us / 1_000_000).max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// `mss-admin central retire NODE`: a decommissioned node stops counting.
pub fn retire(config: &Path, name: &str) -> Result<i32, Error> {
    let cfg = Config::load(config)?;
    let c = central_cfg(&cfg)?;
    central::runtime()?.block_on(async {
        let client = central::connect(c).await?;
        schema::check(&client).await?;
        nodes::retire(&client, name).await
    })?;
    println!("node {name} retired: what it shipped stays, it no longer counts for completeness");
    Ok(exit::OK)
}

/// `mss-admin central import-registry`: this host's registry store into
/// PostgreSQL, once.
pub fn import_registry(config: &Path) -> Result<i32, Error> {
    let cfg = Config::load(config)?;
    let n = mss_shared::central::registry::import(&cfg)?;
    println!(
        "{n} registry entries moved to the central registry; {} is no longer read while [central] is set",
        cfg.store.registry_path.display()
    );
    Ok(exit::OK)
}

/// `mss-admin central purge`: retention centrally (admin role).
pub fn purge(config: &Path) -> Result<i32, Error> {
    let cfg = Config::load(config)?;
    let c = central_cfg(&cfg)?;
    let keep = mss_shared::figures::oldest_kept(&cfg, jiff::Timestamp::now());
    let cls = mss_shared::store::capture::Classifier::from_config(&cfg);
    let p = central::runtime()?.block_on(async {
        let mut client = central::connect(c).await?;
        schema::check(&client).await?;
        mss_shared::central::retention::purge(&mut client, &cls, keep).await
    })?;
    println!(
        "records before {keep} (store.retention_months = {}): {} purged, their last dates kept for {} BAL(s)",
        cfg.store.retention_months, p.records, p.summaries
    );
    Ok(exit::OK)
}
