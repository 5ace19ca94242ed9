//! The proxy (real `mss-sidecar` binary) in front of a next hop that is down,
//! silent, closes mid-DATA or answers garbage: the client always gets a
//! proper `421 4.4.x` and a clean close, no row is written, and 10 000 such
//! sessions leak neither file descriptors nor memory.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mss_tests::config::TestConfig;
use mss_tests::daemon::Daemon;
use mss_tests::fake_upstream::{FakeUpstream, Mode};
use mss_tests::postfix::Postfix;
use mss_tests::sidecar::{rows, DOMAIN};
use mss_tests::smtp::RawClient;

const DOWN: &str = "421 4.4.1 proxy.test Upstream unavailable, try again later\r\n";
const GARBAGE: &str = "421 4.4.1 proxy.test Upstream error, try again later\r\n";
const LOST: &str = "421 4.4.1 proxy.test Upstream connection lost\r\n";
const TIMEOUT: &str = "421 4.4.2 proxy.test Upstream timeout, try again later\r\n";

struct Proxy {
    daemon: Daemon,
    addr: String,
    metrics: String,
    dir: tempfile::TempDir,
}

/// The real daemon: proxy to `upstream` with a 1 s upstream timeout, metrics on.
fn start(upstream: &str) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", Postfix::free_port());
    let metrics = format!("127.0.0.1:{}", Postfix::free_port());
    let cfg = TestConfig::new(dir.path())
        .proxy(&addr, upstream)
        .metrics(&metrics)
        .with(|c| {
            c.operator.domains = vec![DOMAIN.into()];
            let p = c.proxy.as_mut().expect("proxy");
            p.connect_timeout_secs = 2;
            p.upstream_timeout_secs = 1;
            p.client_timeout_secs = 10;
            p.shutdown_grace_secs = 30;
        })
        .text();
    // Wait on the metrics port (bound after the proxy's): probing the proxy
    // itself would be a session, counted as an upstream error.
    let daemon = Daemon::start(dir.path(), &cfg, &metrics);
    Proxy {
        daemon,
        addr,
        metrics,
        dir,
    }
}

impl Proxy {
    fn metric(&self, line_prefix: &str) -> u64 {
        let mut s = TcpStream::connect(&self.metrics).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out.lines()
            .find_map(|l| l.strip_prefix(line_prefix)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{line_prefix} not in {out}"))
    }

    fn upstream_errors(&self) -> u64 {
        self.metric("mss_upstream_errors_total{frontend=\"proxy\"}")
    }

    fn transactions(&self) -> u64 {
        self.metric("mss_transactions_total{frontend=\"proxy\"}")
    }
}

/// One message attempt. Stops at the first reply that is not the expected
/// 2xx/354 and then reads once more (EOF expected). `partial` sends only the
/// start of the body (no end-of-data). Returns every reply, `""` for EOF.
fn attempt(addr: &str, partial: bool) -> Vec<String> {
    let (mut c, g) = RawClient::connect(addr);
    let mut out = vec![g];
    let body = if partial {
        "Subject: t\r\n".to_string()
    } else {
        "Subject: t\r\nMessage-ID: <m@ch-test.mssante.fr>\r\n\r\nhello\r\n.\r\n".to_string()
    };
    let steps = [
        "EHLO client.test\r\n".to_string(),
        format!("MAIL FROM:<dr.a@{DOMAIN}>\r\n"),
        "RCPT TO:<x@ext.test>\r\n".into(),
        "DATA\r\n".into(),
        body,
        "QUIT\r\n".into(),
    ];
    for s in steps {
        let last = out.last().unwrap();
        if !(last.starts_with('2') || last.starts_with("354")) {
            break;
        }
        // A write may fail once the proxy has closed: the reply says why.
        let _ = std::io::Write::write_all(&mut TcpStreamRef(&mut c), s.as_bytes());
        out.push(c.reply());
    }
    if !out.last().unwrap().is_empty() {
        out.push(c.reply());
    }
    out
}

/// `RawClient::send` panics on a write error; tests here expect some.
struct TcpStreamRef<'a>(&'a mut RawClient);
impl std::io::Write for TcpStreamRef<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.try_send(b).map(|_| b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn fake(mode: Mode) -> FakeUpstream {
    FakeUpstream::start("127.0.0.1:0", move |_| mode)
}

#[test]
fn accepting_upstream_control_writes_the_row() {
    let up = fake(Mode::Accept);
    let p = start(&up.addr);
    let r = attempt(&p.addr, false);
    assert_eq!(r[5], "250 2.0.0 Ok: queued as FAKEQ0\r\n", "{r:?}");
    assert_eq!(r[6], "221 2.0.0 Bye\r\n");
    assert_eq!(p.transactions(), 1);
    let rows = rows(p.dir.path());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].queue_id.as_deref(), Some("FAKEQ0"));
}

