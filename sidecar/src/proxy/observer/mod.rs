//! The proxy's protocol observer: a synchronous state machine that sees every
//! byte the client sends and every reply the upstream sends, decides what is
//! forwarded (almost everything, unchanged) and what the capture records.
//!
//! No I/O here: the session feeds bytes in and drains two outputs
//! ([`Observer::take_upstream`], [`Observer::take_client`]), so tests can drive
//! it byte by byte.
//!
//! # How it stays in step with the upstream
//! - Client commands are framed by *lines* (up to `\n`, as Postfix does) and
//!   each line is parsed by `smtp_proto::Request::parse`; a line the parser
//!   does not know (XFORWARD, XCLIENT, junk) is forwarded and its reply
//!   consumed like any other, so a parse error never moves the framing.
//! - Commands whose reply decides how the *next* bytes are read are barriers:
//!   `DATA` (354 or not), `AUTH` and each SASL line (334 or not). Client bytes
//!   that arrive behind a barrier are held, unparsed and unforwarded, until its
//!   reply is seen; then they are parsed in the right state.
//! - Message bodies go through `smtp_proto::DataReceiver` (dot-unstuffing,
//!   TAILLE) and a guard: a lone `.` line next to a bare LF (`\n.\r\n`,
//!   `\r\n.\n`, `\n.\n`) or followed by extra CRs (`\r\n.\r\r\n`) is where
//!   servers disagree about end-of-data (SMTP smuggling). The proxy refuses the message (`554 5.5.2`) and drops the
//!   upstream connection before any such byte reaches it, so upstream and
//!   observer can never disagree.
//! - Replies are matched in order to the queue of commands in flight
//!   (PIPELINING); our own replies (limits, STARTTLS) sit in the same queue so
//!   the client sees every reply in command order.
//!
//! # Files
//! - this file: the public face ([`Observer`], [`Limits`], what it hands the
//!   session) and the queue of replies owed to the client.
//! - `client`: the client side: command lines, barriers, SASL lines, DATA
//!   and BDAT bodies.
//! - `server`: the server side: upstream replies matched to the commands in
//!   flight, the final reply of a message, the EHLO rewrite.
//! - `transaction`: the state of one transaction (envelope, body counting,
//!   the end-of-data guard) and what is in flight.

mod client;
mod server;
#[cfg(test)]
mod tests;
mod transaction;

use std::collections::VecDeque;

use transaction::{BodyStats, ClientState, Pending, Txn};

/// Limits applied to one client session.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest command line accepted (bytes, CRLF included).
    pub max_line: usize,
    pub max_recipients: usize,
    /// Largest message body (unstuffed bytes); 0: no limit.
    pub max_message_bytes: u64,
    /// Bytes held behind a barrier before we give up on the client.
    pub max_held: usize,
    /// Name in our own replies.
    pub hostname: String,
    /// The liste blanche policy, if configured.
    pub policy: Option<std::sync::Arc<crate::policy::Policy>>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 4096,
            max_recipients: 1000,
            max_message_bytes: 0,
            max_held: 1 << 20,
            hostname: "mss-sidecar".into(),
            policy: None,
        }
    }
}

/// A message the upstream accepted: everything the capture needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub sender: String,
    pub recipients: Vec<String>,
    pub size: u64,
    pub message_id: Option<String>,
    pub queue_id: Option<String>,
}

/// What the session must do towards the client, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientItem {
    /// Relay these reply bytes.
    Reply(Vec<u8>),
    /// Commit this message, *then* relay the reply (the final 2xx).
    Commit(Accepted, Vec<u8>),
    /// A user authenticated (upstream answered 235): record a login.
    Login {
        user: String,
        mechanism: &'static str,
    },
    /// Send the reply, then start the TLS handshake with the client.
    StartTls(Vec<u8>),
    /// Send the reply, then close both connections (no QUIT upstream: an
    /// unfinished DATA must not be completed).
    Close(Vec<u8>),
}

/// The upstream said something that is not SMTP.
#[derive(Debug, PartialEq, Eq)]
pub struct UpstreamGarbage(pub String);

