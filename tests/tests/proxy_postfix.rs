//! The SMTP proxy in front of a real Postfix (Debian's), driven by real
//! clients (swaks, raw sockets). Every test asserts the exact rows stored.

use std::sync::Arc;
use std::time::Duration;

use mss_tests::postfix::{Postfix, PostfixBuilder};
use mss_tests::sidecar::{row_triples, rows, RunningProxy, DOMAIN};
use mss_tests::smtp::{queued_as, RawClient};

fn sender() -> String {
    format!("dr.a@{DOMAIN}")
}

/// Postfix refusing `refused@ext.test` and messages whose Subject says REJECTME.
fn postfix() -> Postfix {
    PostfixBuilder::new()
        .table("rcpt_access", "refused@ext.test REJECT no such user\n", false)
        .table("header_checks", "/^Subject: .*REJECTME/ REJECT refused by header_checks\n", true)
        .main_cf("smtpd_recipient_restrictions = check_recipient_access hash:$config_directory/rcpt_access, permit_mynetworks, reject")
        .main_cf("header_checks = regexp:$config_directory/header_checks")
        .start()
        .expect("private postfix")
}

#[test]
fn refused_recipient_leaves_no_row_and_accepted_ones_share_the_mail_id() {
    let pf = postfix();
    let dir = tempfile::tempdir().unwrap();
    let proxy = RunningProxy::start(dir.path(), &pf.addr(), "");
    let (mut c, g) = RawClient::connect(&proxy.addr());
    assert!(g.starts_with("220"), "{g}");
    let from = sender();
    let body = "From: <dr.a@ch-test.mssante.fr>\r\nSubject: hello\r\nMessage-ID: <one@ch-test.mssante.fr>\r\n\r\nbonjour\r\n";
    let r = c.exchange(b"EHLO client.test\r\n", 1);
    assert!(r[0].contains("PIPELINING"), "{r:?}");
    let cmds = format!(
        "MAIL FROM:<{from}>\r\nRCPT TO:<ok1@ext.test>\r\nRCPT TO:<refused@ext.test>\r\nRCPT TO:<Ok2@Ext.Test>\r\nDATA\r\n"
    );
    let r = c.exchange(cmds.as_bytes(), 5);
    assert_eq!(RawClient::codes(&r), vec![250, 250, 554, 250, 354], "{r:?}");
    let r = c.exchange(format!("{body}.\r\nQUIT\r\n").as_bytes(), 2);
    assert!(r[0].starts_with("250"), "{r:?}");
    let qid = queued_as(&r[0]).expect("queue id");
    let stored = rows(dir.path());
    assert_eq!(
        row_triples(dir.path()),
        vec![
            (from.clone(), "ok1@ext.test".into(), body.len() as u64),
            (from.clone(), "ok2@ext.test".into(), body.len() as u64),
        ]
    );
    assert_eq!(stored[0].mail_id, stored[1].mail_id);
    assert!(
        stored[0].mail_id.starts_with("t1.") && stored[0].mail_id.ends_with(&qid),
        "{}",
        stored[0].mail_id
    );
    assert_eq!(stored[0].queue_id.as_deref(), Some(qid.as_str()));
    assert_eq!(
        stored[0].message_id.as_deref(),
        Some("one@ch-test.mssante.fr")
    );
    assert_eq!(stored[0].domain, DOMAIN);
}

#[test]
fn message_refused_by_header_checks_leaves_no_row() {
    let pf = postfix();
    let dir = tempfile::tempdir().unwrap();
    let proxy = RunningProxy::start(dir.path(), &pf.addr(), "");
    let (mut c, _) = RawClient::connect(&proxy.addr());
    let r = c.exchange(
        format!(
            "EHLO c\r\nMAIL FROM:<{}>\r\nRCPT TO:<x@ext.test>\r\nDATA\r\n",
            sender()
        )
        .as_bytes(),
        4,
    );
    assert_eq!(RawClient::codes(&r), vec![250, 250, 250, 354]);
    let r = c.exchange(b"Subject: please REJECTME\r\n\r\nx\r\n.\r\n", 1);
    assert!(r[0].starts_with("550"), "{r:?}");
    // A good message afterwards in the same session is recorded.
    let r = c.exchange(
        format!(
            "MAIL FROM:<{}>\r\nRCPT TO:<y@ext.test>\r\nDATA\r\n",
            sender()
        )
        .as_bytes(),
        3,
    );
    assert_eq!(RawClient::codes(&r), vec![250, 250, 354]);
    let r = c.exchange(b"Subject: fine\r\n\r\nx\r\n.\r\n", 1);
    assert!(r[0].starts_with("250"), "{r:?}");
    assert_eq!(
        row_triples(dir.path()),
        vec![(
            sender(),
            "y@ext.test".into(),
            "Subject: fine\r\n\r\nx\r\n".len() as u64
        )]
    );
}

