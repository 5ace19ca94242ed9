//! The state of one transaction: what is in flight, the client side's
//! reading state, the envelope accepted so far, body counting and the
//! end-of-data guard.

use smtp_proto::request::receiver::{BdatReceiver, DataReceiver};

/// Headers kept to find the Message-ID; the body is counted, never kept.
pub(super) const HEAD_CAP: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mech {
    Plain,
    Login,
    Other,
}

impl Mech {
    pub(super) fn name(self) -> &'static str {
        match self {
            Mech::Plain => "PLAIN",
            Mech::Login => "LOGIN",
            Mech::Other => "other",
        }
    }
}

#[derive(Debug)]
pub(super) enum Pending {
    Greeting,
    Ehlo,
    Mail {
        from: String,
    },
    Rcpt {
        to: String,
    },
    Data,
    DataEnd {
        size: u64,
        message_id: Option<String>,
    },
    Bdat {
        last: bool,
        size: u64,
        message_id: Option<String>,
    },
    Auth {
        mech: Mech,
        user: Option<String>,
    },
    Rset,
    Other,
    StartTlsLocal,
    Local(Vec<u8>),
    LocalClose(Vec<u8>),
}

impl Pending {
    pub(super) fn is_barrier(&self) -> bool {
        matches!(
            self,
            Pending::Data | Pending::Auth { .. } | Pending::StartTlsLocal
        )
    }
}

pub(super) enum ClientState {
    Command,
    Data(Box<DataBody>),
    Bdat(BdatReceiver),
    /// The upstream asked for a SASL response line (334).
    AuthLine {
        mech: Mech,
        user: Option<String>,
    },
    /// After STARTTLS / a fatal condition: ignore anything more.
    Discard,
}

pub(super) struct DataBody {
    pub(super) rx: DataReceiver,
    pub(super) guard: DotGuard,
    /// Unstuffed bytes not yet counted: the receiver may take back the last
    /// one (the `\r` before the final `\n`), so one byte is always held.
    pub(super) sink: Vec<u8>,
}

/// Counts body bytes and keeps the header block.
#[derive(Debug, Default)]
pub(super) struct BodyStats {
    pub(super) size: u64,
    pub(super) head: Vec<u8>,
    pub(super) head_done: bool,
}

impl BodyStats {
    pub(super) fn push(&mut self, chunk: &[u8]) {
        self.size += chunk.len() as u64;
        if !self.head_done {
            let room = HEAD_CAP.saturating_sub(self.head.len());
            self.head.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if self.head.windows(4).any(|w| w == b"\r\n\r\n") || self.head.len() >= HEAD_CAP {
                self.head_done = true;
            }
        }
    }

    pub(super) fn message_id(&self) -> Option<String> {
        let msg = mail_parser::MessageParser::new().parse_headers(&self.head[..])?;
        msg.message_id().map(|s| s.chars().take(255).collect())
    }
}

/// Watches the raw DATA stream for a `.` line adjacent to a bare LF.
#[derive(Debug, Clone, Copy)]
pub(super) struct DotGuard {
    pub(super) at_line_start: bool,
    pub(super) prev_line_crlf: bool,
    pub(super) last: u8,
    /// 0: not in a dot line; 1: saw `.` at line start; 2: saw `.\r`.
    pub(super) dot: u8,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Guard {
    /// No end yet; all bytes are body.
    More,
    /// Legitimate `CRLF.CRLF` ends at this index (exclusive).
    End(usize),
    /// Ambiguous end-of-data: refuse.
    Smuggling,
}

impl DotGuard {
    pub(super) fn new() -> Self {
        DotGuard {
            at_line_start: true,
            prev_line_crlf: true,
            last: b'\n',
            dot: 0,
        }
    }

    pub(super) fn scan(&mut self, bytes: &[u8]) -> Guard {
        for (i, &b) in bytes.iter().enumerate() {
            match self.dot {
                1 => match b {
                    b'\r' => {
                        self.dot = 2;
                        self.last = b;
                        continue;
                    }
                    b'\n' => return Guard::Smuggling,
                    _ => self.dot = 0,
                },
                2 => {
                    if b == b'\n' {
                        return if self.prev_line_crlf {
                            Guard::End(i + 1)
                        } else {
                            Guard::Smuggling
                        };
                    }
                    if b == b'\r' {
                        // `.\r\r…\n`: smtp-proto (and servers built on it)
                        // end the data here, Postfix does not. Ambiguous.
                        return Guard::Smuggling;
                    }
                    self.dot = 0;
                }
                _ => {}
            }
            if self.at_line_start {
                self.at_line_start = false;
                if b == b'.' {
                    self.dot = 1;
                    self.last = b;
                    continue;
                }
            }
            if b == b'\n' {
                self.prev_line_crlf = self.last == b'\r';
                self.at_line_start = true;
            }
            self.last = b;
        }
        Guard::More
    }
}

#[derive(Debug)]
pub(super) struct Txn {
    pub(super) from: String,
    pub(super) rcpts: Vec<String>,
    pub(super) failed: bool,
}

/// A `DataReceiver` that knows the body starts at a line start (after the
/// `DATA\r\n` command): fresh, it would neither end an empty message at
/// its first `.\r\n` nor unstuff a first line starting with `..`.
pub(super) fn primed_receiver() -> DataReceiver {
    let mut rx = DataReceiver::new();
    let mut scratch = Vec::with_capacity(2);
    let done = rx.ingest(&mut b"\r\n".iter(), &mut scratch);
    debug_assert!(!done);
    rx
}
