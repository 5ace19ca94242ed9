//! Rebuild each queued message from Postfix's lines, keyed by (instance,
//! queue id, episode): a queue id is reused within minutes, so an episode
//! starts at its origin line (`client=` or pickup `uid=`) and ends at
//! `removed` (or `requeued`, continued by the pickup line with `orig_id=`).

use std::collections::{BTreeSet, HashMap};

use super::parse::Line;

/// Where the message entered Postfix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Smtpd,
    Pickup,
    /// The log starts after its origin line (or it was lost).
    Unknown,
}

/// One message as Postfix logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub instance: String,
    pub queue_id: String,
    /// Time of the origin line (else the first line seen), UTC µs.
    pub time_us: i64,
    /// Order of the message's first line in the logs read (ties within a
    /// syslog second keep log order).
    pub seq: u64,
    pub origin: Origin,
    /// Envelope sender as logged (`from=<…>`), lower-cased; empty for `<>`.
    pub sender: String,
    /// Postfix's `size=` (queue file length, not TAILLE).
    pub size: u64,
    /// Every recipient Postfix accepted (any status, `orig_to` when logged),
    /// lower-cased, once each however many attempts.
    pub recipients: BTreeSet<String>,
    /// A milter warning pins this message: it passed without the milter.
    pub milter_down: bool,
    /// The smtpd session could not reach its proxy filter.
    pub proxy_down: bool,
    /// cleanup logged its `message-id=`: the SMTP commands are over, a later
    /// warning of its smtpd session is not about it.
    pub content_seen: bool,
}

#[derive(Default)]
struct Session {
    milter_down: bool,
    proxy_down: bool,
    /// The transaction in progress (its `client=` line was logged).
    current: Option<String>,
}

/// The state machine; feed it lines in log order, collect finished messages.
#[derive(Default)]
pub struct Episodes {
    open: HashMap<(String, String), Message>,
    /// Messages that ended with `requeued`, waiting for their `orig_id=`.
    requeued: HashMap<(String, String), Message>,
    sessions: HashMap<(String, u32), Session>,
    /// cleanup pids that just warned about their milter (next message-id).
    cleanup_warned: HashMap<(String, u32), bool>,
    /// The message each cleanup pid is on (its last `message-id=` line).
    cleanup_current: HashMap<(String, u32), String>,
    pub without_origin: u64,
    next_seq: u64,
}

fn queue_id(msg: &str) -> Option<(&str, &str)> {
    let (id, rest) = msg.split_once(": ")?;
    // Short ids are upper-case hex, long ids start with a digit: never
    // `warning`, `fatal`, `statistics`; `NOQUEUE` is not a message.
    let first = id.bytes().next()?;
    if id.len() >= 5
        && id != "NOQUEUE"
        && (first.is_ascii_digit() || first.is_ascii_uppercase())
        && id.bytes().all(|c| c.is_ascii_alphanumeric())
    {
        Some((id, rest))
    } else {
        None
    }
}

/// The value of `key=<…>` in `s`, lower-cased without the brackets.
fn angle(s: &str, key: &str) -> Option<String> {
    let i = s.find(key)?;
    let rest = &s[i + key.len()..];
    let rest = rest.strip_prefix('<')?;
    Some(rest[..rest.find('>')?].to_ascii_lowercase())
}

/// A milter failure before any message data (connecting, negotiating):
/// cleanup logs it just before the message-id of the message it concerns;
/// any other failure (header, body, end of message) comes after it.
fn is_connection_failure(msg: &str) -> bool {
    msg.contains("Milter service")
        || msg.contains("read error in initial handshake")
        || msg.contains("SMFIC_OPTNEG")
}

fn is_milter_failure(msg: &str) -> bool {
    msg.starts_with("warning: ")
        && (msg.contains("Milter service")
            || msg.contains("milter ")
            || msg.contains("can't read SMFIC_")
            || msg.contains("read error in initial handshake"))
}

