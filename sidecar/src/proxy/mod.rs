//! The SMTP proxy front end: `[proxy] listen` → `[proxy] upstream`.
//!
//! One upstream connection per client session; bytes are forwarded unchanged
//! in both directions (except STARTTLS, which the proxy terminates itself on
//! each side, and the `STARTTLS` capability it rewrites in EHLO replies) and
//! observed by [`observer::Observer`]. The final 2xx to a message is relayed to
//! the client only after the capture acknowledged it (or its bound expired).
//!
//! Failure modes, all answered to the client in SMTP:
//! - upstream unreachable / not SMTP / closed → `421 4.4.1`, nothing recorded;
//! - client or upstream silent too long → `421 4.4.2`;
//! - line too long → `500 5.5.2`; too many recipients → `452 4.5.3`;
//!   ambiguous end-of-data (smuggling) → `554 5.5.2`;
//! - SIGTERM → stop accepting; sessions finish their transaction, then get
//!   `421 4.3.0` at the next idle point; after `shutdown_grace_secs` the rest is cut.

pub mod observer;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};

use mss_shared::config::{Proxy as ProxyConfig, UpstreamTls};

use crate::recorder::{Recorder, Transaction};
use observer::{ClientItem, Limits, Observer};

/// Everything a proxy session needs, shared by all sessions.
pub struct ProxyContext {
    pub cfg: ProxyConfig,
    pub limits: Limits,
    /// The one recording path (classification, MAIL_ID, commit, counts).
    pub recorder: Recorder,
    pub client_tls: Option<tokio_rustls::TlsAcceptor>,
    pub upstream_tls: Option<tokio_rustls::TlsConnector>,
}

impl ProxyContext {
    /// Build from configuration, loading TLS material.
    ///
    /// # Errors
    /// A message naming the TLS file that could not be used.
    pub fn new(cfg: ProxyConfig, recorder: Recorder) -> Result<Self, String> {
        let client_tls = match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(c), Some(k)) => Some(tls::acceptor(c, k)?),
            _ => None,
        };
        let upstream_tls = match cfg.upstream_tls {
            UpstreamTls::Off => None,
            _ => Some(tls::connector(cfg.upstream_ca_file.as_deref())?),
        };
        let limits = Limits {
            max_recipients: cfg.max_recipients,
            max_message_bytes: cfg.max_message_bytes,
            hostname: cfg.hostname.clone(),
            // The liste blanche applies to this proxy's RCPTs.
            policy: recorder.policy().cloned(),
            ..Limits::default()
        };
        Ok(ProxyContext {
            cfg,
            limits,
            recorder,
            client_tls,
            upstream_tls,
        })
    }
}

