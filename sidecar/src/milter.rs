//! The milter front end (`[milter] listen`), for Postfix `smtpd_milters` and
//! `non_smtpd_milters` (mail injected with sendmail(1)).
//!
//! Postfix keeps relaying mail itself; we only watch. Per message we collect
//! the envelope (MAIL, each RCPT Postfix accepted), the size and the
//! Message-ID, and commit at end-of-message (bounded wait) before answering
//! `Continue`. An aborted message is dropped. We never reject or tempfail
//! because of our own trouble: a store failure journals the record, and
//! Postfix is configured with `milter_default_action = accept` for when we are
//! down.
//!
//! TAILLE in milter mode: every header as `name: value\r\n`, the blank line,
//! and the body bytes Postfix sends us. Postfix's own `Received:` header is
//! not shown to milters, so sizes are smaller than the proxy's by that header.
//! Headers Postfix adds to a message that lacks them (`Date:`, `From:`,
//! `Message-ID:` for local clients, see `local_header_rewrite_clients`) *are*
//! shown and counted: they are part of the message Postfix queues.
//!
//! Macros negotiated (Postfix sends only those asked): `{auth_authen}`,
//! `{auth_type}`, `{mail_addr}`, `i` at MAIL; `{rcpt_addr}`, `i` at RCPT;
//! `i` at DATA, EOH and EOM (the queue id appears from the 2nd RCPT or DATA,
//! never at MAIL). `{auth_authen}` at MAIL is a login (service `smtp`); the
//! client's `AUTH=` MAIL parameter and `{auth_author}` are never used.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::future::Future;
use std::sync::Arc;

use indymilter::{Callbacks, Context, EomContext, MacroStage, NegotiateContext, ProtoOpts, Status};

use mss_shared::model::normalize_address;

use crate::recorder::{Recorder, Transaction};

/// Shared by all milter connections.
pub struct MilterContext {
    /// The one recording path (classification, MAIL_ID, commit, counts).
    pub recorder: Recorder,
}

/// Per-connection state (indymilter's `Context.data`).
#[derive(Default)]
pub struct Conn {
    msg: Option<Message>,
}

#[derive(Default)]
struct Message {
    sender: String,
    recipients: Vec<String>,
    size: u64,
    message_id: Option<String>,
    queue_id: Option<String>,
}

