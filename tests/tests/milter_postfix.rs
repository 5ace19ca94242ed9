//! The milter front end behind a real Postfix (`smtpd_milters` and
//! `non_smtpd_milters`), with swaks, raw SMTP and sendmail(1).

use std::sync::Arc;
use std::time::Duration;

use mss_tests::postfix::{Postfix, PostfixBuilder};
use mss_tests::sidecar::{milter_config_text, row_triples, rows, RunningProxy, DOMAIN};
use mss_tests::smtp::{queued_as, RawClient};

fn postfix_with_milter(milter_port: u16) -> Postfix {
    PostfixBuilder::new()
        .table("rcpt_access", "refused@ext.test REJECT no such user\n", false)
        .table("header_checks", "/^Subject: .*REJECTME/ REJECT refused by header_checks\n", true)
        .main_cf("smtpd_recipient_restrictions = check_recipient_access hash:$config_directory/rcpt_access, permit_mynetworks, reject")
        .main_cf("header_checks = regexp:$config_directory/header_checks")
        .main_cf(&format!("smtpd_milters = inet:127.0.0.1:{milter_port}"))
        .main_cf(&format!("non_smtpd_milters = inet:127.0.0.1:{milter_port}"))
        .main_cf("milter_default_action = accept")
        .main_cf("milter_connect_timeout = 5s")
        .main_cf("milter_command_timeout = 10s")
        .start()
        .expect("postfix")
}

fn sender() -> String {
    format!("dr.a@{DOMAIN}")
}

/// Wait until `n` rows are stored (the milter commits at end-of-message,
/// which Postfix reaches just before it answers the client).
fn wait_rows(dir: &std::path::Path, n: usize) {
    for _ in 0..100 {
        if rows(dir).len() >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn milter_records_accepted_recipients_with_queue_id_and_exact_size() {
    let port = Postfix::free_port();
    let dir = tempfile::tempdir().unwrap();
    let _side = RunningProxy::start_milter(dir.path(), &format!("127.0.0.1:{port}"));
    let pf = postfix_with_milter(port);
    let (mut c, _) = RawClient::connect(&pf.addr());
    let s = sender();
    let r = c.exchange(
        format!("EHLO c\r\nMAIL FROM:<{s}>\r\nRCPT TO:<ok1@ext.test>\r\nRCPT TO:<refused@ext.test>\r\nRCPT TO:<ok2@ext.test>\r\nDATA\r\n").as_bytes(),
        6,
    );
    assert_eq!(
        RawClient::codes(&r),
        vec![250, 250, 250, 554, 250, 354],
        "{r:?}"
    );
    // Date and From present: Postfix adds no header (it would, and show it to the milter).
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
            (s, "ok2@ext.test".into(), unstuffed)
        ]
    );
    let got = rows(dir.path());
    assert_eq!(got[0].queue_id.as_deref(), Some(qid.as_str()));
    assert_eq!(got[0].frontend, "milter");
    assert_eq!(got[0].message_id.as_deref(), Some("m1@ch-test.mssante.fr"));
    assert!(got[0].mail_id.ends_with(&format!(".{qid}")));
}

#[test]
fn milter_header_checks_rejection_leaves_no_row() {
    let port = Postfix::free_port();
    let dir = tempfile::tempdir().unwrap();
    let side = RunningProxy::start_milter(dir.path(), &format!("127.0.0.1:{port}"));
    let pf = postfix_with_milter(port);
    let bad = mss_tests::swaks::send(
        &pf.addr(),
        &sender(),
        &["x@ext.test"],
        &["--header", "Subject: REJECTME please"],
    );
    assert!(!bad.ok, "{}", bad.transcript);
    assert!(
        bad.transcript.contains("refused by header_checks"),
        "{}",
        bad.transcript
    );
    let good = mss_tests::swaks::send(&pf.addr(), &sender(), &["y@ext.test"], &[]);
    assert!(good.ok, "{}", good.transcript);
    wait_rows(dir.path(), 1);
    std::thread::sleep(Duration::from_millis(200));
    let got: Vec<String> = rows(dir.path()).into_iter().map(|r| r.recipient).collect();
    assert_eq!(got, vec!["y@ext.test".to_string()]);
    assert!(side.metrics.milter.aborted.get() >= 1);
}

