//! The Debian 13 lane: our binaries (built on Debian 12) against Debian 13's
//! Dovecot 2.4 and Postfix 3.10, run in the trixie chroot of
//! `mss_tests::debian13` (built once, cached outside the clone; a chroot that
//! cannot be built fails these tests, they are never skipped).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mss_shared::month::Month;
use mss_shared::store::capture::CaptureStore;
use mss_tests::debian13::{root, Dovecot24};
use mss_tests::dovecot::Dovecot;
use mss_tests::postfix::{Postfix, PostfixBuilder};
use mss_tests::sidecar::{bin, row_triples, rows, RunningProxy, DOMAIN, STAY_ROOT};
use mss_tests::smtp::{queued_as, RawClient};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real `mss-sidecar` with this `[events]` section.
fn start(dir: &Path, events: &str) -> Daemon {
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "{STAY_ROOT}[operator]\ndomains = [\"{DOMAIN}\"]\nnode = \"t1\"\n\n[store]\ncapture_path = \"{}\"\nregistry_path = \"{}\"\n\n[events]\n{events}\n",
            dir.join("capture").display(),
            dir.join("registry").display()
        ),
    )
    .unwrap();
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

/// (bal, service) -> (last login µs, count), this month and the previous.
fn logins(dir: &Path) -> BTreeMap<(String, String), (i64, u64)> {
    let now = Month::current(&jiff::tz::TimeZone::get("Europe/Paris").unwrap());
    let sec = tempfile::tempdir().unwrap();
    let s = CaptureStore::open_secondary(&dir.join("capture"), sec.path()).unwrap();
    let mut all = BTreeMap::new();
    for m in [now.prev(), now] {
        all.extend(s.logins(m).unwrap());
    }
    all
}

#[test]
fn the_chroot_has_dovecot_2_4_and_postfix_3_10() {
    let r = root();
    let dv = std::fs::read_to_string(r.join(".mss-dovecot-version")).unwrap();
    let pf = std::fs::read_to_string(r.join(".mss-postfix-version")).unwrap();
    assert!(dv.starts_with("2.4."), "dovecot {dv}");
    assert!(pf.starts_with("3.10."), "postfix {pf}");
}

#[test]
fn dovecot_2_4_imap_login_reaches_the_events_endpoint_with_its_protocol() {
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
    let dv = Dovecot24::start(
        &[(&alice, "secret"), (&bob, "secret")],
        imap,
        Some(&url),
        None,
    )
    .expect("dovecot 2.4");
    let before = jiff::Timestamp::now().as_microsecond() - 1_000_000;
    assert!(Dovecot::imap_login(imap, &alice, "secret"), "{}", dv.log());
    assert!(!Dovecot::imap_login(imap, &bob, "wrong"));
    wait_for("alice's login stored", || !logins(dir.path()).is_empty());
    std::thread::sleep(Duration::from_millis(500));
    let got = logins(dir.path());
    // `imap`, from the 2.4 `protocol` field (not `unknown`); bob's failure absent.
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

/// Bodies POSTed to a local HTTP listener, collected by a thread until
/// `n` arrived or 20 s passed (answers 200 to each).
fn collect_posts(l: std::net::TcpListener, n: usize) -> std::thread::JoinHandle<Vec<Vec<u8>>> {
    use std::io::{BufRead, BufReader, Read, Write};
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        l.set_nonblocking(true).unwrap();
        let mut bodies = Vec::new();
        while bodies.len() < n && Instant::now() < deadline {
            let Ok((s, _)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            // Requests on this connection (keep-alive), one after the other.
            while bodies.len() < n {
                let mut len = None;
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse::<usize>().ok();
                    }
                }
                let Some(len) = len else { break };
                let mut body = vec![0; len];
                if r.read_exact(&mut body).is_err() {
                    break;
                }
                bodies.push(body);
                let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            }
        }
        bodies
    })
}

