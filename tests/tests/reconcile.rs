//! `mss-admin reconcile` against a real Postfix's `maillog_file`, with the
//! real `mss-sidecar` as its milter and the real `mss-admin` (support:
//! `mss_tests::maillog`).

use std::process::Command;
use std::time::Duration;

use mss_tests::config::TestConfig;
use mss_tests::daemon::Daemon;
use mss_tests::maillog::*;
use mss_tests::postfix::{Postfix, PostfixBuilder};
use mss_tests::sidecar::{bin, DOMAIN};

#[test]
fn clean_month_then_milter_down_through_smtpd_and_sendmail() {
    let port = Postfix::free_port();
    let dir = tempfile::tempdir().unwrap();
    let pf = postfix_with_milter(port);
    // The daemon marks its start and stop in this Postfix's log.
    let cfg_text = TestConfig::new(dir.path())
        .milter(&format!("127.0.0.1:{port}"))
        .with(|c| {
            c.operator.timezone = "UTC".into();
            c.service.mail_log_marks = true;
            c.service.postfix_config_dir = pf.conf.clone();
        })
        .text();
    let mut side = Daemon::start(dir.path(), &cfg_text, &format!("127.0.0.1:{port}"));
    let cfg = dir.path().join("config.toml");
    assert!(
        pf.wait_log("mss-sidecar[", Duration::from_secs(10)),
        "no started mark: {}",
        pf.log()
    );
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let month = now.strftime("%Y-%m").to_string();
    let day = now.strftime("%Y-%m-%d").to_string();
    let a = format!("dr.a@{DOMAIN}");
    let q1 = send(&pf, &a, &["x1@ext.test", "x2@ext.test"]);
    let q2 = send(&pf, &format!("dr.b+tag@{DOMAIN}"), &["x3@ext.test"]);
    // Inbound (not an operator sender): never a row, never missing.
    let q3 = send(&pf, "someone@ext.test", &[&format!("dr.a@{DOMAIN}")]);
    // sendmail(1) with the milter up: a matched pickup message, what
    // `--fill` estimates a pickup message's TAILLE from.
    let app = format!("dpi-app@{DOMAIN}");
    let out = pf
        .sendmail(&app, &["z0@ext.test"], "Subject: up\n\nbody while up\n")
        .unwrap();
    assert!(out.status.success());
    let q0 = queue_id_of(&pf, "z0@ext.test");
    for q in [&q1, &q2, &q3, &q0] {
        wait_removed(&pf, q);
    }
    wait_rows(&cfg, &month, 4);
    let log = dir.path().join("maillog.copy");
    std::fs::write(&log, pf.log()).unwrap();
    let lines = pf.log().lines().count() as u64;
    let (code, v, err) = reconcile(&cfg, &month, &log);
    let cov = &v["coverage"];
    assert_eq!(
        v,
        serde_json::json!({
            "month": month, "matched": 4, "filled": 0, "missing": [], "phantom": [],
            "by_domain": [{"domain": DOMAIN, "matched": 4, "filled": 0, "missing": 0, "phantom": 0,
                "days": [{"day": day, "matched": 4, "filled": 0, "missing": 0, "phantom": 0}]}],
            "coverage": {"files": 1, "lines": lines, "unreadable": 0,
                "first_line": cov["first_line"], "last_line": cov["last_line"],
                "gaps": [], "without_origin": 0, "rows_outside_logs": 0, "sidecar_down": []}
        }),
        "{err}\n{}",
        pf.log()
    );
    assert!(cov["first_line"].as_str().unwrap().starts_with(&day));
    assert_eq!(code, 0, "{err}");

    // The milter stops: Postfix passes mail (fail open) with no row.
    let _ = Command::new("kill").arg(side.pid().to_string()).status();
    let _ = side.child.wait();
    let q4 = send(&pf, &a, &["y1@ext.test", "y2@ext.test"]);
    let out = pf
        .sendmail(&app, &["y3@ext.test"], "Subject: s\n\nbody\n")
        .unwrap();
    assert!(out.status.success());
    wait_removed(&pf, &q4);
    let q5 = queue_id_of(&pf, "y3@ext.test");
    wait_removed(&pf, &q5);
    // The stop mark, as the log dates it.
    let stopping = pf
        .log()
        .lines()
        .find(|l| l.contains("mss-sidecar[") && l.contains(": stopping (SIGTERM)"))
        .map(|l| {
            let y = now.strftime("%Y").to_string();
            jiff::civil::DateTime::strptime("%Y %b %d %H:%M:%S", format!("{y} {}", &l[..15]))
                .unwrap()
                .strftime("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| panic!("no stopping mark: {}", pf.log()));
    assert!(pf.log().contains(": stopped\n"), "{}", pf.log());
    std::fs::write(&log, pf.log()).unwrap();
    let lines = pf.log().lines().count() as u64;
    let (code, v, err) = reconcile(&cfg, &month, &log);
    let t = |i: usize| v["missing"][i]["time"].clone();
    assert_eq!(
        v,
        serde_json::json!({
            "month": month, "matched": 4, "filled": 0,
            "missing": [
                {"queue_id": q4, "sender": a, "recipient": "y1@ext.test", "time": t(0), "reason": "milter_down"},
                {"queue_id": q4, "sender": a, "recipient": "y2@ext.test", "time": t(1), "reason": "milter_down"},
                {"queue_id": q5, "sender": app, "recipient": "y3@ext.test", "time": t(2), "reason": "milter_down"}
            ],
            "phantom": [],
            "by_domain": [{"domain": DOMAIN, "matched": 4, "filled": 0, "missing": 3, "phantom": 0,
                "days": [{"day": day, "matched": 4, "filled": 0, "missing": 3, "phantom": 0}]}],
            "coverage": {"files": 1, "lines": lines, "unreadable": 0,
                "first_line": v["coverage"]["first_line"], "last_line": v["coverage"]["last_line"],
                "gaps": [], "without_origin": 0, "rows_outside_logs": 0,
                "sidecar_down": [{"from": stopping, "to": null, "clean": true}]}
        }),
        "{err}\n{}",
        pf.log()
    );
    assert!(t(0).as_str().unwrap().starts_with(&day));
    assert_eq!(code, 12, "{err}");

    // The same log rotated: the first half gzipped (`postfix logrotate`),
    // the second half as a syslog file in RFC 3339 form with a host name.
    let text = pf.log();
    let all: Vec<&str> = text.lines().collect();
    let (first, second) = all.split_at(all.len() / 2);
    let gz = dir.path().join("maillog.20261201-000000.gz");
    let mut e = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    use std::io::Write;
    e.write_all((first.join("\n") + "\n").as_bytes()).unwrap();
    e.finish().unwrap();
    let year = now.strftime("%Y").to_string();
    let syslog: Vec<String> = second
        .iter()
        .map(|l| {
            let (date, rest) = l.split_at(15);
            let dt = jiff::civil::DateTime::strptime("%Y %b %d %H:%M:%S", format!("{year} {date}"))
                .unwrap();
            let rest = rest.trim_start();
            // maillog_file lines already carry a host name.
            let host = if rest.split(' ').next().is_some_and(|w| w.ends_with(':')) {
                "mx "
            } else {
                ""
            };
            format!(
                "{}+00:00 {host}{rest}",
                dt.strftime("%Y-%m-%dT%H:%M:%S%.6f")
            )
        })
        .collect();
    let plain = dir.path().join("syslog");
    std::fs::write(&plain, syslog.join("\n") + "\n").unwrap();
    let o = Command::new(bin("mss-admin"))
        .arg("--config")
        .arg(&cfg)
        .args(["reconcile", "--month", &month, "--json", "--log"])
        .arg(&gz)
        .arg(&plain)
        .output()
        .unwrap();
    let mut again: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(again["coverage"]["files"], 2);
    again["coverage"]["files"] = 1.into();
    assert_eq!(again, v, "{}", syslog.join("\n"));
    assert_eq!(o.status.code(), Some(12));

    // --fill: rows for the milter_down recipients, and only them.
    let (code, after, err) = reconcile_with(&cfg, &month, &[&log], &["--fill"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("3 row(s) rebuilt from the log for milter_down gaps (0 already there)"),
        "{err}"
    );
    assert_eq!(
        after,
        serde_json::json!({
            "month": month, "matched": 4, "filled": 3, "missing": [], "phantom": [],
            "by_domain": [{"domain": DOMAIN, "matched": 4, "filled": 3, "missing": 0, "phantom": 0,
                "days": [{"day": day, "matched": 4, "filled": 3, "missing": 0, "phantom": 0}]}],
            "coverage": v["coverage"]
        })
    );
    // A second --fill adds nothing.
    let (code, twice, err) = reconcile_with(&cfg, &month, &[&log], &["--fill"]);
    assert_eq!((code, &twice), (0, &after), "{err}");
    assert!(err.contains("0 row(s) rebuilt"), "{err}");
    // --node: another node's view of this store has none of these rows.
    let (code, other, _) = reconcile_with(&cfg, &month, &[&log], &["--node", "t2"]);
    assert_eq!(code, 12);
    assert_eq!(
        (other["matched"].as_u64(), other["filled"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(other["missing"].as_array().unwrap().len(), 7);
    let (code, mine, _) = reconcile_with(&cfg, &month, &[&log], &["--node", "t1"]);
    assert_eq!((code, &mine), (0, &after));

    // counts says how many rows were filled.
    let d = domain_counts(&cfg, &month);
    assert_eq!(
        (
            d["messages"].as_u64(),
            d["rows"].as_u64(),
            d["filled_rows"].as_u64()
        ),
        (Some(5), Some(7), Some(3)),
        "{d}"
    );

    // The month's file: exactly every accepted recipient, the filled ones
    // with TAILLE = size= minus the median (size= − TAILLE) of the matched
    // messages of the same origin (smtpd: q1, q2; pickup: q0).
    let text = pf.log();
    let logged_size = |q: &str| -> i64 {
        let l = text
            .lines()
            .find(|l| l.contains(&format!("{q}: from=<")) && l.contains("size="))
            .unwrap();
        l.split("size=")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let captured = mss_tests::sidecar::rows(dir.path());
    assert_eq!(captured.len(), 4);
    let taille = |q: &str| {
        captured
            .iter()
            .find(|r| r.queue_id.as_deref() == Some(q))
            .unwrap()
            .size as i64
    };
    let smtpd = (logged_size(&q1) - taille(&q1)).min(logged_size(&q2) - taille(&q2));
    let pickup = logged_size(&q0) - taille(&q0);
    let fmt = |us: i64| {
        mss_shared::month::format_csv_date(
            mss_shared::month::from_micros(us),
            &jiff::tz::TimeZone::UTC,
        )
    };
    let mut want: Vec<(i64, String, String)> = captured
        .iter()
        .map(|r| {
            let line = format!(
                "{};{};{};{};{}\r\n",
                r.mail_id,
                r.sender,
                r.recipient,
                fmt(r.time_us),
                r.size
            );
            (r.time_us, r.mail_id.clone(), line)
        })
        .collect();
    for (i, (q, sender, rcpt, over)) in [
        (&q4, &a, "y1@ext.test", smtpd),
        (&q4, &a, "y2@ext.test", smtpd),
        (&q5, &app, "y3@ext.test", pickup),
    ]
    .into_iter()
    .enumerate()
    {
        let time = t(i).as_str().unwrap().to_string();
        let us = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", &time)
            .unwrap()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .unwrap()
            .timestamp()
            .as_microsecond();
        let id = format!("t1.{}.{q}", time.replace(['-', ' ', ':'], ""));
        let line = format!("{id};{sender};{rcpt};{time};{}\r\n", logged_size(q) - over);
        want.push((us, id, line));
    }
    want.sort();
    let want: String = want.into_iter().map(|(_, _, l)| l).collect();
    let built = mss_tests::files::build(&cfg, &month, &[]);
    assert_eq!(built.code, 0, "{}", built.stderr);
    let csv = built.echanges;
    assert_eq!(
        csv,
        format!("MAIL_ID;EXPEDITEUR;DESTINATAIRE;DATE;TAILLE\r\n{want}")
    );
}

#[test]
fn deferred_then_sent_and_requeued_count_once() {
    let port = Postfix::free_port();
    let dir = tempfile::tempdir().unwrap();
    // later.test goes through a transport Postfix defers until a flush.
    let pf = PostfixBuilder::new()
        .main_cf(&format!("smtpd_milters = inet:127.0.0.1:{port}"))
        .main_cf("milter_default_action = accept")
        .main_cf("transport_maps = hash:$config_directory/transport")
        .main_cf("defer_transports = later")
        .table("transport", "later.test later:\n", false)
        .master_cf("later unix - n n - - discard")
        .start()
        .expect("postfix");
    let cfg_text = TestConfig::new(dir.path())
        .milter(&format!("127.0.0.1:{port}"))
        .with(|c| c.operator.timezone = "UTC".into())
        .text();
    let side = Daemon::start(dir.path(), &cfg_text, &format!("127.0.0.1:{port}"));
    let cfg = dir.path().join("config.toml");
    let month = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .strftime("%Y-%m")
        .to_string();
    let q = send(
        &pf,
        &format!("dr.a@{DOMAIN}"),
        &["now@ext.test", "later@later.test"],
    );
    assert!(
        pf.wait_log("to=<later@later.test>", Duration::from_secs(30)),
        "{}",
        pf.log()
    );
    assert!(pf.log().contains("status=deferred"), "{}", pf.log());
    // Requeued: the message comes back under a new id through pickup.
    postfix_cmd(&pf, "postsuper", &["-r", &q]);
    // Wake pickup now rather than at its next poll.
    postfix_cmd(&pf, "postkick", &["public", "pickup", "W"]);
    assert!(
        pf.wait_log(&format!("orig_id={q}"), Duration::from_secs(30)),
        "{}",
        pf.log()
    );
    // Flushed: delivered at last.
    postfix_cmd(&pf, "postqueue", &["-f"]);
    let sent_later = |log: &str| {
        log.lines()
            .any(|l| l.contains("to=<later@later.test>") && l.contains("status=sent"))
    };
    for _ in 0..300 {
        if sent_later(&pf.log()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(sent_later(&pf.log()), "{}", pf.log());
    let new_id = pf
        .log()
        .lines()
        .find(|l| l.contains(&format!("orig_id={q}")))
        .and_then(|l| l.split(": ").nth(1).map(str::to_string))
        .unwrap();
    wait_removed(&pf, &new_id);
    assert_ne!(new_id, q);
    wait_rows(&cfg, &month, 2);
    drop(side);
    let log = dir.path().join("maillog.copy");
    std::fs::write(&log, pf.log()).unwrap();
    let (code, v, err) = reconcile(&cfg, &month, &log);
    assert_eq!(
        (
            v["matched"].as_u64(),
            v["filled"].as_u64(),
            v["missing"].clone(),
            v["phantom"].clone(),
            v["coverage"]["without_origin"].as_u64()
        ),
        (
            Some(2),
            Some(0),
            serde_json::json!([]),
            serde_json::json!([]),
            Some(0)
        ),
        "{err}\n{v}\n{}",
        pf.log()
    );
    assert_eq!(code, 0);
}
