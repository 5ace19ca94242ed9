//! Hostile clients against the proxy (real `mss-sidecar` binary, accepting
//! fake next hop): 100 000 RCPTs, 1 MB lines, a 200 MB DATA, slowloris.
//! Exact replies, and the daemon's memory read from `/proc` stays bounded.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mss_tests::config::TestConfig;
use mss_tests::daemon::Daemon;
use mss_tests::fake_upstream::{FakeUpstream, Mode};
use mss_tests::postfix::Postfix;
use mss_tests::sidecar::{rows, DOMAIN};
use mss_tests::smtp::RawClient;

/// Memory the daemon may gain while a hostile session runs (KiB).
const RSS_SLACK_KB: u64 = 32 * 1024;

struct Proxy {
    daemon: Daemon,
    addr: String,
    dir: tempfile::TempDir,
}

fn start(upstream: &str, extra_proxy: &str) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", Postfix::free_port());
    let metrics = format!("127.0.0.1:{}", Postfix::free_port());
    let cfg = TestConfig::new(dir.path())
        .proxy(&addr, upstream)
        .metrics(&metrics)
        .with(|c| {
            c.operator.domains = vec![DOMAIN.into()];
            let p = c.proxy.as_mut().expect("proxy");
            p.upstream_timeout_secs = 30;
            p.client_timeout_secs = 300;
            p.shutdown_grace_secs = 30;
        })
        .text_with("proxy", extra_proxy);
    let daemon = Daemon::start(dir.path(), &cfg, &metrics);
    Proxy { daemon, addr, dir }
}

fn accepting() -> FakeUpstream {
    FakeUpstream::start("127.0.0.1:0", |_| Mode::Accept)
}

/// Connect, EHLO, MAIL FROM an operator sender.
fn open_txn(addr: &str) -> RawClient {
    let (mut c, g) = RawClient::connect(addr);
    assert_eq!(g, "220 fake.upstream ESMTP\r\n");
    let r = c.exchange(
        format!("EHLO c.test\r\nMAIL FROM:<dr.a@{DOMAIN}>\r\n").as_bytes(),
        2,
    );
    assert_eq!(r[1], "250 2.1.0 Ok\r\n", "{r:?}");
    c
}

/// Sends one chunk; false once the connection is gone.
type SendFn<'a> = dyn FnMut(&[u8]) -> bool + 'a;

/// Write `chunks()` from another thread (errors ignored: the proxy may close).
fn write_in_background(
    c: &RawClient,
    mut chunks: impl FnMut(&mut SendFn) + Send + 'static,
) -> std::thread::JoinHandle<u64> {
    let mut s = c.stream().try_clone().unwrap();
    std::thread::spawn(move || {
        let mut sent = 0u64;
        chunks(&mut |b: &[u8]| {
            let ok = s.write_all(b).is_ok();
            if ok {
                sent += b.len() as u64;
            }
            ok
        });
        sent
    })
}

#[test]
fn hundred_thousand_rcpts_get_452_beyond_max_recipients_in_bounded_memory() {
    const N: usize = 100_000;
    let up = accepting();
    let p = start(&up.addr, "max_recipients = 100\n");
    let mut c = open_txn(&p.addr);
    let rss0 = p.daemon.rss_kb();
    let w = write_in_background(&c, |send| {
        let mut batch = String::new();
        for i in 0..N {
            batch.push_str(&format!("RCPT TO:<r{i}@ext.test>\r\n"));
            if i % 1000 == 999 && !send(std::mem::take(&mut batch).as_bytes()) {
                return;
            }
        }
        send(batch.as_bytes());
    });
    let (mut ok, mut refused) = (0, 0);
    for i in 0..N {
        let r = c.reply();
        if i < 100 {
            assert_eq!(r, "250 2.1.0 Ok\r\n", "rcpt {i}");
            ok += 1;
        } else {
            assert_eq!(r, "452 4.5.3 Too many recipients\r\n", "rcpt {i}");
            refused += 1;
        }
    }
    w.join().unwrap();
    assert_eq!((ok, refused), (100, N - 100));
    let r = c.exchange(b"DATA\r\nSubject: t\r\n\r\nhi\r\n.\r\nQUIT\r\n", 3);
    assert_eq!(
        r,
        [
            "354 End data with <CR><LF>.<CR><LF>\r\n",
            "250 2.0.0 Ok: queued as FAKEQ0\r\n",
            "221 2.0.0 Bye\r\n"
        ]
    );
    assert_eq!(
        rows(p.dir.path()).len(),
        100,
        "only the accepted recipients"
    );
    let hwm = p.daemon.status("VmHWM");
    eprintln!("100 000 RCPT: VmRSS before {rss0} KiB, VmHWM after {hwm} KiB");
    assert!(hwm < rss0 + RSS_SLACK_KB, "{rss0} -> {hwm} KiB");
}

