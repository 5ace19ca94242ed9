//! Issue "The monthly report", end to end: a month filled through the real
//! Postfix (milter on smtpd and sendmail) for two structures (FINESS EG and
//! EJ) and one BAL attached to none; `mss-export run` against the local
//! mTLS SIPIL; `mss-admin report`: every figure equals the ANS files of the
//! month; the HTML rendered by headless Chromium to PDF and PNG, the PDF's
//! text holding the figures; each structure's report mailed through
//! `sendmail(1)` once the month is accepted; `/metrics` scraped from the
//! running daemon holds every metric the Grafana dashboard uses.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mss_shared::month::Month;
use mss_tests::daemon::Daemon;
use mss_tests::guard::output_within;
use mss_tests::postfix::{Postfix, PostfixBuilder};
use mss_tests::sidecar::{milter_config_text, rows, DOMAIN};
use mss_tests::sipil::{Pki, SipilServer};
use serde_json::{json, Value};

use mss_tests::structures::*;

#[test]
fn structures_reports_equal_the_ans_files_render_in_chromium_and_are_mailed() {
    let (milter, events, metrics) = (
        Postfix::free_port(),
        Postfix::free_port(),
        Postfix::free_port(),
    );
    let dir = tempfile::tempdir().unwrap();
    let tz = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
    let now = jiff::Timestamp::now();
    let today = now.to_zoned(tz.clone()).date();
    let month = Month::of(now, &tz);
    let d = |l: &str| format!("{l}@{DOMAIN}");
    let pki = Pki::new();
    let server = SipilServer::start(&pki.server, pki.ca.der());
    let f = pki.write(dir.path());
    let list = dir.path().join("listeblanche.xml");
    std::fs::write(&list, format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListeBlancheMSSante xmlns=\"https://listeblanche.mssante.fr/schema\"><DateDeGeneration>2026-11-01T00:00:00Z</DateDeGeneration><ListeDomaines><Domaine><Nom>{LISTED}</Nom><DNCertificatOperateur>CN=op</DNCertificatOperateur></Domaine></ListeDomaines></ListeBlancheMSSante>")).unwrap();
    let pf = PostfixBuilder::new()
        .main_cf(&format!("smtpd_milters = inet:127.0.0.1:{milter}"))
        .main_cf(&format!("non_smtpd_milters = inet:127.0.0.1:{milter}"))
        .main_cf("milter_default_action = accept")
        // Keep outgoing mail in the queue, where the test reads it.
        .main_cf("defer_transports = discard")
        .start()
        .expect("postfix");
    let cfg_text = milter_config_text(dir.path(), &format!("127.0.0.1:{milter}"))
        + &format!(
            "\n[events]\nlisten = \"127.0.0.1:{events}\"\n\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\n[coverage]\nlogins_since = \"{today}\"\n\n[policy]\nliste_blanche = \"{}\"\nmode = \"report\"\n\n[export]\nout_dir = \"{}\"\n\n[sipil]\npost_url = \"{}\"\nreport_url = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\nca_file = \"{}\"\nmax_attempts = 3\nretry_delay_ms = 50\nreport_polls = 1\nreport_poll_interval_secs = 0\ntimeout_secs = 20\nconnect_timeout_secs = 5\n\n[report]\nmail_to_structures = true\nfrom = \"{FROM}\"\n",
            list.display(),
            dir.path().join("exports").display(),
            server.post_url(),
            server.report_url(),
            f.client_cert.display(),
            f.client_key.display(),
            f.ca.display(),
        );
    let side = Daemon::start(dir.path(), &cfg_text, &format!("127.0.0.1:{milter}"));
    let cfg = dir.path().join("config.toml");

    // The registry: structure EG (dr.a also has an EJ: EG wins), structure
    // EJ, one BAL attached to none.
    let t = today.to_string();
    for (bal, extra) in [
        (
            "dr.a",
            vec![
                "--type",
                "personnelle",
                "--finess-eg",
                EG,
                "--finess-ej",
                "750000099",
            ],
        ),
        (
            "secretariat",
            vec!["--type", "organisationnelle", "--finess-eg", EG],
        ),
        (
            "tst",
            vec!["--type", "personnelle", "--test", "yes", "--finess-eg", EG],
        ),
        ("dr.b", vec!["--type", "personnelle", "--finess-ej", EJ]),
        (
            "dr.never",
            vec!["--type", "personnelle", "--finess-ej", EJ, "--date", &t],
        ),
        ("dr.ville", vec!["--type", "personnelle"]),
    ] {
        let b = d(bal);
        let mut args = vec!["mailbox", "add", b.as_str()];
        args.extend(extra);
        admin_ok(&cfg, &args);
    }
    admin_ok(
        &cfg,
        &[
            "structure",
            "set",
            EG,
            "--name",
            "Hôpital A",
            "--contact",
            "dsi@hopital-a.example",
        ],
    );
    admin_ok(
        &cfg,
        &[
            "structure",
            "set",
            EJ,
            "--contact",
            "dsi@clinique-b.example",
        ],
    );
    let (c, _, err) = run(
        "mss-admin",
        &cfg,
        &["structure", "set", "12", "--contact", "x@y.example"],
        &[],
    );
    assert_eq!(
        (c, err.trim()),
        (
            2,
            "error: FINESS \"12\": expected 9 characters (digits, 2A/2B for Corsica)"
        )
    );

    // Logins: dr.a now and a month ago, dr.b four months ago.
    let ev = format!("127.0.0.1:{events}");
    let ago = |n: i64| {
        now.to_zoned(tz.clone())
            .checked_sub(jiff::Span::new().months(n))
            .unwrap()
            .timestamp()
            .round(jiff::Unit::Second)
            .unwrap()
    };
    post_login(&ev, &d("dr.a"), now.round(jiff::Unit::Second).unwrap());
    post_login(&ev, &d("dr.a"), ago(1));
    post_login(&ev, &d("dr.b"), ago(4));

    // Mail through the real Postfix.
    send(&pf, &d("dr.a"), &[&d("dr.b"), "x@ext.test"]);
    send(&pf, &d("dr.a"), &[&format!("y@{LISTED}")]);
    let out = pf
        .sendmail(&d("secretariat"), &["z@ext.test"], "Subject: s\n\nbody\n")
        .unwrap();
    assert!(out.status.success());
    send(&pf, &d("dr.b"), &["x@ext.test"]);
    send(&pf, &d("dr.ville"), &["x@ext.test", "w@ext.test"]);
    send(&pf, &d("tst"), &["x@ext.test"]);
    wait_rows(dir.path(), 8, &pf);

    // The month delivered: built, deposited, accepted; then reports mailed.
    let env_mail = [("MAIL_CONFIG", pf.conf.as_path())];
    let (c, out, err) = run(
        "mss-export",
        &cfg,
        &["run", "--month", &month.to_string()],
        &env_mail,
    );
    assert_eq!(c, 0, "{out}{err}");
    assert!(out.contains(&format!("{month}: accepted")), "{out}");
    assert!(
        out.contains(&format!(
            "{month}: report of FINESS {EG} mailed to dsi@hopital-a.example"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{month}: report of FINESS {EJ} mailed to dsi@clinique-b.example"
        )),
        "{out}"
    );
    // Never twice: the next run mails nothing.
    let (c, out, err) = run(
        "mss-export",
        &cfg,
        &["run", "--month", &month.to_string()],
        &env_mail,
    );
    assert_eq!(c, 0, "{err}");
    assert_eq!(out.trim(), format!("{month}: accepted, nothing to do"));
    let archive = dir
        .path()
        .join("exports")
        .join(format!("{}_IndicateursMSSante.zip", month.compact()));
    let files = read_zip(archive.to_str().unwrap());

    // mss-admin report --all: one report per structure.
    let out_dir = dir.path().join("reports");
    let listed = admin_ok(
        &cfg,
        &[
            "report",
            "--month",
            &month.to_string(),
            "--all",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    let m = month.compact();
    let stems = [
        format!("{m}_finess-eg-{EG}"),
        format!("{m}_finess-ej-{EJ}"),
        format!("{m}_non-rattache-{DOMAIN}"),
    ];
    let want_listed: String = stems
        .iter()
        .flat_map(|s| {
            ["html", "json", "csv"]
                .map(|e| format!("{}\n", out_dir.join(format!("{s}.{e}")).display()))
        })
        .collect();
    assert_eq!(listed, want_listed);
    let report = |stem: &str| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(out_dir.join(format!("{stem}.json"))).unwrap(),
        )
        .unwrap()
    };
    let kinds: BTreeMap<String, &str> = [
        ("dr.a", "personnelle"),
        ("secretariat", "organisationnelle"),
        ("tst", "personnelle"),
        ("dr.b", "personnelle"),
        ("dr.never", "personnelle"),
        ("dr.ville", "personnelle"),
    ]
    .into_iter()
    .map(|(b, k)| (d(b), k))
    .collect();
    let archive_name = format!("{m}_IndicateursMSSante.zip");
    let files_json = json!({"archives": [archive_name], "state": "accepted"});
    let line = |b: &str, date: &str, rule: &str| json!({"bal": d(b), "type": "personnelle", "date": date, "rule": rule});
    let file_date = |b: &str| -> String {
        expected(&files, month, &[(b, "")], &kinds)["lines"][0][1]
            .as_str()
            .unwrap()
            .to_string()
    };
    let unknown = "1900-01-01 00:00:00";
    // Structure EG: dr.a, secretariat; tst excluded (test BAL).
    let e = expected(
        &files,
        month,
        &[("dr.a", ""), ("secretariat", ""), ("tst", "test")],
        &kinds,
    );
    let r = report(&stems[0]);
    let summary = |messages: &Value,
                   rows: &Value,
                   bytes: &Value,
                   bals: u64,
                   conn: u64,
                   never: u64| {
        json!({"messages": messages, "rows": rows, "bytes": bytes, "mailboxes": bals, "connected_in_month": conn, "never": never})
    };
    assert_eq!(
        r,
        json!({
            "month": month.to_string(),
            "structure": {"kind": "finess_eg", "id": EG},
            "name": "Hôpital A",
            "contact": "dsi@hopital-a.example",
            "domains": [DOMAIN],
            "mailboxes": {"by_type": e["by_type"], "excluded": [
                {"bal": d("tst"), "type": "personnelle", "because": "test", "detail": "test mailbox"}]},
            "sent": {"messages": e["messages"], "rows": e["rows"], "bytes": e["bytes"],
                "by_type": e["sent_by_type"], "days": e["days"], "top": e["top"], "trust_space": e["trust_space"]},
            "connexions": {"connected_in_month": 1, "connected_earlier": 0, "never": 0, "unknown": 1,
                "to_act": [], "personal_without_finess": [],
                "lines": [
                    json!({"bal": d("dr.a"), "type": "personnelle", "date": file_date("dr.a"), "rule": "login"}),
                    json!({"bal": d("secretariat"), "type": "organisationnelle", "date": unknown, "rule": "unknown"})]},
            "previous_month": summary(&json!(0), &json!(0), &json!(0), 2, 1, 0),
            "year_before": null,
            "files": files_json,
        })
    );
    // The files' own figures, spelled out once.
    assert_eq!(
        (&e["messages"], &e["rows"], &e["trust_space"]),
        (&json!(3), &json!(4), &json!({"inside": 2, "outside": 2}))
    );
    // Structure EJ: dr.b (last login 4 months ago), dr.never (created today).
    let e = expected(&files, month, &[("dr.b", ""), ("dr.never", "")], &kinds);
    let r = report(&stems[1]);
    let b_date = file_date("dr.b");
    assert_eq!(
        r["connexions"],
        json!({"connected_in_month": 0, "connected_earlier": 1, "never": 1, "unknown": 0,
            "to_act": [{"bal": d("dr.b"), "date": b_date, "why": "over_3_months"},
                       {"bal": d("dr.never"), "date": "", "why": "never"}],
            "personal_without_finess": [],
            "lines": [line("dr.b", &b_date, "login"), line("dr.never", "", "never")]})
    );
    assert_eq!(
        (
            &r["structure"],
            &r["name"],
            &r["sent"]["messages"],
            &r["sent"]["rows"],
            &r["sent"]["bytes"],
            &r["sent"]["top"],
            &r["mailboxes"]["by_type"]
        ),
        (
            &json!({"kind": "finess_ej", "id": EJ}),
            &Value::Null,
            &e["messages"],
            &e["rows"],
            &e["bytes"],
            &e["top"],
            &e["by_type"]
        )
    );
    // dr.never did not exist last month: one BAL then.
    assert_eq!(
        r["previous_month"],
        summary(&json!(0), &json!(0), &json!(0), 1, 0, 0)
    );
    // Not attached: dr.ville.
    let e = expected(&files, month, &[("dr.ville", "")], &kinds);
    let r = report(&stems[2]);
    assert_eq!(r["structure"], json!({"kind": "unattached", "id": DOMAIN}));
    assert_eq!(
        (
            &r["sent"]["rows"],
            &r["sent"]["messages"],
            &r["sent"]["bytes"]
        ),
        (&e["rows"], &e["messages"], &e["bytes"])
    );
    assert_eq!(
        r["connexions"]["personal_without_finess"],
        json!([d("dr.ville")])
    );
    assert_eq!(
        r["connexions"]["lines"],
        json!([line("dr.ville", unknown, "unknown")])
    );
    // Every written row and every Connexions line is in exactly one report.
    let all = expected(
        &files,
        month,
        &kinds
            .keys()
            .map(|b| (b.split('@').next().unwrap(), ""))
            .collect::<Vec<_>>(),
        &kinds,
    );
    let sum = |k: &str| {
        stems
            .iter()
            .map(|s| report(s)["sent"][k].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(
        (sum("rows"), sum("messages"), sum("bytes")),
        (
            all["rows"].as_u64().unwrap(),
            all["messages"].as_u64().unwrap(),
            all["bytes"].as_u64().unwrap()
        )
    );
    let lines: usize = stems
        .iter()
        .map(|s| report(s)["connexions"]["lines"].as_array().unwrap().len())
        .sum();
    assert_eq!(lines, all["lines"].as_array().unwrap().len());
    // CSV: the same figures.
    let csv = std::fs::read_to_string(out_dir.join(format!("{}.csv", stems[0]))).unwrap();
    assert!(csv.starts_with("section;item;value;previous_month;year_before\nsummary;messages;3;0;\nsummary;rows;4;0;\n"), "{csv}");

    // --domain: the structures with a BAL in the domain; none in the other one.
    let dom_dir = dir.path().join("dom");
    let listed = admin_ok(
        &cfg,
        &[
            "report",
            "--month",
            &month.to_string(),
            "--domain",
            DOMAIN,
            "--format",
            "json",
            "--out",
            dom_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(listed.lines().count(), 3, "{listed}");
    let (c, _, err) = run(
        "mss-admin",
        &cfg,
        &[
            "report",
            "--month",
            &month.to_string(),
            "--domain",
            "ch-autre.mssante.fr",
            "--out",
            dom_dir.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(c, 2, "{err}");
    let (c, _, err) = run(
        "mss-admin",
        &cfg,
        &[
            "report",
            "--month",
            &month.to_string(),
            "--out",
            dom_dir.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(
        (c, err.trim()),
        (
            2,
            "error: give exactly one of --structure FINESS, --domain D or --all"
        )
    );
    // --structure and --lang en; a FINESS nobody has is an error.
    let en_dir = dir.path().join("en");
    admin_ok(
        &cfg,
        &[
            "report",
            "--month",
            &month.to_string(),
            "--structure",
            EJ,
            "--format",
            "html",
            "--lang",
            "en",
            "--out",
            en_dir.to_str().unwrap(),
        ],
    );
    let en = std::fs::read_to_string(en_dir.join(format!("{}.html", stems[1]))).unwrap();
    assert!(
        en.contains("<html lang=\"en\">")
            && en.contains("To act on: personal mailboxes never used or not in 3 months"),
        "{en}"
    );
    let (c, _, err) = run(
        "mss-admin",
        &cfg,
        &[
            "report",
            "--month",
            &month.to_string(),
            "--structure",
            "130000003",
            "--out",
            "/tmp/x",
        ],
        &[],
    );
    assert_eq!(c, 2, "{err}");
    assert!(
        err.contains("FINESS 130000003: no BAL of the registry is attached to it"),
        "{err}"
    );

    // The HTML: self-contained, rendered by Chromium to PDF and PNG.
    let html_path = out_dir.join(format!("{}.html", stems[0]));
    let html = std::fs::read_to_string(&html_path).unwrap();
    let stripped = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for banned in [
        "<script", "<link", "<img", "src=", "url(", "@import", "http:", "https:",
    ] {
        assert!(!stripped.contains(banned), "{banned} in the HTML");
    }
    assert!(html.contains("<title id=\"chart-title\">") && html.contains("<th scope=\"col\""));
    let pdf = dir.path().join("report.pdf");
    let png = dir.path().join("report.png");
    mss_tests::chromium::run(
        &html_path,
        &format!("--print-to-pdf={}", pdf.display()),
        dir.path(),
    )
    .unwrap();
    mss_tests::chromium::run(
        &html_path,
        &format!("--screenshot={}", png.display()),
        dir.path(),
    )
    .unwrap();
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
    if let Ok(keep) = std::env::var("MSS_REPORT_KEEP") {
        let _ = std::fs::copy(&png, Path::new(&keep).join("report.png"));
        let _ = std::fs::copy(&pdf, Path::new(&keep).join("report.pdf"));
        let _ = std::fs::copy(&html_path, Path::new(&keep).join("report.html"));
    }
    let text = output_within(
        Command::new("pdftotext").arg("-layout").arg(&pdf).arg("-"),
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    for needle in [
        format!("Rapport mensuel MSSanté — {month}"),
        "Hôpital A".to_string(),
        EG.to_string(),
        d("dr.a"),
        "Messages envoyés".to_string(),
        archive_name.clone(),
        "acceptée par l'ANS".to_string(),
    ] {
        assert!(
            text.contains(&needle),
            "{needle:?} not in the PDF text:\n{text}"
        );
    }

    // The mails, in the Postfix queue: to each contact, from [report] from.
    let q = output_within(
        Command::new("/usr/sbin/postqueue")
            .arg("-c")
            .arg(&pf.conf)
            .arg("-j"),
        Duration::from_secs(30),
    )
    .unwrap();
    let queue: Vec<Value> = String::from_utf8_lossy(&q.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let to_contacts: Vec<&Value> = queue.iter().filter(|e| e["sender"] == FROM).collect();
    let mut rcpts: Vec<&str> = to_contacts
        .iter()
        .map(|e| e["recipients"][0]["address"].as_str().unwrap())
        .collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        ["dsi@clinique-b.example", "dsi@hopital-a.example"],
        "{queue:?}\n{}",
        pf.log()
    );
    let eg_mail = to_contacts
        .iter()
        .find(|e| e["recipients"][0]["address"] == "dsi@hopital-a.example")
        .unwrap();
    let cat = output_within(
        Command::new("/usr/sbin/postcat")
            .arg("-c")
            .arg(&pf.conf)
            .arg("-bh")
            .arg("-q")
            .arg(eg_mail["queue_id"].as_str().unwrap()),
        Duration::from_secs(30),
    )
    .unwrap();
    let cat = String::from_utf8_lossy(&cat.stdout);
    assert!(
        cat.contains(&format!("filename=\"{}.html\"", stems[0])),
        "{cat}"
    );
    assert!(
        cat.contains(&format!("{}.json", stems[0])) && cat.contains(&format!("{}.csv", stems[0])),
        "{cat}"
    );
    assert!(
        cat.contains("Subject: =?utf-8?") || cat.contains("Subject: Rapport mensuel"),
        "{cat}"
    );
    // The report mails are not the operator's: no row for them.
    assert_eq!(rows(dir.path()).len(), 8);

    // /metrics of the running daemon holds every metric the dashboard uses.
    stop(side);
    let side = Daemon::start(dir.path(), &cfg_text, &format!("127.0.0.1:{milter}"));
    send(&pf, &d("dr.a"), &["x@ext.test"]);
    post_login(
        &ev,
        &d("dr.a"),
        jiff::Timestamp::now().round(jiff::Unit::Second).unwrap(),
    );
    wait_rows(dir.path(), 9, &pf);
    check_metrics(&format!("127.0.0.1:{metrics}"), &month.to_string());
    stop(side);
}
