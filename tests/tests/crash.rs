//! Crash consistency: a steady SMTP load while `mss-sidecar` is killed with
//! SIGKILL and restarted several times, through the proxy and through the
//! milter, then every message is checked against what the client saw and
//! what Postfix queued (its log's `message-id=<…>` lines).
//!
//! Truth is the next hop's acceptance:
//! - proxy: a client 2xx ⇒ all the message's rows, once; a row ⇒ Postfix
//!   queued the message (the only window where a client got no 2xx but a row
//!   exists is a kill between the capture commit and the relay of the 250:
//!   the message *was* accepted and will be delivered, so the row is true);
//! - milter: a row ⇒ Postfix queued it, rows exactly once; messages Postfix
//!   accepted while the milter was down have no row (fail-open, documented),
//!   and Postfix logged the milter failure for them.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mss_tests::guard::{signal, wait_within, Guard};
use mss_tests::postfix::{Postfix, PostfixBuilder};
use mss_tests::sidecar::{bin, config_text, milter_config_text, rows, wait_port, DOMAIN};

fn spawn(cfg: &Path) -> Child {
    Command::new(bin("mss-sidecar"))
        .arg("--config")
        .arg(cfg)
        .env("MSS_LOG", "warn")
        .stderr(if std::env::var("CRASH_DEBUG").is_ok() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .unwrap()
}

/// SIGTERM (a clean stop) and a bounded wait; the guard kills what is left.
fn term(child: Option<Guard>) {
    if let Some(mut g) = child {
        signal(g.id() as i64, "TERM");
        let _ = wait_within(&mut g.0, Duration::from_secs(15));
    }
}

/// Send one message with two recipients; whether the final reply was 2xx.
fn one(addr: &str, id: usize) -> bool {
    let Ok(s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut r = BufReader::new(match s.try_clone() {
        Ok(c) => c,
        Err(_) => return false,
    });
    let mut w = s;
    let mut reply = || -> Option<String> {
        let mut all = String::new();
        loop {
            let mut l = String::new();
            if r.read_line(&mut l).ok()? == 0 {
                return None;
            }
            all.push_str(&l);
            if l.as_bytes().get(3) != Some(&b'-') {
                return Some(all);
            }
        }
    };
    let mut step = |cmd: &str, want: char| -> Option<()> {
        if !cmd.is_empty() {
            w.write_all(cmd.as_bytes()).ok()?;
        }
        reply().filter(|r| r.starts_with(want)).map(|_| ())
    };
    (|| {
        step("", '2')?;
        step("EHLO crash\r\n", '2')?;
        step(&format!("MAIL FROM:<dr.a@{DOMAIN}>\r\n"), '2')?;
        step("RCPT TO:<one@ext.test>\r\n", '2')?;
        step("RCPT TO:<two@ext.test>\r\n", '2')?;
        step("DATA\r\n", '3')?;
        step(
            &format!("From: <dr.a@{DOMAIN}>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0100\r\nMessage-ID: <crash-{id}@t>\r\nSubject: {id}\r\n\r\nbody {id}\r\n.\r\n"),
            '2',
        )?;
        step("QUIT\r\n", '2');
        Some(())
    })()
    .is_some()
}

/// Load from a thread while the main thread kills and restarts the sidecar.
fn run(addr: &str, cfg: &Path, kills: usize) -> (Vec<bool>, usize) {
    let mut child = Some(Guard(spawn(cfg)));
    wait_port(addr);
    let stop = Arc::new(AtomicBool::new(false));
    let (a, st) = (addr.to_string(), stop.clone());
    let load = std::thread::spawn(move || {
        let mut ok = vec![];
        while !st.load(Ordering::Relaxed) || ok.len() < 60 {
            ok.push(one(&a, ok.len()));
            if !ok.last().copied().unwrap_or(false) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        ok
    });
    for _ in 0..kills {
        std::thread::sleep(Duration::from_millis(700));
        drop(child.take()); // SIGKILL, bounded wait
        std::thread::sleep(Duration::from_millis(200));
        child = Some(Guard(spawn(cfg)));
        wait_port(addr);
    }
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::Relaxed);
    let ok = load.join().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    term(child);
    (ok, kills)
}

fn rows_per_message(dir: &Path) -> BTreeMap<usize, Vec<String>> {
    let mut m: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for r in rows(dir) {
        let id: usize = r
            .message_id
            .as_deref()
            .and_then(|s| s.strip_prefix("crash-"))
            .and_then(|s| s.strip_suffix("@t"))
            .and_then(|s| s.parse().ok())
            .expect("our Message-ID");
        m.entry(id).or_default().push(r.recipient);
    }
    m
}

fn queued(pf: &Postfix, id: usize) -> bool {
    pf.log().contains(&format!("message-id=<crash-{id}@t>"))
}

#[test]
fn proxy_kill_9_loses_no_acknowledged_row_and_invents_none() {
    let pf = PostfixBuilder::new().start().expect("postfix");
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", Postfix::free_port());
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, config_text(dir.path(), &listen, &pf.addr(), "")).unwrap();
    let (ok, _) = run(&listen, &cfg, 3);
    std::thread::sleep(Duration::from_secs(1));
    let got = rows_per_message(dir.path());
    let acked = ok.iter().filter(|o| **o).count();
    assert!(acked >= 40, "load too small: {acked} of {}", ok.len());
    assert!(
        ok.iter().any(|o| !o),
        "no session was cut: the kills missed"
    );
    for (id, ok) in ok.iter().enumerate() {
        let rows = got.get(&id).cloned().unwrap_or_default();
        if *ok {
            let mut r = rows.clone();
            r.sort();
            assert_eq!(
                r,
                vec!["one@ext.test", "two@ext.test"],
                "message {id} got 250 but rows {rows:?}"
            );
        } else if !rows.is_empty() {
            assert!(
                queued(&pf, id),
                "message {id}: rows {rows:?} but Postfix never queued it"
            );
            assert_eq!(rows.len(), 2, "message {id}: partial rows {rows:?}");
        }
    }
}

#[test]
fn milter_kill_9_invents_no_row_and_misses_only_what_postfix_accepted_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = Postfix::free_port();
    let milter = format!("127.0.0.1:{port}");
    let pf = PostfixBuilder::new()
        .main_cf(&format!("smtpd_milters = inet:{milter}"))
        .main_cf("milter_default_action = accept")
        .main_cf("milter_connect_timeout = 2s")
        .start()
        .expect("postfix");
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, milter_config_text(dir.path(), &milter)).unwrap();
    // The load goes to Postfix; the kills hit the milter behind it.
    let mut child = Some(Guard(spawn(&cfg)));
    wait_port(&milter);
    let stop = Arc::new(AtomicBool::new(false));
    let (a, st) = (pf.addr(), stop.clone());
    let load = std::thread::spawn(move || {
        let mut ok = vec![];
        while !st.load(Ordering::Relaxed) || ok.len() < 60 {
            ok.push(one(&a, ok.len()));
        }
        ok
    });
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        drop(child.take()); // SIGKILL, bounded wait
        std::thread::sleep(Duration::from_millis(300));
        child = Some(Guard(spawn(&cfg)));
        wait_port(&milter);
    }
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::Relaxed);
    let ok = load.join().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    term(child);

    let got = rows_per_message(dir.path());
    assert!(
        ok.iter().all(|o| *o),
        "fail-open: Postfix accepts every message"
    );
    let bypassed = milter_bypassed(&pf.log());
    let mut missing = 0;
    for id in 0..ok.len() {
        let rows = got.get(&id).cloned().unwrap_or_default();
        assert!(queued(&pf, id), "message {id} acknowledged but not queued?");
        match rows.len() {
            2 => {}
            0 => {
                missing += 1;
                assert!(
                    bypassed.contains(&id),
                    "message {id} has no row although Postfix logged no milter failure for it"
                );
            }
            n => panic!("message {id}: {n} rows {rows:?}"),
        }
    }
    // Capture resumed after every restart: rows well after the last kill.
    assert!(
        got.keys().any(|k| *k > ok.len() * 3 / 4),
        "no capture after the last restart: {:?}",
        got.keys().collect::<Vec<_>>()
    );
    eprintln!(
        "{} messages, {missing} accepted by Postfix while the milter was down (no row, fail-open)",
        ok.len()
    );
}