#[test]
fn inbound_only_mail_makes_no_outbound_row_but_marks_reception() {
    let pf = postfix();
    let dir = tempfile::tempdir().unwrap();
    let proxy = RunningProxy::start(dir.path(), &pf.addr(), "");
    let out = mss_tests::swaks::send(
        &proxy.addr(),
        "someone@ext.test",
        &[&format!("app@{DOMAIN}")],
        &[],
    );
    assert!(out.ok, "{}", out.transcript);
    assert!(rows(dir.path()).is_empty());
    let sec = tempfile::tempdir().unwrap();
    let store = mss_shared::store::capture::CaptureStore::open_secondary(
        &dir.path().join("capture"),
        sec.path(),
    )
    .unwrap();
    let tz = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
    let rcv = store
        .received(mss_shared::month::Month::current(&tz))
        .unwrap();
    assert_eq!(
        rcv.keys().cloned().collect::<Vec<_>>(),
        vec![format!("app@{DOMAIN}")]
    );
}

#[test]
fn pipelined_transactions_and_rset_in_one_session() {
    let pf = postfix();
    let dir = tempfile::tempdir().unwrap();
    let proxy = RunningProxy::start(dir.path(), &pf.addr(), "");
    let (mut c, _) = RawClient::connect(&proxy.addr());
    c.exchange(b"EHLO c\r\n", 1);
    let s = sender();
    // Transaction 1 aborted by RSET, transaction 2 and 3 pipelined up to DATA.
    let r = c.exchange(
        format!("MAIL FROM:<{s}>\r\nRCPT TO:<aborted@ext.test>\r\nRSET\r\nMAIL FROM:<{s}>\r\nRCPT TO:<two@ext.test>\r\nDATA\r\n").as_bytes(),
        6,
    );
    assert_eq!(RawClient::codes(&r), vec![250, 250, 250, 250, 250, 354]);
    let r = c.exchange(
        b"m2\r\n.\r\nMAIL FROM:<b@ch-autre.mssante.fr>\r\nRCPT TO:<three@ext.test>\r\nRCPT TO:<four@ext.test>\r\nDATA\r\n",
        5,
    );
    assert_eq!(RawClient::codes(&r), vec![250, 250, 250, 250, 354], "{r:?}");
    let r = c.exchange(b"m3 longer\r\n.\r\nQUIT\r\n", 2);
    assert_eq!(RawClient::codes(&r), vec![250, 221]);
    let got: Vec<(String, String, String, u64)> = rows(dir.path())
        .into_iter()
        .map(|r| (r.domain, r.sender, r.recipient, r.size))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "ch-autre.mssante.fr".into(),
                "b@ch-autre.mssante.fr".into(),
                "four@ext.test".into(),
                11
            ),
            (
                "ch-autre.mssante.fr".into(),
                "b@ch-autre.mssante.fr".into(),
                "three@ext.test".into(),
                11
            ),
            (DOMAIN.into(), s.clone(), "two@ext.test".into(), 4),
        ]
    );
}

#[test]
fn bdat_and_dot_stuffed_bodies_have_exact_sizes() {
    let pf = postfix();
    let dir = tempfile::tempdir().unwrap();
    let proxy = RunningProxy::start(dir.path(), &pf.addr(), "");
    let (mut c, _) = RawClient::connect(&proxy.addr());
    let r = c.exchange(b"EHLO c\r\n", 1);
    assert!(r[0].contains("CHUNKING"), "{r:?}");
    let s = sender();
    // BDAT in two chunks: 10 + 8 bytes.
    let r = c.exchange(
        format!("MAIL FROM:<{s}> BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<bdat@ext.test>\r\nBDAT 10\r\nSubject: x").as_bytes(),
        3,
    );
    assert_eq!(RawClient::codes(&r), vec![250, 250, 250], "{r:?}");
    let r = c.exchange(b"BDAT 8 LAST\r\n\r\n\r\nab\r\n", 1);
    assert!(
        r[0].starts_with("250") && r[0].contains("queued as"),
        "{r:?}"
    );
    // DATA with dot-stuffed lines: ".." on the wire is "." in the message.
    let r = c.exchange(
        format!("MAIL FROM:<{s}>\r\nRCPT TO:<dots@ext.test>\r\nDATA\r\n").as_bytes(),
        3,
    );
    assert_eq!(RawClient::codes(&r), vec![250, 250, 354]);
    let r = c.exchange(b"Subject: d\r\n\r\n..\r\n...x\r\n.\r\n", 1);
    assert!(r[0].starts_with("250"), "{r:?}");
    let unstuffed = "Subject: d\r\n\r\n.\r\n..x\r\n".len() as u64;
    assert_eq!(
        row_triples(dir.path()),
        vec![
            (s.clone(), "bdat@ext.test".into(), 18),
            (s, "dots@ext.test".into(), unstuffed)
        ]
    );
}

