//! `mss-admin mailbox …` and `mss-admin logins import` with the real binary.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use mss_shared::model::{LoginRecord, MessageRecord, Record};
use mss_shared::store::capture::{CaptureStore, Classifier};
use mss_tests::config::TestConfig;
use mss_tests::sidecar::bin;

const D: &str = "ch-a.mssante.fr";

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    let text = TestConfig::new(dir.path())
        .with(|c| {
            c.operator.domains = vec![D.into(), "ch-b.mssante.fr".into()];
            c.operator.node = "mx1".into();
            c.store.commit_timeout_ms = 1000;
            c.service.user = "mss".into();
        })
        .text();
    std::fs::write(&cfg, text).unwrap();
    // An (empty) capture store, as the running sidecar would have created.
    drop(CaptureStore::open(&dir.path().join("capture")).unwrap());
    (dir, cfg)
}

fn admin(cfg: &Path, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(bin("mss-admin"))
        .arg("--config")
        .arg(cfg)
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn list_json(cfg: &Path) -> serde_json::Value {
    let (c, out, err) = admin(cfg, &["mailbox", "list", "--json"]);
    assert_eq!(c, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

const GOOD: &str = "bal;type;status;status_date;test;finess_ej;finess_eg;login_tracking\n\
alice@ch-a.mssante.fr;personnelle;active;;no;010000024;010000032;yes\n\
Bob@CH-A.mssante.fr;organisationnelle;suspended;2026-10-15;no;;;\n\
app@ch-a.mssante.fr;applicative;active;2025-01-01;no;;;no\n\
qa@ch-a.mssante.fr;personnelle;active;;yes;;;\n";

#[test]
fn import_is_all_or_nothing_idempotent_and_replace_deletes_the_absent() {
    let (dir, cfg) = setup();
    let f = dir.path().join("boxes.csv");
    std::fs::write(&f, GOOD).unwrap();
    let (c, out, err) = admin(&cfg, &["mailbox", "import", f.to_str().unwrap()]);
    assert_eq!(c, 0, "{err}");
    assert!(
        out.contains("4 added, 0 updated, 0 unchanged, 0 deleted"),
        "{out}"
    );
    let want = serde_json::json!([
        {"bal": "alice@ch-a.mssante.fr", "type": "personnelle", "status": "active", "status_date": null, "test": false, "login_tracking": true},
        {"bal": "app@ch-a.mssante.fr", "type": "applicative", "status": "active", "status_date": "2025-01-01", "test": false, "login_tracking": false},
        {"bal": "bob@ch-a.mssante.fr", "type": "organisationnelle", "status": "suspended", "status_date": "2026-10-15", "test": false, "login_tracking": true},
        {"bal": "qa@ch-a.mssante.fr", "type": "personnelle", "status": "active", "status_date": null, "test": true, "login_tracking": true},
    ]);
    assert_eq!(list_json(&cfg), want);

    // Again: nothing changes.
    let (c, out, _) = admin(&cfg, &["mailbox", "import", f.to_str().unwrap()]);
    assert_eq!(c, 0);
    assert!(
        out.contains("0 added, 0 updated, 4 unchanged, 0 deleted"),
        "{out}"
    );

    // A file with errors: every one listed with its line, nothing changes.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "bal;type;status;status_date;test;finess_ej;finess_eg;login_tracking\n\
         alice@ch-a.mssante.fr;personnelle;deleted;2026-11-01;no;;;\n\
         carol@ch-a.mssante.fr;chef;active;;no;;;\n\
         dave@elsewhere.fr;personnelle;active;;no;;;\n\
         erin@ch-a.mssante.fr;personnelle;suspended;;no;;;\n\
         frank@ch-a.mssante.fr;personnelle;active;01/02/2026;maybe;123;;\n\
         gina@ch-a.mssante.fr;personnelle\n",
    )
    .unwrap();
    let (c, _, err) = admin(&cfg, &["mailbox", "import", bad.to_str().unwrap()]);
    assert_eq!(c, 2, "{err}");
    for want in [
        "line 3: type \"chef\" is not personnelle, organisationnelle or applicative",
        "line 4: bal dave@elsewhere.fr: elsewhere.fr is not one of operator.domains",
        "line 5: status_date is required for a suspended or deleted BAL",
        "line 6: status_date \"01/02/2026\" is not YYYY-MM-DD",
        "line 6: test \"maybe\" is not yes or no",
        "line 6: finess_ej: FINESS \"123\" is not 9 characters",
        "line 7: 2 fields, 8 expected",
        "7 problem(s); nothing was imported",
    ] {
        assert!(err.contains(want), "{want} not in:\n{err}");
    }
    assert_eq!(list_json(&cfg), want, "a bad file changed the registry");

    // --replace: dry run first (nothing changes), then for real.
    let part = dir.path().join("part.csv");
    std::fs::write(&part, "bal;type;status;status_date;test;finess_ej;finess_eg;login_tracking\nalice@ch-a.mssante.fr;personnelle;active;;no;010000024;010000032;yes\n").unwrap();
    let (c, _, err) = admin(
        &cfg,
        &["mailbox", "import", part.to_str().unwrap(), "--replace"],
    );
    assert_eq!(c, 2, "--replace without --domain: {err}");
    let (c, out, _) = admin(
        &cfg,
        &[
            "mailbox",
            "import",
            part.to_str().unwrap(),
            "--domain",
            D,
            "--replace",
            "--dry-run",
        ],
    );
    assert_eq!(c, 0);
    assert!(out.contains("would delete app@ch-a.mssante.fr"), "{out}");
    assert!(out.contains("would delete qa@ch-a.mssante.fr"), "{out}");
    assert!(out.contains("would delete bob@ch-a.mssante.fr"), "{out}");
    assert!(
        out.contains("dry run, nothing changed: 0 added, 0 updated, 1 unchanged, 3 deleted"),
        "{out}"
    );
    assert_eq!(list_json(&cfg), want);
    let (c, out, _) = admin(
        &cfg,
        &[
            "mailbox",
            "import",
            part.to_str().unwrap(),
            "--domain",
            D,
            "--replace",
        ],
    );
    assert_eq!(c, 0);
    assert!(out.contains("deleting app@ch-a.mssante.fr"), "{out}");
    let today = jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::get("Europe/Paris").unwrap())
        .date()
        .to_string();
    let l = list_json(&cfg);
    for i in 1..4 {
        assert_eq!(l[i]["status"], "deleted", "{l}");
        assert_eq!(l[i]["status_date"], today.as_str(), "{l}");
    }
    // History is kept: bob was suspended, then deleted.
    let (_, out, _) = admin(&cfg, &["mailbox", "show", "bob@ch-a.mssante.fr", "--json"]);
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        s["registered"]["history"],
        serde_json::json!([{"status": "suspended", "date": "2026-10-15", "recorded": today}, {"status": "deleted", "date": today, "recorded": today}])
    );
}

