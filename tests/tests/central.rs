//! Several nodes, one month (`[central]`): real `mss-sidecar` daemons (one
//! as milter of a private Postfix, one as SMTP proxy in front of another),
//! a private PostgreSQL 15 with TLS and the documented least-privilege roles,
//! and the real `mss-admin` / `mss-export` (support: `mss_tests::multinode`).

use std::process::Command;
use std::time::{Duration, Instant};

use mss_shared::month::{format_csv_date, from_micros, Month};
use mss_shared::store::capture::OutRow;
use mss_tests::config::TestConfig;
use mss_tests::daemon::Daemon;
use mss_tests::multinode::*;
use mss_tests::postfix::{Postfix, PostfixBuilder};
use mss_tests::sidecar::{rows, DOMAIN};

#[test]
fn two_nodes_one_month_exact_files() {
    let (pg, _admin_dir, admin) = central();
    let tz = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
    let month = Month::current(&tz);
    // Node A: the milter of a private Postfix; node B: the proxy in front of another.
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (milter, ev_a, ev_b, proxy) = (
        Postfix::free_port(),
        Postfix::free_port(),
        Postfix::free_port(),
        Postfix::free_port(),
    );
    let pa = PostfixBuilder::new()
        .main_cf(&format!("smtpd_milters = inet:127.0.0.1:{milter}"))
        .main_cf("milter_default_action = accept")
        .start()
        .unwrap();
    let pb = PostfixBuilder::new().start().unwrap();
    let ev_a = format!("127.0.0.1:{ev_a}");
    let ev_b = format!("127.0.0.1:{ev_b}");
    let metrics_a = format!("127.0.0.1:{}", Postfix::free_port());
    let a = Daemon::start(
        da.path(),
        &node_config(&pg, da.path(), "mxa", |t| {
            t.milter(&format!("127.0.0.1:{milter}"))
                .events(&ev_a)
                .metrics(&metrics_a)
        }),
        &ev_a,
    );
    let proxy_addr = format!("127.0.0.1:{proxy}");
    let b = Daemon::start(
        db.path(),
        &node_config(&pg, db.path(), "mxb", |t| {
            t.proxy(&proxy_addr, &pb.addr()).events(&ev_b)
        }),
        &ev_b,
    );
    let (alice, bob) = (format!("alice@{DOMAIN}"), format!("bob@{DOMAIN}"));
    // alice logs in on A and sends from B; bob logs in on B and sends from A.
    let t_alice = jiff::Timestamp::now().round(jiff::Unit::Second).unwrap();
    post_login(&ev_a, &alice, &t_alice.to_string());
    post_login(&ev_b, &bob, &t_alice.to_string());
    send(&proxy_addr, &alice, &["x1@ext.test", "x2@ext.test"]);
    send(&pa.addr(), &bob, &["y1@ext.test"]);
    send(&pa.addr(), &alice, &["y2@ext.test"]);
    // 2 logins, 3 messages.
    wait_central(&pg, 5, &[da.path(), db.path()]);
    let (c, out, _) = run("mss-admin", &admin, &["central", "nodes", "--json"]);
    assert_eq!(c, 0);
    let nodes: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mxa", "mxb"]);
    // mxa's /metrics: connected, its 3 records shipped, nothing waiting.
    let t = Instant::now();
    loop {
        let m = mss_tests::files::get(&metrics_a, "/metrics");
        let have = |l: &str| m.lines().any(|x| x == l);
        if have("mss_central_up 1")
            && have("mss_central_shipped_records_total 3")
            && have("mss_central_outbox_records 0")
        {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{m}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let all_rows: Vec<OutRow> = [rows(da.path()), rows(db.path())].concat();
    assert_eq!(all_rows.len(), 4);
    stop(a);
    stop(b);

    // The month's files, from the centre, read with the export role.
    let (_ed, export) = tool_config(&pg, "mss_export");
    // The current month is not over: refused without --allow-incomplete.
    let (c, _, _, err) = build(&export, month, &[]);
    assert_eq!(c, 16, "{err}");
    assert!(
        err.contains("node mxa has shipped up to") && err.contains("node mxb"),
        "{err}"
    );
    let (c, echanges, connexions, err) = build(&export, month, &["--allow-incomplete"]);
    assert_eq!(c, 0, "{err}");
    let mut want: Vec<_> = all_rows.iter().map(|r| echanges_line(r, &tz)).collect();
    want.sort();
    let want: String = want.into_iter().map(|(_, _, l)| l).collect();
    assert_eq!(
        echanges,
        format!("MAIL_ID;EXPEDITEUR;DESTINATAIRE;DATE;TAILLE\r\n{want}")
    );
    // alice: her login on A although she sent from B; bob's on B.
    let login = format_csv_date(from_micros(t_alice.as_microsecond()), &tz);
    assert_eq!(
        connexions,
        format!("BAL;DATE_DERNIERE_CONNEXION\r\n{alice};{login}\r\n{bob};{login}\r\n")
    );
}

#[test]
fn postgres_down_at_start_then_back_ships_everything_once() {
    let (pg, _ad, _admin) = central();
    let node = ProxyNode::new(&pg, "mxa", 5000);
    pg.stop();
    let d = node.start();
    let alice = format!("alice@{DOMAIN}");
    for i in 0..3 {
        send(&node.proxy, &alice, &[&format!("x{i}@ext.test")]);
    }
    post_login(&node.events, &alice, &jiff::Timestamp::now().to_string());
    // Mail flowed and was captured locally while PostgreSQL was down.
    assert_eq!(local_mail_ids(node.dir.path()).len(), 3);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        node.stderr().contains("central: central store: connecting"),
        "{}",
        node.stderr()
    );
    pg.start_again();
    wait_central(&pg, 4, &[node.dir.path()]);
    assert_eq!(central_mail_ids(&pg), local_mail_ids(node.dir.path()));
    stop(d);
}

#[test]
fn cut_connections_postgres_stopped_and_kill_9_mid_batch_lose_and_duplicate_nothing() {
    let (pg, _ad, _admin) = central();
    // Small batches: many transactions to cut.
    let node = ProxyNode::new(&pg, "mxa", 100);
    let d = node.start();
    let source = Command::new("/usr/sbin/smtp-source")
        .args(["-s", "4", "-m", "400", "-r", "2", "-N", "-l", "200"])
        .args(["-f", &format!("dr.load@{DOMAIN}"), "-t", "r@ext.test"])
        .arg(&node.proxy)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut source = mss_tests::guard::Guard(source);
    // Connections cut from the server side, three times, under load.
    let mut cut = 0;
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(400));
        cut += pg
            .psql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'mss-sidecar'",
            )
            .parse::<u32>()
            .unwrap();
    }
    assert!(cut > 0, "no shipper connection to cut");
    // PostgreSQL itself stopped under load, mid-batch or not, then back.
    pg.stop();
    std::thread::sleep(Duration::from_millis(700));
    pg.start_again();
    // Then the node itself killed with SIGKILL, mid-batch or not.
    let mut d = d;
    let _ = Command::new("kill")
        .args(["-KILL", &d.pid().to_string()])
        .status();
    let _ = mss_tests::guard::wait_within(&mut d.child, Duration::from_secs(10));
    let _ = mss_tests::guard::wait_within(&mut source.0, Duration::from_secs(60));
    let before = node.stderr();
    assert!(
        before.contains("central: central store:"),
        "the cuts were seen: {before}"
    );
    let d = node.start();
    // smtp-source may have lost sessions to the kill: what counts is that
    // PostgreSQL ends with exactly what the node captured.
    let want = local_mail_ids(node.dir.path());
    assert!(want.len() > 50, "load captured: {}", want.len());
    wait_central(&pg, want.len(), &[node.dir.path()]);
    assert_eq!(central_mail_ids(&pg), want);
    stop(d);
}

