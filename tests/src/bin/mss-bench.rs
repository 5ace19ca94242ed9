//! Benchmarks that need the test harness (private Postfix instances) or an
//! exact SMTP client; driven by the scripts in `tests/bench/`.
//!
//! - `mss-bench milter ROUNDS MESSAGES SESSIONS SIDECAR_BIN [NOOP_MILTER_BIN]`: two private
//!   Postfix instances (discard transport), one plain and one with
//!   `smtpd_milters` pointing at a running `mss-sidecar` (milter front end);
//!   the same `smtp-source` load alternated over both; prints msg/s and the
//!   ratio, then checks the store holds exactly messages x recipients rows.
//! - `mss-bench latency ADDR MESSAGES`: one session, MESSAGES sequential
//!   transactions; prints the p50 / p99 / max time (µs) from the end-of-data
//!   dot to the final 250.
//! - `mss-bench events ADDR SECONDS CONNECTIONS USERS`: CONNECTIONS keep-alive
//!   HTTP/1.1 clients POST Dovecot `auth_request_finished` events (USERS
//!   distinct users, successful logins) to `/v1/dovecot` for SECONDS; prints
//!   the accepted events per second (any non-200 reply is fatal).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mss_tests::guard::{signal, wait_within, Guard};
use mss_tests::postfix::{Postfix, PostfixBuilder};

fn usage() -> ! {
    eprintln!("usage: mss-bench milter ROUNDS MESSAGES SESSIONS SIDECAR_BIN [NOOP_MILTER_BIN]\n       mss-bench proxyfilter ROUNDS MESSAGES SESSIONS SIDECAR_BIN\n       mss-bench latency ADDR MESSAGES [SESSIONS]\n       mss-bench events ADDR SECONDS CONNECTIONS USERS\n       mss-bench rows CAPTURE_PATH EXPECTED\n       mss-bench reconcilerows CAPTURE_PATH MESSAGES\n       mss-bench central ROWS SIDECAR_BIN ADMIN_BIN\n       mss-bench centralproxy ROUNDS MESSAGES SESSIONS SIDECAR_BIN ADMIN_BIN");
    std::process::exit(2)
}

fn arg<T: std::str::FromStr>(a: &[String], i: usize) -> T {
    a.get(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| usage())
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    match a.first().map(String::as_str) {
        Some("milter") => milter(
            arg(&a, 1),
            arg(&a, 2),
            arg(&a, 3),
            &a.get(4).cloned().unwrap_or_else(|| usage()),
            a.get(5).map(String::as_str),
        ),
        Some("events") => events(
            &a.get(1).cloned().unwrap_or_else(|| usage()),
            arg(&a, 2),
            arg(&a, 3),
            arg(&a, 4),
        ),
        Some("proxyfilter") => proxy_filter(
            arg(&a, 1),
            arg(&a, 2),
            arg(&a, 3),
            &a.get(4).cloned().unwrap_or_else(|| usage()),
        ),
        Some("centralproxy") => mss_tests::central_bench::proxy(
            arg(&a, 1),
            arg(&a, 2),
            arg(&a, 3),
            &a.get(4).cloned().unwrap_or_else(|| usage()),
            &a.get(5).cloned().unwrap_or_else(|| usage()),
        ),
        Some("central") => mss_tests::central_bench::run(
            arg(&a, 1),
            &a.get(2).cloned().unwrap_or_else(|| usage()),
            &a.get(3).cloned().unwrap_or_else(|| usage()),
        ),
        Some("reconcilerows") => {
            reconcile_rows(&a.get(1).cloned().unwrap_or_else(|| usage()), arg(&a, 2))
        }
        Some("rows") => rows(&a.get(1).cloned().unwrap_or_else(|| usage()), arg(&a, 2)),
        Some("latency") => latency(
            &a.get(1).cloned().unwrap_or_else(|| usage()),
            arg(&a, 2),
            a.get(3).and_then(|s| s.parse().ok()).unwrap_or(1),
        ),
        _ => usage(),
    }
}