/// Messages (our ids) that Postfix handled without a working milter, from
/// its log: sessions whose smtpd could not reach the milter, and messages
/// whose cleanup lost it mid-content.
fn milter_bypassed(log: &str) -> std::collections::HashSet<usize> {
    use std::collections::{HashMap, HashSet};
    let proc_of = |l: &str| -> Option<(String, String)> {
        let i = l.find("postfix/")?;
        let rest = &l[i + 8..];
        let j = rest.find(": ")?;
        let (name, pid) = rest[..j].split_once('[')?;
        Some((name.to_string(), pid.trim_end_matches(']').to_string()))
    };
    let qid_of = |l: &str| -> Option<String> {
        let i = l.find("]: ")?;
        let rest = &l[i + 3..];
        let q = rest.split(':').next()?;
        (q.len() >= 6 && q.chars().all(|c| c.is_ascii_alphanumeric())).then(|| q.to_string())
    };
    let mut smtpd_down: HashMap<String, bool> = HashMap::new();
    // The message an smtpd is working on (its `client=` line): with the
    // milter's no-reply options, a dead milter is noticed at RCPT, after
    // that line, instead of at MAIL before it.
    let mut smtpd_q: HashMap<String, String> = HashMap::new();
    let mut q_down: HashSet<String> = HashSet::new();
    let mut cleanup_last: HashMap<String, String> = HashMap::new();
    let mut cleanup_pending: HashSet<String> = HashSet::new();
    let mut msg_q: HashMap<usize, String> = HashMap::new();
    for l in log.lines() {
        let Some((name, pid)) = proc_of(l) else {
            continue;
        };
        let milter_warning = l.contains("warning:") && l.contains("ilter");
        if name.ends_with("smtpd") {
            if l.contains(": connect from ") {
                smtpd_down.insert(pid.clone(), false);
                smtpd_q.remove(&pid);
            } else if milter_warning {
                smtpd_down.insert(pid.clone(), true);
                if let Some(q) = smtpd_q.get(&pid) {
                    q_down.insert(q.clone());
                }
            } else if l.contains(": client=") {
                if let Some(q) = qid_of(l) {
                    if smtpd_down.get(&pid).copied().unwrap_or(false) {
                        q_down.insert(q.clone());
                    }
                    smtpd_q.insert(pid.clone(), q);
                }
            }
        } else if name == "cleanup" {
            if milter_warning {
                if let Some(q) = cleanup_last.get(&pid) {
                    q_down.insert(q.clone());
                }
                cleanup_pending.insert(pid.clone());
            } else if let Some(i) = l.find("message-id=<crash-") {
                let n: Option<usize> = l[i + 18..].split('@').next().and_then(|x| x.parse().ok());
                if let (Some(n), Some(q)) = (n, qid_of(l)) {
                    msg_q.insert(n, q.clone());
                    if cleanup_pending.remove(&pid) {
                        q_down.insert(q.clone());
                    }
                    cleanup_last.insert(pid.clone(), q);
                }
            }
        }
    }
    msg_q
        .into_iter()
        .filter(|(_, q)| q_down.contains(q))
        .map(|(n, _)| n)
        .collect()
}