#[test]
fn a_second_host_with_the_same_name_is_refused_and_keeps_capturing() {
    let (pg, _ad, admin) = central();
    let first = ProxyNode::new(&pg, "mxa", 5000);
    let a = first.start();
    let alice = format!("alice@{DOMAIN}");
    send(&first.proxy, &alice, &["x@ext.test"]);
    wait_central(&pg, 1, &[first.dir.path()]);
    let second = ProxyNode::new(&pg, "mxa", 5000);
    let b = second.start();
    send(&second.proxy, &alice, &["y@ext.test"]);
    let t = Instant::now();
    while !second
        .stderr()
        .contains("already registered centrally by another node")
    {
        assert!(t.elapsed() < Duration::from_secs(20), "{}", second.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
    // It captured locally; nothing of it went to the centre.
    assert_eq!(local_mail_ids(second.dir.path()).len(), 1);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(central_mail_ids(&pg), local_mail_ids(first.dir.path()));
    let (c, out, _) = run("mss-admin", &admin, &["central", "nodes"]);
    assert_eq!(c, 0);
    assert_eq!(out.lines().count(), 1, "{out}");
    stop(b);
    stop(a);
}

#[test]
fn a_node_down_across_the_month_end_blocks_the_build_until_it_ships() {
    let (pg, _ad, _admin) = central();
    let tz = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
    let last_month = Month::current(&tz).prev();
    let (na, nb) = (
        ProxyNode::new(&pg, "mxa", 5000),
        ProxyNode::new(&pg, "mxb", 5000),
    );
    let (a, b) = (na.start(), nb.start());
    let alice = format!("alice@{DOMAIN}");
    send(&na.proxy, &alice, &["x@ext.test"]);
    send(&nb.proxy, &alice, &["y@ext.test"]);
    wait_central(&pg, 2, &[na.dir.path(), nb.dir.path()]);
    stop(b);
    // mxb as if it had been down since an hour before the end of last
    // month: its completeness mark stopped there.
    let end = last_month.end(&tz).as_microsecond();
    pg.psql_db(
        "mss",
        &format!(
            "UPDATE nodes SET complete_until_us = {} WHERE name = 'mxb'",
            end - 3_600_000_000
        ),
    );
    let (_ed, export) = tool_config(&pg, "mss_export");
    let (c, _, _, err) = build(&export, last_month, &[]);
    assert_eq!(c, 16, "{err}");
    assert!(err.contains("node mxb has shipped up to"), "{err}");
    assert!(err.contains("1 h 0 min short of the end of"), "{err}");
    assert!(!err.contains("node mxa"), "{err}");
    // mxb comes back: it ships (nothing waiting) and moves its mark on.
    let b = nb.start();
    let t = Instant::now();
    loop {
        let (c, _, _, err) = build(&export, last_month, &[]);
        if c == 0 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{c}: {err}");
        std::thread::sleep(Duration::from_millis(300));
    }
    stop(a);
    stop(b);
}

#[test]
fn one_registry_for_every_host_imported_once_all_or_nothing() {
    let (pg, _ad, admin) = central();
    // A registry built on one host before [central]...
    let local = tempfile::tempdir().unwrap();
    let plain = local.path().join("config.toml");
    std::fs::write(&plain, TestConfig::new(local.path()).text()).unwrap();
    let alice = format!("alice@{DOMAIN}");
    let (c, _, err) = run(
        "mss-admin",
        &plain,
        &["mailbox", "add", &alice, "--type", "personnelle"],
    );
    assert_eq!(c, 0, "{err}");
    // ...moved to PostgreSQL once: the admin config points at that store.
    let text = std::fs::read_to_string(&admin).unwrap();
    let moved = text.replace(
        &format!("{}", admin.parent().unwrap().join("registry").display()),
        &format!("{}", local.path().join("registry").display()),
    );
    std::fs::write(&admin, moved).unwrap();
    let (c, out, err) = run("mss-admin", &admin, &["central", "import-registry"]);
    assert_eq!(c, 0, "{err}");
    assert!(out.starts_with("1 registry entries moved"), "{out}");
    let (c, _, err) = run("mss-admin", &admin, &["central", "import-registry"]);
    assert_eq!(c, 14, "a second import is refused: {err}");
    // Another host (the export role, its own empty local store) sees it
    // and adds to it; the first sees that.
    let (_ed, export) = tool_config(&pg, "mss_export");
    let bob = format!("bob@{DOMAIN}");
    let (c, _, err) = run(
        "mss-admin",
        &export,
        &["mailbox", "add", &bob, "--type", "applicative"],
    );
    assert_eq!(c, 0, "{err}");
    let (c, out, err) = run("mss-admin", &admin, &["mailbox", "list", "--json"]);
    assert_eq!(c, 0, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let bals: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["bal"].as_str().unwrap())
        .collect();
    assert_eq!(bals, [alice.as_str(), bob.as_str()]);
    // A failing command pushes nothing: an unknown type is refused.
    let (c, _, _) = run(
        "mss-admin",
        &export,
        &[
            "mailbox",
            "add",
            &format!("carol@{DOMAIN}"),
            "--type",
            "nope",
        ],
    );
    assert_ne!(c, 0);
    let n: usize = pg
        .psql_db("mss", "SELECT count(*) FROM registry WHERE cf = 'mailbox'")
        .parse()
        .unwrap();
    assert_eq!(n, 2);
    // The month's Connexions file lists the registry's BALs (never seen:
    // unknown, 1900) from the central registry.
    let month = Month::current(&jiff::tz::TimeZone::get("Europe/Paris").unwrap());
    let (c, _, connexions, err) = build(&export, month, &["--allow-incomplete"]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(
        connexions,
        format!("BAL;DATE_DERNIERE_CONNEXION\r\n{alice};1900-01-01 00:00:00\r\n{bob};1900-01-01 00:00:00\r\n")
    );
}

#[test]
fn retention_purges_old_records_centrally_and_keeps_their_last_dates() {
    let (pg, _ad, admin) = central();
    let tz = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
    let node = ProxyNode::new(&pg, "mxa", 5000);
    let d = node.start();
    let alice = format!("alice@{DOMAIN}");
    send(&node.proxy, &alice, &["x@ext.test"]);
    wait_central(&pg, 1, &[node.dir.path()]);
    stop(d);
    // A login mxa shipped 14 months ago (older than retention_months = 13).
    let old = jiff::Timestamp::now()
        .to_zoned(tz.clone())
        .checked_sub(jiff::Span::new().months(14))
        .unwrap()
        .timestamp()
        .round(jiff::Unit::Second)
        .unwrap();
    let veteran = format!("veteran@{DOMAIN}");
    pg.psql_db(
        "mss",
        &format!(
            "INSERT INTO records SELECT id, 1000000, 2, {us}, '{{\"kind\":\"login\",\"bal\":\"{veteran}\",\"time_us\":{us},\"service\":\"imap\",\"source\":\"api\"}}' FROM nodes WHERE name = 'mxa'",
            us = old.as_microsecond()
        ),
    );
    let (c, out, err) = run("mss-admin", &admin, &["central", "purge"]);
    assert_eq!(c, 0, "{err}");
    assert!(
        out.contains(": 1 purged, their last dates kept for 1 BAL(s)"),
        "{out}"
    );
    assert_eq!(pg.psql_db("mss", "SELECT count(*) FROM records"), "1");
    // A second purge has nothing left to do.
    let (_, out, _) = run("mss-admin", &admin, &["central", "purge"]);
    assert!(out.contains(": 0 purged"), "{out}");
    // The purged login still dates veteran's Connexions line.
    let (c, _, err) = run(
        "mss-admin",
        &admin,
        &["mailbox", "add", &veteran, "--type", "personnelle"],
    );
    assert_eq!(c, 0, "{err}");
    let (_ed, export) = tool_config(&pg, "mss_export");
    let (c, _, connexions, err) = build(&export, Month::current(&tz), &["--allow-incomplete"]);
    assert_eq!(c, 0, "{err}");
    let line = format!(
        "{veteran};{}\r\n",
        format_csv_date(from_micros(old.as_microsecond()), &tz)
    );
    assert!(connexions.contains(&line), "{connexions}");
}

#[test]
fn a_node_meeting_a_newer_schema_keeps_capturing_and_says_so() {
    let (pg, _ad, _admin) = central();
    pg.psql_db("mss", "INSERT INTO schema_version (version) VALUES (99)");
    let node = ProxyNode::new(&pg, "mxa", 5000);
    let d = node.start();
    send(&node.proxy, &format!("alice@{DOMAIN}"), &["x@ext.test"]);
    let t = Instant::now();
    while !node.stderr().contains("newer than this mss-sidecar knows") {
        assert!(t.elapsed() < Duration::from_secs(20), "{}", node.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(local_mail_ids(node.dir.path()).len(), 1);
    assert_eq!(pg.psql_db("mss", "SELECT count(*) FROM records"), "0");
    stop(d);
}

#[test]
fn a_month_submitted_without_a_lagging_node_is_submitted_again_once_it_has_shipped() {
    use mss_tests::sipil::{Pki, SipilServer};
    let (pg, _ad, admin) = central();
    let tz = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
    let target = Month::current(&tz).prev();
    let (na, nb) = (
        ProxyNode::new(&pg, "mxa", 5000),
        ProxyNode::new(&pg, "mxb", 5000),
    );
    let (a, b) = (na.start(), nb.start());
    send(&na.proxy, &format!("alice@{DOMAIN}"), &["x@ext.test"]);
    send(&nb.proxy, &format!("alice@{DOMAIN}"), &["y@ext.test"]);
    wait_central(&pg, 2, &[na.dir.path(), nb.dir.path()]);
    stop(b);
    // mxb went down two hours before the end of `target`, with a message
    // of that month not shipped yet.
    let end = target.end(&tz).as_microsecond();
    pg.psql_db(
        "mss",
        &format!(
            "UPDATE nodes SET complete_until_us = {} WHERE name = 'mxb'",
            end - 7_200_000_000
        ),
    );
    let (c, _, err) = run(
        "mss-admin",
        &admin,
        &[
            "mailbox",
            "add",
            &format!("alice@{DOMAIN}"),
            "--type",
            "personnelle",
        ],
    );
    assert_eq!(c, 0, "{err}");
    // The exporter's host: the export role, the SIPIL stand-in.
    let pki = Pki::new();
    let server = SipilServer::start(&pki.server, pki.ca.der());
    let edir = tempfile::tempdir().unwrap();
    let f = pki.write(edir.path());
    let export = edir.path().join("config.toml");
    let text = TestConfig::new(edir.path())
        .with(|c| {
            c.central = Some(pg.central("mss_export"));
            c.export.out_dir = edir.path().join("exports");
        })
        .text();
    std::fs::write(
        &export,
        format!(
            "{text}\n[sipil]\npost_url = \"{}\"\nreport_url = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\nca_file = \"{}\"\nreport_email = \"ops@op.example\"\nmax_attempts = 3\nretry_delay_ms = 50\nreport_polls = 1\nreport_poll_interval_secs = 0\n",
            server.post_url(),
            server.report_url(),
            f.client_cert.display(),
            f.client_key.display(),
            f.ca.display()
        ),
    )
    .unwrap();
    let first = target.next().first_day();
    let at = |day: i8| {
        first
            .with()
            .day(day)
            .build()
            .unwrap()
            .at(10, 0, 0, 0)
            .to_zoned(tz.clone())
            .unwrap()
            .timestamp()
            .to_string()
    };
    let m = target.to_string();
    // Two days before the deadline (the 5th): wait for mxb.
    let (c, out, err) = run(
        "mss-export",
        &export,
        &["run", "--month", &m, "--now", &at(3)],
    );
    assert_eq!(c, 16, "{out}{err}");
    assert!(
        out.contains("waiting for every node to ship the month: node mxb"),
        "{out}"
    );
    assert!(server.posts().is_empty());
    // The day before: submitted without mxb, saying so.
    let (c, out, err) = run(
        "mss-export",
        &export,
        &["run", "--month", &m, "--now", &at(4)],
    );
    assert_eq!(c, 0, "{out}{err}");
    assert!(
        err.contains("without what these nodes hold: node mxb"),
        "{err}"
    );
    assert_eq!(server.posts().len(), 1);
    // mxb comes back and ships its message of `target` (as its shipper
    // would: the record, then its mark past the month's end).
    let us = end - 10_800_000_000;
    pg.psql_db(
        "mss",
        &format!(
            "INSERT INTO records SELECT id, 1000000, 1, {us}, '{{\"kind\":\"message\",\"mail_id\":\"mxb.late.Q1\",\"queue_id\":\"Q1\",\"message_id\":null,\"sender\":\"alice@{DOMAIN}\",\"recipients\":[\"late@ext.test\"],\"size\":1234,\"time_us\":{us},\"frontend\":\"proxy\"}}' FROM nodes WHERE name = 'mxb';
             UPDATE nodes SET complete_until_us = {} WHERE name = 'mxb'",
            end + 1
        ),
    );
    let (c, out, err) = run(
        "mss-export",
        &export,
        &["run", "--month", &m, "--now", &at(4)],
    );
    assert_eq!(c, 0, "{out}{err}");
    assert!(err.contains("rebuilding and submitting again"), "{err}");
    let posts = server.posts();
    assert_eq!(posts.len(), 2, "submitted again, once");
    let zip = posts[1]
        .parts
        .iter()
        .find(|p| p.filename.as_deref().is_some_and(|n| n.ends_with(".zip")))
        .unwrap()
        .data
        .clone();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let mut csv = String::new();
    use std::io::Read;
    z.by_name(&format!(
        "{}_EchangesMSSante_{DOMAIN}.csv",
        target.compact()
    ))
    .unwrap()
    .read_to_string(&mut csv)
    .unwrap();
    assert!(csv.contains("mxb.late.Q1;alice@"), "{csv}");
    // Accepted and complete: nothing more.
    let (c, out, _) = run(
        "mss-export",
        &export,
        &["run", "--month", &m, "--now", &at(4)],
    );
    assert_eq!(c, 0);
    assert!(out.contains("nothing to do"), "{out}");
    assert_eq!(server.posts().len(), 2);
    stop(a);
}
