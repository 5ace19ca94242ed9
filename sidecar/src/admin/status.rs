//! `mss-admin status`: what an operator checks first.

use std::path::Path;

use mss_shared::config::Config;
use mss_shared::month::Month;
use mss_shared::{exit, Error};

use super::SecondaryCapture;

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

#[derive(serde::Serialize)]
struct Listener {
    name: String,
    address: String,
    listening: bool,
}

#[derive(serde::Serialize)]
struct Status {
    listeners: Vec<Listener>,
    capture_store_bytes: u64,
    registry_store_bytes: u64,
    last_captured_message: Option<String>,
    last_login: Option<String>,
    unregistered_bals: usize,
    registered_bals: usize,
    export_state: Vec<(String, serde_json::Value)>,
    /// `AAAAMM_quarantine.csv` files in `export.out_dir`: (file, rows).
    quarantined_rows: Vec<(String, u64)>,
    client_certificate_days_left: Option<i64>,
    problems: Vec<String>,
}

/// `mss-admin status [--json]`: what an operator checks first. Exit 1 when
/// something needs attention (nothing listening, certificate expiring within
/// 30 days, store unreadable).
pub fn status(config: &Path, json: bool) -> Result<i32, Error> {
    let cfg = Config::load(config)?;
    let tz = cfg.tz();
    let mut problems = vec![];
    let mut listeners = vec![];
    let tcp = |a: &str| {
        a.parse::<std::net::SocketAddr>().ok().is_some_and(|s| {
            std::net::TcpStream::connect_timeout(&s, std::time::Duration::from_secs(1)).is_ok()
        })
    };
    if let Some(p) = &cfg.proxy {
        listeners.push(Listener {
            name: "proxy".into(),
            address: p.listen.clone(),
            listening: tcp(&p.listen),
        });
    }
    if let Some(m) = &cfg.milter {
        let up = match mss_shared::config::ListenAddr::parse(&m.listen) {
            Some(mss_shared::config::ListenAddr::Tcp(a)) => tcp(&a.to_string()),
            Some(mss_shared::config::ListenAddr::Unix(p)) => {
                std::os::unix::net::UnixStream::connect(p).is_ok()
            }
            None => false,
        };
        listeners.push(Listener {
            name: "milter".into(),
            address: m.listen.clone(),
            listening: up,
        });
    }
    if let Some(e) = &cfg.events {
        if let Some(l) = &e.listen {
            listeners.push(Listener {
                name: "events".into(),
                address: l.clone(),
                listening: tcp(l),
            });
        }
        if let Some(p) = &e.dict_socket {
            listeners.push(Listener {
                name: "dict".into(),
                address: p.display().to_string(),
                listening: std::os::unix::net::UnixStream::connect(p).is_ok(),
            });
        }
    }
    if let Some(m) = &cfg.metrics {
        listeners.push(Listener {
            name: "metrics".into(),
            address: m.listen.clone(),
            listening: tcp(&m.listen),
        });
    }
    for l in &listeners {
        if !l.listening {
            problems.push(format!(
                "{} ({}) is not listening: is mss-sidecar running?",
                l.name, l.address
            ));
        }
    }
    let (mut last_msg, mut last_login) = (None::<i64>, None::<i64>);
    let mut unregistered = 0;
    match SecondaryCapture::open(&cfg) {
        Ok(sec) => {
            let now = Month::current(&tz);
            for m in [now, now.prev()] {
                last_msg = last_msg.max(sec.store.sent(m)?.into_values().max());
                last_login =
                    last_login.max(sec.store.logins(m)?.into_values().map(|(t, _)| t).max());
            }
        }
        Err(e) => problems.push(format!("capture store: {e}")),
    }
    let reg = mss_shared::central::registry::open_read(&cfg)?;
    if problems.iter().all(|p| !p.starts_with("capture store")) {
        unregistered = super::mailbox_view::unregistered(&cfg, reg.as_deref())?.len();
    }
    let registered = match &reg {
        Some(r) => r.list(None)?.len(),
        None => 0,
    };
    let export_state = match &reg {
        Some(r) => r.all_meta()?,
        None => vec![],
    };
    let mut quarantined_rows: Vec<(String, u64)> = std::fs::read_dir(&cfg.export.out_dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.ends_with("_quarantine.csv").then(|| {
                        let rows = std::fs::read_to_string(e.path())
                            .map_or(0, |t| t.lines().count().saturating_sub(1));
                        (name, rows as u64)
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    quarantined_rows.sort();
    let days = match cfg.sipil.as_ref().and_then(|s| s.client_cert.as_ref()) {
        Some(p) => match mss_shared::certificate::days_left(p) {
            Ok(d) => {
                if d < 30 {
                    problems.push(format!(
                        "client certificate {} expires in {d} day(s)",
                        p.display()
                    ));
                }
                Some(d)
            }
            Err(e) => {
                problems.push(e);
                None
            }
        },
        None => None,
    };
    let fmt = |t: Option<i64>| {
        t.map(|t| mss_shared::month::format_csv_date(mss_shared::month::from_micros(t), &tz))
    };
    let s = Status {
        listeners,
        capture_store_bytes: dir_size(&cfg.store.capture_path),
        registry_store_bytes: dir_size(&cfg.store.registry_path),
        last_captured_message: fmt(last_msg),
        last_login: fmt(last_login),
        unregistered_bals: unregistered,
        registered_bals: registered,
        export_state,
        quarantined_rows,
        client_certificate_days_left: days,
        problems,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&s).expect("json"));
    } else {
        for l in &s.listeners {
            println!(
                "{:<8} {:<32} {}",
                l.name,
                l.address,
                if l.listening {
                    "listening"
                } else {
                    "NOT LISTENING"
                }
            );
        }
        println!(
            "capture store      {} bytes ({})",
            s.capture_store_bytes,
            cfg.store.capture_path.display()
        );
        println!(
            "registry store     {} bytes ({})",
            s.registry_store_bytes,
            cfg.store.registry_path.display()
        );
        println!(
            "last message       {}",
            s.last_captured_message
                .as_deref()
                .unwrap_or("none this month or last")
        );
        println!(
            "last login         {}",
            s.last_login.as_deref().unwrap_or("none this month or last")
        );
        println!("registered BALs    {}", s.registered_bals);
        println!(
            "unregistered BALs  {} (mss-admin mailbox list --unregistered)",
            s.unregistered_bals
        );
        for (k, v) in &s.export_state {
            println!("export {k:<11} {v}");
        }
        for (f, n) in &s.quarantined_rows {
            println!("quarantined rows   {n} ({f}: rows the build could not write validly)");
        }
        if let Some(d) = s.client_certificate_days_left {
            println!("client cert        expires in {d} day(s)");
        }
        for p in &s.problems {
            println!("PROBLEM: {p}");
        }
    }
    Ok(if s.problems.is_empty() {
        exit::OK
    } else {
        exit::UNEXPECTED
    })
}
