//! The mutual-TLS configuration of the SIPIL client, from `[sipil]`.

use std::path::Path;
use std::sync::Arc;

use jiff::Timestamp;
use mss_shared::config::Sipil;
use mss_shared::Error;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Warn when the client certificate expires within this many days.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// System CA bundles tried when `sipil.use_system_roots = true`.
pub(super) const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

pub(super) fn cfg_err(key: &str, why: impl std::fmt::Display) -> Error {
    Error::Config(format!("key `{key}`: {why}"))
}

pub(super) fn required<'a>(
    key: &str,
    v: &'a Option<std::path::PathBuf>,
) -> Result<&'a Path, Error> {
    v.as_deref()
        .ok_or_else(|| cfg_err(key, "not set: needed to reach SIPIL over mutual TLS"))
}

/// The rustls configuration for SIPIL: client certificate, trusted CAs.
///
/// # Errors
/// [`Error::Config`] naming the key: missing or unreadable file, no PEM
/// certificate or key in it, key readable by others, key not matching the
/// certificate, certificate expired or not yet valid.
pub fn tls_config(s: &Sipil, now: Timestamp) -> Result<rustls::ClientConfig, Error> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = &s.ca_file {
        let certs = read_certs("sipil.ca_file", ca)?;
        for c in certs {
            roots.add(c).map_err(|e| {
                cfg_err(
                    "sipil.ca_file",
                    format!("{}: not a usable CA certificate: {e}", ca.display()),
                )
            })?;
        }
    } else if !s.use_system_roots {
        return Err(cfg_err(
            "sipil.ca_file",
            "not set: the CA chain that signs the SIPIL server certificate (IGC-Santé) is required (or set sipil.use_system_roots = true)",
        ));
    }
    if s.use_system_roots {
        let bundle = SYSTEM_BUNDLES
            .iter()
            .find(|p| Path::new(p).exists())
            .ok_or_else(|| {
                cfg_err(
                    "sipil.use_system_roots",
                    format!("no system CA bundle found (looked for {SYSTEM_BUNDLES:?})"),
                )
            })?;
        let certs = read_certs("sipil.use_system_roots", Path::new(bundle))?;
        roots.add_parsable_certificates(certs);
    }

    let cert_path = required("sipil.client_cert", &s.client_cert)?;
    let key_path = required("sipil.client_key", &s.client_key)?;
    let chain = read_certs("sipil.client_cert", cert_path)?;
    check_key_permissions(key_path, s.allow_readable_key)?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
        cfg_err(
            "sipil.client_key",
            format!(
                "{}: no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {}",
                key_path.display(),
                pem_error(&e)
            ),
        )
    })?;
    check_validity(&chain[0], cert_path, now)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Other(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => cfg_err(
                "sipil.client_key",
                format!(
                    "{} does not match the certificate in {} (sipil.client_cert)",
                    key_path.display(),
                    cert_path.display()
                ),
            ),
            other => cfg_err(
                "sipil.client_key",
                format!("{}: {other}", key_path.display()),
            ),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// PEM errors without echoing file content.
fn pem_error(e: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error as P;
    match e {
        P::Io(io) => io.to_string(),
        P::NoItemsFound => "no PEM block of the expected kind".into(),
        _ => "malformed PEM".into(),
    }
}

fn read_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let iter = CertificateDer::pem_file_iter(path)
        .map_err(|e| cfg_err(key, format!("{}: {}", path.display(), pem_error(&e))))?;
    let certs: Vec<_> = iter
        .collect::<Result<_, _>>()
        .map_err(|e| cfg_err(key, format!("{}: {}", path.display(), pem_error(&e))))?;
    if certs.is_empty() {
        return Err(cfg_err(
            key,
            format!("{}: no PEM certificate in this file", path.display()),
        ));
    }
    Ok(certs)
}

