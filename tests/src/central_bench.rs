//! `mss-bench central ROWS SIDECAR_BIN ADMIN_BIN`: a node's backlog of ROWS
//! records (one Echanges row each) shipped to a private PostgreSQL by the
//! real daemon, timed from its start to the last commit; against the
//! physical limit measured in the same run: `\copy … FROM … (FORMAT
//! binary)` of exactly the same rows into a table with the same primary key,
//! one transaction over the local socket.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mss_shared::model::{MessageRecord, Record};
use mss_shared::store::capture::{CaptureStore, Classifier};

use crate::config::TestConfig;
use crate::guard::Guard;
use crate::postgres::Pg;

fn write_config(dir: &Path, f: impl FnOnce(TestConfig) -> TestConfig) -> std::path::PathBuf {
    let p = dir.join("config.toml");
    std::fs::write(&p, f(TestConfig::new(dir)).text()).unwrap();
    p
}

/// A private PostgreSQL migrated by `admin` (the admin role), with the grants.
fn migrated(admin: &str) -> Pg {
    let pg = Pg::start();
    let adir = tempfile::tempdir().unwrap();
    let acfg = write_config(adir.path(), |t| {
        t.with(|c| c.central = Some(pg.central("mss_admin")))
    });
    let o = Command::new(admin)
        .arg("--config")
        .arg(&acfg)
        .args(["central", "migrate"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    pg.grant();
    pg
}

pub fn run(rows: u64, sidecar: &str, admin: &str) {
    let pg = migrated(admin);
    // The backlog: ROWS records in the node's outbox, written as the
    // capture writer would (one record = one message to one recipient).
    let ndir = tempfile::tempdir().unwrap();
    let events = format!("127.0.0.1:{}", crate::postfix::Postfix::free_port());
    let ncfg = write_config(ndir.path(), |t| {
        t.events(&events).with(|c| {
            c.operator.node = "bench".into();
            c.central = Some(pg.central("mss_node"));
        })
    });
    {
        let store = CaptureStore::open(&ndir.path().join("capture")).unwrap();
        store.enable_outbox().unwrap();
        let cls = Classifier::new(
            &[crate::sidecar::DOMAIN.to_string()],
            jiff::tz::TimeZone::UTC,
        );
        let t0 = jiff::Timestamp::now().as_microsecond() - 3_600_000_000;
        let mut batch = Vec::with_capacity(10_000);
        for i in 0..rows {
            batch.push(Record::Message(MessageRecord {
                mail_id: format!("bench.20261205000000.{i:010X}"),
                queue_id: Some(format!("{i:010X}")),
                message_id: Some(format!("<{i}@bench>")),
                sender: format!("u{}@{}", i % 5000, crate::sidecar::DOMAIN),
                recipients: vec![format!("r{}@ext.fr", i % 7000)],
                size: 1700 + i % 500,
                time_us: t0 + i as i64,
                frontend: "proxy".into(),
            }));
            if batch.len() == 10_000 {
                store.apply(&batch, &cls, false).unwrap();
                batch.clear();
            }
        }
        store.apply(&batch, &cls, false).unwrap();
        store.flush().unwrap();
        assert_eq!(store.outbox_len().unwrap(), rows);
    }
    let t = Instant::now();
    let _side = Guard(
        Command::new(sidecar)
            .arg("--config")
            .arg(&ncfg)
            .env("MSS_LOG", "warn")
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    loop {
        let seq: i64 = pg
            .psql_db("mss", "SELECT coalesce(max(shipped_seq), -1) FROM nodes")
            .parse()
            .unwrap();
        if seq + 1 >= rows as i64 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "shipped up to seq {seq} after 600 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let ship = t.elapsed().as_secs_f64();
    let n: u64 = pg
        .psql_db("mss", "SELECT count(*) FROM records")
        .parse()
        .unwrap();
    assert_eq!(n, rows, "exactly the backlog, once");
    // The reference: the same rows, binary COPY in one transaction.
    let file = pg.path().join("records.bin");
    pg.psql_db(
        "mss",
        &format!("\\copy records TO '{}' (FORMAT binary)", file.display()),
    );
    pg.psql_db("mss", "CREATE TABLE ref (LIKE records INCLUDING ALL)");
    let t = Instant::now();
    pg.psql_db(
        "mss",
        &format!("\\copy ref FROM '{}' (FORMAT binary)", file.display()),
    );
    let reference = t.elapsed().as_secs_f64();
    println!(
        "central shipping: {rows} rows in {ship:.2} s = {:.0} rows/s (from the daemon's start to the last commit)",
        rows as f64 / ship
    );
    println!(
        "reference (binary \\copy of the same rows, one transaction): {reference:.2} s = {:.0} rows/s",
        rows as f64 / reference
    );
    println!(
        "ratio (rows/s, shipper / reference): {:.2}",
        reference / ship
    );
    // Reading the merged month: every shipped record replayed into a private
    // store (what mss-export and mss-admin do with [central]).
    let edir = tempfile::tempdir().unwrap();
    let ecfg = write_config(edir.path(), |t| {
        t.with(|c| c.central = Some(pg.central("mss_export")))
    });
    let tz = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
    let month = mss_shared::month::Month::current(&tz);
    let t = Instant::now();
    let o = Command::new(admin)
        .arg("--config")
        .arg(&ecfg)
        .args(["counts", "--month", &month.to_string(), "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    println!(
        "mss-admin counts from the centre ({rows} records replayed): {:.2} s",
        t.elapsed().as_secs_f64()
    );
}

/// `mss-bench centralproxy ROUNDS MESSAGES SESSIONS SIDECAR_BIN ADMIN_BIN`:
/// the SMTP proxy with `[central]` (its shipper sending every record to a
/// private PostgreSQL meanwhile) against the same proxy without it, in
/// front of the same Postfix, rounds alternated; median msg/s ratio (goal
/// >= 0.95). Ends by checking PostgreSQL holds every record of the run.
pub fn proxy(rounds: u64, msgs: u64, sessions: u64, sidecar: &str, admin: &str) {
    use crate::bench::{median, smtp_source};
    let pg = migrated(admin);
    let back = crate::postfix::PostfixBuilder::new()
        .main_cf("default_process_limit = 200")
        .main_cf("smtpd_client_connection_count_limit = 0")
        .main_cf("smtpd_client_connection_rate_limit = 0")
        .main_cf("in_flow_delay = 0")
        .start()
        .expect("postfix");
    let start = |central: bool| {
        let dir = tempfile::tempdir().unwrap();
        let listen = format!("127.0.0.1:{}", crate::postfix::Postfix::free_port());
        let cfg = write_config(dir.path(), |t| {
            t.proxy(&listen, &back.addr()).with(|c| {
                c.operator.domains = vec!["ch-bench.mssante.fr".into()];
                c.operator.node = "bench".into();
                c.store.commit_timeout_ms = 1000;
                if let Some(p) = c.proxy.as_mut() {
                    p.max_sessions = 2000;
                }
                if central {
                    c.central = Some(pg.central("mss_node"));
                }
            })
        });
        let g = Guard(
            Command::new(sidecar)
                .arg("--config")
                .arg(&cfg)
                .env("MSS_LOG", "warn")
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap(),
        );
        let t = Instant::now();
        while std::net::TcpStream::connect(&listen).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "proxy never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        (dir, listen, g)
    };
    let (_pd, plain, _pg) = start(false);
    let (_cd, with, _cg) = start(true);
    let (mut p, mut c) = (vec![], vec![]);
    for r in 1..=rounds {
        p.push(smtp_source(&plain, msgs, sessions));
        c.push(smtp_source(&with, msgs, sessions));
        println!(
            "round {r}: proxy {:.0} msg/s, proxy with [central] {:.0} msg/s",
            p[p.len() - 1],
            c[c.len() - 1]
        );
    }
    let (mp, mc) = (median(&mut p), median(&mut c));
    println!(
        "median msg/s: without [central] {mp:.0}, with [central] {mc:.0}; ratio {:.3} (goal >= 0.95)",
        mc / mp
    );
    let want = rounds * msgs;
    let t = Instant::now();
    loop {
        let n: u64 = pg
            .psql_db("mss", "SELECT count(*) FROM records")
            .parse()
            .unwrap();
        if n == want {
            println!("PostgreSQL: {n} records = {rounds} x {msgs} (exact)");
            break;
        }
        assert!(
            n < want && t.elapsed() < Duration::from_secs(120),
            "PostgreSQL holds {n} records, expected {want}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
