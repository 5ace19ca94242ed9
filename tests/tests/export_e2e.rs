//! End to end: real Postfix with the sidecar milter, mail sent by real
//! clients, then `mss-export build`: the archive holds exactly the accepted
//! recipients of the accepted messages.

use std::io::Read;
use std::process::Command;
use std::time::Duration;

use mss_shared::month::{format_csv_date, from_micros, Month};
use mss_tests::postfix::{Postfix, PostfixBuilder};
use mss_tests::sidecar::{bin, milter_config_text, rows, RunningProxy, DOMAIN};
use mss_tests::smtp::RawClient;

#[test]
fn postfix_milter_capture_then_export_gives_exactly_the_accepted_rows() {
    let port = Postfix::free_port();
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let side = RunningProxy::start_milter(dir.path(), &listen);
    let pf = PostfixBuilder::new()
        .table("rcpt_access", "refused@ext.test REJECT no such user\n", false)
        .table("header_checks", "/^Subject: .*REJECTME/ REJECT refused by header_checks\n", true)
        .main_cf("smtpd_recipient_restrictions = check_recipient_access hash:$config_directory/rcpt_access, permit_mynetworks, reject")
        .main_cf("header_checks = regexp:$config_directory/header_checks")
        .main_cf(&format!("smtpd_milters = inet:{listen}"))
        .main_cf("milter_default_action = accept")
        .start()
        .expect("postfix");

    let a = format!("dr.a@{DOMAIN}");
    // One recipient refused by Postfix: two rows.
    let (mut c, _) = RawClient::connect(&pf.addr());
    let r = c.exchange(
        format!("EHLO c\r\nMAIL FROM:<{a}>\r\nRCPT TO:<ok1@ext.test>\r\nRCPT TO:<refused@ext.test>\r\nRCPT TO:<ok2@ext.test>\r\nDATA\r\n").as_bytes(),
        6,
    );
    assert_eq!(
        RawClient::codes(&r),
        vec![250, 250, 250, 554, 250, 354],
        "{r:?}"
    );
    let body = format!("From: <{a}>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0100\r\nSubject: one\r\nMessage-ID: <e2e-1@{DOMAIN}>\r\n\r\nhello\r\n");
    let r = c.exchange(format!("{body}.\r\n").as_bytes(), 1);
    assert!(r[0].starts_with("250"), "{r:?}");
    // Refused by header_checks: no row.
    let r = c.exchange(
        format!("MAIL FROM:<{a}>\r\nRCPT TO:<ok3@ext.test>\r\nDATA\r\n").as_bytes(),
        3,
    );
    assert_eq!(RawClient::codes(&r), vec![250, 250, 354], "{r:?}");
    let r = c.exchange(
        format!("From: <{a}>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0100\r\nSubject: REJECTME\r\n\r\nx\r\n.\r\n").as_bytes(),
        1,
    );
    assert!(r[0].starts_with("550"), "{r:?}");
    // Inbound only: no Echanges row.
    let r = c.exchange(
        b"MAIL FROM:<someone@ext.test>\r\nRCPT TO:<dr.b@ch-test.mssante.fr>\r\nDATA\r\n",
        3,
    );
    assert_eq!(RawClient::codes(&r), vec![250, 250, 354], "{r:?}");
    let r = c.exchange(b"From: <someone@ext.test>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0100\r\nSubject: in\r\n\r\nx\r\n.\r\nQUIT\r\n", 2);
    assert!(r[0].starts_with("250"), "{r:?}");

    let mut got = vec![];
    for _ in 0..100 {
        got = rows(dir.path());
        if got.len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(got.len(), 2, "{got:?}");
    drop(side);

    let config = dir.path().join("config.toml");
    std::fs::write(&config, milter_config_text(dir.path(), &listen)).unwrap();
    let tz = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
    let month = Month::of(from_micros(got[0].time_us), &tz);
    let out = dir.path().join("out");
    let o = Command::new(bin("mss-export"))
        .arg("--config")
        .arg(&config)
        .args(["build", "--month", &month.to_string(), "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    let zip_path = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let mut z = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
    let mut read = |name: String| {
        let mut s = String::new();
        z.by_name(&name).unwrap().read_to_string(&mut s).unwrap();
        s
    };
    let m = month.compact();
    let id = &got[0].mail_id;
    assert_eq!(&got[1].mail_id, id);
    assert!(
        id.starts_with("t1.") && id.ends_with(got[0].queue_id.as_deref().unwrap()),
        "{id}"
    );
    let date = format_csv_date(from_micros(got[0].time_us), &tz);
    let size = body.len();
    assert_eq!(
        read(format!("{m}_EchangesMSSante_{DOMAIN}.csv")),
        format!("MAIL_ID;EXPEDITEUR;DESTINATAIRE;DATE;TAILLE\r\n{id};{a};ok1@ext.test;{date};{size}\r\n{id};{a};ok2@ext.test;{date};{size}\r\n")
    );
    // dr.a is not in the registry and logins are not captured here (no
    // [events], no [coverage]): discovered, last connection unknown.
    assert_eq!(
        read(format!("{m}_ConnexionsMSSante_{DOMAIN}.csv")),
        format!("BAL;DATE_DERNIERE_CONNEXION\r\n{a};1900-01-01 00:00:00\r\n")
    );
    assert_eq!(
        read(format!("{m}_EchangesMSSante_ch-autre.mssante.fr.csv")),
        "MAIL_ID;EXPEDITEUR;DESTINATAIRE;DATE;TAILLE\r\n"
    );
    assert_eq!(z.len(), 4);
}