fn check_key_permissions(path: &Path, allow: bool) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| cfg_err("sipil.client_key", format!("{}: {e}", path.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 && !allow {
        return Err(cfg_err(
            "sipil.client_key",
            format!(
                "{} is readable by others (mode {mode:04o}): `chmod 600` it (owner: the user running mss-export), or set sipil.allow_readable_key = true",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Refuse an expired or not-yet-valid client certificate, warn before expiry.
fn check_validity(leaf: &CertificateDer<'_>, path: &Path, now: Timestamp) -> Result<(), Error> {
    let Some((not_before, not_after)) = validity(leaf) else {
        return Err(cfg_err(
            "sipil.client_cert",
            format!("{}: the first certificate cannot be parsed", path.display()),
        ));
    };
    if now < not_before {
        return Err(cfg_err(
            "sipil.client_cert",
            format!("{} is not valid before {not_before}", path.display()),
        ));
    }
    if now >= not_after {
        return Err(cfg_err(
            "sipil.client_cert",
            format!(
                "{} expired on {not_after}: install the renewed certificate",
                path.display()
            ),
        ));
    }
    let left = not_after.as_second() - now.as_second();
    if left < EXPIRY_WARNING_DAYS * 86_400 {
        eprintln!(
            "warning: the SIPIL client certificate {} expires on {not_after} ({} day(s) left): renew it and have the new one white-listed",
            path.display(),
            left / 86_400
        );
    }
    Ok(())
}

/// (notBefore, notAfter) of an X.509 certificate (x509-parser, in mss-shared).
pub use mss_shared::certificate::validity;

/// When the rustls error is not reachable through `source()` (boxed by a
/// layer), recognise its text.
pub(super) fn tls_hint_from_text(detail: &str, s: &Sipil) -> Option<String> {
    use rustls::{AlertDescription as A, CertificateError as C, Error as R};
    if let Some(rest) = detail.split("invalid peer certificate: ").nth(1) {
        let e = match rest.split([' ', ')', ':']).next().unwrap_or("") {
            "UnknownIssuer" => R::InvalidCertificate(C::UnknownIssuer),
            "BadSignature" => R::InvalidCertificate(C::BadSignature),
            "Expired" => R::InvalidCertificate(C::Expired),
            "NotValidForName" => R::InvalidCertificate(C::NotValidForName),
            _ => return Some(format!("the server certificate is refused: {rest}")),
        };
        return Some(tls_hint(&e, s));
    }
    if let Some(rest) = detail.split("received fatal alert: ").nth(1) {
        let name = rest.split([' ', ')', ':']).next().unwrap_or("");
        let alert = match name {
            "BadCertificate" => A::BadCertificate,
            "UnknownCA" => A::UnknownCA,
            "CertificateRequired" => A::CertificateRequired,
            "CertificateUnknown" => A::CertificateUnknown,
            "AccessDenied" => A::AccessDenied,
            "CertificateExpired" => A::CertificateExpired,
            "CertificateRevoked" => A::CertificateRevoked,
            "UnsupportedCertificate" => A::UnsupportedCertificate,
            _ => return Some(format!("the server sent the alert {name}")),
        };
        return Some(tls_hint(&R::AlertReceived(alert), s));
    }
    None
}

pub(super) fn tls_hint(e: &rustls::Error, s: &Sipil) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as R};
    let ca = s
        .ca_file
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(unset)".into());
    match e {
        R::InvalidCertificate(C::UnknownIssuer) | R::InvalidCertificate(C::BadSignature) => format!(
            "the server certificate is not signed by a CA of sipil.ca_file = {ca}: wrong server, or wrong CA file"
        ),
        R::InvalidCertificate(C::Expired) | R::InvalidCertificate(C::ExpiredContext { .. }) => {
            "the server certificate has expired".into()
        }
        R::InvalidCertificate(C::NotValidForName)
        | R::InvalidCertificate(C::NotValidForNameContext { .. }) => {
            "the server certificate does not name the host of the URL".into()
        }
        R::InvalidCertificate(other) => format!("the server certificate is refused: {other:?}"),
        R::AlertReceived(
            a @ (A::BadCertificate
            | A::UnknownCA
            | A::CertificateRequired
            | A::CertificateUnknown
            | A::AccessDenied
            | A::UnsupportedCertificate
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::DecryptError),
        ) => format!(
            "the server refused our client certificate (alert {a:?}): check that sipil.client_cert is the certificate declared in the ANS white list, signed by the IGC-Santé"
        ),
        R::AlertReceived(a) => format!("the server sent the alert {a:?}"),
        other => other.to_string(),
    }
}