/// The observer of one proxied SMTP session.
pub struct Observer {
    limits: Limits,
    tls_available: bool,
    client_tls: bool,
    state: ClientState,
    /// Partial command line.
    line: Vec<u8>,
    /// Client bytes behind a barrier.
    held: Vec<u8>,
    pending: VecDeque<Pending>,
    /// Client-side view of the transaction being sent.
    rcpts_sent: usize,
    body: BodyStats,
    /// Upstream-side view: the transaction as accepted so far.
    txn: Option<Txn>,
    reply_buf: Vec<u8>,
    to_upstream: Vec<u8>,
    to_client: Vec<ClientItem>,
    closed: bool,
    /// Envelope sender of the transaction being sent (client side).
    mail_from: String,
    /// Recipients outside the Espace de Confiance seen since the last
    /// [`Observer::take_outside`]: (sender domain, recipient domain, refused).
    outside: Vec<(String, String, bool)>,
}

impl Observer {
    /// A new session; the upstream's greeting is the first reply expected.
    pub fn new(limits: Limits, tls_available: bool) -> Self {
        let mut pending = VecDeque::new();
        pending.push_back(Pending::Greeting);
        Observer {
            limits,
            tls_available,
            client_tls: false,
            state: ClientState::Command,
            line: Vec::new(),
            held: Vec::new(),
            pending,
            rcpts_sent: 0,
            body: BodyStats::default(),
            txn: None,
            reply_buf: Vec::new(),
            to_upstream: Vec::new(),
            to_client: Vec::new(),
            closed: false,
            mail_from: String::new(),
            outside: Vec::new(),
        }
    }

    /// Recipients outside the Espace de Confiance seen so far.
    pub fn take_outside(&mut self) -> Vec<(String, String, bool)> {
        std::mem::take(&mut self.outside)
    }

    /// Bytes to write to the upstream now.
    pub fn take_upstream(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.to_upstream)
    }

    /// Items for the client, in order.
    pub fn take_client(&mut self) -> Vec<ClientItem> {
        std::mem::take(&mut self.to_client)
    }

    /// Replies still expected from the upstream.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// True when nothing is in progress: a good moment to close the session.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
            && matches!(self.state, ClientState::Command)
            && self.line.is_empty()
            && self.held.is_empty()
            && self.txn.is_none()
            && self.rcpts_sent == 0
    }

    /// True while the client has sent part of a command line (or SASL
    /// line) and not its end: the session bounds how long that may take.
    pub fn partial_command(&self) -> bool {
        !self.line.is_empty()
            && matches!(
                self.state,
                ClientState::Command | ClientState::AuthLine { .. }
            )
    }

    /// True while a message (DATA or BDAT) is in progress or awaiting its final reply.
    pub fn in_transaction(&self) -> bool {
        self.txn.is_some()
            || matches!(self.state, ClientState::Data(_) | ClientState::Bdat(_))
            || self
                .pending
                .iter()
                .any(|p| matches!(p, Pending::DataEnd { .. } | Pending::Bdat { .. }))
    }

    /// True while the end of a message was sent and its final reply is due:
    /// the upstream may queue it even if the client has gone, so the session
    /// must stay to record it.
    pub fn awaiting_final(&self) -> bool {
        self.pending.iter().any(|p| {
            matches!(
                p,
                Pending::DataEnd { .. } | Pending::Bdat { last: true, .. }
            )
        })
    }

    /// The client is now on TLS: it must EHLO again; transaction state resets.
    pub fn client_tls_started(&mut self) {
        self.client_tls = true;
        self.state = ClientState::Command;
        self.txn = None;
        self.rcpts_sent = 0;
    }

    fn push_pending(&mut self, p: Pending) {
        self.pending.push_back(p);
        self.flush_local();
    }

    /// Emit our own replies that have reached the head of the queue.
    fn flush_local(&mut self) {
        while let Some(head) = self.pending.front() {
            match head {
                Pending::Local(_) => {
                    if let Some(Pending::Local(r)) = self.pending.pop_front() {
                        self.to_client.push(ClientItem::Reply(r));
                    }
                }
                Pending::LocalClose(_) => {
                    if let Some(Pending::LocalClose(r)) = self.pending.pop_front() {
                        self.to_client.push(ClientItem::Close(r));
                    }
                    self.pending.clear();
                    return;
                }
                Pending::StartTlsLocal => {
                    self.pending.pop_front();
                    self.held.clear(); // bytes after STARTTLS are never trusted
                    self.to_client.push(ClientItem::StartTls(
                        b"220 2.0.0 Ready to start TLS\r\n".to_vec(),
                    ));
                }
                _ => return,
            }
        }
    }

    fn local_close(&mut self, reply: &[u8]) {
        self.closed = true;
        self.state = ClientState::Discard;
        self.held.clear();
        self.pending.push_back(Pending::LocalClose(reply.to_vec()));
        self.flush_local();
    }
}
