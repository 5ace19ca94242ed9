//! `mss-admin reconcile` under load: the sidecar (milter of a real Postfix)
//! stopped and restarted while `smtp-source` sends; every gap explained by
//! Postfix's own warnings, and `--fill` brings the files to exactly the
//! accepted recipients (support: `mss_tests::maillog`).

use std::process::Command;
use std::time::Duration;

use mss_tests::config::TestConfig;
use mss_tests::daemon::Daemon;
use mss_tests::maillog::*;
use mss_tests::postfix::Postfix;
use mss_tests::sidecar::DOMAIN;

#[test]
fn milter_restarted_under_load_every_gap_explained_and_filled_exactly() {
    let port = Postfix::free_port();
    let dir = tempfile::tempdir().unwrap();
    let pf = postfix_with_milter(port);
    let cfg_text = TestConfig::new(dir.path())
        .milter(&format!("127.0.0.1:{port}"))
        .with(|c| {
            c.operator.timezone = "UTC".into();
            c.service.mail_log_marks = true;
            c.service.postfix_config_dir = pf.conf.clone();
        })
        .text();
    let milter = format!("127.0.0.1:{port}");
    let mut side = Daemon::start(dir.path(), &cfg_text, &milter);
    let cfg = dir.path().join("config.toml");
    let month = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .strftime("%Y-%m")
        .to_string();
    // 400 messages of 2 recipients each (unique: -N), 4 sessions at a time.
    const MESSAGES: usize = 400;
    let source = Command::new("/usr/sbin/smtp-source")
        .args([
            "-s",
            "4",
            "-m",
            &MESSAGES.to_string(),
            "-r",
            "2",
            "-N",
            "-l",
            "300",
        ])
        .args(["-f", &format!("dr.load@{DOMAIN}"), "-t", "r@ext.test"])
        .arg(pf.addr())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut source = mss_tests::guard::Guard(source);
    // Stop the sidecar once some rows are in, restart it a second later.
    wait_rows(&cfg, &month, 60);
    let _ = Command::new("kill").arg(side.pid().to_string()).status();
    let _ = side.child.wait();
    std::thread::sleep(Duration::from_secs(1));
    let side = Daemon::start(dir.path(), &cfg_text, &milter);
    let started_twice = |pf: &Postfix| {
        pf.log()
            .lines()
            .filter(|l| l.contains("mss-sidecar[") && l.contains(": started: "))
            .count()
            == 2
    };
    for _ in 0..100 {
        if started_twice(&pf) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(started_twice(&pf), "{}\n{}", side.stderr(), pf.log());
    let status = mss_tests::guard::wait_within(&mut source.0, Duration::from_secs(120))
        .expect("smtp-source finished within 120 s");
    assert!(status.success(), "smtp-source: {status}");
    for _ in 0..600 {
        if removed_count(&pf) >= MESSAGES {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(removed_count(&pf), MESSAGES, "{}", pf.log());
    drop(side);
    let log = dir.path().join("maillog.copy");
    std::fs::write(&log, pf.log()).unwrap();

    let (code, v, err) = reconcile(&cfg, &month, &log);
    let missing = v["missing"].as_array().unwrap();
    let matched = v["matched"].as_u64().unwrap() as usize;
    assert_eq!(matched + missing.len(), 2 * MESSAGES, "{err}\n{v}");
    assert!(
        !missing.is_empty(),
        "the sidecar was down for a second under load"
    );
    assert!(
        missing.iter().all(|m| m["reason"] == "milter_down"),
        "every gap pinned by a Postfix warning: {}\n{}",
        serde_json::to_string_pretty(&v["missing"]).unwrap(),
        pf.log()
    );
    assert_eq!(v["phantom"], serde_json::json!([]));
    let windows = v["coverage"]["sidecar_down"].as_array().unwrap();
    assert_eq!(windows.len(), 1, "{v}");
    assert_eq!(windows[0]["clean"], true);
    assert!(windows[0]["to"].is_string() && windows[0]["from"].is_string());
    assert_eq!(code, 12);

    // --fill: the month then holds exactly every accepted recipient.
    let (code, after, err) = reconcile_with(&cfg, &month, &[&log], &["--fill"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        (after["matched"].as_u64(), after["filled"].as_u64()),
        (Some(matched as u64), Some(missing.len() as u64))
    );
    let (_, again, err) = reconcile_with(&cfg, &month, &[&log], &["--fill"]);
    assert!(err.contains("0 row(s) rebuilt"), "{err}");
    assert_eq!(again, after);
    let d = domain_counts(&cfg, &month);
    assert_eq!(
        (
            d["messages"].as_u64(),
            d["rows"].as_u64(),
            d["filled_rows"].as_u64()
        ),
        (
            Some(MESSAGES as u64),
            Some(2 * MESSAGES as u64),
            Some(missing.len() as u64)
        ),
        "{d}"
    );
    // The recipients of the files are exactly the logged ones.
    let mut logged: Vec<String> = pf
        .log()
        .lines()
        .filter(|l| l.contains(" to=<") && l.contains("status=sent"))
        .filter_map(|l| {
            l.split("to=<")
                .nth(1)?
                .split('>')
                .next()
                .map(str::to_string)
        })
        .collect();
    logged.sort();
    logged.dedup();
    assert_eq!(logged.len(), 2 * MESSAGES);
    let built = mss_tests::files::build(&cfg, &month, &[]);
    assert_eq!(built.code, 0, "{}", built.stderr);
    let csv = built.echanges;
    let mut in_file: Vec<String> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(';').nth(2).unwrap().to_string())
        .collect();
    in_file.sort();
    assert_eq!(in_file, logged);
}