#[test]
fn sendmail_injection_goes_through_non_smtpd_milters() {
    let port = Postfix::free_port();
    let dir = tempfile::tempdir().unwrap();
    let _side = RunningProxy::start_milter(dir.path(), &format!("127.0.0.1:{port}"));
    let pf = postfix_with_milter(port);
    let app = format!("dpi-app@{DOMAIN}");
    let out = pf
        .sendmail(
            &app,
            &["patient.letter@ext.test"],
            "Subject: lettre de sortie\n\ncontenu\n",
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
    wait_rows(dir.path(), 1);
    let got = rows(dir.path());
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].sender.as_str(), got[0].recipient.as_str()),
        (app.as_str(), "patient.letter@ext.test")
    );
    let qid = got[0].queue_id.clone().expect("queue id from the i macro");
    assert!(
        pf.log()
            .contains(&format!("{qid}: to=<patient.letter@ext.test>")),
        "{}",
        pf.log()
    );
    // Headers as cleanup passes them (with CRLF), blank line, body with CRLF.
    assert!(got[0].size >= "Subject: lettre de sortie\r\n\r\ncontenu\r\n".len() as u64);
}

#[test]
fn forged_mail_auth_parameter_is_not_a_login() {
    let port = Postfix::free_port();
    let dir = tempfile::tempdir().unwrap();
    let _side = RunningProxy::start_milter(dir.path(), &format!("127.0.0.1:{port}"));
    let pf = postfix_with_milter(port);
    let (mut c, _) = RawClient::connect(&pf.addr());
    let r = c.exchange(
        format!(
            "EHLO c\r\nMAIL FROM:<{}> AUTH=<boss@{DOMAIN}>\r\nRCPT TO:<z@ext.test>\r\nDATA\r\n",
            sender()
        )
        .as_bytes(),
        4,
    );
    assert_eq!(RawClient::codes(&r), vec![250, 250, 250, 354], "{r:?}");
    let r = c.exchange(b"Subject: s\r\n\r\nx\r\n.\r\nQUIT\r\n", 2);
    assert!(r[0].starts_with("250"));
    wait_rows(dir.path(), 1);
    let sec = tempfile::tempdir().unwrap();
    let store = mss_shared::store::capture::CaptureStore::open_secondary(
        &dir.path().join("capture"),
        sec.path(),
    )
    .unwrap();
    let tz = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
    assert!(store
        .logins(mss_shared::month::Month::current(&tz))
        .unwrap()
        .is_empty());
    assert_eq!(rows(dir.path()).len(), 1);
}

#[test]
fn sidecar_down_mail_still_accepted_and_restart_loses_nothing_after() {
    let port = Postfix::free_port();
    let dir = tempfile::tempdir().unwrap();
    let pf = postfix_with_milter(port);
    // Nobody listens on the milter port: milter_default_action = accept.
    let out = mss_tests::swaks::send(&pf.addr(), &sender(), &["while-down@ext.test"], &[]);
    assert!(out.ok, "{}", out.transcript);
    assert!(
        pf.log()
            .contains("connect to Milter service inet:127.0.0.1"),
        "{}",
        pf.log()
    );
    // Sidecar comes back: every message accepted from now on has its row.
    let mut side = RunningProxy::start_milter(dir.path(), &format!("127.0.0.1:{port}"));
    for i in 0..3 {
        let out =
            mss_tests::swaks::send(&pf.addr(), &sender(), &[&format!("after{i}@ext.test")], &[]);
        assert!(out.ok, "{}", out.transcript);
    }
    wait_rows(dir.path(), 3);
    side.stop();
    let got: Vec<String> = rows(dir.path()).into_iter().map(|r| r.recipient).collect();
    let mut want = vec!["after0@ext.test", "after1@ext.test", "after2@ext.test"];
    let mut got_sorted = got.clone();
    got_sorted.sort();
    want.sort();
    assert_eq!(got_sorted, want);
}