use mss_tests::bench::{median, smtp_source};

// A plain `fn`, not a closure: rustc 1.95 at opt-level >= 2 miscompiles a
// closure called twice with a by-value builder that it returns (MIR GVN
// merges the two argument temporaries across the untupled rust-call: the
// second call gets the first one's freed Vec buffer, "double free").
// https://github.com/rust-lang/rust/issues/155241 ; reproducer and
// analysis in docs/reliability.md ("rustc miscompile").
fn tune(b: PostfixBuilder) -> PostfixBuilder {
    b.main_cf("default_process_limit = 200")
        .main_cf("smtpd_client_connection_count_limit = 0")
        .main_cf("smtpd_client_connection_rate_limit = 0")
        .main_cf("smtpd_client_message_rate_limit = 0")
        .main_cf("smtpd_client_recipient_rate_limit = 0")
        .main_cf("in_flow_delay = 0")
}

/// Where a milter listens: `inet:127.0.0.1:PORT` or `unix:DIR/NAME.sock`
/// (`MSS_BENCH_MILTER=unix`), as Postfix spells it and as our config does.
struct MilterAddr {
    /// Postfix's `smtpd_milters` value.
    postfix: String,
    /// `[milter] listen` / the no-op milter's argument.
    listen: String,
}

impl MilterAddr {
    fn new(unix: bool, dir: &std::path::Path, name: &str) -> MilterAddr {
        if unix {
            let p = dir.join(format!("{name}.sock"));
            MilterAddr {
                postfix: format!("unix:{}", p.display()),
                listen: format!("unix:{}", p.display()),
            }
        } else {
            let port = Postfix::free_port();
            MilterAddr {
                postfix: format!("inet:127.0.0.1:{port}"),
                listen: format!("127.0.0.1:{port}"),
            }
        }
    }

    fn up(&self) -> bool {
        match self.listen.strip_prefix("unix:") {
            Some(p) => std::os::unix::net::UnixStream::connect(p).is_ok(),
            None => TcpStream::connect(&self.listen).is_ok(),
        }
    }
}

