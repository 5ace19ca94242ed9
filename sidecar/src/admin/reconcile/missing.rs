//! The missing recipients, kept compact (a month with the sidecar down can
//! have millions): one entry per message (queue id, sender, domain, origin,
//! size, time) and one boxed string per recipient. Serialised as the JSON
//! array of `{"queue_id", "sender", "recipient", "time", "reason"}`, each
//! object made while writing.

use jiff::tz::TimeZone;
use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;

use mss_shared::month::{format_csv_date, from_micros};

use super::episodes::{Message, Origin};
use super::Missing;

/// Why Postfix passed a message we have no row for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    MilterDown,
    ProxyDown,
    Unexplained,
}

impl Reason {
    pub fn of(m: &Message) -> Reason {
        if m.milter_down {
            Reason::MilterDown
        } else if m.proxy_down {
            Reason::ProxyDown
        } else {
            Reason::Unexplained
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MilterDown => "milter_down",
            Reason::ProxyDown => "proxy_down",
            Reason::Unexplained => "unexplained",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Msg {
    time_us: i64,
    seq: u64,
    queue_id: Box<str>,
    sender: Box<str>,
    domain: u32,
    origin: Origin,
    reason: Reason,
    size: u64,
    /// Its recipients: `rcpts[first..first + count]`.
    first: u32,
    count: u32,
}

/// Every missing recipient, in log time order once [`MissingList::sort`]ed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MissingList {
    domains: Vec<String>,
    msgs: Vec<Msg>,
    rcpts: Vec<Box<str>>,
    tz: Option<TimeZone>,
}

impl MissingList {
    pub fn new(tz: TimeZone) -> MissingList {
        MissingList {
            tz: Some(tz),
            ..MissingList::default()
        }
    }

    /// Add the recipients `rcpts` of message `m` (of operator `domain`).
    pub fn add<'a>(&mut self, domain: &str, m: &Message, rcpts: impl Iterator<Item = &'a str>) {
        let first = self.rcpts.len() as u32;
        self.rcpts.extend(rcpts.map(Box::from));
        let count = self.rcpts.len() as u32 - first;
        if count == 0 {
            return;
        }
        let domain = match self.domains.iter().position(|d| d == domain) {
            Some(i) => i,
            None => {
                self.domains.push(domain.to_string());
                self.domains.len() - 1
            }
        } as u32;
        self.msgs.push(Msg {
            time_us: m.time_us,
            seq: m.seq,
            queue_id: m.queue_id.as_str().into(),
            sender: m.sender.as_str().into(),
            domain,
            origin: m.origin,
            reason: Reason::of(m),
            size: m.size,
            first,
            count,
        });
    }

    /// Log order: time of the origin line, then order of first line.
    pub fn sort(&mut self) {
        self.msgs.sort_by_key(|m| (m.time_us, m.seq));
    }

    pub fn len(&self) -> usize {
        self.msgs.iter().map(|m| m.count as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Each missing recipient as an owned [`Missing`].
    pub fn iter(&self) -> impl Iterator<Item = Missing> + '_ {
        let tz = self.tz.clone().unwrap_or(TimeZone::UTC);
        self.msgs.iter().flat_map(move |m| {
            let tz = tz.clone();
            self.rcpts[m.first as usize..(m.first + m.count) as usize]
                .iter()
                .map(move |r| Missing {
                    queue_id: m.queue_id.to_string(),
                    sender: m.sender.to_string(),
                    recipient: r.to_string(),
                    time: format_csv_date(from_micros(m.time_us), &tz),
                    reason: m.reason.as_str().into(),
                    origin: Some(m.origin),
                    domain: self.domains[m.domain as usize].clone(),
                    size: m.size,
                    time_us: m.time_us,
                })
        })
    }

    /// Drop the recipients of messages with `reason` (their recipients are
    /// the caller's to count elsewhere).
    pub fn remove(&mut self, reason: Reason) {
        self.msgs.retain(|m| m.reason != reason);
    }
}

impl Serialize for MissingList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for m in self.iter() {
            seq.serialize_element(&m)?;
        }
        seq.end()
    }
}
