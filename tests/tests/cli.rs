//! The real binaries: configuration errors, exit codes, `mss-admin counts`
//! against a running daemon, SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mss_tests::postfix::{Postfix, PostfixBuilder};
use mss_tests::sidecar::{bin, config_text, wait_port, DOMAIN};

fn check(config: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.toml");
    std::fs::write(&p, config).unwrap();
    let out = Command::new(bin("mss-sidecar"))
        .args(["--check", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_errors_exit_2_with_one_line_naming_the_key() {
    let cases = [
        ("[operator]\ndomains = [\"ch-a.mssante.fr\"]\n[proxy]\nlisten = \"127.0.0.1:1\"\nupstream = \"127.0.0.1:2\"\nmax_rcpt = 5\n", "unknown field `max_rcpt`"),
        ("[operator]\ndomains = []\n", "`operator.domains`"),
        ("[operator]\ndomains = [\"ch-a.mssante.fr\"]\n[proxy]\nlisten = \"localhost\"\nupstream = \"127.0.0.1:2\"\n", "`proxy.listen`"),
        ("[operator]\ndomains = [\"ch-a.mssante.fr\"]\n[store]\ncapture_path = \"/proc/nope/capture\"\n", "`store.capture_path`"),
        ("not toml at all", "line 1"),
    ];
    for (cfg, want) in cases {
        let (code, err) = check(cfg);
        assert_eq!(code, 2, "{cfg}: {err}");
        assert!(err.starts_with("error: configuration"), "{err}");
        assert!(err.contains(want), "{want} not in {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    }
    let out = Command::new(bin("mss-sidecar"))
        .args(["--check", "--config", "/nonexistent/config.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/config.toml"));
}

use mss_tests::guard::Guard as Daemon;

fn start_daemon(cfg_path: &std::path::Path) -> Daemon {
    Daemon(
        Command::new(bin("mss-sidecar"))
            .arg("--config")
            .arg(cfg_path)
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn daemon_counts_while_running_then_stops_on_sigterm() {
    let pf = PostfixBuilder::new().start().expect("postfix");
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", Postfix::free_port());
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, config_text(dir.path(), &listen, &pf.addr(), "")).unwrap();
    let mut d = start_daemon(&cfg);
    wait_port(&listen);

    let a = format!("dr.a@{DOMAIN}");
    let b = format!("dr.b@{DOMAIN}");
    for (from, to) in [
        (&a, vec!["x@ext.test", "y@ext.test"]),
        (&b, vec!["z@ext.test"]),
        (&a, vec!["x@ext.test"]),
    ] {
        let out = mss_tests::swaks::send(&listen, from, &to, &["--body", "hello"]);
        assert!(out.ok, "{}", out.transcript);
    }
    let month = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::get("Europe/Paris").unwrap());
    let month = format!("{:04}-{:02}", month.year(), month.month());
    let out = Command::new(bin("mss-admin"))
        .args([
            "counts", "--json", "--month", &month, "--domain", DOMAIN, "--config",
        ])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["month"], month);
    let d0 = &v["domains"][0];
    assert_eq!(d0["domain"], DOMAIN);
    assert_eq!(
        (
            d0["messages"].as_u64(),
            d0["rows"].as_u64(),
            d0["senders"].as_u64()
        ),
        (Some(3), Some(4), Some(2))
    );
    assert_eq!(d0["mailboxes"].as_u64(), Some(2));
    assert_eq!(d0["days"].as_array().unwrap().len(), 1);
    assert_eq!(d0["days"][0]["rows"].as_u64(), Some(4));

    // Human output has the per-day bar.
    let out = Command::new(bin("mss-admin"))
        .args(["counts", "--month", &month, "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("messages 3  rows 4"), "{text}");
    assert!(text.contains("####"), "{text}");

    // A second daemon on the same store is refused with exit 3.
    let cfg2 = dir.path().join("config2.toml");
    let listen2 = format!("127.0.0.1:{}", Postfix::free_port());
    std::fs::write(&cfg2, config_text(dir.path(), &listen2, &pf.addr(), "")).unwrap();
    let out = Command::new(bin("mss-sidecar"))
        .arg("--config")
        .arg(&cfg2)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // SIGTERM: clean exit 0.
    let t = Instant::now();
    unsafe_kill_term(d.0.id());
    let status = loop {
        if let Some(s) = d.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "daemon did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn listen_address_in_use_exits_4() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        config_text(
            dir.path(),
            &busy.local_addr().unwrap().to_string(),
            "127.0.0.1:25",
            "",
        ),
    )
    .unwrap();
    let out = Command::new(bin("mss-sidecar"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("`proxy.listen`"));
}

fn unsafe_kill_term(pid: u32) {
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
}

/// SIGTERM with a transaction in flight: it finishes (its 250 and its row),
/// idle sessions get `421 4.3.0`, new connections are refused, exit 0.
#[test]
fn sigterm_lets_the_in_flight_transaction_finish_and_closes_idle_sessions_with_421() {
    use mss_tests::smtp::RawClient;
    let pf = PostfixBuilder::new().start().expect("postfix");
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", Postfix::free_port());
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, config_text(dir.path(), &listen, &pf.addr(), "")).unwrap();
    let mut d = start_daemon(&cfg);
    wait_port(&listen);

    let a = format!("dr.a@{DOMAIN}");
    let (mut busy, _) = RawClient::connect(&listen);
    let r = busy.exchange(
        format!("EHLO c\r\nMAIL FROM:<{a}>\r\nRCPT TO:<x@ext.test>\r\nDATA\r\n").as_bytes(),
        4,
    );
    assert_eq!(RawClient::codes(&r), vec![250, 250, 250, 354], "{r:?}");
    busy.send(b"Subject: in flight\r\n\r\nfirst half\r\n");
    let (mut idle, _) = RawClient::connect(&listen);
    assert_eq!(
        RawClient::codes(&idle.exchange(b"EHLO c\r\n", 1)),
        vec![250]
    );

    unsafe_kill_term(d.0.id());
    let r = idle.reply();
    assert!(r.starts_with("421 4.3.0"), "idle session: {r:?}");
    assert_eq!(idle.reply(), "", "then closed");

    busy.send(b"second half\r\n.\r\n");
    let r = busy.reply();
    assert!(r.starts_with("250"), "in-flight transaction: {r:?}");
    let r = busy.reply();
    assert!(r.starts_with("421 4.3.0"), "after its transaction: {r:?}");

    let t = Instant::now();
    let status = loop {
        if let Some(s) = d.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    assert!(
        std::net::TcpStream::connect(&listen).is_err(),
        "still accepting"
    );
    let rows = mss_tests::sidecar::row_triples(dir.path());
    assert_eq!(
        rows,
        vec![(
            a,
            "x@ext.test".to_string(),
            "Subject: in flight\r\n\r\nfirst half\r\nsecond half\r\n".len() as u64
        )]
    );
}

/// `mss-admin status` while the daemon runs and after; `mss-admin checkpoint`
/// refused while the sidecar holds the capture store, complete after.
#[test]
fn status_and_checkpoint() {
    let pf = PostfixBuilder::new().start().expect("postfix");
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", Postfix::free_port());
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, config_text(dir.path(), &listen, &pf.addr(), "")).unwrap();
    let mut d = start_daemon(&cfg);
    wait_port(&listen);
    let out = mss_tests::swaks::send(
        &listen,
        &format!("dr.a@{DOMAIN}"),
        &["x@ext.test"],
        &["--body", "hi"],
    );
    assert!(out.ok, "{}", out.transcript);
    let admin = |args: &[&str]| {
        let o = Command::new(bin("mss-admin"))
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, err) = admin(&["status", "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["listeners"][0]["name"], "proxy");
    assert_eq!(s["listeners"][0]["listening"], true);
    assert!(s["last_captured_message"].is_string(), "{s}");
    assert_eq!(
        s["unregistered_bals"], 1,
        "dr.a sent but is not registered: {s}"
    );
    assert!(s["capture_store_bytes"].as_u64().unwrap() > 0);

    let ck = dir.path().join("backup");
    let (code, _, err) = admin(&["checkpoint", ck.to_str().unwrap()]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("stop mss-sidecar"), "{err}");

    unsafe_kill_term(d.0.id());
    let t = Instant::now();
    while d.0.try_wait().unwrap().is_none() {
        assert!(t.elapsed() < Duration::from_secs(15));
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, out, _) = admin(&["status"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("PROBLEM: proxy (") && out.contains("is not listening"),
        "{out}"
    );

    let ck = dir.path().join("backup2");
    let (code, out, err) = admin(&["checkpoint", ck.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("backup2/registry") && out.contains("backup2/capture"),
        "{out}"
    );
    let back = mss_shared::store::capture::CaptureStore::open(&ck.join("capture")).unwrap();
    let now = mss_shared::month::Month::current(&jiff::tz::TimeZone::get("Europe/Paris").unwrap());
    let mut n = 0;
    for m in [now.prev(), now] {
        back.for_each_out(m, None, |_| n += 1).unwrap();
    }
    assert_eq!(n, 1);
    let (code, _, err) = admin(&["checkpoint", ck.to_str().unwrap()]);
    assert_eq!(code, Some(2), "existing directory refused: {err}");
}