#[test]
fn smuggling_attempt_is_refused_and_nothing_is_smuggled() {
    let pf = postfix();
    let dir = tempfile::tempdir().unwrap();
    let proxy = RunningProxy::start(dir.path(), &pf.addr(), "");
    let (mut c, _) = RawClient::connect(&proxy.addr());
    let s = sender();
    let r = c.exchange(
        format!("EHLO c\r\nMAIL FROM:<{s}>\r\nRCPT TO:<v@ext.test>\r\nDATA\r\n").as_bytes(),
        4,
    );
    assert_eq!(RawClient::codes(&r), vec![250, 250, 250, 354]);
    let r = c.exchange(
        format!("Subject: s\r\n\r\nx\n.\r\nMAIL FROM:<{s}>\r\nRCPT TO:<smuggled@ext.test>\r\nDATA\r\nevil\r\n.\r\n").as_bytes(),
        1,
    );
    assert!(r[0].starts_with("554 5.5.2"), "{r:?}");
    assert_eq!(c.reply(), "", "session closed");
    std::thread::sleep(Duration::from_millis(500));
    assert!(rows(dir.path()).is_empty());
    assert!(!pf.log().contains("smuggled@ext.test"), "{}", pf.log());
}

#[test]
fn upstream_down_gives_421_and_no_row() {
    let dir = tempfile::tempdir().unwrap();
    let port = Postfix::free_port();
    let proxy = RunningProxy::start(dir.path(), &format!("127.0.0.1:{port}"), "");
    let (_c, g) = RawClient::connect(&proxy.addr());
    assert!(g.starts_with("421 4.4.1"), "{g}");
    assert!(rows(dir.path()).is_empty());
    assert_eq!(proxy.metrics.proxy.upstream_errors.get(), 1);
}

/// Postfix's before-queue content filter: Postfix → proxy → second smtpd.
#[test]
fn as_smtpd_proxy_filter_the_queue_id_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let inner = Postfix::free_port();
    let proxy = RunningProxy::start(dir.path(), &format!("127.0.0.1:{inner}"), "");
    let pf = PostfixBuilder::new()
        .main_cf(&format!("smtpd_proxy_filter = {}", proxy.addr()))
        .main_cf("smtpd_proxy_options = speed_adjust")
        .master_cf(&format!(
            "127.0.0.1:{inner} inet n - n - - smtpd\n  -o smtpd_proxy_filter=\n  -o smtpd_authorized_xforward_hosts=127.0.0.0/8\n  -o smtpd_client_restrictions=\n  -o smtpd_recipient_restrictions=permit_mynetworks,reject\n  -o mynetworks=127.0.0.0/8"
        ))
        .start()
        .expect("postfix");
    let out = mss_tests::swaks::send(&pf.addr(), &sender(), &["r1@ext.test", "r2@ext.test"], &[]);
    assert!(out.ok, "{}", out.transcript);
    let qid = queued_as(&out.transcript).expect("queued as in the final reply");
    let stored = rows(dir.path());
    assert_eq!(stored.len(), 2, "{stored:?}");
    for r in &stored {
        assert_eq!(r.queue_id.as_deref(), Some(qid.as_str()));
        assert!(r.mail_id.ends_with(&format!(".{qid}")), "{}", r.mail_id);
    }
    assert!(
        pf.wait_log(&format!("{qid}: to=<r2@ext.test>"), Duration::from_secs(10)),
        "{}",
        pf.log()
    );
}

#[test]
fn starttls_on_both_sides() {
    let certs = tempfile::tempdir().unwrap();
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = certs.path().join("cert.pem");
    let key = certs.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let pf = PostfixBuilder::new()
        .main_cf(&format!("smtpd_tls_cert_file = {}", cert.display()))
        .main_cf(&format!("smtpd_tls_key_file = {}", key.display()))
        .main_cf("smtpd_tls_security_level = may")
        .main_cf("smtpd_tls_loglevel = 1")
        .start()
        .expect("postfix");
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\nupstream_tls = \"required\"\n",
        cert.display(),
        key.display()
    );
    let proxy = RunningProxy::start(dir.path(), &pf.addr(), &extra);
    let out = mss_tests::swaks::send(&proxy.addr(), &sender(), &["tls@ext.test"], &["--tls"]);
    assert!(out.ok, "{}", out.transcript);
    assert!(out.transcript.contains("TLS started"), "{}", out.transcript);
    assert!(
        pf.wait_log(
            "TLS connection established from localhost",
            Duration::from_secs(5)
        ),
        "{}",
        pf.log()
    );
    let got = rows(dir.path());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].recipient, "tls@ext.test");
}

