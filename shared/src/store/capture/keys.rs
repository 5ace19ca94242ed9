//! Column families, key and value encodings, merge operators.

use rocksdb::{ColumnFamilyDescriptor, MergeOperands};
use serde::Serialize;

use crate::model::{LoginRecord, MessageRecord};
use crate::month::Month;

pub const CF_OUT: &str = "out";
pub const CF_RCV: &str = "rcv";
pub const CF_LOGIN: &str = "login";
pub const CF_SNT: &str = "snt";
pub const CF_POL: &str = "pol";
/// Per-BAL summary of purged months (key BAL): never purged, see [`super::history`].
pub const CF_BAL: &str = "bal";
pub(super) const CFS: [&str; 8] = [
    CF_OUT,
    CF_RCV,
    CF_LOGIN,
    CF_SNT,
    CF_POL,
    CF_BAL,
    super::outbox::CF_OUTBOX,
    super::outbox::CF_META,
];
/// The month-keyed column families, purged by retention.
pub(super) const MONTH_CFS: [&str; 5] = [CF_OUT, CF_RCV, CF_LOGIN, CF_SNT, CF_POL];

/// One Echanges row as read back from the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutRow {
    pub domain: String,
    pub time_us: i64,
    pub mail_id: String,
    pub recipient: String,
    pub sender: String,
    pub size: u64,
    pub frontend: String,
    pub queue_id: Option<String>,
    pub message_id: Option<String>,
}

pub(super) fn merge_max(
    _key: &[u8],
    existing: Option<&[u8]>,
    ops: &MergeOperands,
) -> Option<Vec<u8>> {
    let mut best = existing.map(read_u64).unwrap_or(0);
    for op in ops {
        best = best.max(read_u64(op));
    }
    Some(best.to_be_bytes().to_vec())
}

pub(super) fn merge_login(
    _key: &[u8],
    existing: Option<&[u8]>,
    ops: &MergeOperands,
) -> Option<Vec<u8>> {
    let (mut last, mut count) = existing.map(split_login).unwrap_or((0, 0));
    for op in ops {
        let (t, n) = split_login(op);
        last = last.max(t);
        count = count.saturating_add(n);
    }
    let mut v = last.to_be_bytes().to_vec();
    v.extend_from_slice(&count.to_be_bytes());
    Some(v)
}

pub(super) fn merge_sum(
    _key: &[u8],
    existing: Option<&[u8]>,
    ops: &MergeOperands,
) -> Option<Vec<u8>> {
    let mut n = existing.map(read_u64).unwrap_or(0);
    for op in ops {
        n = n.saturating_add(read_u64(op));
    }
    Some(n.to_be_bytes().to_vec())
}

pub(super) fn read_u64(b: &[u8]) -> u64 {
    b.get(..8)
        .map(|s| u64::from_be_bytes(s.try_into().expect("8 bytes")))
        .unwrap_or(0)
}

pub(super) fn split_login(b: &[u8]) -> (u64, u64) {
    (read_u64(b), b.get(8..).map(read_u64).unwrap_or(0))
}

/// Element-wise max of three u64 BE (the `bal` column family).
pub(super) fn merge_max3(
    _key: &[u8],
    existing: Option<&[u8]>,
    ops: &MergeOperands,
) -> Option<Vec<u8>> {
    let mut best = existing.map(read3).unwrap_or([0; 3]);
    for op in ops {
        let v = read3(op);
        for i in 0..3 {
            best[i] = best[i].max(v[i]);
        }
    }
    Some(best.iter().flat_map(|x| x.to_be_bytes()).collect())
}

pub(super) fn read3(b: &[u8]) -> [u64; 3] {
    [
        read_u64(b),
        b.get(8..).map(read_u64).unwrap_or(0),
        b.get(16..).map(read_u64).unwrap_or(0),
    ]
}

/// The BAL part of a month-keyed login/snt/rcv key.
pub(super) fn bal_of(k: &[u8]) -> &[u8] {
    let rest = k.get(6..).unwrap_or_default();
    rest.split(|b| *b == 0).next().unwrap_or_default()
}

