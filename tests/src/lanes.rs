//! Checks run the same way in the Debian 12 lane (the host's Dovecot 2.3)
//! and the Debian 13 lane (Dovecot 2.4 in the trixie chroot): "the same
//! behaviour, byte for byte".

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mss_shared::month::{format_csv_date, from_micros, Month};
use mss_shared::store::capture::CaptureStore;

use crate::config::TestConfig;
use crate::daemon::Daemon;
use crate::dovecot::Dovecot;
use crate::postfix::Postfix;
use crate::sidecar::DOMAIN;

/// IMAP logins (alice twice, carol once, bob with a wrong password), through
/// the events endpoint and the dict socket (`sock_dir` holds the socket: it
/// must be reachable by that Dovecot), then `mss-export build`: the month's
/// Connexions file is exactly alice and carol with their last login, bob
/// absent. Panics on any difference. `start_dovecot` starts a Dovecot with
/// these users, IMAP on this port, posting events to this URL and calling
/// `last_login` on this dict socket, kept alive by the returned box.
pub fn logins_make_the_exact_connexions_file(
    sock_dir: &Path,
    start_dovecot: impl Fn(&[(&str, &str)], u16, &str, &Path) -> Box<dyn std::any::Any>,
) {
    let dir = tempfile::tempdir().unwrap();
    let sock = sock_dir.join("lastlogin.sock");
    let addr = format!("127.0.0.1:{}", Postfix::free_port());
    let text = TestConfig::new(dir.path())
        .events(&addr)
        .with(|c| {
            if let Some(e) = c.events.as_mut() {
                e.dict_socket = Some(sock.clone());
            }
        })
        .text();
    let mut daemon = Daemon::start(dir.path(), &text, &addr);
    let t = Instant::now();
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(t.elapsed() < Duration::from_secs(20), "dict socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    let imap = Postfix::free_port();
    let (alice, bob, carol) = (
        format!("alice@{DOMAIN}"),
        format!("bob@{DOMAIN}"),
        format!("carol@{DOMAIN}"),
    );
    let dv = start_dovecot(
        &[(&alice, "secret"), (&bob, "secret"), (&carol, "secret")],
        imap,
        &format!("http://{addr}/v1/dovecot"),
        &sock,
    );
    assert!(Dovecot::imap_login(imap, &alice, "secret"));
    assert!(Dovecot::imap_login(imap, &carol, "secret"));
    assert!(Dovecot::imap_login(imap, &alice, "secret"));
    assert!(!Dovecot::imap_login(imap, &bob, "wrong"));
    let tz = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
    let month = Month::current(&tz);
    // (bal, source) -> (last µs, count); both sources for each login.
    let logins = || {
        let sec = tempfile::tempdir().unwrap();
        let s = CaptureStore::open_secondary(&dir.path().join("capture"), sec.path()).unwrap();
        let mut all = std::collections::BTreeMap::new();
        for m in [month.prev(), month] {
            all.extend(s.logins(m).unwrap());
        }
        all
    };
    let t = Instant::now();
    let want = |g: &std::collections::BTreeMap<(String, String), (i64, u64)>| {
        g.values().map(|(_, n)| n).sum::<u64>() == 6
    };
    let mut got = logins();
    while !want(&got) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "logins stored: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
        got = logins();
    }
    let keys: Vec<(String, String)> = got.keys().cloned().collect();
    assert_eq!(
        keys,
        [
            (alice.clone(), "dovecot".to_string()),
            (alice.clone(), "imap".to_string()),
            (carol.clone(), "dovecot".to_string()),
            (carol.clone(), "imap".to_string()),
        ]
    );
    drop(dv);
    let _ = Command::new("kill")
        .arg(daemon.child.id().to_string())
        .status();
    let _ = crate::guard::wait_within(&mut daemon.child, Duration::from_secs(15));
    let last = |bal: &str| {
        let us = got
            .iter()
            .filter(|((b, _), _)| b == bal)
            .map(|(_, (t, _))| *t)
            .max()
            .unwrap();
        format_csv_date(from_micros(us), &tz)
    };
    let built = crate::files::build(&dir.path().join("config.toml"), &month.to_string(), &[]);
    assert_eq!(built.code, 0, "{}", built.stderr);
    let csv = built.connexions;
    assert_eq!(
        csv,
        format!(
            "BAL;DATE_DERNIERE_CONNEXION\r\n{alice};{}\r\n{carol};{}\r\n",
            last(&alice),
            last(&carol)
        )
    );
}
