//! The operator's client certificate: days until it expires (`mss-admin
//! status`, and `mss_client_certificate_expiry_days` on `/metrics`).

use std::path::Path;

/// Days until the first certificate of a PEM file expires (negative: expired).
///
/// # Errors
/// The file cannot be read or holds no certificate (the message names it).
pub fn days_left(pem_path: &Path) -> Result<i64, String> {
    let data = std::fs::read(pem_path).map_err(|e| format!("{}: {e}", pem_path.display()))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&data)
        .map_err(|e| format!("{}: not a PEM certificate: {e}", pem_path.display()))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("{}: unreadable certificate: {e}", pem_path.display()))?;
    let not_after = cert.validity().not_after.timestamp();
    Ok((not_after - jiff::Timestamp::now().as_second()).div_euclid(86_400))
}