fn macro_str(macros: &indymilter::Macros, name: &str) -> Option<String> {
    let n = CString::new(name).ok()?;
    macros
        .get(&n)
        .map(|v: &CStr| v.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
}

fn arg0(args: &[CString]) -> String {
    args.first()
        .map(|a| normalize_address(&a.to_string_lossy()))
        .unwrap_or_default()
}

async fn on_negotiate(cx: &mut NegotiateContext<Conn>) -> Status {
    let ask = |s: &str| CString::new(s).expect("no NUL");
    let m: HashMap<MacroStage, CString> = [
        (
            MacroStage::Mail,
            ask("{auth_authen} {auth_type} {mail_addr} i"),
        ),
        (MacroStage::Rcpt, ask("{rcpt_addr} i")),
        (MacroStage::Data, ask("i")),
        (MacroStage::Eoh, ask("i")),
        (MacroStage::Eom, ask("i")),
    ]
    .into_iter()
    .collect();
    cx.requested_macros = m;
    // Only RCPT (the liste blanche may reject it) and end-of-message (the
    // commit must be done before Postfix queues) need our answer: Postfix
    // sends the other commands without waiting for a reply, which saves a
    // round trip per header and body chunk (measured: BENCHMARKS.md).
    cx.requested_opts |= ProtoOpts::NOREPLY_CONNECT
        | ProtoOpts::NOREPLY_MAIL
        | ProtoOpts::NOREPLY_DATA
        | ProtoOpts::NOREPLY_HEADER
        | ProtoOpts::NOREPLY_EOH
        | ProtoOpts::NOREPLY_BODY;
    Status::Continue
}

async fn on_mail(ctx: &MilterContext, cx: &mut Context<Conn>, args: Vec<CString>) -> Status {
    let sender = macro_str(&cx.macros, "{mail_addr}")
        .map(|s| normalize_address(&s))
        .unwrap_or_else(|| arg0(&args));
    if let Some(user) = macro_str(&cx.macros, "{auth_authen}") {
        ctx.recorder
            .login(normalize_address(&user), "smtp", "milter");
    }
    let conn = cx.data.get_or_insert_with(Conn::default);
    conn.msg = Some(Message {
        sender,
        ..Message::default()
    });
    // A stage negotiated without reply (`on_negotiate`): Postfix does not
    // wait, and indymilter must not be told to answer.
    Status::Noreply
}

async fn on_rcpt(ctx: &MilterContext, cx: &mut Context<Conn>, args: Vec<CString>) -> Status {
    let rcpt = macro_str(&cx.macros, "{rcpt_addr}")
        .map(|s| normalize_address(&s))
        .unwrap_or_else(|| arg0(&args));
    let sender = cx
        .data
        .as_ref()
        .and_then(|c| c.msg.as_ref())
        .map(|m| m.sender.as_str())
        .unwrap_or("");
    if ctx.recorder.check_recipient("milter", sender, &rcpt) == Some(true) {
        use indymilter::SetErrorReply;
        let _ = cx
            .reply
            .set_error_reply("550", Some("5.7.1"), [crate::policy::REFUSAL]);
        return Status::Reject;
    }
    let qid = macro_str(&cx.macros, "i");
    if let Some(m) = cx.data.as_mut().and_then(|c| c.msg.as_mut()) {
        m.recipients.push(rcpt);
        if qid.is_some() {
            m.queue_id = qid;
        }
    }
    Status::Continue
}

async fn on_header(cx: &mut Context<Conn>, name: CString, value: CString) -> Status {
    if let Some(m) = cx.data.as_mut().and_then(|c| c.msg.as_mut()) {
        let v = value.as_bytes();
        // Postfix hands folded values with bare LF; they are CRLF on the wire.
        let bare_lf = v
            .iter()
            .enumerate()
            .filter(|&(i, &b)| b == b'\n' && (i == 0 || v[i - 1] != b'\r'))
            .count();
        m.size += (name.as_bytes().len() + 2 + v.len() + bare_lf + 2) as u64;
        if name.as_bytes().eq_ignore_ascii_case(b"message-id") {
            let id = value.to_string_lossy();
            let id = id.trim().trim_start_matches('<').trim_end_matches('>');
            m.message_id = Some(id.chars().take(255).collect());
        }
    }
    // A stage negotiated without reply (`on_negotiate`): Postfix does not
    // wait, and indymilter must not be told to answer.
    Status::Noreply
}

async fn on_eoh(cx: &mut Context<Conn>) -> Status {
    let qid = macro_str(&cx.macros, "i");
    if let Some(m) = cx.data.as_mut().and_then(|c| c.msg.as_mut()) {
        m.size += 2;
        if qid.is_some() {
            m.queue_id = qid;
        }
    }
    // A stage negotiated without reply (`on_negotiate`): Postfix does not
    // wait, and indymilter must not be told to answer.
    Status::Noreply
}

async fn on_body(cx: &mut Context<Conn>, chunk: bytes::Bytes) -> Status {
    if let Some(m) = cx.data.as_mut().and_then(|c| c.msg.as_mut()) {
        m.size += chunk.len() as u64;
    }
    // A stage negotiated without reply (`on_negotiate`): Postfix does not
    // wait, and indymilter must not be told to answer.
    Status::Noreply
}

async fn on_eom(ctx: &MilterContext, cx: &mut EomContext<Conn>) -> Status {
    let qid = macro_str(&cx.macros, "i");
    let Some(mut m) = cx.data.as_mut().and_then(|c| c.msg.take()) else {
        return Status::Continue;
    };
    if qid.is_some() {
        m.queue_id = qid;
    }
    ctx.recorder
        .message(Transaction {
            sender: m.sender,
            recipients: m.recipients,
            size: m.size,
            queue_id: m.queue_id,
            message_id: m.message_id,
            auth: None,
            frontend: "milter",
            time_us: jiff::Timestamp::now().as_microsecond(),
        })
        .await;
    Status::Continue
}

async fn on_abort(ctx: &MilterContext, cx: &mut Context<Conn>) -> Status {
    if let Some(c) = cx.data.as_mut() {
        if c.msg.take().is_some() {
            ctx.recorder.metrics().milter.aborted.inc();
        }
    }
    Status::Continue
}

async fn on_connect(ctx: &MilterContext, cx: &mut Context<Conn>) -> Status {
    ctx.recorder.metrics().milter.sessions.inc();
    cx.data = Some(Conn::default());
    // A stage negotiated without reply (`on_negotiate`): Postfix does not
    // wait, and indymilter must not be told to answer.
    Status::Noreply
}

/// The callbacks: thin closures over the named functions above.
pub fn callbacks(ctx: Arc<MilterContext>) -> Callbacks<Conn> {
    let (c1, c2, c3, c4, c5) = (ctx.clone(), ctx.clone(), ctx.clone(), ctx.clone(), ctx);
    Callbacks::new()
        .on_negotiate(|cx, _, _| Box::pin(on_negotiate(cx)))
        .on_connect(move |cx, _, _| {
            let c = c1.clone();
            Box::pin(async move { on_connect(&c, cx).await })
        })
        .on_mail(move |cx, args| {
            let c = c2.clone();
            Box::pin(async move { on_mail(&c, cx, args).await })
        })
        .on_rcpt(move |cx, args| {
            let c = c5.clone();
            Box::pin(async move { on_rcpt(&c, cx, args).await })
        })
        .on_header(|cx, n, v| Box::pin(on_header(cx, n, v)))
        .on_eoh(|cx| Box::pin(on_eoh(cx)))
        .on_body(|cx, b| Box::pin(on_body(cx, b)))
        .on_eom(move |cx| {
            let c = c3.clone();
            Box::pin(async move { on_eom(&c, cx).await })
        })
        .on_abort(move |cx| {
            let c = c4.clone();
            Box::pin(async move { on_abort(&c, cx).await })
        })
}

/// Milter listener: TCP or a Unix socket (a stale socket file is removed at
/// start, ours at stop).
pub enum MilterListener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener, std::path::PathBuf),
}

