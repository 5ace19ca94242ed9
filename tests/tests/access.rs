//! Access control of the real `mss-sidecar` binary: HTTP listeners off
//! loopback need a bearer token (refused start otherwise), the token is
//! checked on `/metrics` and `/v1/*` and never logged, stores are created
//! `0700`, and a daemon started as root becomes `[service] user`.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mss_tests::config::TestConfig;
use mss_tests::postfix::Postfix;
use mss_tests::sidecar::{bin, DOMAIN};

const TOKEN: &str = "t0ken-for-tests-0123456789abcdef";

use mss_tests::guard::Guard as Daemon;

fn base(dir: &Path) -> String {
    base_as(dir, "root")
}

fn base_as(dir: &Path, user: &str) -> String {
    TestConfig::new(dir)
        .with(|c| {
            c.service.user = user.into();
            c.operator.domains = vec![DOMAIN.into()];
            c.store.capture_path = dir.join("state/capture");
            c.store.registry_path = dir.join("state/registry");
            c.store.commit_timeout_ms = 1000;
        })
        .text()
        + "\n"
}

fn write_token(dir: &Path) -> std::path::PathBuf {
    let f = dir.join("token");
    std::fs::write(&f, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    f
}

fn start(cfg_text: &str, dir: &Path) -> (Daemon, std::path::PathBuf) {
    let cfg = dir.join("config.toml");
    std::fs::write(&cfg, cfg_text).unwrap();
    let log = dir.join("stderr.log");
    let d = Command::new(bin("mss-sidecar"))
        .arg("--config")
        .arg(&cfg)
        .env("MSS_LOG", "debug")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (Daemon(d), log)
}

fn wait_port(addr: &str, d: &mut Daemon) {
    let t = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(d.0.try_wait().unwrap().is_none(), "daemon exited");
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{addr} never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One HTTP/1.1 request; returns (status code, body).
fn http(addr: &str, method: &str, path: &str, auth: Option<&str>, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {out:?}"));
    let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (code, body.to_string())
}

#[test]
fn non_loopback_http_listener_without_token_refuses_to_start() {
    for (section, key) in [
        (
            "[metrics]\nlisten = \"0.0.0.0:{p}\"\n",
            "metrics.token_file",
        ),
        ("[events]\nlisten = \"0.0.0.0:{p}\"\n", "events.token_file"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let p = Postfix::free_port();
        let text = format!(
            "{}[proxy]\nlisten = \"127.0.0.1:{}\"\nupstream = \"127.0.0.1:1\"\n\n{}",
            base(dir.path()),
            Postfix::free_port(),
            section.replace("{p}", &p.to_string())
        );
        let (mut d, log) = start(&text, dir.path());
        let t = Instant::now();
        let code = loop {
            if let Some(s) = d.0.try_wait().unwrap() {
                break s.code();
            }
            assert!(t.elapsed() < Duration::from_secs(10), "still running");
            std::thread::sleep(Duration::from_millis(20));
        };
        let err = std::fs::read_to_string(&log).unwrap();
        assert_eq!(code, Some(2), "{err}");
        assert!(err.starts_with("error: configuration: "), "{err}");
        assert!(err.contains(&format!("key `{key}`")), "{err}");
        assert!(err.contains("not a loopback address"), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(
            !dir.path().join("state").exists(),
            "nothing created before the refusal"
        );
    }
}

#[test]
fn bearer_token_guards_metrics_and_events_and_is_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let tok = write_token(dir.path());
    let (mp, ep) = (Postfix::free_port(), Postfix::free_port());
    let text = format!(
        "{}[events]\nlisten = \"0.0.0.0:{ep}\"\ntoken_file = \"{}\"\n\n[metrics]\nlisten = \"0.0.0.0:{mp}\"\ntoken_file = \"{}\"\n",
        base(dir.path()),
        tok.display(),
        tok.display()
    );
    let (mut d, log) = start(&text, dir.path());
    let (m, e) = (format!("127.0.0.1:{mp}"), format!("127.0.0.1:{ep}"));
    wait_port(&m, &mut d);
    wait_port(&e, &mut d);
    let good = format!("Bearer {TOKEN}");
    let wrong = format!("Bearer {}x", &TOKEN[..TOKEN.len() - 1]);
    let login = format!(
        "{{\"bal\": \"dr.a@{DOMAIN}\", \"time\": \"{}\", \"service\": \"webmail\"}}",
        jiff::Timestamp::now()
    );
    for auth in [None, Some(wrong.as_str()), Some("Basic dXNlcjpwYXNz")] {
        let (c, b) = http(&m, "GET", "/metrics", auth, "");
        assert_eq!((c, b.as_str()), (401, "missing or wrong bearer token\n"));
        for path in ["/v1/logins", "/v1/dovecot"] {
            let (c, b) = http(&e, "POST", path, auth, &login);
            assert_eq!(
                (c, b.as_str()),
                (401, "missing or wrong bearer token\n"),
                "{path}"
            );
        }
    }
    let (c, b) = http(&m, "GET", "/metrics", Some(&good), "");
    assert_eq!(c, 200, "{b}");
    assert!(b.contains("mss_"), "{b}");
    let (c, b) = http(&e, "POST", "/v1/logins", Some(&good), &login);
    assert_eq!((c, b.as_str()), (200, "stored 1\n"));
    // The refused requests stored nothing: one login event only.
    let (_, b) = http(&m, "GET", "/metrics", Some(&good), "");
    assert!(
        b.lines()
            .any(|l| l == "mss_login_events_received_total{source=\"api\"} 1"),
        "{b}"
    );
    drop(d);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains(&TOKEN[..12]), "token in the log: {log}");
    assert!(!log.contains("token_file"), "config in the log: {log}");
}

#[test]
fn stores_are_created_0700() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", Postfix::free_port());
    let text = format!(
        "{}[proxy]\nlisten = \"{listen}\"\nupstream = \"127.0.0.1:1\"\n",
        base(dir.path())
    );
    let (mut d, _log) = start(&text, dir.path());
    wait_port(&listen, &mut d);
    drop(d);
    let out = Command::new(bin("mss-admin"))
        .args([
            "mailbox",
            "add",
            &format!("dr.a@{DOMAIN}"),
            "--type",
            "personnelle",
            "--config",
        ])
        .arg(dir.path().join("config.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    for p in ["state", "state/capture", "state/registry"] {
        let mode = std::fs::metadata(dir.path().join(p)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700, "{p}: {mode:o}");
    }
}

/// Status line `name:` of /proc/<pid>/status, whitespace-normalised.
fn proc_status(pid: u32, name: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

const DROP_USER: &str = "mss-droptest";

fn ensure_user() -> Option<(u32, u32)> {
    let lookup = || {
        let o = Command::new("getent")
            .args(["passwd", DROP_USER])
            .output()
            .ok()?;
        let line = String::from_utf8(o.stdout).ok()?;
        let f: Vec<&str> = line.trim().split(':').collect();
        Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
    };
    if let Some(ids) = lookup() {
        return Some(ids);
    }
    let st = Command::new("useradd")
        .args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            DROP_USER,
        ])
        .status()
        .ok()?;
    assert!(st.success(), "useradd {DROP_USER}");
    lookup()
}

#[test]
fn started_as_root_it_drops_to_the_service_user_before_opening_stores() {
    if proc_status(std::process::id(), "Uid:").split(' ').nth(1) != Some("0") {
        eprintln!("SKIP: not root");
        return;
    }
    let (uid, gid) = ensure_user().expect("test user");
    let dir = tempfile::tempdir().unwrap();
    // The tempdir is root's 0700: give the state directory to the user.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(uid), Some(gid)).unwrap();
    let listen = format!("127.0.0.1:{}", Postfix::free_port());
    let text = format!(
        "{}[proxy]\nlisten = \"{listen}\"\nupstream = \"127.0.0.1:1\"\n",
        base_as(dir.path(), DROP_USER)
    );
    let (mut d, log) = start(&text, dir.path());
    wait_port(&listen, &mut d);
    let pid = d.0.id();
    // Listening on the proxy happens before the drop: wait for the store.
    let t = Instant::now();
    while !state.join("capture/CURRENT").exists() {
        assert!(t.elapsed() < Duration::from_secs(20), "store never opened");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(proc_status(pid, "Uid:"), format!("{uid} {uid} {uid} {uid}"));
    assert_eq!(proc_status(pid, "Gid:"), format!("{gid} {gid} {gid} {gid}"));
    assert_eq!(proc_status(pid, "Groups:"), format!("{gid}"));
    assert_eq!(proc_status(pid, "CapEff:"), "0000000000000000");
    // Every thread, not only the main one.
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let s = std::fs::read_to_string(t.unwrap().path().join("status")).unwrap();
        assert!(
            s.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
                == [
                    "Uid:",
                    &uid.to_string(),
                    &uid.to_string(),
                    &uid.to_string(),
                    &uid.to_string()
                ]),
            "{s}"
        );
    }
    let meta = std::fs::metadata(state.join("capture")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (uid, gid, 0o700)
    );
    drop(d);
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("dropped root privileges"), "{log}");
}

#[test]
fn started_as_root_with_an_unknown_user_exits_2() {
    if proc_status(std::process::id(), "Uid:").split(' ').nth(1) != Some("0") {
        eprintln!("SKIP: not root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", Postfix::free_port());
    let text = format!(
        "{}[proxy]\nlisten = \"{listen}\"\nupstream = \"127.0.0.1:1\"\n",
        base_as(dir.path(), "no-such-user-mss")
    );
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = Command::new(bin("mss-sidecar"))
        .arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let last = err.trim_end().lines().last().unwrap_or("");
    assert!(
        last.starts_with("error: configuration: key `service.user`: no user \"no-such-user-mss\""),
        "{err}"
    );
    assert!(!dir.path().join("state").exists(), "no store as root");
}
