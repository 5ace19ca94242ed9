//! Checks shared by the sections: how a bad key is reported, what a
//! domain, an address and a host:port are.

use std::net::SocketAddr;

use crate::error::{Error, Result};

/// `Err` naming the key: every section's validation speaks this way.
pub(crate) fn bad<T>(key: &str, why: String) -> Result<T> {
    Err(Error::Config(format!("key `{key}`: {why}")))
}

pub(crate) fn is_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

pub(crate) fn is_address(a: &str) -> bool {
    match a.rsplit_once('@') {
        Some((l, d)) => !l.is_empty() && is_domain(&d.to_ascii_lowercase()),
        None => false,
    }
}

pub(crate) fn is_host_port(s: &str) -> bool {
    if s.parse::<SocketAddr>().is_ok() {
        return true;
    }
    match s.rsplit_once(':') {
        Some((h, p)) => !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}
