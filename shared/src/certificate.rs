//! The operator's client certificate: its validity (`mss-export` refuses an
//! expired one) and the days until it expires (`mss-admin status`, and
//! `mss_client_certificate_expiry_days` on `/metrics`), read with x509-parser.

use std::path::Path;

use jiff::Timestamp;

/// (notBefore, notAfter) of a DER X.509 certificate; `None` if it does not parse.
pub fn validity(der: &[u8]) -> Option<(Timestamp, Timestamp)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let v = cert.validity();
    Some((
        Timestamp::from_second(v.not_before.timestamp()).ok()?,
        Timestamp::from_second(v.not_after.timestamp()).ok()?,
    ))
}

/// Days until the first certificate of a PEM file expires (negative: expired).
///
/// # Errors
/// The file cannot be read or holds no certificate (the message names it).
pub fn days_left(pem_path: &Path) -> Result<i64, String> {
    let data = std::fs::read(pem_path).map_err(|e| format!("{}: {e}", pem_path.display()))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&data)
        .map_err(|e| format!("{}: not a PEM certificate: {e}", pem_path.display()))?;
    let (_, not_after) = validity(&pem.contents)
        .ok_or_else(|| format!("{}: unreadable certificate", pem_path.display()))?;
    Ok((not_after.as_second() - Timestamp::now().as_second()).div_euclid(86_400))
}
