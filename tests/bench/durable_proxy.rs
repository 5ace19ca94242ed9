//! Reference for benchmark 1 (issue 22, part B): a durable SMTP pass-through.
//!
//! Forwards bytes unchanged between client and upstream. At the end of each
//! message (the `.` line after `DATA`) it appends one line to FILE and waits
//! for a group-committed `fdatasync` — one sync shared by every session waiting
//! at that moment, the batching rule of the sidecar's writer — before relaying
//! the upstream's final reply to the dot. Nothing else: no parsing of
//! envelopes, no rows. `BDAT` is not handled (smtp-source does not use it).
//!
//! Usage: mss-ref-durable-proxy LISTEN UPSTREAM FILE
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

type Commit = (String, oneshot::Sender<()>);

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() != 3 {
        eprintln!("usage: mss-ref-durable-proxy LISTEN UPSTREAM FILE");
        std::process::exit(2);
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a[2])
        .expect("open FILE");
    let (tx, rx) = mpsc::unbounded_channel::<Commit>();
    std::thread::spawn(move || committer(file, rx));
    let l = TcpListener::bind(&a[0]).await.expect("bind");
    let up: Arc<str> = a[1].clone().into();
    let seq = Arc::new(AtomicUsize::new(0));
    loop {
        let (c, _) = l.accept().await.expect("accept");
        let (up, tx, seq) = (up.clone(), tx.clone(), seq.clone());
        tokio::spawn(async move {
            if let Ok(u) = TcpStream::connect(&*up).await {
                let _ = c.set_nodelay(true);
                let _ = u.set_nodelay(true);
                session(c, u, tx, seq).await;
            }
        });
    }
}

/// Group commit: take every request waiting now, one write, one fdatasync, answer all.
fn committer(mut f: std::fs::File, mut rx: mpsc::UnboundedReceiver<Commit>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let mut buf = String::new();
        for (line, _) in &batch {
            buf.push_str(line);
        }
        f.write_all(buf.as_bytes()).expect("write");
        f.sync_data().expect("fdatasync");
        for (_, done) in batch {
            let _ = done.send(());
        }
    }
}

async fn session(
    c: TcpStream,
    u: TcpStream,
    tx: mpsc::UnboundedSender<Commit>,
    seq: Arc<AtomicUsize>,
) {
    let (mut cr, mut cw) = c.into_split();
    let (ur, mut uw) = u.into_split();
    // Messages whose dot was forwarded and whose final reply is not relayed yet;
    // incremented before the dot reaches the upstream, so always before its reply.
    let pending = Arc::new(AtomicUsize::new(0));
    let p2 = pending.clone();
    let down = tokio::spawn(async move {
        let mut ur = BufReader::new(ur);
        let mut line = Vec::new();
        loop {
            line.clear();
            if ur.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
                break;
            }
            let last = line.get(3) != Some(&b'-');
            if last && p2.load(Ordering::SeqCst) > 0 {
                p2.fetch_sub(1, Ordering::SeqCst);
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let (done, wait) = oneshot::channel();
                if tx.send((format!("message {n}\n"), done)).is_err() || wait.await.is_err() {
                    break;
                }
            }
            if cw.write_all(&line).await.is_err() {
                break;
            }
        }
        let _ = cw.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut data = false; // inside DATA, looking for CRLF.CRLF
    let mut tail: Vec<u8> = Vec::new(); // data: last bytes; commands: partial line
    'read: loop {
        let n = match cr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            if data {
                // Search the terminator across the chunk boundary.
                let mut w = tail.clone();
                let keep = w.len();
                w.extend_from_slice(chunk);
                if let Some(i) = w.windows(5).position(|x| x == b"\r\n.\r\n") {
                    let end = i + 5 - keep; // bytes of chunk up to and including the dot line
                    pending.fetch_add(1, Ordering::SeqCst);
                    if uw.write_all(&chunk[..end]).await.is_err() {
                        break 'read;
                    }
                    chunk = &chunk[end..];
                    data = false;
                    tail.clear();
                } else {
                    if uw.write_all(chunk).await.is_err() {
                        break 'read;
                    }
                    tail = w[w.len().saturating_sub(4)..].to_vec();
                    chunk = &[];
                }
            } else {
                let end = chunk.iter().position(|&b| b == b'\n').map(|i| i + 1);
                let part = &chunk[..end.unwrap_or(chunk.len())];
                if uw.write_all(part).await.is_err() {
                    break 'read;
                }
                tail.extend_from_slice(part);
                chunk = &chunk[part.len()..];
                if end.is_some() {
                    if tail.eq_ignore_ascii_case(b"DATA\r\n") {
                        data = true;
                        tail = b"\r\n".to_vec(); // a lone "." first line ends an empty body
                    } else {
                        tail.clear();
                    }
                }
            }
        }
    }
    let _ = uw.shutdown().await;
    let _ = down.await;
}