#[test]
fn add_set_show_and_unregistered() {
    let (dir, cfg) = setup();
    let (c, _, err) = admin(
        &cfg,
        &[
            "mailbox",
            "add",
            "Alice@ch-a.mssante.fr",
            "--type",
            "personnelle",
        ],
    );
    assert_eq!(c, 0, "{err}");
    let (c, _, err) = admin(
        &cfg,
        &[
            "mailbox",
            "add",
            "alice@ch-a.mssante.fr",
            "--type",
            "personnelle",
        ],
    );
    assert_eq!(c, 2);
    assert!(err.contains("already registered"), "{err}");
    let (c, _, err) = admin(&cfg, &["mailbox", "add", "x@ch-a.mssante.fr"]);
    assert_eq!(c, 2);
    assert!(err.contains("--type"), "{err}");
    let (c, _, err) = admin(
        &cfg,
        &[
            "mailbox",
            "set",
            "alice@ch-a.mssante.fr",
            "--status",
            "suspended",
        ],
    );
    assert_eq!(c, 2);
    assert!(err.contains("--date"), "{err}");
    let (c, _, err) = admin(
        &cfg,
        &[
            "mailbox",
            "set",
            "alice@ch-a.mssante.fr",
            "--status",
            "suspended",
            "--date",
            "2026-09-01",
            "--login-tracking",
            "no",
        ],
    );
    assert_eq!(c, 0, "{err}");
    let (c, _, err) = admin(
        &cfg,
        &["mailbox", "set", "nobody@ch-a.mssante.fr", "--test", "yes"],
    );
    assert_eq!(c, 2);
    assert!(err.contains("not registered"), "{err}");

    // Traffic and logins captured for alice (registered) and two unknown BALs.
    let cls = Classifier::new(
        &[D.into(), "ch-b.mssante.fr".into()],
        jiff::tz::TimeZone::get("Europe/Paris").unwrap(),
    );
    let now = jiff::Timestamp::now().as_microsecond();
    let cap = CaptureStore::open(&dir.path().join("capture")).unwrap();
    cap.apply(
        &[
            Record::Message(MessageRecord {
                mail_id: "t.1".into(),
                queue_id: None,
                message_id: None,
                sender: format!("zed@{D}"),
                recipients: vec!["x@ext.fr".into(), format!("alice@{D}")],
                size: 10,
                time_us: now - 60_000_000,
                frontend: "proxy".into(),
            }),
            Record::Login(LoginRecord {
                bal: format!("alice@{D}"),
                time_us: now - 30_000_000,
                service: "imap".into(),
                source: "dovecot".into(),
            }),
            Record::Login(LoginRecord {
                bal: "yan@ch-b.mssante.fr".into(),
                time_us: now,
                service: "imap".into(),
                source: "dovecot".into(),
            }),
            Record::Login(LoginRecord {
                bal: "someone@ext.fr".into(),
                time_us: now,
                service: "imap".into(),
                source: "dovecot".into(),
            }),
        ],
        &cls,
        true,
    )
    .unwrap();
    drop(cap);
    let (c, out, err) = admin(&cfg, &["mailbox", "list", "--unregistered", "--json"]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap(),
        serde_json::json!(["yan@ch-b.mssante.fr", format!("zed@{D}")])
    );
    let (_, out, _) = admin(&cfg, &["mailbox", "list", "--unregistered", "--domain", D]);
    assert_eq!(out, format!("zed@{D}\n"));

    let (c, out, err) = admin(
        &cfg,
        &["mailbox", "show", "alice@ch-a.mssante.fr", "--json"],
    );
    assert_eq!(c, 0, "{err}");
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["registered"]["login_tracking"], false);
    let today = jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::get("Europe/Paris").unwrap())
        .date()
        .to_string();
    assert_eq!(
        s["registered"]["history"],
        serde_json::json!([{"status": "active", "date": null, "recorded": today}, {"status": "suspended", "date": "2026-09-01", "recorded": today}])
    );
    assert!(
        s["last_login"].is_string() && s["last_received"].is_string() && s["last_sent"].is_null(),
        "{s}"
    );
    assert_eq!(s["in_files"], false);
    assert!(
        s["why_not"]
            .as_str()
            .unwrap()
            .starts_with("suspended since 2026-09-01"),
        "{s}"
    );
    let (_, out, _) = admin(&cfg, &["mailbox", "show", "zed@ch-a.mssante.fr"]);
    assert!(
        out.contains("not in the registry") && out.contains("last sent"),
        "{out}"
    );
}