pub(super) fn cf_descriptors() -> Vec<ColumnFamilyDescriptor> {
    CFS.iter()
        .map(|name| {
            let mut o = crate::store::base_options();
            match *name {
                CF_RCV | CF_SNT => o.set_merge_operator_associative("mss_max_u64", merge_max),
                CF_LOGIN => o.set_merge_operator_associative("mss_login", merge_login),
                CF_POL => o.set_merge_operator_associative("mss_sum_u64", merge_sum),
                CF_BAL => o.set_merge_operator_associative("mss_max3_u64", merge_max3),
                _ => {}
            }
            ColumnFamilyDescriptor::new(*name, o)
        })
        .collect()
}

pub(super) fn prefix_upper_bound(prefix: &[u8]) -> Vec<u8> {
    let mut ub = prefix.to_vec();
    while let Some(last) = ub.pop() {
        if last < 0xff {
            ub.push(last + 1);
            return ub;
        }
    }
    vec![0xff; 16]
}

pub(super) fn out_key(
    month: Month,
    domain: &str,
    time_us: i64,
    mail_id: &str,
    rcpt: &str,
) -> Vec<u8> {
    let mut k = Vec::with_capacity(6 + domain.len() + 10 + mail_id.len() + rcpt.len());
    k.extend_from_slice(&month.key());
    k.extend_from_slice(domain.as_bytes());
    k.push(0);
    k.extend_from_slice(&(time_us.max(0) as u64).to_be_bytes());
    k.extend_from_slice(mail_id.as_bytes());
    k.push(0);
    k.extend_from_slice(rcpt.as_bytes());
    k
}

pub(super) fn out_value(m: &MessageRecord) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + m.sender.len() + 64);
    v.extend_from_slice(&m.size.to_be_bytes());
    v.push(match m.frontend.as_str() {
        "milter" => b'm',
        _ => b'p',
    });
    v.extend_from_slice(m.sender.as_bytes());
    v.push(0);
    v.extend_from_slice(m.queue_id.as_deref().unwrap_or("").as_bytes());
    v.push(0);
    v.extend_from_slice(m.message_id.as_deref().unwrap_or("").as_bytes());
    v
}

pub(super) fn decode_out(k: &[u8], v: &[u8]) -> Option<OutRow> {
    let rest = k.get(6..)?;
    let z = rest.iter().position(|&b| b == 0)?;
    let domain = std::str::from_utf8(&rest[..z]).ok()?.to_string();
    let rest = &rest[z + 1..];
    let time_us = read_u64(rest.get(..8)?) as i64;
    let rest = &rest[8..];
    let z = rest.iter().position(|&b| b == 0)?;
    let mail_id = std::str::from_utf8(&rest[..z]).ok()?.to_string();
    let recipient = std::str::from_utf8(&rest[z + 1..]).ok()?.to_string();
    let size = read_u64(v.get(..8)?);
    let frontend = match v.get(8)? {
        b'm' => "milter",
        _ => "proxy",
    }
    .to_string();
    let mut parts = v[9..].split(|&b| b == 0);
    let sender = String::from_utf8_lossy(parts.next()?).into_owned();
    let opt = |p: Option<&[u8]>| {
        p.filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
    };
    let queue_id = opt(parts.next());
    let message_id = opt(parts.next());
    Some(OutRow {
        domain,
        time_us,
        mail_id,
        recipient,
        sender,
        size,
        frontend,
        queue_id,
        message_id,
    })
}

pub(super) fn login_key(month: Month, l: &LoginRecord) -> Vec<u8> {
    let mut k = month.key().to_vec();
    k.extend_from_slice(l.bal.as_bytes());
    k.push(0);
    k.extend_from_slice(l.service.as_bytes());
    k
}

pub(super) fn login_value(time_us: i64, n: u64) -> Vec<u8> {
    let mut v = (time_us.max(0) as u64).to_be_bytes().to_vec();
    v.extend_from_slice(&n.to_be_bytes());
    v
}
