//! `mss-admin listeblanche check|stats`: the liste blanche copy of `[policy]`.

use std::path::Path;

use mss_shared::config::{domain_of, Config};
use mss_shared::{exit, Error};

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