#[test]
fn logins_import_from_dovecot_and_postfix_logs_twice_changes_nothing() {
    let (dir, cfg) = setup();
    let dove = dir.path().join("dovecot.log");
    std::fs::write(
        &dove,
        "Nov  2 08:00:01 mx dovecot: imap-login: Login: user=<alice@ch-a.mssante.fr>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.2, mpid=1, TLS, session=<a>\n\
         Nov  3 09:00:00 mx dovecot: imap-login: Login: user=<alice@ch-a.mssante.fr>, method=PLAIN, rip=192.0.2.1\n\
         Nov  3 09:30:00 mx dovecot: imap-login: Aborted login (auth failed, 1 attempts in 2 secs): user=<bob@ch-a.mssante.fr>, method=PLAIN\n\
         Nov  4 10:00:00 pop3-login: Info: Login: user=<bob@ch-a.mssante.fr>, method=PLAIN, rip=192.0.2.9\n\
         Nov  4 10:00:00 mx dovecot: imap-login: Login: user=<stranger@ext.fr>, method=PLAIN\n\
         ??? imap-login: Login: user=<carol@ch-a.mssante.fr>, method=PLAIN\n",
    )
    .unwrap();
    // mtime in November 2026: the syslog dates are read as 2026.
    let mtime = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
    std::fs::File::options()
        .write(true)
        .open(&dove)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let pf = dir.path().join("mail.log.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&pf).unwrap(),
        flate2::Compression::default(),
    );
    gz.write_all(b"2026-10-30T23:30:00.000000+01:00 mx postfix/submission/smtpd[812]: 4XyZ1: client=a[192.0.2.1], sasl_method=PLAIN, sasl_username=carol@ch-a.mssante.fr\n2026-10-30T23:31:00+01:00 mx postfix/smtpd[812]: 4XyZ2: client=a[192.0.2.1]\n").unwrap();
    gz.finish().unwrap();

    let (c, out, err) = admin(
        &cfg,
        &[
            "logins",
            "import",
            "--format",
            "dovecot",
            dove.to_str().unwrap(),
        ],
    );
    assert_eq!(c, 0, "{err}");
    assert!(out.contains("6 lines, 3 logins, 1 outside operator.domains (ignored), 1 login lines without a readable date (skipped)"), "{out}");
    assert!(err.contains(":6: no readable date"), "{err}");
    assert!(
        out.contains("3 logins read, 2 new last-login values stored"),
        "{out}"
    );
    let (c, out, err) = admin(
        &cfg,
        &[
            "logins",
            "import",
            "--format",
            "postfix",
            pf.to_str().unwrap(),
        ],
    );
    assert_eq!(c, 0, "{err}");
    assert!(out.contains("2 lines, 1 logins"), "{out}");
    assert!(out.contains("1 new last-login values stored"), "{out}");
    // Twice: nothing new.
    let (_, out, _) = admin(
        &cfg,
        &[
            "logins",
            "import",
            "--format",
            "dovecot",
            dove.to_str().unwrap(),
        ],
    );
    assert!(out.contains("0 new last-login values stored"), "{out}");
    let (c, _, err) = admin(
        &cfg,
        &[
            "logins",
            "import",
            "--format",
            "exim",
            dove.to_str().unwrap(),
        ],
    );
    assert_eq!(c, 2, "{err}");

    // What the exporter will use: the last imported login per BAL.
    let reg =
        mss_shared::store::registry::RegistryStore::open(&dir.path().join("registry")).unwrap();
    let got = reg
        .imported_logins(mss_shared::month::Month::parse("2026-11").unwrap())
        .unwrap();
    let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_microsecond();
    assert_eq!(
        got.into_iter().collect::<Vec<_>>(),
        vec![
            (
                "alice@ch-a.mssante.fr".to_string(),
                t("2026-11-03T08:00:00Z")
            ),
            ("bob@ch-a.mssante.fr".to_string(), t("2026-11-04T09:00:00Z")),
        ]
    );
    let oct = reg
        .imported_logins(mss_shared::month::Month::parse("2026-10").unwrap())
        .unwrap();
    assert_eq!(
        oct.get("carol@ch-a.mssante.fr"),
        Some(&t("2026-10-30T22:30:00Z"))
    );
}
