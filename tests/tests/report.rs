//! Issue "The monthly report", end to end: a month filled through the real
//! Postfix (milter on smtpd and sendmail) for two structures (FINESS EG and
//! EJ) and one BAL attached to none; `mss-export run` against the local
//! mTLS SIPIL; `mss-admin report`: every figure equals the ANS files of the
//! month; the HTML rendered by headless Chromium to PDF and PNG, the PDF's
//! text holding the figures; each structure's report mailed through
//! `sendmail(1)` once the month is accepted; `/metrics` scraped from the
//! running daemon holds every metric the Grafana dashboard uses.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mss_shared::month::Month;
use mss_tests::daemon::Daemon;
use mss_tests::guard::output_within;
use mss_tests::postfix::{Postfix, PostfixBuilder};
use mss_tests::sidecar::{bin, milter_config_text, rows, DOMAIN};
use mss_tests::sipil::{Pki, SipilServer};
use serde_json::{json, Value};

const LISTED: &str = "listed.mssante.fr";
const EG: &str = "750000001";
const EJ: &str = "690000002";
const FROM: &str = "statistiques@operateur.example";

fn run(tool: &str, cfg: &Path, args: &[&str], env: &[(&str, &Path)]) -> (i32, String, String) {
    let mut c = Command::new(bin(tool));
    c.arg("--config").arg(cfg).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = output_within(&mut c, Duration::from_secs(120)).unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn admin_ok(cfg: &Path, args: &[&str]) -> String {
    let (c, out, err) = run("mss-admin", cfg, args, &[]);
    assert_eq!(c, 0, "mss-admin {args:?}: {err}");
    out
}

fn http_get_or_post(addr: &str, req: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut r = String::new();
    let _ = s.read_to_string(&mut r);
    r
}

fn post_login(addr: &str, bal: &str, time: jiff::Timestamp) {
    let body = format!(r#"{{"bal": "{bal}", "time": "{time}", "service": "imap"}}"#);
    let r = http_get_or_post(
        addr,
        &format!(
            "POST /v1/logins HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

fn send(pf: &Postfix, from: &str, to: &[&str]) {
    let r = mss_tests::swaks::send(&pf.addr(), from, to, &[]);
    assert!(r.ok, "{}", r.transcript);
}

fn stop(mut d: Daemon) {
    let _ = Command::new("kill").arg(d.pid().to_string()).status();
    let _ = mss_tests::guard::wait_within(&mut d.child, Duration::from_secs(20));
}

fn wait_rows(dir: &Path, n: usize, pf: &Postfix) {
    for _ in 0..400 {
        if rows(dir).len() >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{} rows, want {n}\n{}", rows(dir).len(), pf.log());
}

/// Per sender: its MAIL_IDs, rows and bytes.
type BalSent = (BTreeSet<String>, u64, u64);

/// One Echanges row of the ANS file.
struct FileRow {
    mail_id: String,
    sender: String,
    recipient: String,
    date: String,
    size: u64,
}

fn read_zip(path: &str) -> BTreeMap<String, String> {
    let mut z = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = BTreeMap::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        out.insert(f.name().unwrap().to_string(), s);
    }
    out
}

/// The figures of one structure, from the ANS files alone.
fn expected(
    files: &BTreeMap<String, String>,
    month: Month,
    bals: &[(&str, &str)],
    kinds: &BTreeMap<String, &str>,
) -> Value {
    let m = month.compact();
    let ech = &files[&format!("{m}_EchangesMSSante_{DOMAIN}.csv")];
    let con = &files[&format!("{m}_ConnexionsMSSante_{DOMAIN}.csv")];
    let mine: BTreeSet<String> = bals.iter().map(|(b, _)| format!("{b}@{DOMAIN}")).collect();
    let rows: Vec<FileRow> = ech
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(';').collect();
            FileRow {
                mail_id: f[0].into(),
                sender: f[1].into(),
                recipient: f[2].into(),
                date: f[3].into(),
                size: f[4].parse().unwrap(),
            }
        })
        .filter(|r| mine.contains(&r.sender))
        .collect();
    let mut ids = BTreeMap::new();
    for r in &rows {
        ids.insert(r.mail_id.clone(), (r.sender.clone(), r.size));
    }
    let bytes: u64 = ids.values().map(|(_, s)| s).sum();
    let mut days: BTreeMap<String, (BTreeSet<String>, u64)> = BTreeMap::new();
    let mut per_bal: BTreeMap<String, BalSent> = BTreeMap::new();
    let inside = rows
        .iter()
        .filter(|r| r.recipient.ends_with(&format!("@{DOMAIN}")) || r.recipient.ends_with(LISTED))
        .count() as u64;
    for r in &rows {
        let d = days.entry(r.date[..10].to_string()).or_default();
        d.0.insert(r.mail_id.clone());
        d.1 += 1;
        let b = per_bal.entry(r.sender.clone()).or_default();
        if b.0.insert(r.mail_id.clone()) {
            b.2 += r.size;
        }
        b.1 += 1;
    }
    let lines: Vec<(String, String)> = con
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(';'))
        .filter(|(b, _)| mine.contains(*b))
        .map(|(b, d)| (b.to_string(), d.to_string()))
        .collect();
    let kind = |b: &str| kinds[b];
    let (mut by_type, mut sent_type) = (vec![], vec![]);
    for k in [
        "personnelle",
        "organisationnelle",
        "applicative",
        "undeclared",
    ] {
        let included = lines.iter().filter(|(b, _)| kind(b) == k).count();
        let excluded = bals
            .iter()
            .filter(|(b, why)| !why.is_empty() && kind(&format!("{b}@{DOMAIN}")) == k)
            .count();
        by_type.push(json!({"type": k, "included": included, "excluded": excluded}));
        let of: Vec<&BalSent> = per_bal
            .iter()
            .filter(|(b, _)| kind(b) == k)
            .map(|(_, v)| v)
            .collect();
        sent_type.push(json!({"type": k,
            "messages": of.iter().map(|v| v.0.len() as u64).sum::<u64>(),
            "rows": of.iter().map(|v| v.1).sum::<u64>(),
            "bytes": of.iter().map(|v| v.2).sum::<u64>()}));
    }
    let mut top: Vec<(&String, &BalSent)> = per_bal.iter().collect();
    top.sort_by(|a, b| {
        (b.1 .1, b.1 .0.len())
            .cmp(&(a.1 .1, a.1 .0.len()))
            .then(a.0.cmp(b.0))
    });
    let all_days: Vec<Value> = {
        let (mut d, end) = (month.first_day(), month.next().first_day());
        let mut v = vec![];
        while d < end {
            let (msgs, rows) = days
                .get(&d.to_string())
                .map_or((0, 0), |x| (x.0.len() as u64, x.1));
            v.push(json!({"day": d.to_string(), "messages": msgs, "rows": rows}));
            d = d.tomorrow().unwrap();
        }
        v
    };
    json!({
        "by_type": by_type,
        "messages": ids.len(),
        "rows": rows.len(),
        "bytes": bytes,
        "sent_by_type": sent_type,
        "days": all_days,
        "top": top.iter().map(|(b, v)| json!({"bal": b, "type": kind(b), "messages": v.0.len(), "rows": v.1, "bytes": v.2})).collect::<Vec<_>>(),
        "trust_space": {"inside": inside, "outside": rows.len() as u64 - inside},
        "lines": lines,
    })
}

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
    let names = dashboard_metrics();
    let mut scraped = String::new();
    for _ in 0..200 {
        scraped = http_get_or_post(
            &format!("127.0.0.1:{metrics}"),
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        if scraped.contains("mss_export_state{") && scraped.contains("mss_domain_logins_total{") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let samples = sample_names(&scraped);
    // Parsed as Prometheus does: every metric README.md documents is there,
    // every label well-formed.
    let body = scraped
        .split_once("\r\n\r\n")
        .map_or(scraped.as_str(), |(_, b)| b);
    let parsed = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let parsed_names: BTreeSet<&str> = parsed.samples.iter().map(|s| s.metric.as_str()).collect();
    for doc in documented_metrics() {
        assert!(
            samples.contains(&doc),
            "{doc} (README.md) is not on /metrics:\n{scraped}"
        );
    }
    for s in &parsed.samples {
        for (k, v) in s.labels.iter() {
            assert!(
                !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{s:?}"
            );
            assert!(!v.is_empty() && !v.contains('"'), "{s:?}");
        }
    }
    assert!(
        parsed_names.contains("mss_transactions_total"),
        "{parsed_names:?}"
    );
    let missing: Vec<&String> = names.iter().filter(|n| !samples.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "dashboard metrics missing from /metrics: {missing:?}\n{scraped}"
    );
    assert!(
        scraped.contains(&format!(
            "mss_export_state{{month=\"{month}\",state=\"accepted\"}} 1\n"
        )),
        "{scraped}"
    );
    assert!(
        scraped.contains(&format!(
            "mss_domain_messages_total{{frontend=\"milter\",domain=\"{DOMAIN}\"}} 1\n"
        )),
        "{scraped}"
    );
    assert!(
        scraped.contains(&format!(
            "mss_domain_logins_total{{domain=\"{DOMAIN}\"}} 1\n"
        )),
        "{scraped}"
    );
    let days = scraped
        .lines()
        .find_map(|l| l.strip_prefix("mss_client_certificate_expiry_days "))
        .unwrap();
    assert!(days.parse::<i64>().unwrap() > 30, "{days}");
    stop(side);
}

/// The metric names of README.md's metrics table (`| \`mss_…\` |` lines).
fn documented_metrics() -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let out: BTreeSet<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `mss_"))
        .filter_map(|l| l.split('`').next())
        .map(|n| format!("mss_{n}"))
        .collect();
    assert!(out.len() >= 20, "{out:?}");
    out
}

/// Every metric name in the dashboard's expressions.
fn dashboard_metrics() -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/grafana/mss-sidecar.json");
    let d: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = BTreeSet::new();
    let panels = d["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    for p in panels {
        for t in p["targets"].as_array().unwrap() {
            let e = t["expr"].as_str().unwrap();
            let mut rest = e;
            while let Some(i) = rest.find("mss_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                out.insert(name);
            }
        }
    }
    assert!(out.len() >= 15, "{out:?}");
    out
}

/// The metric names of a Prometheus text exposition (`# TYPE` and
/// samples), each line checked:
/// `# HELP`/`# TYPE` comments, or `name{labels} value` with well-formed
/// labels and a number.
fn sample_names(text: &str) -> BTreeSet<String> {
    let body = text.split_once("\r\n\r\n").map_or(text, |(_, b)| b);
    let mut out = BTreeSet::new();
    for l in body.lines().filter(|l| !l.is_empty()) {
        if let Some(t) = l.strip_prefix("# TYPE ") {
            // OpenMetrics: a family's samples carry the suffixes of its type.
            let (name, kind) = t.split_once(' ').unwrap_or((t, ""));
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["", "_bucket", "_sum", "_count"],
                _ => &[""],
            };
            for x in suffixes {
                out.insert(format!("{name}{x}"));
            }
            continue;
        }
        if l.starts_with("# HELP ") || l.starts_with("# UNIT ") || l == "# EOF" {
            continue;
        }
        let (series, value) = l
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {l:?}"));
        assert!(value.parse::<f64>().is_ok(), "bad value in {l:?}");
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (
                n,
                Some(
                    rest.strip_suffix('}')
                        .unwrap_or_else(|| panic!("bad labels {l:?}")),
                ),
            ),
            None => (series, None),
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad name {l:?}"
        );
        if let Some(labels) = labels {
            for kv in labels.split("\",").filter(|s| !s.is_empty()) {
                let (k, v) = kv
                    .split_once("=\"")
                    .unwrap_or_else(|| panic!("bad label {kv:?} in {l:?}"));
                assert!(
                    k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "bad label name in {l:?}"
                );
                assert!(
                    !v.trim_end_matches('"').contains('"'),
                    "bad label value in {l:?}"
                );
            }
        }
        out.insert(name.to_string());
    }
    out
}
