//! `mss-admin` subcommands.

use std::path::Path;

use std::collections::BTreeSet;

use mss_shared::config::{domain_of, Config};
use mss_shared::month::Month;
use mss_shared::output::Counts;
use mss_shared::store::capture::{CaptureStore, Classifier};
use mss_shared::store::registry::RegistryStore;
use mss_shared::{exit, Error};

/// Open the capture store as a RocksDB secondary (works while the sidecar
/// runs). The secondary's own files live in a private temporary directory
/// removed on drop.
pub struct SecondaryCapture {
    pub store: CaptureStore,
    _dir: tempfile::TempDir,
}

impl SecondaryCapture {
    pub fn open(cfg: &Config) -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("mss-admin-secondary-")
            .tempdir()
            .map_err(|e| Error::Other(format!("temporary directory: {e}")))?;
        let store = CaptureStore::open_secondary(&cfg.store.capture_path, dir.path())?;
        Ok(SecondaryCapture { store, _dir: dir })
    }
}

/// `mss-admin counts --month YYYY-MM [--domain D] [--json]`.
pub fn counts(config: &Path, month: &str, domain: Option<&str>, json: bool) -> Result<i32, Error> {
    let cfg = Config::load(config)?;
    let month = Month::parse(month)?;
    let domain = domain.map(|d| d.to_ascii_lowercase());
    if let Some(d) = &domain {
        if !cfg.operator.domains.iter().any(|o| o == d) {
            return Err(Error::Usage(format!(
                "--domain {d}: not one of operator.domains ({})",
                cfg.operator.domains.join(", ")
            )));
        }
    }
    let sec = SecondaryCapture::open(&cfg)?;
    let mut counts = sec
        .store
        .counts(month, &Classifier::from_config(&cfg), domain.as_deref())?;
    // `mailboxes`: the rows of the month's Connexions file (registry BALs not
    // excluded + discovered senders and logins); `logins`: BALs with a login
    // in the month (captured or imported from logs).
    let reg = RegistryStore::open_read_only(&cfg.store.registry_path)?;
    let mut login_bals: BTreeSet<String> = sec
        .store
        .logins(month)?
        .into_keys()
        .map(|(b, _)| b)
        .collect();
    if let Some(r) = &reg {
        login_bals.extend(r.imported_logins(month)?.into_keys());
    }
    let mut discovered: BTreeSet<String> = sec.store.sent(month)?.into_keys().collect();
    discovered.extend(login_bals.iter().cloned());
    for d in &mut counts.domains {
        d.mailboxes =
            crate::mailbox::connexions_count(reg.as_ref(), &d.domain, month, &discovered)?;
        d.logins = login_bals
            .iter()
            .filter(|b| domain_of(b).as_deref() == Some(d.domain.as_str()))
            .count() as u64;
    }
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

/// `mss-admin listeblanche check ADDRESS…` / `stats`: the copy the sidecar uses.
pub fn listeblanche(config: &Path, check: Option<&[String]>) -> Result<i32, Error> {
    let cfg = Config::load(config)?;
    let Some(p) = &cfg.policy else {
        return Err(Error::Usage(
            "no [policy] section: set policy.liste_blanche in the configuration".into(),
        ));
    };
    let list = mss_shared::listeblanche::ListeBlanche::load(&p.liste_blanche).map_err(|e| {
        Error::Config(format!(
            "key `policy.liste_blanche`: {}: {e}",
            p.liste_blanche.display()
        ))
    })?;
    match check {
        Some(addrs) => {
            let mut outside = 0;
            for a in addrs {
                let d = domain_of(a).unwrap_or_else(|| a.to_ascii_lowercase());
                let verdict = if cfg.operator.domains.contains(&d) {
                    "inside (operator domain)"
                } else if p.allow.contains(&d) {
                    "inside (policy.allow)"
                } else if list.contains(&d) {
                    "inside (liste blanche)"
                } else {
                    outside += 1;
                    "OUTSIDE the Espace de Confiance"
                };
                println!("{a}: {verdict}");
            }
            // Exit 1 when any address is outside: scripts can test it.
            Ok(if outside > 0 {
                exit::UNEXPECTED
            } else {
                exit::OK
            })
        }
        None => {
            let age = std::fs::metadata(&p.liste_blanche)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .map(|d| format!("{} day(s)", d.as_secs() / 86_400))
                .unwrap_or_else(|| "unknown".into());
            println!("file          {}", p.liste_blanche.display());
            println!(
                "domains       {} distinct ({} entries)",
                list.len(),
                list.entries
            );
            println!("operators     {}", list.operators);
            println!(
                "generated     {}",
                list.generated.as_deref().unwrap_or("unknown")
            );
            println!("copy age      {age} (file modification time)");
            println!(
                "complete      {}",
                if list.complete {
                    "yes"
                } else {
                    "no: the document ends early (entries before the cut are used)"
                }
            );
            println!(
                "mode          {}",
                match p.mode {
                    mss_shared::config::PolicyMode::Enforce => "enforce",
                    mss_shared::config::PolicyMode::Report => "report",
                }
            );
            Ok(exit::OK)
        }
    }
}
