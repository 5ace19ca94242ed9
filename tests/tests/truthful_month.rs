//! Issue "Truthful month", end to end: the real `mss-sidecar` as Postfix's
//! milter (smtpd and sendmail), its login endpoint, the real `mss-admin` and
//! `mss-export`. Every Connexions rule, sub-addresses, an SRS forward,
//! quarantined rows, a login 14 months old folded by retention, undated
//! reactivation, refused backdating and future dates — exact bytes and
//! exact JSON.

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mss_shared::month::{format_csv_date, from_micros, Month};
use mss_shared::store::registry::RegistryStore;
use mss_tests::config::TestConfig;
use mss_tests::daemon::Daemon;
use mss_tests::files::post_login;
use mss_tests::postfix::{Postfix, PostfixBuilder};
use mss_tests::sidecar::{bin, rows, DOMAIN};

fn run(tool: &str, cfg: &Path, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(bin(tool))
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

fn admin_ok(cfg: &Path, args: &[&str]) -> String {
    let (c, out, err) = run("mss-admin", cfg, args);
    assert_eq!(c, 0, "mss-admin {args:?}: {err}");
    out
}

fn send(pf: &Postfix, from: &str, to: &[&str]) {
    let r = mss_tests::swaks::send(&pf.addr(), from, to, &[]);
    assert!(r.ok, "{}", r.transcript);
}

fn stop(mut d: Daemon) {
    let _ = Command::new("kill").arg(d.pid().to_string()).status();
    let _ = mss_tests::guard::wait_within(&mut d.child, Duration::from_secs(20));
}

#[test]
fn every_connexions_rule_addresses_quarantine_and_status_history() {
    let (milter, events) = (Postfix::free_port(), Postfix::free_port());
    let dir = tempfile::tempdir().unwrap();
    let tz = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
    let now = jiff::Timestamp::now();
    let today = now.to_zoned(tz.clone()).date();
    let month = Month::of(now, &tz);
    let d = |l: &str| format!("{l}@{DOMAIN}");
    let cfg_text = TestConfig::new(dir.path())
        .milter(&format!("127.0.0.1:{milter}"))
        .events(&format!("127.0.0.1:{events}"))
        .with(|c| {
            c.operator.recipient_delimiter = "+".into();
            c.coverage.logins_since = Some(today);
        })
        .text();
    let side = Daemon::start(dir.path(), &cfg_text, &format!("127.0.0.1:{milter}"));
    let cfg = dir.path().join("config.toml");

    // A login 14 months ago: its month is purged at the next start, its date kept.
    let old_login = now
        .to_zoned(tz.clone())
        .checked_sub(jiff::Span::new().months(14))
        .unwrap()
        .timestamp()
        .round(jiff::Unit::Second)
        .unwrap();
    post_login(
        &format!("127.0.0.1:{events}"),
        &format!(
            r#"{{"bal": "{}", "time": "{old_login}", "service": "imap"}}"#,
            d("veteran")
        ),
    );

    // The registry.
    let t = today.to_string();
    for (bal, extra) in [
        ("alice", vec!["--type", "personnelle"]),
        ("old", vec!["--type", "personnelle"]),
        ("new", vec!["--type", "personnelle", "--date", &t]),
        (
            "dpi-app",
            vec!["--type", "applicative", "--login-tracking", "no"],
        ),
        ("veteran", vec!["--type", "personnelle"]),
        ("susp", vec!["--type", "personnelle"]),
        ("tst", vec!["--type", "personnelle", "--test", "yes"]),
    ] {
        let b = d(bal);
        let mut args = vec!["mailbox", "add", b.as_str()];
        args.extend(extra);
        admin_ok(&cfg, &args);
    }
    // Undated reactivation takes effect today.
    let first = month.first_day().to_string();
    admin_ok(
        &cfg,
        &[
            "mailbox",
            "set",
            &d("susp"),
            "--status",
            "suspended",
            "--date",
            &first,
        ],
    );
    admin_ok(&cfg, &["mailbox", "set", &d("susp"), "--status", "active"]);
    let show: serde_json::Value =
        serde_json::from_str(&admin_ok(&cfg, &["mailbox", "show", &d("susp"), "--json"])).unwrap();
    assert_eq!(
        show["registered"]["history"],
        serde_json::json!([
            {"status": "active", "date": null, "recorded": t},
            {"status": "suspended", "date": first, "recorded": t},
            {"status": "active", "date": t, "recorded": t}
        ])
    );
    // Re-setting the same status changes nothing and says so.
    let out = admin_ok(&cfg, &["mailbox", "set", &d("susp"), "--status", "active"]);
    assert_eq!(out.trim(), format!("{}: unchanged", d("susp")));
    // A future date is refused (exit 14).
    let tomorrow = today.tomorrow().unwrap().to_string();
    let (c, _, err) = run(
        "mss-admin",
        &cfg,
        &[
            "mailbox",
            "set",
            &d("old"),
            "--status",
            "suspended",
            "--date",
            &tomorrow,
        ],
    );
    assert_eq!(c, 14, "{err}");
    assert!(err.contains("is in the future"), "{err}");
    // This month accepted by the ANS: backdating a suspension into the month
    // before would take `old` out of it: refused, the month named.
    {
        let reg = RegistryStore::open(&dir.path().join("registry")).unwrap();
        reg.put_meta(
            &format!("sipil/month/{month}"),
            &serde_json::json!({"month": month.to_string(), "state": "accepted"}),
        )
        .unwrap();
    }
    let before = month.prev().first_day().to_string();
    let (c, _, err) = run(
        "mss-admin",
        &cfg,
        &[
            "mailbox",
            "set",
            &d("old"),
            "--status",
            "suspended",
            "--date",
            &before,
        ],
    );
    assert_eq!(c, 14, "{err}");
    assert!(
        err.contains(&format!(
            "would alter the files of {month} already accepted"
        )),
        "{err}"
    );

    // Mail through the real Postfix.
    let pf = PostfixBuilder::new()
        .main_cf(&format!("smtpd_milters = inet:127.0.0.1:{milter}"))
        .main_cf(&format!("non_smtpd_milters = inet:127.0.0.1:{milter}"))
        .main_cf("milter_default_action = accept")
        .start()
        .expect("postfix");
    send(&pf, &d("alice+rdv"), &["x1@ext.test"]);
    send(
        &pf,
        &format!("SRS0=HHH=TT=ext.test=bob@{DOMAIN}"),
        &["x2@ext.test"],
    );
    let long = format!("{}@ext.test", "r".repeat(247));
    assert_eq!(long.chars().count(), 256);
    send(
        &pf,
        &d("alice"),
        &["ok@ext.test", &long, "\"john doe\"@ext.test"],
    );
    let out = pf
        .sendmail(&d("dpi-app"), &["y@ext.test"], "Subject: s\n\nbody\n")
        .unwrap();
    assert!(out.status.success());
    let mut got = vec![];
    for _ in 0..200 {
        got = rows(dir.path());
        if got.len() >= 6 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(got.len(), 6, "{got:?}\n{}", pf.log());

    // Restart: retention folds the 14-month-old login into the summary.
    stop(side);
    let side = Daemon::start(dir.path(), &cfg_text, &format!("127.0.0.1:{milter}"));
    stop(side);

    let out_dir = dir.path().join("out");
    let (c, stdout, stderr) = run(
        "mss-export",
        &cfg,
        &[
            "build",
            "--month",
            &month.to_string(),
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(c, 0, "{stderr}");
    assert!(stderr.contains("warning: 2 row(s) quarantined"), "{stderr}");
    let zip_path = stdout.trim().to_string();
    let (c, _, err) = run("mss-export", &cfg, &["validate", &zip_path]);
    assert_eq!(c, 0, "{err}");
    let mut z = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
    let mut read = |name: String| {
        let mut s = String::new();
        z.by_name(&name).unwrap().read_to_string(&mut s).unwrap();
        s
    };
    let fmt = |us: i64| format_csv_date(from_micros(us), &tz);
    let m = month.compact();
    // Echanges: the sub-address is its BAL; no SRS row; no quarantined row.
    let row = |rcpt: &str| got.iter().find(|r| r.recipient == rcpt).unwrap();
    let line = |rcpt: &str, sender: String| {
        let r = row(rcpt);
        format!(
            "{};{sender};{rcpt};{};{}\r\n",
            r.mail_id,
            fmt(r.time_us),
            r.size
        )
    };
    let mut want_rows = [
        (row("x1@ext.test"), line("x1@ext.test", d("alice"))),
        (row("ok@ext.test"), line("ok@ext.test", d("alice"))),
        (row("y@ext.test"), line("y@ext.test", d("dpi-app"))),
    ];
    want_rows.sort_by(|a, b| (a.0.time_us, &a.0.mail_id).cmp(&(b.0.time_us, &b.0.mail_id)));
    let want: String = want_rows.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(
        read(format!("{m}_EchangesMSSante_{DOMAIN}.csv")),
        format!("MAIL_ID;EXPEDITEUR;DESTINATAIRE;DATE;TAILLE\r\n{want}")
    );
    let app_date = fmt(row("y@ext.test").time_us);
    let vet_date = fmt(old_login.as_microsecond());
    let unknown = "1900-01-01 00:00:00";
    assert_eq!(
        read(format!("{m}_ConnexionsMSSante_{DOMAIN}.csv")),
        format!(
            "BAL;DATE_DERNIERE_CONNEXION\r\n{};{unknown}\r\n{};{app_date}\r\n{};\r\n{};{unknown}\r\n{};{unknown}\r\n{};{vet_date}\r\n",
            d("alice"),
            d("dpi-app"),
            d("new"),
            d("old"),
            d("susp"),
            d("veteran")
        )
    );
    // Quarantine: beside the archive, never inside it.
    let q = std::fs::read_to_string(out_dir.join(format!("{m}_quarantine.csv"))).unwrap();
    let r = row("ok@ext.test");
    let (id, date, size) = (&r.mail_id, fmt(r.time_us), r.size);
    assert_eq!(
        q,
        format!(
            "MAIL_ID;EXPEDITEUR;DESTINATAIRE;DATE;TAILLE;RAISON\r\n{id};{a};\"\"\"john doe\"\"@ext.test\";{date};{size};recipient_not_address\r\n{id};{a};{long};{date};{size};recipient_too_long\r\n",
            a = d("alice")
        )
    );
    assert_eq!(z.len(), 2 * 2);

    // `mss-admin connexions --json`: the same dates, with their rule.
    let j: serde_json::Value = serde_json::from_str(&admin_ok(
        &cfg,
        &[
            "connexions",
            "--month",
            &month.to_string(),
            "--domain",
            DOMAIN,
            "--json",
        ],
    ))
    .unwrap();
    let bal = |b: &str, date: Option<&str>, rule: Option<&str>, ex: Option<&str>| {
        serde_json::json!({"bal": d(b), "domain": DOMAIN, "date": date, "rule": rule,
            "included": ex.is_none(), "excluded_because": ex})
    };
    assert_eq!(
        j,
        serde_json::json!({"month": month.to_string(), "mailboxes": [
            bal("alice", Some(unknown), Some("unknown"), None),
            bal("dpi-app", Some(&app_date), Some("last_exchange"), None),
            bal("new", Some(""), Some("never"), None),
            bal("old", Some(unknown), Some("unknown"), None),
            bal("susp", Some(unknown), Some("unknown"), None),
            bal("tst", None, None, Some("test")),
            bal("veteran", Some(&vet_date), Some("login"), None),
        ]})
    );
    // `mss-admin counts`: the files' figures, forwards and quarantine apart.
    let c: serde_json::Value = serde_json::from_str(&admin_ok(
        &cfg,
        &[
            "counts",
            "--month",
            &month.to_string(),
            "--domain",
            DOMAIN,
            "--json",
        ],
    ))
    .unwrap();
    let dc = &c["domains"][0];
    assert_eq!(
        (
            &dc["rows"],
            &dc["forwarded_rows"],
            &dc["quarantined_rows"],
            &dc["excluded_rows"],
            &dc["mailboxes"]
        ),
        (
            &serde_json::json!(3),
            &serde_json::json!(1),
            &serde_json::json!(2),
            &serde_json::json!(0),
            &serde_json::json!(6)
        ),
        "{c}"
    );
}