#[test]
fn megabyte_lines_get_500_and_a_clean_close() {
    let up = accepting();
    let p = start(&up.addr, "");
    let long = "a".repeat(1 << 20);
    // As the first command, and in the middle of a transaction.
    for prefix in ["EHLO ", "MAIL FROM:<"] {
        let mut c = if prefix == "EHLO " {
            let (c, g) = RawClient::connect(&p.addr);
            assert_eq!(g, "220 fake.upstream ESMTP\r\n");
            c
        } else {
            let mut c = open_txn(&p.addr);
            c.send(b"RSET\r\n");
            assert_eq!(c.reply(), "250 2.1.0 Ok\r\n");
            c
        };
        let line = format!("{prefix}{long}>\r\n");
        let w = write_in_background(&c, move |send| {
            send(line.as_bytes());
        });
        assert_eq!(c.reply(), "500 5.5.2 Line too long\r\n", "{prefix}");
        assert_eq!(c.reply(), "", "closed after the reply");
        w.join().unwrap();
    }
    // The daemon is unharmed.
    let mut c = open_txn(&p.addr);
    let r = c.exchange(b"RCPT TO:<x@ext.test>\r\nQUIT\r\n", 2);
    assert_eq!(r, ["250 2.1.0 Ok\r\n", "221 2.0.0 Bye\r\n"]);
}

/// Stream `total` bytes of 1000-byte body lines, then (if `end`) the dot.
fn body_writer(total: u64, end: bool) -> impl FnMut(&mut SendFn) + Send {
    move |send| {
        let mut line = vec![b'x'; 998];
        line.extend_from_slice(b"\r\n");
        let block: Vec<u8> = line.repeat(64);
        if !send(b"Subject: big\r\n\r\n") {
            return;
        }
        let mut sent = 16u64;
        while sent + block.len() as u64 <= total {
            if !send(&block) {
                return;
            }
            sent += block.len() as u64;
        }
        if end {
            send(b".\r\n");
        }
    }
}

#[test]
fn two_hundred_megabyte_message_is_forwarded_in_bounded_memory() {
    const TOTAL: u64 = 200 << 20;
    let up = accepting();
    let p = start(&up.addr, "");
    let mut c = open_txn(&p.addr);
    let r = c.exchange(b"RCPT TO:<x@ext.test>\r\nDATA\r\n", 2);
    assert_eq!(r[1], "354 End data with <CR><LF>.<CR><LF>\r\n");
    let rss0 = p.daemon.rss_kb();
    let t = Instant::now();
    let w = write_in_background(&c, body_writer(TOTAL, true));
    assert_eq!(c.reply(), "250 2.0.0 Ok: queued as FAKEQ0\r\n");
    let sent = w.join().unwrap() - 3; // without the final dot line
    let took = t.elapsed();
    assert!(sent > TOTAL - 64_000, "{sent}");
    assert_eq!(up.body_bytes.load(Ordering::SeqCst), sent);
    let rows = rows(p.dir.path());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].size, sent, "TAILLE = the bytes forwarded");
    let hwm = p.daemon.status("VmHWM");
    eprintln!(
        "200 MB DATA: {sent} bytes in {took:?}; VmRSS before {rss0} KiB, VmHWM after {hwm} KiB"
    );
    assert!(hwm < rss0 + RSS_SLACK_KB, "{rss0} -> {hwm} KiB");
}

#[test]
fn never_ending_data_beyond_max_message_bytes_gets_552_and_close() {
    let up = accepting();
    let p = start(&up.addr, "max_message_bytes = 10485760\n");
    let mut c = open_txn(&p.addr);
    let r = c.exchange(b"RCPT TO:<x@ext.test>\r\nDATA\r\n", 2);
    assert_eq!(r[1], "354 End data with <CR><LF>.<CR><LF>\r\n");
    let rss0 = p.daemon.rss_kb();
    // 200 MB and never the end-of-data dot.
    let w = write_in_background(&c, body_writer(200 << 20, false));
    assert_eq!(
        c.reply(),
        "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    );
    assert_eq!(c.reply(), "", "closed after the reply");
    let sent = w.join().unwrap();
    let got = up.body_bytes.load(Ordering::SeqCst);
    // At most the limit plus one 64 KiB read reached the upstream (the
    // client's later bytes were drained and dropped by the proxy).
    assert!(
        got <= (10 << 20) + 70_000,
        "upstream got {got}, client sent {sent}"
    );
    assert!(rows(p.dir.path()).is_empty());
    let hwm = p.daemon.status("VmHWM");
    eprintln!("oversized DATA: refused after {got} bytes forwarded ({sent} sent); VmRSS {rss0} -> VmHWM {hwm} KiB");
    assert!(hwm < rss0 + RSS_SLACK_KB, "{rss0} -> {hwm} KiB");
}

const TIMEOUT: &str = "421 4.4.2 proxy.test Timeout, closing connection\r\n";

#[test]
fn silent_client_gets_421_after_client_timeout() {
    let up = accepting();
    let p = start(&up.addr, "client_timeout_secs = 2\n");
    let (mut c, _) = RawClient::connect(&p.addr);
    let t = Instant::now();
    assert_eq!(c.reply(), TIMEOUT);
    assert_eq!(c.reply(), "");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[test]
fn slowloris_dripping_a_command_gets_421_within_client_timeout_of_its_first_byte() {
    let up = accepting();
    let p = start(&up.addr, "client_timeout_secs = 2\n");
    let (mut c, _) = RawClient::connect(&p.addr);
    let t = Instant::now();
    // One byte every 300 ms: the connection is never idle for 2 s.
    let w = write_in_background(&c, |send| {
        for b in b"EHLO slowloris.example.test\r\n" {
            if !send(&[*b]) {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    assert_eq!(c.reply(), TIMEOUT);
    let took = t.elapsed();
    assert_eq!(c.reply(), "");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_millis(3500),
        "{took:?}"
    );
    w.join().unwrap();
    // A normal client in the same daemon is not affected.
    let mut c = open_txn(&p.addr);
    assert_eq!(c.exchange(b"QUIT\r\n", 1), ["221 2.0.0 Bye\r\n"]);
}