struct Broken;
impl mss_sidecar::capture::Sink for Broken {
    fn commit(&self, _: &[mss_shared::model::Record]) -> Result<(), String> {
        Err("injected store failure".into())
    }
}

#[test]
fn milter_with_failing_store_accepts_mail_and_journals() {
    let port = Postfix::free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = mss_shared::config::Config::parse(&milter_config_text(
        dir.path(),
        &format!("127.0.0.1:{port}"),
    ))
    .unwrap();
    let mut side = RunningProxy::start_with_sink(dir.path(), cfg, Arc::new(Broken));
    let pf = postfix_with_milter(port);
    let out = mss_tests::swaks::send(&pf.addr(), &sender(), &["journaled@ext.test"], &[]);
    assert!(out.ok, "{}", out.transcript);
    side.stop();
    let j = std::fs::read_to_string(dir.path().join("capture.journal")).unwrap();
    assert!(
        j.contains("journaled@ext.test") && j.contains("\"frontend\":\"milter\""),
        "{j}"
    );
    let _side = RunningProxy::start_milter(dir.path(), &format!("127.0.0.1:{port}"));
    assert_eq!(
        row_triples(dir.path())
            .into_iter()
            .map(|r| r.1)
            .collect::<Vec<_>>(),
        vec!["journaled@ext.test".to_string()]
    );
}

#[test]
fn sasl_authenticated_submission_records_one_login_with_the_authenticated_name() {
    let user = format!("alice@{DOMAIN}");
    let dv = mss_tests::dovecot::Dovecot::start(&[(&user, "secret")]).expect("dovecot");
    let port = Postfix::free_port();
    let dir = tempfile::tempdir().unwrap();
    let _side = RunningProxy::start_milter(dir.path(), &format!("127.0.0.1:{port}"));
    let pf = PostfixBuilder::new()
        .main_cf(&format!("smtpd_milters = inet:127.0.0.1:{port}"))
        .main_cf("milter_default_action = accept")
        .main_cf("smtpd_sasl_auth_enable = yes")
        .main_cf("smtpd_sasl_type = dovecot")
        .main_cf(&format!("smtpd_sasl_path = {}", dv.auth_socket.display()))
        .main_cf("mynetworks = 192.0.2.0/24")
        .main_cf("smtpd_relay_restrictions = permit_sasl_authenticated, reject")
        .start()
        .expect("postfix");
    let out = mss_tests::swaks::send(
        &pf.addr(),
        &user,
        &["report@ext.test"],
        &[
            "--auth",
            "PLAIN",
            "--auth-user",
            &user,
            "--auth-password",
            "secret",
        ],
    );
    assert!(out.ok, "{}\n{}", out.transcript, pf.log());
    assert!(
        pf.log().contains(&format!("sasl_username={user}")),
        "{}",
        pf.log()
    );
    // Unauthenticated relay is refused by this Postfix: no row, no login.
    let refused = mss_tests::swaks::send(&pf.addr(), &user, &["report2@ext.test"], &[]);
    assert!(!refused.ok);
    wait_rows(dir.path(), 1);
    std::thread::sleep(Duration::from_millis(300));
    let sec = tempfile::tempdir().unwrap();
    let store = mss_shared::store::capture::CaptureStore::open_secondary(
        &dir.path().join("capture"),
        sec.path(),
    )
    .unwrap();
    let tz = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
    let logins: Vec<(String, String, u64)> = store
        .logins(mss_shared::month::Month::current(&tz))
        .unwrap()
        .into_iter()
        .map(|((b, s), (_, n))| (b, s, n))
        .collect();
    assert_eq!(logins, vec![(user.clone(), "smtp".to_string(), 1)]);
    assert_eq!(
        row_triples(dir.path())
            .into_iter()
            .map(|r| r.1)
            .collect::<Vec<_>>(),
        vec!["report@ext.test".to_string()]
    );
}