fn milter(rounds: u64, msgs: u64, sessions: u64, sidecar: &str, noop: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    // Postfix's smtpd (user `postfix`) must reach a Unix socket in it.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let unix = std::env::var("MSS_BENCH_MILTER").is_ok_and(|v| v == "unix");
    println!(
        "milter transport: {}",
        if unix { "unix socket" } else { "tcp" }
    );
    let maddr = MilterAddr::new(unix, dir.path(), "sidecar");
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[service]\nuser = \"root\"\nmail_log_marks = false\n[operator]\ndomains = [\"ch-bench.mssante.fr\"]\nnode = \"bench\"\n[store]\ncapture_path = \"{}\"\nregistry_path = \"{}\"\n[milter]\nlisten = \"{}\"\n",
            dir.path().join("capture").display(),
            dir.path().join("registry").display(),
            maddr.listen
        ),
    )
    .unwrap();
    // Guarded: killed on drop even when the driver panics.
    let mut side = Guard(
        Command::new(sidecar)
            .arg("--config")
            .arg(&cfg)
            .env("MSS_LOG", "warn")
            .stderr(Stdio::inherit())
            .spawn()
            .expect("mss-sidecar"),
    );
    let t = Instant::now();
    while !maddr.up() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "milter never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let plain = tune(PostfixBuilder::new()).start().expect("postfix");
    let with = tune(PostfixBuilder::new())
        .main_cf(&format!("smtpd_milters = {}", maddr.postfix))
        .main_cf("milter_default_action = accept")
        .start()
        .expect("postfix");
    // The reference: Postfix + a no-op milter (tests/bench/noop_milter.rs).
    let reference = noop.map(|bin| {
        let naddr = MilterAddr::new(unix, dir.path(), "noop");
        let g = Guard(
            Command::new(bin)
                .arg(&naddr.listen)
                .spawn()
                .expect("no-op milter"),
        );
        let t = Instant::now();
        while !naddr.up() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "no-op milter never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let pf = tune(PostfixBuilder::new())
            .main_cf(&format!("smtpd_milters = {}", naddr.postfix))
            .main_cf("milter_default_action = accept")
            .start()
            .expect("postfix");
        (g, pf)
    });
    let (mut a, mut c, mut n) = (vec![], vec![], vec![]);
    for r in 1..=rounds {
        a.push(smtp_source(&plain.addr(), msgs, sessions));
        if let Some((_, pf)) = &reference {
            n.push(smtp_source(&pf.addr(), msgs, sessions));
        }
        c.push(smtp_source(&with.addr(), msgs, sessions));
        println!(
            "round {r}: postfix {:.0} msg/s, postfix+no-op milter {}, postfix+milter {:.0} msg/s",
            a[a.len() - 1],
            n.last().map_or("-".into(), |v| format!("{v:.0} msg/s")),
            c[c.len() - 1]
        );
    }
    let (ma, mc) = (median(&mut a), median(&mut c));
    println!(
        "median msg/s: postfix {ma:.0}, postfix+milter {mc:.0}; ratio {:.3}",
        mc / ma
    );
    if !n.is_empty() {
        let mn = median(&mut n);
        println!(
            "median msg/s: postfix+no-op milter {mn:.0}; ratio milter/no-op {:.3} (goal >= 0.95)",
            mc / mn
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    signal(side.id() as i64, "TERM");
    let _ = wait_within(&mut side.0, Duration::from_secs(30));
    check_rows(&dir.path().join("capture"), rounds, msgs);
}

/// Wait (bounded) until `addr` accepts TCP connections.
fn wait_listening(addr: &str, what: &str) {
    let t = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{what} never listened on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Benchmark 3, the real deployment: the sidecar proxy as a front Postfix's
/// before-queue `smtpd_proxy_filter` in front of a second private Postfix,
/// against haproxy in the same place (a front Postfix of its own), the same
/// `smtp-source` load alternated; ratio of the medians, exact row check.
fn proxy_filter(rounds: u64, msgs: u64, sessions: u64, sidecar: &str) {
    let dir = tempfile::tempdir().unwrap();
    let back = tune(PostfixBuilder::new()).start().expect("back postfix");
    let (pport, hport) = (Postfix::free_port(), Postfix::free_port());
    let hcfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &hcfg,
        format!(
            "global\n  maxconn 4096\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 120s\n  timeout server 120s\nlisten smtp\n  bind 127.0.0.1:{hport}\n  server back {}\n",
            back.addr()
        ),
    )
    .unwrap();
    let _haproxy = Guard(
        Command::new("haproxy")
            .arg("-q")
            .arg("-f")
            .arg(&hcfg)
            .spawn()
            .expect("haproxy (apt-get install haproxy)"),
    );
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[service]\nuser = \"root\"\nmail_log_marks = false\n[operator]\ndomains = [\"ch-bench.mssante.fr\"]\nnode = \"bench\"\n[store]\ncapture_path = \"{}\"\nregistry_path = \"{}\"\n[proxy]\nlisten = \"127.0.0.1:{pport}\"\nupstream = \"{}\"\nmax_sessions = 2000\n",
            dir.path().join("capture").display(),
            dir.path().join("registry").display(),
            back.addr()
        ),
    )
    .unwrap();
    let mut side = Guard(
        Command::new(sidecar)
            .arg("--config")
            .arg(&cfg)
            .env("MSS_LOG", "warn")
            .stderr(Stdio::inherit())
            .spawn()
            .expect("mss-sidecar"),
    );
    wait_listening(&format!("127.0.0.1:{hport}"), "haproxy");
    wait_listening(&format!("127.0.0.1:{pport}"), "mss-sidecar");
    // packaging/postfix-proxy.cf: the public smtpd hands each session over.
    fn front(filter: u16) -> Postfix {
        tune(PostfixBuilder::new())
            .main_cf(&format!("smtpd_proxy_filter = 127.0.0.1:{filter}"))
            .main_cf("smtpd_proxy_options = speed_adjust")
            .main_cf("smtpd_proxy_timeout = 100s")
            .start()
            .expect("front postfix")
    }
    let via_haproxy = front(hport);
    let via_sidecar = front(pport);
    let (mut b, mut c) = (vec![], vec![]);
    for r in 1..=rounds {
        b.push(smtp_source(&via_haproxy.addr(), msgs, sessions));
        c.push(smtp_source(&via_sidecar.addr(), msgs, sessions));
        println!(
            "round {r}: postfix -> haproxy -> postfix {:.0} msg/s, postfix -> mss-sidecar -> postfix {:.0} msg/s",
            b[b.len() - 1],
            c[c.len() - 1]
        );
    }
    let (mb, mc) = (median(&mut b), median(&mut c));
    println!(
        "median msg/s: via haproxy {mb:.0}, via mss-sidecar {mc:.0}; ratio {:.3} (goal >= 0.95)",
        mc / mb
    );
    std::thread::sleep(Duration::from_secs(1));
    signal(side.id() as i64, "TERM");
    let _ = wait_within(&mut side.0, Duration::from_secs(30));
    check_rows(&dir.path().join("capture"), rounds, msgs);
}