impl MilterListener {
    /// Bind `listen` (`host:port` or `unix:/path`).
    pub async fn bind(listen: &mss_shared::config::ListenAddr) -> std::io::Result<Self> {
        match listen {
            mss_shared::config::ListenAddr::Tcp(a) => {
                Ok(MilterListener::Tcp(tokio::net::TcpListener::bind(a).await?))
            }
            mss_shared::config::ListenAddr::Unix(p) => {
                if std::os::unix::net::UnixStream::connect(p).is_ok() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::AddrInUse,
                        format!("{} is in use by a running process", p.display()),
                    ));
                }
                let _ = std::fs::remove_file(p);
                let l = tokio::net::UnixListener::bind(p)?;
                // Postfix runs as `postfix`: let it connect.
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o666));
                Ok(MilterListener::Unix(l, p.clone()))
            }
        }
    }
}

/// A TCP listener whose connections have Nagle's algorithm off: milter
/// replies are small writes answered by the next command, and with Nagle on
/// a reply split over two segments waits for Postfix's delayed ACK (40 ms
/// per message, measured in the crash test's load before this).
pub struct NoDelayTcp(pub tokio::net::TcpListener);

impl indymilter::Listener for NoDelayTcp {
    type Io = QuickAck;

    fn poll_accept(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<Self::Io>> {
        self.0.poll_accept(cx).map_ok(|(s, _)| {
            let _ = s.set_nodelay(true);
            QuickAck(s)
        })
    }
}

/// A milter TCP connection that acknowledges every segment at once
/// (`TCP_QUICKACK`, re-armed after each read: Linux clears it by itself).
/// Postfix sends some milter commands back to back without waiting for a
/// reply (macros before each stage, no-reply commands) on a socket with
/// Nagle's algorithm on: its second segment waits for our ACK, which the
/// kernel would delay by up to 40 ms per message.
pub struct QuickAck(tokio::net::TcpStream);

impl tokio::io::AsyncRead for QuickAck {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let _ = socket2::SockRef::from(&self.0).set_tcp_quickack(true);
        }
        r
    }
}

impl tokio::io::AsyncWrite for QuickAck {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Serve milter connections until `shutdown` resolves.
pub async fn run(listener: MilterListener, ctx: Arc<MilterContext>, shutdown: impl Future) {
    let config = indymilter::Config {
        max_connections: 1000,
        connection_timeout: std::time::Duration::from_secs(600),
        ..Default::default()
    };
    let cbs = callbacks(ctx);
    let res = match listener {
        MilterListener::Tcp(l) => indymilter::run(NoDelayTcp(l), cbs, config, shutdown).await,
        MilterListener::Unix(l, path) => {
            let r = indymilter::run(l, cbs, config, shutdown).await;
            let _ = std::fs::remove_file(&path);
            r
        }
    };
    if let Err(e) = res {
        tracing::error!("milter front end stopped: {e}");
    }
}
