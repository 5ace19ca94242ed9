//! A tiny SMTP next hop that misbehaves on purpose (down, silent, garbage,
//! closing mid-DATA) or accepts everything, to test the proxy's upstream
//! fault handling without depending on Postfix's behaviour.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// How one upstream connection behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A normal server: everything accepted, `250 2.0.0 Ok: queued as FAKEQ<n>`.
    Accept,
    /// Accepts the connection, never says anything.
    Silent,
    /// Greets with a line that is not SMTP.
    GarbageGreeting,
    /// Greets and answers EHLO, then answers MAIL with garbage.
    GarbageReply,
    /// Answers up to `354`, then closes as soon as body bytes arrive.
    CloseMidData,
    /// Reads the whole message, then closes without a final reply.
    CloseAfterDot,
    /// Reads the whole message, then never answers (until the peer closes).
    SlowFinal,
    /// Reads the whole message, then answers the final reply with garbage.
    GarbageFinal,
}

/// A running fake upstream; stops (and joins its accept thread) on drop.
pub struct FakeUpstream {
    pub addr: String,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// Message bytes received (between `354` and the final dot).
    pub body_bytes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeUpstream {
    /// Listen on `addr` (`127.0.0.1:0` for any port); connection `i` (from 0)
    /// behaves as `mode(i)`.
    pub fn start(addr: &str, mode: impl Fn(usize) -> Mode + Send + Sync + 'static) -> FakeUpstream {
        let l = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let addr = l.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let body_bytes = Arc::new(AtomicU64::new(0));
        let (s, c, b) = (stop.clone(), connections.clone(), body_bytes.clone());
        let thread = std::thread::spawn(move || {
            for sock in l.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(sock) = sock else { continue };
                let i = c.fetch_add(1, Ordering::SeqCst);
                let m = mode(i);
                let b = b.clone();
                std::thread::spawn(move || {
                    let _ = serve(sock, m, i, &b);
                });
            }
        });
        FakeUpstream {
            addr,
            connections,
            body_bytes,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn drain(mut r: impl Read) {
    let mut buf = [0u8; 8192];
    while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
}

fn serve(sock: TcpStream, mode: Mode, n: usize, body: &AtomicU64) -> std::io::Result<()> {
    let mut w = sock.try_clone()?;
    let mut r = BufReader::with_capacity(64 * 1024, sock);
    match mode {
        Mode::Silent => {
            drain(r);
            return Ok(());
        }
        Mode::GarbageGreeting => {
            w.write_all(b"HELLO THERE, I AM NOT SMTP\r\n")?;
            drain(r);
            return Ok(());
        }
        _ => w.write_all(b"220 fake.upstream ESMTP\r\n")?,
    }
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let cmd = String::from_utf8_lossy(&line).to_ascii_uppercase();
        let reply: &[u8] = if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
            b"250-fake.upstream\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 0\r\n"
        } else if cmd.starts_with("MAIL") && mode == Mode::GarbageReply {
            b"this is not an SMTP reply\r\n"
        } else if cmd.starts_with("MAIL") || cmd.starts_with("RCPT") || cmd.starts_with("RSET") {
            b"250 2.1.0 Ok\r\n"
        } else if cmd.starts_with("DATA") {
            w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
            if mode == Mode::CloseMidData {
                let mut one = [0u8; 1];
                let _ = r.read(&mut one);
                return Ok(()); // both halves dropped: the connection closes
            }
            // Body lines up to the lone dot.
            loop {
                line.clear();
                if r.read_until(b'\n', &mut line)? == 0 {
                    return Ok(());
                }
                if line == b".\r\n" {
                    break;
                }
                body.fetch_add(line.len() as u64, Ordering::Relaxed);
            }
            match mode {
                Mode::CloseAfterDot => return Ok(()),
                Mode::SlowFinal => {
                    drain(r);
                    return Ok(());
                }
                Mode::GarbageFinal => {
                    w.write_all(b"2x0 queued, sort of\r\n")?;
                    drain(r);
                    return Ok(());
                }
                _ => {}
            }
            w.write_all(format!("250 2.0.0 Ok: queued as FAKEQ{n}\r\n").as_bytes())?;
            continue;
        } else if cmd.starts_with("QUIT") {
            w.write_all(b"221 2.0.0 Bye\r\n")?;
            return Ok(());
        } else if cmd.starts_with("NOOP") {
            b"250 2.0.0 Ok\r\n"
        } else {
            b"502 5.5.2 Error: command not recognized\r\n"
        };
        w.write_all(reply)?;
    }
}
