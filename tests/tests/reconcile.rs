//! `mss-admin reconcile` against a real Postfix's `maillog_file`, with the
//! real `mss-sidecar` as its milter and the real `mss-admin`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mss_tests::config::TestConfig;
use mss_tests::daemon::Daemon;
use mss_tests::postfix::{Postfix, PostfixBuilder};
use mss_tests::sidecar::{bin, DOMAIN};
use mss_tests::smtp::queued_as;

fn postfix_with_milter(milter_port: u16) -> Postfix {
    PostfixBuilder::new()
        .main_cf(&format!("smtpd_milters = inet:127.0.0.1:{milter_port}"))
        .main_cf(&format!("non_smtpd_milters = inet:127.0.0.1:{milter_port}"))
        .main_cf("milter_default_action = accept")
        .main_cf("milter_connect_timeout = 5s")
        .start()
        .expect("postfix")
}

fn reconcile(cfg: &Path, month: &str, log: &Path) -> (i32, serde_json::Value, String) {
    let o = Command::new(bin("mss-admin"))
        .arg("--config")
        .arg(cfg)
        .args(["reconcile", "--month", month, "--json", "--log"])
        .arg(log)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{err}", String::from_utf8_lossy(&o.stdout)));
    (o.status.code().unwrap_or(-1), v, err)
}

/// Send one message with swaks; its queue id.
fn send(pf: &Postfix, from: &str, to: &[&str]) -> String {
    let r = mss_tests::swaks::send(&pf.addr(), from, to, &[]);
    assert!(r.ok, "{}", r.transcript);
    r.transcript
        .lines()
        .find_map(queued_as)
        .unwrap_or_else(|| panic!("no queue id: {}", r.transcript))
}

/// Wait until every recipient line of `qid` and its `removed` are logged.
fn wait_removed(pf: &Postfix, qid: &str) {
    assert!(
        pf.wait_log(&format!("{qid}: removed"), Duration::from_secs(30)),
        "{}",
        pf.log()
    );
}

fn wait_rows(cfg: &Path, month: &str, n: u64) {
    for _ in 0..100 {
        let o = Command::new(bin("mss-admin"))
            .arg("--config")
            .arg(cfg)
            .args(["counts", "--month", month, "--json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        let rows: u64 = v["domains"]
            .as_array()
            .map(|a| a.iter().filter_map(|d| d["rows"].as_u64()).sum())
            .unwrap_or(0);
        if rows >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{n} rows never stored");
}

#[test]
fn clean_month_then_milter_down_through_smtpd_and_sendmail() {
    let port = Postfix::free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg_text = TestConfig::new(dir.path())
        .milter(&format!("127.0.0.1:{port}"))
        .with(|c| c.operator.timezone = "UTC".into())
        .text();
    let mut side = Daemon::start(dir.path(), &cfg_text, &format!("127.0.0.1:{port}"));
    let cfg = dir.path().join("config.toml");
    let pf = postfix_with_milter(port);
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let month = now.strftime("%Y-%m").to_string();
    let day = now.strftime("%Y-%m-%d").to_string();
    let a = format!("dr.a@{DOMAIN}");
    let q1 = send(&pf, &a, &["x1@ext.test", "x2@ext.test"]);
    let q2 = send(&pf, &format!("dr.b+tag@{DOMAIN}"), &["x3@ext.test"]);
    // Inbound (not an operator sender): never a row, never missing.
    let q3 = send(&pf, "someone@ext.test", &[&format!("dr.a@{DOMAIN}")]);
    for q in [&q1, &q2, &q3] {
        wait_removed(&pf, q);
    }
    wait_rows(&cfg, &month, 3);
    let log = dir.path().join("maillog.copy");
    std::fs::write(&log, pf.log()).unwrap();
    let lines = pf.log().lines().count() as u64;
    let (code, v, err) = reconcile(&cfg, &month, &log);
    let cov = &v["coverage"];
    assert_eq!(
        v,
        serde_json::json!({
            "month": month, "matched": 3, "missing": [], "phantom": [],
            "by_domain": [{"domain": DOMAIN, "matched": 3, "missing": 0, "phantom": 0,
                "days": [{"day": day, "matched": 3, "missing": 0, "phantom": 0}]}],
            "coverage": {"files": 1, "lines": lines, "unreadable": 0,
                "first_line": cov["first_line"], "last_line": cov["last_line"],
                "gaps": [], "without_origin": 0, "rows_outside_logs": 0}
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
    let app = format!("dpi-app@{DOMAIN}");
    let out = pf
        .sendmail(&app, &["y3@ext.test"], "Subject: s\n\nbody\n")
        .unwrap();
    assert!(out.status.success());
    wait_removed(&pf, &q4);
    assert!(
        pf.wait_log("to=<y3@ext.test>", Duration::from_secs(30)),
        "{}",
        pf.log()
    );
    let q5 = pf
        .log()
        .lines()
        .find(|l| l.contains("to=<y3@ext.test>"))
        .and_then(|l| l.split(": ").nth(1).map(str::to_string))
        .unwrap();
    wait_removed(&pf, &q5);
    std::fs::write(&log, pf.log()).unwrap();
    let lines = pf.log().lines().count() as u64;
    let (code, v, err) = reconcile(&cfg, &month, &log);
    let t = |i: usize| v["missing"][i]["time"].clone();
    assert_eq!(
        v,
        serde_json::json!({
            "month": month, "matched": 3,
            "missing": [
                {"queue_id": q4, "sender": a, "recipient": "y1@ext.test", "time": t(0), "reason": "milter_down"},
                {"queue_id": q4, "sender": a, "recipient": "y2@ext.test", "time": t(1), "reason": "milter_down"},
                {"queue_id": q5, "sender": app, "recipient": "y3@ext.test", "time": t(2), "reason": "milter_down"}
            ],
            "phantom": [],
            "by_domain": [{"domain": DOMAIN, "matched": 3, "missing": 3, "phantom": 0,
                "days": [{"day": day, "matched": 3, "missing": 3, "phantom": 0}]}],
            "coverage": {"files": 1, "lines": lines, "unreadable": 0,
                "first_line": v["coverage"]["first_line"], "last_line": v["coverage"]["last_line"],
                "gaps": [], "without_origin": 0, "rows_outside_logs": 0}
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
}