#[test]
fn upstream_down_gets_421_and_no_row() {
    let p = start(&format!("127.0.0.1:{}", Postfix::free_port()));
    assert_eq!(
        attempt(&p.addr, false),
        vec![DOWN.to_string(), String::new()]
    );
    assert_eq!(p.upstream_errors(), 1);
    assert!(rows(p.dir.path()).is_empty());
}

#[test]
fn silent_upstream_greeting_times_out_into_421() {
    let up = fake(Mode::Silent);
    let p = start(&up.addr);
    let t = Instant::now();
    assert_eq!(
        attempt(&p.addr, false),
        vec![DOWN.to_string(), String::new()]
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "upstream_timeout_secs = 1, took {took:?}"
    );
    assert!(rows(p.dir.path()).is_empty());
}

#[test]
fn garbage_greeting_gets_421_instead_of_a_silent_close() {
    let up = fake(Mode::GarbageGreeting);
    let p = start(&up.addr);
    assert_eq!(
        attempt(&p.addr, false),
        vec![GARBAGE.to_string(), String::new()]
    );
    assert_eq!(p.upstream_errors(), 1);
}

#[test]
fn garbage_reply_mid_session_gets_421() {
    let up = fake(Mode::GarbageReply);
    let p = start(&up.addr);
    let r = attempt(&p.addr, false);
    assert_eq!(r[0], "220 fake.upstream ESMTP\r\n");
    assert!(r[1].starts_with("250-fake.upstream\r\n"), "{r:?}");
    assert_eq!(&r[2..], [GARBAGE.to_string(), String::new()]);
    assert!(rows(p.dir.path()).is_empty());
}

#[test]
fn upstream_closing_mid_data_gets_421_and_no_row() {
    let up = fake(Mode::CloseMidData);
    let p = start(&up.addr);
    let r = attempt(&p.addr, true);
    assert_eq!(r[4], "354 End data with <CR><LF>.<CR><LF>\r\n", "{r:?}");
    assert_eq!(&r[5..], [LOST.to_string(), String::new()]);
    assert!(rows(p.dir.path()).is_empty());
}

#[test]
fn upstream_closing_after_the_dot_gets_421_and_no_row() {
    let up = fake(Mode::CloseAfterDot);
    let p = start(&up.addr);
    let r = attempt(&p.addr, false);
    assert_eq!(&r[5..], [LOST.to_string(), String::new()], "{r:?}");
    assert_eq!(p.transactions(), 0);
    assert!(rows(p.dir.path()).is_empty());
}