/// An upstream that offers AUTH PLAIN (scripted: Postfix needs a SASL server for that).
fn scripted_auth_upstream() -> std::net::SocketAddr {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let mut s = s.unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            s.write_all(b"220 scripted ESMTP\r\n").unwrap();
            let mut line = String::new();
            while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                let up = line.to_ascii_uppercase();
                let reply: &[u8] = if up.starts_with("EHLO") {
                    b"250-scripted\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n"
                } else if up.starts_with("AUTH PLAIN AGFSAWNL") {
                    b"235 2.7.0 Authentication successful\r\n" // user "alice"
                } else if up.starts_with("AUTH") {
                    b"535 5.7.8 Authentication failed\r\n"
                } else if up.starts_with("QUIT") {
                    s.write_all(b"221 bye\r\n").unwrap();
                    break;
                } else {
                    b"250 ok\r\n"
                };
                s.write_all(reply).unwrap();
                line.clear();
            }
        }
    });
    addr
}

#[test]
fn auth_plain_success_records_one_login_and_forged_auth_param_none() {
    let up = scripted_auth_upstream();
    let dir = tempfile::tempdir().unwrap();
    let proxy = RunningProxy::start(dir.path(), &up.to_string(), "");
    let (mut c, _) = RawClient::connect(&proxy.addr());
    // "\0alice\0secret" and a wrong password
    let r = c.exchange(b"EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", 2);
    assert_eq!(RawClient::codes(&r), vec![250, 235]);
    let r = c.exchange(b"AUTH PLAIN AGJvYgB3cm9uZw==\r\nMAIL FROM:<x@ext.test> AUTH=<bob@ch-test.mssante.fr>\r\nQUIT\r\n", 3);
    assert_eq!(RawClient::codes(&r), vec![535, 250, 221]);
    std::thread::sleep(Duration::from_millis(300));
    let sec = tempfile::tempdir().unwrap();
    let store = mss_shared::store::capture::CaptureStore::open_secondary(
        &dir.path().join("capture"),
        sec.path(),
    )
    .unwrap();
    let tz = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
    let logins = store
        .logins(mss_shared::month::Month::current(&tz))
        .unwrap();
    let got: Vec<(String, String, u64)> = logins
        .iter()
        .map(|((b, s), (_, n))| (b.clone(), s.clone(), *n))
        .collect();
    assert_eq!(got, vec![("alice".into(), "smtp".into(), 1)]);
}

/// A store that refuses every write.
struct Broken;
impl mss_sidecar::capture::Sink for Broken {
    fn commit(&self, _: &[mss_shared::model::Record]) -> Result<(), String> {
        Err("disk on fire (injected)".into())
    }
}

#[test]
fn failing_store_mail_still_flows_and_journal_replays() {
    let pf = postfix();
    let dir = tempfile::tempdir().unwrap();
    let cfg = mss_shared::config::Config::parse(&mss_tests::sidecar::config_text(
        dir.path(),
        "127.0.0.1:0",
        &pf.addr(),
        "",
    ))
    .unwrap();
    let mut broken = RunningProxy::start_with_sink(dir.path(), cfg, Arc::new(Broken));
    let out = mss_tests::swaks::send(
        &broken.addr(),
        &sender(),
        &["j1@ext.test", "j2@ext.test"],
        &[],
    );
    assert!(out.ok, "mail must flow: {}", out.transcript);
    assert_eq!(broken.metrics.journal_records.get(), 1);
    broken.stop();
    let journal = std::fs::read_to_string(dir.path().join("capture.journal")).unwrap();
    assert_eq!(journal.lines().count(), 1, "{journal}");
    assert!(journal.contains("j2@ext.test"));
    // Next start on the real store: the journal is replayed, then removed.
    let proxy = RunningProxy::start(dir.path(), &pf.addr(), "");
    let got = row_triples(dir.path());
    assert_eq!(
        got.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
        vec!["j1@ext.test", "j2@ext.test"]
    );
    assert!(!dir.path().join("capture.journal").exists());
    drop(proxy);
}