impl Episodes {
    /// Feed one line; `done` receives each finished message.
    pub fn line(&mut self, l: &Line, mut done: impl FnMut(Message)) {
        if !l.instance.starts_with("postfix") {
            return;
        }
        let inst = l.instance;
        match l.service {
            "smtpd" => self.smtpd(l),
            "cleanup" => {
                let pid = (inst.to_string(), l.pid);
                if let Some((qid, rest)) = queue_id(l.msg) {
                    if rest.starts_with("message-id=") {
                        let warned = self.cleanup_warned.remove(&pid).unwrap_or(false);
                        self.cleanup_current.insert(pid, qid.to_string());
                        let m = self.get(inst, qid, l.time_us);
                        m.milter_down |= warned;
                        m.content_seen = true;
                    } else if is_milter_failure(rest) {
                        self.get(inst, qid, l.time_us).milter_down = true;
                    }
                } else if is_milter_failure(l.msg) {
                    // After the message-id (header, body, end of message):
                    // the message this cleanup is on passes without us.
                    let current = self
                        .cleanup_current
                        .get(&pid)
                        .filter(|_| !is_connection_failure(l.msg))
                        .and_then(|q| self.open.get_mut(&(inst.to_string(), q.clone())));
                    match current {
                        Some(m) => m.milter_down = true,
                        None => {
                            self.cleanup_warned.insert(pid, true);
                        }
                    }
                }
            }
            "pickup" => {
                let Some((qid, rest)) = queue_id(l.msg) else {
                    return;
                };
                if !rest.starts_with("uid=") {
                    return;
                }
                let key = (inst.to_string(), qid.to_string());
                // A requeued message keeps its first identity (the rows
                // were captured under the old queue id).
                if let Some(old) = angle_plain(rest, "orig_id=") {
                    if let Some(m) = self.requeued.remove(&(inst.to_string(), old)) {
                        self.open.insert(key, m);
                        return;
                    }
                }
                self.next_seq += 1;
                let mut m = new_message(inst, qid, l.time_us, self.next_seq, Origin::Pickup);
                m.sender = angle(rest, "from=").unwrap_or_default();
                self.open.insert(key, m);
            }
            "qmgr" => {
                let Some((qid, rest)) = queue_id(l.msg) else {
                    return;
                };
                if rest.starts_with("from=<") {
                    let m = self.get(inst, qid, l.time_us);
                    m.sender = angle(rest, "from=").unwrap_or_default();
                    if let Some(s) = angle_plain(rest, "size=") {
                        m.size = s.parse().unwrap_or(0);
                    }
                } else if rest == "removed" {
                    if let Some(m) = self.open.remove(&(inst.to_string(), qid.to_string())) {
                        done(m);
                    }
                }
            }
            "postsuper" => {
                let Some((qid, rest)) = queue_id(l.msg) else {
                    return;
                };
                let key = (inst.to_string(), qid.to_string());
                if rest == "requeued" {
                    if let Some(m) = self.open.remove(&key) {
                        self.requeued.insert(key, m);
                    }
                } else if rest == "removed" {
                    if let Some(m) = self.open.remove(&key) {
                        done(m);
                    }
                }
            }
            _ => {
                // Delivery agents: smtp, lmtp, local, virtual, pipe, error…
                let Some((qid, rest)) = queue_id(l.msg) else {
                    return;
                };
                if !rest.starts_with("to=<") || !rest.contains("status=") {
                    return;
                }
                let rcpt = angle(rest, "orig_to=").or_else(|| angle(rest, "to="));
                if let Some(r) = rcpt {
                    self.get(inst, qid, l.time_us).recipients.insert(r);
                }
            }
        }
    }

    fn smtpd(&mut self, l: &Line) {
        let key = (l.instance.to_string(), l.pid);
        if l.msg.starts_with("connect from ") {
            self.sessions.insert(key, Session::default());
            return;
        }
        if l.msg.starts_with("disconnect from ") {
            self.sessions.remove(&key);
            return;
        }
        if let Some((qid, rest)) = queue_id(l.msg) {
            if rest.starts_with("client=") {
                let s = self.sessions.entry(key).or_default();
                s.current = Some(qid.to_string());
                self.next_seq += 1;
                let mut m = new_message(l.instance, qid, l.time_us, self.next_seq, Origin::Smtpd);
                m.milter_down = s.milter_down;
                m.proxy_down = s.proxy_down;
                self.open
                    .insert((l.instance.to_string(), qid.to_string()), m);
            } else if is_milter_failure(rest) {
                self.get(l.instance, qid, l.time_us).milter_down = true;
            }
            return;
        }
        let proxy = l.msg.starts_with("warning: connect to proxy filter");
        if !proxy && !is_milter_failure(l.msg) {
            return;
        }
        let s = self.sessions.entry(key).or_default();
        s.proxy_down |= proxy;
        s.milter_down |= !proxy;
        // The transaction in progress (a later RCPT, DATA) passes too.
        if let Some(m) = s
            .current
            .as_ref()
            .and_then(|q| self.open.get_mut(&(l.instance.to_string(), q.clone())))
            .filter(|m| !m.content_seen)
        {
            m.proxy_down |= proxy;
            m.milter_down |= !proxy;
        }
    }

    fn get(&mut self, inst: &str, qid: &str, time_us: i64) -> &mut Message {
        let key = (inst.to_string(), qid.to_string());
        let without = &mut self.without_origin;
        let seq = &mut self.next_seq;
        self.open.entry(key).or_insert_with(|| {
            *without += 1;
            *seq += 1;
            new_message(inst, qid, time_us, *seq, Origin::Unknown)
        })
    }

    /// At the end of the logs: messages still in the queue (deferred) or
    /// requeued and not seen again.
    pub fn finish(self, mut done: impl FnMut(Message)) {
        let mut rest: Vec<Message> = self
            .open
            .into_values()
            .chain(self.requeued.into_values())
            .collect();
        rest.sort_by_key(|m| (m.time_us, m.seq));
        for m in rest {
            done(m);
        }
    }
}

/// The value of `key=` up to `,` or space.
fn angle_plain(s: &str, key: &str) -> Option<String> {
    let i = s.find(key)?;
    let v = s[i + key.len()..].split([',', ' ']).next()?;
    Some(v.to_string())
}

fn new_message(inst: &str, qid: &str, time_us: i64, seq: u64, origin: Origin) -> Message {
    Message {
        instance: inst.to_string(),
        queue_id: qid.to_string(),
        time_us,
        seq,
        origin,
        sender: String::new(),
        size: 0,
        recipients: BTreeSet::new(),
        milter_down: false,
        proxy_down: false,
        content_seen: false,
    }
}