#[test]
fn upstream_silent_after_the_dot_times_out_into_421_and_no_row() {
    let up = fake(Mode::SlowFinal);
    let p = start(&up.addr);
    let t = Instant::now();
    let r = attempt(&p.addr, false);
    assert_eq!(&r[5..], [TIMEOUT.to_string(), String::new()], "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(rows(p.dir.path()).is_empty());
}

#[test]
fn garbage_final_reply_gets_421_and_no_row() {
    let up = fake(Mode::GarbageFinal);
    let p = start(&up.addr);
    let r = attempt(&p.addr, false);
    assert_eq!(&r[5..], [GARBAGE.to_string(), String::new()], "{r:?}");
    assert!(rows(p.dir.path()).is_empty());
}

/// 10 000 failed sessions: 2 000 with the upstream down, then 8 000 against
/// a fake cycling through every misbehaviour (1 in 8 waits for the 1 s
/// upstream timeout), 32 clients at a time. Every session must end with a
/// 421 and EOF; afterwards the daemon's descriptors and threads are back
/// to their level before the run and a good session still works.
#[test]
fn ten_thousand_failed_sessions_leak_no_fd_or_task() {
    const DOWN_N: usize = 2_000;
    const FAULT_N: usize = 8_000;
    const CLIENTS: usize = 32;
    let port = Postfix::free_port();
    let up_addr = format!("127.0.0.1:{port}");
    let p = start(&up_addr);

    // Warm up (first-use allocations, lazily opened files), then measure.
    assert_eq!(attempt(&p.addr, false)[0], DOWN);
    std::thread::sleep(Duration::from_millis(300));
    let (fd0, rss0, thr0) = (
        p.daemon.fds(),
        p.daemon.rss_kb(),
        p.daemon.status("Threads"),
    );

    let run = |n: usize, check: fn(&[String]) -> bool| {
        let next = Arc::new(AtomicUsize::new(0));
        let bad = Arc::new(std::sync::Mutex::new(Vec::<Vec<String>>::new()));
        std::thread::scope(|s| {
            for _ in 0..CLIENTS {
                let (next, bad, addr) = (next.clone(), bad.clone(), p.addr.clone());
                s.spawn(move || {
                    while next.fetch_add(1, Ordering::SeqCst) < n {
                        let r = attempt(&addr, true);
                        if !check(&r) {
                            bad.lock().unwrap().push(r);
                        }
                    }
                });
            }
        });
        let bad = bad.lock().unwrap();
        assert!(
            bad.is_empty(),
            "{} bad sessions, e.g. {:?}",
            bad.len(),
            bad.first()
        );
    };

    let t = Instant::now();
    run(DOWN_N, |r| r == [DOWN, ""]);
    let down_time = t.elapsed();
    let modes = [
        Mode::GarbageGreeting,
        Mode::GarbageReply,
        Mode::CloseMidData,
        Mode::Silent,
        Mode::GarbageGreeting,
        Mode::GarbageReply,
        Mode::CloseMidData,
        Mode::GarbageReply,
    ];
    let up = FakeUpstream::start(&up_addr, move |i| modes[i % modes.len()]);
    let t = Instant::now();
    run(FAULT_N, |r| {
        r.len() >= 2
            && r[r.len() - 1].is_empty()
            && [DOWN, GARBAGE, LOST].contains(&r[r.len() - 2].as_str())
    });
    let fault_time = t.elapsed();
    assert_eq!(up.connections.load(Ordering::SeqCst), FAULT_N);
    let errors = p.upstream_errors();
    assert_eq!(errors, (1 + DOWN_N + FAULT_N) as u64);

    // Sessions end asynchronously after their last reply: let them.
    let settled = p.daemon.settle(10, |d| d.fds() <= fd0 + 2);
    let (fd1, rss1, thr1) = (
        p.daemon.fds(),
        p.daemon.rss_kb(),
        p.daemon.status("Threads"),
    );
    eprintln!(
        "leak check: {} failed sessions ({DOWN_N} down in {down_time:?}, {FAULT_N} faulty in {fault_time:?}); fds {fd0} -> {fd1}, threads {thr0} -> {thr1}, VmRSS {rss0} KiB -> {rss1} KiB (VmHWM {} KiB)",
        DOWN_N + FAULT_N,
        p.daemon.status("VmHWM")
    );
    assert!(settled, "fds {fd0} -> {fd1}: descriptors leaked");
    assert!(thr1 <= thr0 + 2, "threads {thr0} -> {thr1}");
    assert!(rss1 < rss0 + 64 * 1024, "VmRSS {rss0} -> {rss1} KiB");
    assert!(rows(p.dir.path()).is_empty());
    drop(up);

    // Still serving: a good upstream on the same port gets a message through.
    let good = FakeUpstream::start(&up_addr, |_| Mode::Accept);
    let r = attempt(&p.addr, false);
    assert_eq!(r[5], "250 2.0.0 Ok: queued as FAKEQ0\r\n", "{r:?}");
    assert_eq!(rows(p.dir.path()).len(), 1);
    drop(good);
}