/// Exit 1 unless the store holds exactly `rounds` x `msgs` x 3 rows.
fn check_rows(capture: &std::path::Path, rounds: u64, msgs: u64) {
    let rows = out_rows(capture);
    let want = rounds * msgs * 3;
    if rows == want {
        println!("store: {rows} rows = {rounds} x {msgs} x 3 (exact)");
    } else {
        eprintln!("error: store has {rows} rows, expected {want}");
        std::process::exit(1);
    }
}

/// Outbound rows of this month and the previous one in a capture store (the
/// sidecar stopped or running: opened as a secondary).
fn out_rows(capture: &std::path::Path) -> u64 {
    let sec = tempfile::tempdir().unwrap();
    let store =
        mss_shared::store::capture::CaptureStore::open_secondary(capture, sec.path()).unwrap();
    let tz = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
    let mut rows = 0u64;
    let now = mss_shared::month::Month::current(&tz);
    for m in [now.prev(), now] {
        store.for_each_out(m, None, |_| rows += 1).unwrap();
    }
    rows
}

/// `mss-bench rows CAPTURE_PATH WANT`: exit 1 unless the store holds exactly WANT rows.
fn rows(capture: &str, want: u64) {
    let rows = out_rows(std::path::Path::new(capture));
    if rows == want {
        println!("store: {rows} rows (exact)");
    } else {
        eprintln!("error: store has {rows} rows, expected {want}");
        std::process::exit(1);
    }
}

/// `latency ADDR MESSAGES [SESSIONS]`: SESSIONS concurrent sessions, each
/// MESSAGES sequential transactions; p50 p99 max over all of them, in µs.
fn latency(addr: &str, msgs: usize, sessions: usize) {
    let hs: Vec<_> = (0..sessions)
        .map(|_| {
            let addr = addr.to_string();
            std::thread::spawn(move || session_latencies(&addr, msgs))
        })
        .collect();
    let mut lat: Vec<f64> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    println!("{:.0} {:.0} {:.0}", q(0.5), q(0.99), lat[lat.len() - 1]);
}