/// Accept sessions on an already bound listener until `shutdown` turns true,
/// then wait for sessions to finish (at most `shutdown_grace_secs`).
pub async fn run(
    listener: TcpListener,
    ctx: Arc<ProxyContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(ctx.cfg.max_sessions));
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
            _ = shutdown.changed() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let (sock, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(10);
                a
            }
            Err(e) => {
                tracing::warn!("proxy accept failed: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        let ctx = ctx.clone();
        let stop = shutdown.clone();
        let done = done_tx.clone();
        tokio::spawn(async move {
            ctx.recorder.metrics().proxy.sessions.inc();
            if let Err(e) = session(sock, &ctx, stop).await {
                tracing::debug!(%peer, "proxy session ended: {e}");
            }
            drop(permit);
            drop(done);
        });
    }
    drop(listener);
    drop(done_tx);
    let grace = Duration::from_secs(ctx.cfg.shutdown_grace_secs);
    if tokio::time::timeout(grace, done_rx.recv()).await.is_err() {
        tracing::warn!("proxy: sessions still open after {grace:?} grace, closing them");
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}
type BoxStream = Box<dyn Stream>;

async fn write_client(client: &mut BoxStream, gone: &mut bool, bytes: &[u8]) {
    if *gone {
        return;
    }
    if client.write_all(bytes).await.is_err() || client.flush().await.is_err() {
        *gone = true;
    }
}

/// After our last reply to a client we are dropping while it may still be
/// sending (long line, oversized message): send FIN, then read and discard
/// for a short while, so that closing with unread data (a TCP reset) does not
/// destroy the reply before the client has read it.
async fn linger(client: &mut BoxStream, gone: bool) {
    if gone {
        return;
    }
    let _ = client.shutdown().await;
    let mut sink = vec![0u8; 16 * 1024];
    let _ = tokio::time::timeout(LINGER, async {
        while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// How long [`linger`] drains a client after the final reply.
const LINGER: Duration = Duration::from_secs(2);

/// Read one complete reply (used before the session proper: upstream STARTTLS).
async fn read_reply(
    s: &mut BoxStream,
    buf: &mut Vec<u8>,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = complete_reply(buf) {
            return Ok(buf.drain(..end).collect());
        }
        if buf.len() > 64 * 1024 {
            return Err("upstream reply too long".into());
        }
        let n = tokio::time::timeout(timeout, s.read(&mut chunk))
            .await
            .map_err(|_| "upstream timed out".to_string())?
            .map_err(|e| format!("upstream read: {e}"))?;
        if n == 0 {
            return Err("upstream closed the connection".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn complete_reply(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = &buf[start..start + nl + 1];
        start += nl + 1;
        if line.get(3) != Some(&b'-') {
            return Some(start);
        }
    }
    None
}

/// Connect to the upstream and, when configured, STARTTLS with it. Returns the
/// stream and the upstream's greeting (to be relayed to the client).
async fn connect_upstream(ctx: &ProxyContext) -> Result<(BoxStream, Vec<u8>), String> {
    let connect = Duration::from_secs(ctx.cfg.connect_timeout_secs);
    let io = Duration::from_secs(ctx.cfg.upstream_timeout_secs);
    let tcp = tokio::time::timeout(connect, TcpStream::connect(&ctx.cfg.upstream))
        .await
        .map_err(|_| format!("connect to {} timed out", ctx.cfg.upstream))?
        .map_err(|e| format!("connect to {}: {e}", ctx.cfg.upstream))?;
    let _ = tcp.set_nodelay(true);
    let mut up: BoxStream = Box::new(tcp);
    let mut buf = Vec::new();
    let greeting = read_reply(&mut up, &mut buf, io).await?;
    let Some(connector) = &ctx.upstream_tls else {
        // Anything the upstream sent after its greeting stays in the stream order.
        let mut g = greeting;
        g.extend_from_slice(&buf);
        return Ok((up, g));
    };
    if !greeting.starts_with(b"2") {
        return Ok((up, greeting));
    }
    up.write_all(format!("EHLO {}\r\n", ctx.cfg.hostname).as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let ehlo = read_reply(&mut up, &mut buf, io).await?;
    let offers = String::from_utf8_lossy(&ehlo).lines().any(|l| {
        l.get(4..)
            .is_some_and(|c| c.trim().eq_ignore_ascii_case("STARTTLS"))
    });
    if !offers {
        if ctx.cfg.upstream_tls == UpstreamTls::Required {
            return Err("upstream does not offer STARTTLS and upstream_tls = \"required\"".into());
        }
        return Ok((up, greeting));
    }
    up.write_all(b"STARTTLS\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let r = read_reply(&mut up, &mut buf, io).await?;
    if !r.starts_with(b"220") {
        if ctx.cfg.upstream_tls == UpstreamTls::Required {
            return Err(format!(
                "upstream refused STARTTLS: {}",
                String::from_utf8_lossy(&r).trim()
            ));
        }
        return Ok((up, greeting));
    }
    let host = ctx
        .cfg
        .upstream
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or("localhost");
    let name = rustls_pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string())
        .map_err(|e| format!("upstream name {host}: {e}"))?;
    // `up` is a BoxStream over a TcpStream: rebuild the TCP stream is not
    // possible through the box, so TLS wraps the box itself.
    let tls = tokio::time::timeout(io, connector.connect(name, up))
        .await
        .map_err(|_| "upstream TLS handshake timed out".to_string())?
        .map_err(|e| format!("upstream TLS handshake: {e}"))?;
    Ok((Box::new(tls), greeting))
}

async fn session(
    sock: TcpStream,
    ctx: &ProxyContext,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let metrics = ctx.recorder.metrics().clone();
    let mut client: BoxStream = Box::new(sock);
    let mut gone = false;
    let (mut up, greeting) = match connect_upstream(ctx).await {
        Ok(x) => x,
        Err(e) => {
            metrics.proxy.upstream_errors.inc();
            tracing::warn!("proxy: upstream {} unavailable: {e}", ctx.cfg.upstream);
            let msg = format!(
                "421 4.4.1 {} Upstream unavailable, try again later\r\n",
                ctx.cfg.hostname
            );
            write_client(&mut client, &mut gone, msg.as_bytes()).await;
            return Err(e);
        }
    };
    let mut obs = Observer::new(ctx.limits.clone(), ctx.client_tls.is_some());
    if let Err(e) = obs.upstream_input(&greeting) {
        // Not SMTP (or an unexpected extra reply): the client must still get
        // a proper answer instead of a silent close.
        metrics.proxy.upstream_errors.inc();
        tracing::warn!("proxy: upstream {} misbehaves: {}", ctx.cfg.upstream, e.0);
        let msg = format!(
            "421 4.4.1 {} Upstream error, try again later\r\n",
            ctx.cfg.hostname
        );
        write_client(&mut client, &mut gone, msg.as_bytes()).await;
        return Err(e.0);
    }
    let client_timeout = Duration::from_secs(ctx.cfg.client_timeout_secs);
    let upstream_timeout = Duration::from_secs(ctx.cfg.upstream_timeout_secs);
    // 16 KiB, as haproxy's default buffers: one read per TCP burst, little to zero per session.
    let mut cbuf = vec![0u8; 16 * 1024];
    let mut ubuf = vec![0u8; 16 * 1024];
    let mut client_eof = false;
    let mut partial_since: Option<tokio::time::Instant> = None;
    let mut stopping = *shutdown.borrow();
    loop {
        // Drain what the observer produced.
        let to_up = obs.take_upstream();
        if !to_up.is_empty() {
            if let Err(e) = up.write_all(&to_up).await {
                metrics.proxy.upstream_errors.inc();
                let msg = format!(
                    "421 4.4.1 {} Upstream connection lost\r\n",
                    ctx.cfg.hostname
                );
                write_client(&mut client, &mut gone, msg.as_bytes()).await;
                return Err(format!("upstream write: {e}"));
            }
        }
        for (sd, rd, refused) in obs.take_outside() {
            ctx.recorder.outside("proxy", sd, rd, refused);
        }
        // Replies produced by one upstream read go back in one write (a
        // pipelining client gets its MAIL/RCPT/DATA replies in one segment);
        // a final 250 is added only once its rows are committed.
        let mut replies: Vec<u8> = Vec::new();
        for item in obs.take_client() {
            match item {
                ClientItem::Reply(r) => replies.extend_from_slice(&r),
                ClientItem::Commit(acc, reply) => {
                    record_message(ctx, acc).await;
                    replies.extend_from_slice(&reply);
                }
                ClientItem::Login { user, mechanism } => {
                    tracing::debug!(%user, mechanism, "proxy: SMTP AUTH succeeded");
                    ctx.recorder.login(user, "smtp", "proxy");
                }
                ClientItem::StartTls(reply) => {
                    replies.extend_from_slice(&reply);
                    write_client(&mut client, &mut gone, &std::mem::take(&mut replies)).await;
                    let Some(acceptor) = &ctx.client_tls else {
                        return Err("STARTTLS without TLS configuration".into());
                    };
                    let plain = std::mem::replace(&mut client, Box::new(tokio::io::duplex(1).0));
                    match tokio::time::timeout(client_timeout, acceptor.accept(plain)).await {
                        Ok(Ok(tls)) => {
                            client = Box::new(tls);
                            obs.client_tls_started();
                        }
                        Ok(Err(e)) => return Err(format!("client TLS handshake: {e}")),
                        Err(_) => return Err("client TLS handshake timed out".into()),
                    }
                }
                ClientItem::Close(reply) => {
                    metrics.proxy.protocol_errors.inc();
                    replies.extend_from_slice(&reply);
                    write_client(&mut client, &mut gone, &replies).await;
                    drop(up); // an unfinished message must never be completed
                    linger(&mut client, gone).await;
                    return Err(format!(
                        "closed: {}",
                        String::from_utf8_lossy(&reply).trim_end()
                    ));
                }
            }
        }
        if !replies.is_empty() {
            write_client(&mut client, &mut gone, &replies).await;
        }
        if stopping && obs.is_idle() {
            let msg = format!(
                "421 4.3.0 {} Service shutting down, try again later\r\n",
                ctx.cfg.hostname
            );
            write_client(&mut client, &mut gone, msg.as_bytes()).await;
            let _ = up.write_all(b"QUIT\r\n").await;
            return Ok(());
        }
        if (client_eof || gone) && !obs.awaiting_final() {
            // Nothing the upstream could still accept: done.
            let _ = up.write_all(b"QUIT\r\n").await;
            return Ok(());
        }
        let waiting_upstream = obs.in_flight() > 0;
        // A command line must be complete within client_timeout of its first
        // byte: a client dripping one byte at a time (slowloris) cannot hold
        // a session slot forever by resetting the idle timer.
        match (obs.partial_command(), partial_since) {
            (true, None) => partial_since = Some(tokio::time::Instant::now()),
            (false, Some(_)) => partial_since = None,
            _ => {}
        }
        let timeout = if waiting_upstream {
            upstream_timeout
        } else if let Some(t0) = partial_since {
            (t0 + client_timeout).saturating_duration_since(tokio::time::Instant::now())
        } else {
            client_timeout
        };
        let read_client = !client_eof && !gone && obs.in_flight() < ctx.cfg.max_pipeline;
        tokio::select! {
            r = client.read(&mut cbuf), if read_client => match r {
                Ok(0) | Err(_) => client_eof = true,
                Ok(n) => obs.client_input(&cbuf[..n]),
            },
            r = up.read(&mut ubuf) => match r {
                Ok(0) | Err(_) => {
                    if obs.in_flight() > 0 || obs.in_transaction() {
                        metrics.proxy.upstream_errors.inc();
                        let msg = format!("421 4.4.1 {} Upstream connection lost\r\n", ctx.cfg.hostname);
                        write_client(&mut client, &mut gone, msg.as_bytes()).await;
                    }
                    return Err("upstream closed".into());
                }
                Ok(n) => {
                    if let Err(e) = obs.upstream_input(&ubuf[..n]) {
                        metrics.proxy.upstream_errors.inc();
                        tracing::warn!("proxy: upstream {} misbehaves: {}", ctx.cfg.upstream, e.0);
                        let msg = format!("421 4.4.1 {} Upstream error, try again later\r\n", ctx.cfg.hostname);
                        write_client(&mut client, &mut gone, msg.as_bytes()).await;
                        return Err(e.0);
                    }
                }
            },
            _ = tokio::time::sleep(timeout) => {
                let msg = if waiting_upstream {
                    metrics.proxy.upstream_errors.inc();
                    format!("421 4.4.2 {} Upstream timeout, try again later\r\n", ctx.cfg.hostname)
                } else {
                    format!("421 4.4.2 {} Timeout, closing connection\r\n", ctx.cfg.hostname)
                };
                write_client(&mut client, &mut gone, msg.as_bytes()).await;
                return Err("timeout".into());
            },
            _ = shutdown.changed(), if !stopping => stopping = true,
        }
    }
}

/// Hand an accepted message to the recorder (bounded wait, counted there).
async fn record_message(ctx: &ProxyContext, acc: observer::Accepted) {
    ctx.recorder
        .message(Transaction {
            sender: acc.sender,
            recipients: acc.recipients,
            size: acc.size,
            queue_id: acc.queue_id,
            message_id: acc.message_id,
            auth: None,
            frontend: "proxy",
            time_us: jiff::Timestamp::now().as_microsecond(),
        })
        .await;
}
