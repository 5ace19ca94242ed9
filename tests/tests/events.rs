//! Login events: the HTTP endpoint (`/v1/dovecot`, `/v1/logins`) and the
//! Dovecot `last_login` dict socket, with the real `mss-sidecar` daemon and a
//! real Dovecot (IMAP, passwd-file users) reporting to it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mss_shared::month::Month;
use mss_shared::store::capture::CaptureStore;
use mss_tests::config::TestConfig;
use mss_tests::dovecot::{Dovecot, ImapOptions};
use mss_tests::postfix::Postfix;
use mss_tests::sidecar::{bin, DOMAIN};

use mss_tests::guard::Guard as Daemon;

fn start(dir: &Path, events: &str) -> Daemon {
    let cfg = dir.join("config.toml");
    let text = TestConfig::new(dir)
        .with(|c| {
            c.operator.domains = vec![DOMAIN.into()];
            c.store.commit_timeout_ms = 1000;
        })
        .text_with("events", events);
    std::fs::write(&cfg, text).unwrap();
    Daemon(
        Command::new(bin("mss-sidecar"))
            .arg("--config")
            .arg(&cfg)
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(20), "timeout: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (bal, service) -> (last login µs, count), for the months given.
fn logins(dir: &Path, months: &[Month]) -> BTreeMap<(String, String), (i64, u64)> {
    let sec = tempfile::tempdir().unwrap();
    let s = CaptureStore::open_secondary(&dir.join("capture"), sec.path()).unwrap();
    let mut all = BTreeMap::new();
    for m in months {
        all.extend(s.logins(*m).unwrap());
    }
    all
}

fn now_months() -> Vec<Month> {
    let now = Month::current(&jiff::tz::TimeZone::get("Europe/Paris").unwrap());
    vec![now.prev(), now]
}

/// POST a body; (status, response body).
fn post(addr: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

fn us(t: &str) -> i64 {
    t.parse::<jiff::Timestamp>().unwrap().as_microsecond()
}

#[test]
fn http_endpoint_stores_good_events_and_refuses_bad_ones_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", Postfix::free_port());
    let _d = start(dir.path(), &format!("listen = \"{addr}\""));
    wait_for("events endpoint", || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    let nov = [
        Month::parse("2026-11").unwrap(),
        Month::parse("2026-10").unwrap(),
    ];

    let ok = |path: &str, body: &str| {
        let (c, b) = post(&addr, path, body.as_bytes());
        assert_eq!(c, 200, "{body}: {b}");
        b
    };
    ok(
        "/v1/logins",
        &format!(
            r#"{{"bal": "Dr.A@{DOMAIN}", "time": "2026-11-20T10:00:00+01:00", "service": "webmail"}}"#
        ),
    );
    let b = ok(
        "/v1/logins",
        &format!(
            r#"[{{"bal": "b@{DOMAIN}", "time": "2026-11-02T08:00:00Z", "service": "portal"}}, {{"bal": "c@{DOMAIN}", "time": "2026-10-31T23:30:00Z", "service": "portal"}}]"#
        ),
    );
    assert_eq!(b.trim(), "stored 2");
    // Dovecot's exporter, both time formats; failures, other events and doveadm are ignored.
    ok(
        "/v1/dovecot",
        &format!(
            r#"{{"event": "auth_request_finished", "hostname": "imap1", "start_time": "2026-11-21T07:59:59.9Z", "end_time": "2026-11-21T08:00:00.123456Z", "fields": {{"user": "d@{DOMAIN}", "service": "imap", "success": "yes", "remote_ip": "192.0.2.1"}}}}"#
        ),
    );
    ok(
        "/v1/dovecot",
        &format!(
            r#"{{"event": "auth_request_finished", "end_time": 1795000000.5, "fields": {{"user": "e@{DOMAIN}", "service": "pop3", "success": "yes"}}}}"#
        ),
    );
    assert!(ok("/v1/dovecot", &format!(r#"{{"event": "auth_request_finished", "end_time": 1795000000, "fields": {{"user": "f@{DOMAIN}", "service": "imap"}}}}"#)).contains("ignored"));
    assert!(ok("/v1/dovecot", &format!(r#"{{"event": "auth_request_finished", "end_time": 1795000000, "fields": {{"user": "g@{DOMAIN}", "service": "doveadm", "success": "yes"}}}}"#)).contains("ignored"));
    assert!(ok(
        "/v1/dovecot",
        r#"{"event": "imap_command_finished", "fields": {}}"#
    )
    .contains("ignored"));

    let bad: &[(&str, String, u16, &str)] = &[
        ("/v1/logins", "{not json".into(), 400, "bad JSON"),
        ("/v1/logins", format!(r#"{{"bal": "h@{DOMAIN}", "time": "2026-11-20T10:00:00Z", "service": "webmail", "password": "x"}}"#), 400, "unknown field `password`"),
        ("/v1/logins", r#"{"bal": "not an address", "time": "2026-11-20T10:00:00Z", "service": "webmail"}"#.into(), 400, "is not a mailbox address"),
        ("/v1/logins", format!(r#"{{"bal": "h@{DOMAIN}", "time": "1999-12-31T23:00:00Z", "service": "webmail"}}"#), 400, "not plausible"),
        ("/v1/logins", format!(r#"{{"bal": "h@{DOMAIN}", "time": "2100-01-01T00:00:00Z", "service": "webmail"}}"#), 400, "not plausible"),
        ("/v1/logins", format!(r#"{{"bal": "h@{DOMAIN}", "time": "yesterday", "service": "webmail"}}"#), 400, "not RFC 3339"),
        // All or nothing: the good first entry is not stored either.
        ("/v1/logins", format!(r#"[{{"bal": "h@{DOMAIN}", "time": "2026-11-20T10:00:00Z", "service": "webmail"}}, {{"bal": "i@{DOMAIN}", "time": "nope", "service": "webmail"}}]"#), 400, "entry 1"),
        ("/v1/dovecot", r#"{"event": "auth_request_finished", "end_time": "garbage", "fields": {"user": "h@ch-test.mssante.fr", "service": "imap", "success": "yes"}}"#.into(), 400, "end_time"),
        ("/v1/logins", format!("[{}]", vec![format!(r#"{{"bal": "h@{DOMAIN}", "time": "2026-11-20T10:00:00Z", "service": "webmail"}}"#); 20_000].join(",")), 413, "larger than"),
    ];
    for (path, body, code, why) in bad {
        let (c, b) = post(&addr, path, body.as_bytes());
        assert_eq!(c, *code, "{}: {b}", &body[..body.len().min(80)]);
        assert!(b.contains(why), "{why} not in {b:?}");
    }

    let want: BTreeMap<(String, String), (i64, u64)> = [
        (
            (format!("b@{DOMAIN}"), "portal".to_string()),
            (us("2026-11-02T08:00:00Z"), 1),
        ),
        (
            (format!("c@{DOMAIN}"), "portal".to_string()),
            (us("2026-10-31T23:30:00Z"), 1),
        ),
        (
            (format!("d@{DOMAIN}"), "imap".to_string()),
            (us("2026-11-21T08:00:00.123456Z"), 1),
        ),
        (
            (format!("dr.a@{DOMAIN}"), "webmail".to_string()),
            (us("2026-11-20T09:00:00Z"), 1),
        ),
        (
            (format!("e@{DOMAIN}"), "pop3".to_string()),
            (1_795_000_000_500_000, 1),
        ),
    ]
    .into_iter()
    .collect();
    let mut got = BTreeMap::new();
    wait_for("logins stored", || {
        got = logins(dir.path(), &nov);
        got.len() >= want.len()
    });
    assert_eq!(got, want);
}

#[test]
fn a_real_dovecot_imap_login_reaches_the_store_through_event_exporter_and_a_failed_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", Postfix::free_port());
    let _d = start(dir.path(), &format!("listen = \"{addr}\""));
    wait_for("events endpoint", || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    let imap = Postfix::free_port();
    let url = format!("http://{addr}/v1/dovecot");
    let alice = format!("alice@{DOMAIN}");
    let bob = format!("bob@{DOMAIN}");
    let dv = Dovecot::start_imap(
        &[(&alice, "secret"), (&bob, "secret")],
        imap,
        &ImapOptions {
            events_url: Some(&url),
            time_format: "time-rfc3339",
            dict_socket: None,
        },
    )
    .expect("dovecot");
    let before = jiff::Timestamp::now().as_microsecond() - 1_000_000;
    assert!(Dovecot::imap_login(imap, &alice, "secret"), "{}", dv.log());
    assert!(!Dovecot::imap_login(imap, &bob, "wrong"));
    let mut got = BTreeMap::new();
    wait_for("alice's login stored", || {
        got = logins(dir.path(), &now_months());
        !got.is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));
    got = logins(dir.path(), &now_months());
    let keys: Vec<_> = got.keys().cloned().collect();
    assert_eq!(
        keys,
        vec![(alice.clone(), "imap".to_string())],
        "{}",
        dv.log()
    );
    let (t, n) = got[&(alice, "imap".to_string())];
    assert_eq!(n, 1);
    assert!(
        t >= before && t <= jiff::Timestamp::now().as_microsecond(),
        "{t}"
    );
}

#[test]
fn the_last_login_dict_socket_records_imap_logins_and_is_removed_at_stop() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("lastlogin.sock");
    let mut d = start(dir.path(), &format!("dict_socket = \"{}\"", sock.display()));
    wait_for("dict socket", || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    let imap = Postfix::free_port();
    let alice = format!("alice@{DOMAIN}");
    let dv = Dovecot::start_imap(
        &[(&alice, "secret"), (&format!("bob@{DOMAIN}"), "secret")],
        imap,
        &ImapOptions {
            events_url: None,
            time_format: "",
            dict_socket: Some(&sock),
        },
    )
    .expect("dovecot");
    let t0 = Instant::now();
    assert!(Dovecot::imap_login(imap, &alice, "secret"), "{}", dv.log());
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "login took {:?}",
        t0.elapsed()
    );
    assert!(!Dovecot::imap_login(
        imap,
        &format!("bob@{DOMAIN}"),
        "wrong"
    ));
    let mut got = BTreeMap::new();
    wait_for("dict login stored", || {
        got = logins(dir.path(), &now_months());
        !got.is_empty()
    });
    let keys: Vec<_> = got.keys().cloned().collect();
    assert_eq!(keys, vec![(alice, "dovecot".to_string())], "{}", dv.log());

    Command::new("kill")
        .args(["-TERM", &d.0.id().to_string()])
        .status()
        .unwrap();
    let t = Instant::now();
    while d.0.try_wait().unwrap().is_none() {
        assert!(t.elapsed() < Duration::from_secs(15));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!sock.exists(), "socket file left behind");
}

/// Dovecot 2.3's IMAP logins, through both the events endpoint and the
/// dict socket, make the month's Connexions file, exact (the Debian 13
/// lane runs the same check with Dovecot 2.4).
#[test]
fn dovecot_2_3_logins_make_the_exact_connexions_file() {
    let sockdir = tempfile::tempdir().unwrap();
    mss_tests::lanes::logins_make_the_exact_connexions_file(
        sockdir.path(),
        |users, imap, url, sock| {
            let dv = Dovecot::start_imap(
                users,
                imap,
                &ImapOptions {
                    events_url: Some(url),
                    time_format: "time-rfc3339",
                    dict_socket: Some(sock),
                },
            )
            .expect("dovecot 2.3");
            Box::new(dv)
        },
    );
}