fn session_latencies(addr: &str, msgs: usize) -> Vec<f64> {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
    s.set_nodelay(true).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut reply = || {
        let mut all = String::new();
        loop {
            let mut l = String::new();
            if r.read_line(&mut l).unwrap() == 0 {
                panic!("connection closed: {all}");
            }
            all.push_str(&l);
            if l.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    };
    reply();
    w.write_all(b"EHLO bench\r\n").unwrap();
    reply();
    let body = format!("Subject: latency\r\n\r\n{}\r\n", "x".repeat(4000));
    let mut lat = Vec::with_capacity(msgs);
    for _ in 0..msgs {
        w.write_all(b"MAIL FROM:<bench@ch-bench.mssante.fr>\r\n")
            .unwrap();
        assert!(reply().starts_with("250"));
        w.write_all(b"RCPT TO:<rcpt@ext.test>\r\n").unwrap();
        assert!(reply().starts_with("250"));
        w.write_all(b"DATA\r\n").unwrap();
        assert!(reply().starts_with("354"));
        w.write_all(body.as_bytes()).unwrap();
        let t = Instant::now();
        w.write_all(b".\r\n").unwrap();
        let rep = reply();
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        assert!(rep.starts_with("250"), "{rep}");
    }
    let _ = w.write_all(b"QUIT\r\n");
    lat
}

fn events(addr: &str, secs: u64, conns: u64, users: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let handles: Vec<_> = (0..conns)
        .map(|c| {
            let addr = addr.to_string();
            std::thread::spawn(move || {
                let s = TcpStream::connect(&addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
                s.set_nodelay(true).unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut w = s;
                let mut n = 0u64;
                let base = 1_795_000_000u64;
                while Instant::now() < deadline {
                    let user = (c * 7919 + n) % users;
                    let body = format!(
                        r#"{{"event": "auth_request_finished", "hostname": "imap1", "end_time": {}.25, "fields": {{"user": "u{user}@ch-bench.mssante.fr", "service": "imap", "success": "yes"}}}}"#,
                        base - n % 500_000
                    );
                    write!(
                        w,
                        "POST /v1/dovecot HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .unwrap();
                    let mut status = String::new();
                    r.read_line(&mut status).unwrap();
                    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        r.read_line(&mut h).unwrap();
                        if h == "\r\n" || h.is_empty() {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                    let mut b = vec![0; len];
                    std::io::Read::read_exact(&mut r, &mut b).unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    println!("{:.0}", total as f64 / start.elapsed().as_secs_f64());
}

/// The rows of `tests/bench/reconcile.sh`'s generated log, written straight
/// into a capture store (message i: queue id `%010X`, sender
/// `u{i % 5000}@`, recipients `r{i % 7000}@ext.fr` and `s{i % 9000}@ext.fr`,
/// accepted half a second after its `client=` line at 2026-11-01 + 2i s UTC).
fn reconcile_rows(capture: &str, messages: u64) {
    use mss_shared::model::{MessageRecord, Record};
    use mss_shared::store::capture::{CaptureStore, Classifier};
    let domain = "ch-test.mssante.fr".to_string();
    let store = CaptureStore::open(std::path::Path::new(capture)).expect("capture store");
    let cls = Classifier::new(std::slice::from_ref(&domain), jiff::tz::TimeZone::UTC);
    let start = jiff::Timestamp::from_second(1_793_491_200)
        .unwrap()
        .as_microsecond(); // 2026-11-01T00:00:00Z
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..messages {
        let q = format!("{i:010X}");
        batch.push(Record::Message(MessageRecord {
            mail_id: format!("b1.x.{q}"),
            queue_id: Some(q),
            message_id: None,
            sender: format!("u{}@{domain}", i % 5000),
            recipients: vec![
                format!("r{}@ext.fr", i % 7000),
                format!("s{}@ext.fr", i % 9000),
            ],
            size: 1700,
            time_us: start + i as i64 * 2_000_000 + 500_000,
            frontend: "milter".into(),
        }));
        if batch.len() == 10_000 {
            store.apply(&batch, &cls, false).expect("write");
            batch.clear();
        }
    }
    store.apply(&batch, &cls, false).expect("write");
    store.flush().expect("flush");
}