/// What Dovecot 2.4.1 really POSTs for `doveadm auth test` and for an IMAP
/// login, with a filter that lets doveadm through (an operator who dropped
/// `NOT protocol=doveadm`): our parser ignores the first (`protocol` =
/// doveadm) and records the second as `imap`.
#[test]
fn dovecot_2_4_real_bodies_doveadm_ignored_imap_recorded() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/dovecot", l.local_addr().unwrap());
    let posts = collect_posts(l, 2);
    let imap = Postfix::free_port();
    let alice = format!("alice@{DOMAIN}");
    let bob = format!("bob@{DOMAIN}");
    let dv = Dovecot24::start_with(
        &[(&alice, "secret"), (&bob, "secret")],
        imap,
        Some((&url, "event=auth_request_finished AND success=yes")),
        None,
    )
    .expect("dovecot 2.4");
    assert!(dv.doveadm_auth_test(&alice, "secret"), "{}", dv.log());
    assert!(Dovecot::imap_login(imap, &bob, "secret"), "{}", dv.log());
    let bodies = posts.join().unwrap();
    assert_eq!(bodies.len(), 2, "{}", dv.log());
    use mss_sidecar::events::{parse_dovecot, DovecotOutcome};
    let text: Vec<String> = bodies
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert!(text[0].contains(r#""protocol":"doveadm""#), "{}", text[0]);
    assert_eq!(
        parse_dovecot(&bodies[0]).unwrap(),
        DovecotOutcome::Ignored("doveadm"),
        "{}",
        text[0]
    );
    match parse_dovecot(&bodies[1]).unwrap() {
        DovecotOutcome::Login(r) => {
            assert_eq!((r.bal.as_str(), r.service.as_str()), (bob.as_str(), "imap"))
        }
        o => panic!("{o:?}: {}", text[1]),
    }
}

#[test]
fn dovecot_2_4_last_login_dict_protocol_4_records_the_login_without_stalling() {
    let dir = tempfile::tempdir().unwrap();
    // The socket must be reachable from inside the chroot.
    let sockdir = tempfile::Builder::new()
        .prefix("mss-dict-")
        .tempdir_in(root().join("tmp"))
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(sockdir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = sockdir.path().join("lastlogin.sock");
    let mut d = start(dir.path(), &format!("dict_socket = \"{}\"", sock.display()));
    wait_for("dict socket", || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    let imap = Postfix::free_port();
    let alice = format!("alice@{DOMAIN}");
    let bob = format!("bob@{DOMAIN}");
    let dv = Dovecot24::start(
        &[(&alice, "secret"), (&bob, "secret")],
        imap,
        None,
        Some(&sock),
    )
    .expect("dovecot 2.4");
    let t0 = Instant::now();
    assert!(Dovecot::imap_login(imap, &alice, "secret"), "{}", dv.log());
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "login took {:?}: {}",
        t0.elapsed(),
        dv.log()
    );
    assert!(!Dovecot::imap_login(imap, &bob, "wrong"));
    wait_for("dict login stored", || !logins(dir.path()).is_empty());
    std::thread::sleep(Duration::from_millis(300));
    let keys: Vec<_> = logins(dir.path()).keys().cloned().collect();
    assert_eq!(keys, vec![(alice, "dovecot".to_string())], "{}", dv.log());
    assert!(
        !dv.log().contains("dict-server returned failure"),
        "{}",
        dv.log()
    );
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

fn sender() -> String {
    format!("dr.a@{DOMAIN}")
}

/// Debian 13's Postfix 3.10, refusing `refused@ext.test`.
fn postfix310(extra: &[String]) -> Postfix {
    let mut b = PostfixBuilder::new()
        .in_root(root())
        .table("rcpt_access", "refused@ext.test REJECT no such user\n", false)
        .main_cf("smtpd_recipient_restrictions = check_recipient_access hash:$config_directory/rcpt_access, permit_mynetworks, reject");
    for l in extra {
        b = b.main_cf(l);
    }
    b.start().expect("postfix 3.10")
}

#[test]
fn postfix_3_10_behind_the_proxy_exact_rows() {
    let pf = postfix310(&[]);
    assert!(
        pf.log().contains("3.10") || pf.wait_log("3.10", Duration::from_secs(5)),
        "{}",
        pf.log()
    );
    let dir = tempfile::tempdir().unwrap();
    let proxy = RunningProxy::start(dir.path(), &pf.addr(), "");
    let (mut c, g) = RawClient::connect(&proxy.addr());
    assert!(g.starts_with("220"), "{g}");
    let from = sender();
    let body = "From: <dr.a@ch-test.mssante.fr>\r\nSubject: hello\r\nMessage-ID: <one@ch-test.mssante.fr>\r\n\r\nbonjour\r\n..stuffed\r\n";
    c.exchange(b"EHLO client.test\r\n", 1);
    let cmds = format!(
        "MAIL FROM:<{from}>\r\nRCPT TO:<ok1@ext.test>\r\nRCPT TO:<refused@ext.test>\r\nRCPT TO:<Ok2@Ext.Test>\r\nDATA\r\n"
    );
    let r = c.exchange(cmds.as_bytes(), 5);
    assert_eq!(RawClient::codes(&r), vec![250, 250, 554, 250, 354], "{r:?}");
    let r = c.exchange(format!("{body}.\r\nQUIT\r\n").as_bytes(), 2);
    assert!(r[0].starts_with("250"), "{r:?}");
    let qid = queued_as(&r[0]).expect("queue id");
    let size = body.replace("\r\n..", "\r\n.").len() as u64;
    assert_eq!(
        row_triples(dir.path()),
        vec![
            (from.clone(), "ok1@ext.test".into(), size),
            (from, "ok2@ext.test".into(), size),
        ]
    );
    let stored = rows(dir.path());
    assert_eq!(stored[0].queue_id.as_deref(), Some(qid.as_str()));
    assert!(stored[0].mail_id.ends_with(&format!(".{qid}")));
}

fn wait_rows(dir: &Path, n: usize) {
    let t = Instant::now();
    while rows(dir).len() < n && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn postfix_3_10_milter_smtp_and_sendmail_exact_rows() {
    let port = Postfix::free_port();
    let dir = tempfile::tempdir().unwrap();
    let _side = RunningProxy::start_milter(dir.path(), &format!("127.0.0.1:{port}"));
    let pf = postfix310(&[
        format!("smtpd_milters = inet:127.0.0.1:{port}"),
        format!("non_smtpd_milters = inet:127.0.0.1:{port}"),
        "milter_default_action = accept".into(),
        "milter_connect_timeout = 5s".into(),
        "milter_command_timeout = 10s".into(),
    ]);
    let (mut c, _) = RawClient::connect(&pf.addr());
    let s = sender();
    // Postfix 3.9+ refuses a command sent before the EHLO reply
    // (smtpd_forbid_unauth_pipelining = yes): EHLO alone first.
    let r = c.exchange(b"EHLO c\r\n", 1);
    assert!(r[0].starts_with("250"), "{r:?}");
    let r = c.exchange(
        format!("MAIL FROM:<{s}>\r\nRCPT TO:<ok1@ext.test>\r\nRCPT TO:<refused@ext.test>\r\nRCPT TO:<ok2@ext.test>\r\nDATA\r\n").as_bytes(),
        5,
    );
    assert_eq!(RawClient::codes(&r), vec![250, 250, 554, 250, 354], "{r:?}");
    let msg = "From: <dr.a@ch-test.mssante.fr>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0100\r\nSubject: hi\r\nMessage-ID: <m1@ch-test.mssante.fr>\r\n\r\nbody line\r\n..stuffed\r\n";
    let r = c.exchange(format!("{msg}.\r\nQUIT\r\n").as_bytes(), 2);
    assert!(r[0].starts_with("250"), "{r:?}");
    let qid = queued_as(&r[0]).unwrap();
    wait_rows(dir.path(), 2);
    let unstuffed = msg.replace("\r\n..", "\r\n.").len() as u64;
    assert_eq!(
        row_triples(dir.path()),
        vec![
            (s.clone(), "ok1@ext.test".into(), unstuffed),
            (s.clone(), "ok2@ext.test".into(), unstuffed)
        ]
    );
    let got = rows(dir.path());
    assert_eq!(got[0].queue_id.as_deref(), Some(qid.as_str()));
    assert_eq!(got[0].frontend, "milter");

    // sendmail(1) of Debian 13 -> pickup -> cleanup -> non_smtpd_milters.
    let app = format!("dpi-app@{DOMAIN}");
    let out = pf
        .sendmail(
            &app,
            &["patient.letter@ext.test"],
            "Subject: lettre\n\ncontenu\n",
        )
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        pf.wait_log("to=<patient.letter@ext.test>", Duration::from_secs(20)),
        "{}",
        pf.log()
    );
    wait_rows(dir.path(), 3);
    let got = rows(dir.path());
    let last: Vec<_> = got
        .iter()
        .filter(|r| r.recipient == "patient.letter@ext.test")
        .collect();
    assert_eq!(last.len(), 1, "{got:?}");
    assert_eq!(last[0].sender, app);
    let qid = last[0].queue_id.clone().expect("queue id");
    assert!(
        pf.log()
            .contains(&format!("{qid}: to=<patient.letter@ext.test>")),
        "{}",
        pf.log()
    );
}

/// The shipped 2.4 snippet (both methods enabled) passes Dovecot 2.4.1's
/// `doveconf -n`; the 2.3 one does not (the reason both exist).
#[test]
fn packaged_dovecot_2_4_snippet_is_accepted_by_doveconf_2_4_and_the_2_3_one_is_not() {
    let r = root();
    let tmp = tempfile::Builder::new()
        .prefix("mss-doveconf-")
        .tempdir_in(r.join("tmp"))
        .unwrap();
    let pkg = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging");
    let doveconf = |snippet: &str| {
        // Uncomment method 2's configuration lines, not the prose.
        let body: String = std::fs::read_to_string(pkg.join(snippet))
            .unwrap()
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest)
                    if rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '}')
                        || rest.starts_with("  ") =>
                {
                    format!("{rest}\n")
                }
                _ => format!("{l}\n"),
            })
            .collect();
        let f = tmp.path().join(snippet);
        std::fs::write(
            &f,
            format!("dovecot_config_version = 2.4.1\ndovecot_storage_version = 2.4.1\n{body}"),
        )
        .unwrap();
        Command::new("timeout")
            .args(["30", "chroot"])
            .arg(r)
            .args(["doveconf", "-n", "-c"])
            .arg(mss_tests::debian13::inner(&f))
            .output()
            .unwrap()
    };
    let out = doveconf("dovecot-2.4-events.conf");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "http_post_url = http://127.0.0.1:8892/v1/dovecot",
        "filter = event=auth_request_finished AND success=yes AND NOT protocol=doveadm",
        "socket_path = /run/mss-sidecar/lastlogin.sock",
        "last_login = yes",
    ] {
        assert!(text.contains(want), "{want} not in {text}");
    }
    assert!(!doveconf("dovecot-events.conf").status.success());
}

/// Dovecot 2.4's IMAP logins, through both the events endpoint and the
/// dict socket, make the month's Connexions file, exact: the same check as
/// the Debian 12 lane's with Dovecot 2.3 (`mss_tests::lanes`).
#[test]
fn dovecot_2_4_logins_make_the_exact_connexions_file() {
    // The socket must be reachable from inside the chroot.
    let sockdir = tempfile::Builder::new()
        .prefix("mss-dict-")
        .tempdir_in(root().join("tmp"))
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(sockdir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    mss_tests::lanes::logins_make_the_exact_connexions_file(
        sockdir.path(),
        |users, imap, url, sock| {
            let dv = Dovecot24::start(users, imap, Some(url), Some(sock)).expect("dovecot 2.4");
            Box::new(dv)
        },
    );
}
