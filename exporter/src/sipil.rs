//! The SIPIL client: deposit (`postFile`) and deposit report (`getReport`)
//! over mutual TLS.
//!
//! TLS is a `rustls::ClientConfig` built here (ring provider, like the rest of
//! the workspace) and handed to reqwest preconfigured: the trust store holds
//! `sipil.ca_file` only (plus the system bundle when `sipil.use_system_roots`),
//! and the client presents `sipil.client_cert` + `sipil.client_key`. Every wire
//! detail (method, field names, id parameter, id extraction, report patterns)
//! comes from the `[sipil]` configuration.
//!
//! Key material is never logged: errors name the files, never their content.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use mss_shared::config::Sipil;
use mss_shared::Error;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

/// Warn when the client certificate expires within this many days.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// System CA bundles tried when `sipil.use_system_roots = true`.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// Verdict of a deposit report, from the `sipil.report_*` patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Accepted,
    /// Blocking errors: fix and submit again.
    Rejected,
    Pending,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Accepted => "accepted",
            Verdict::Rejected => "rejected (blocking errors)",
            Verdict::Pending => "pending",
        })
    }
}

/// The answer to one HTTP call.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A SIPIL client with its TLS identity loaded and checked.
pub struct Client {
    http: reqwest::Client,
    cfg: Sipil,
    rt: tokio::runtime::Runtime,
}

fn cfg_err(key: &str, why: impl std::fmt::Display) -> Error {
    Error::Config(format!("key `{key}`: {why}"))
}

fn required<'a>(key: &str, v: &'a Option<std::path::PathBuf>) -> Result<&'a Path, Error> {
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

/// One DER TLV: (tag, content, rest).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&l, mut b) = b.split_first()?;
    let len = if l < 0x80 {
        l as usize
    } else {
        let n = (l & 0x7f) as usize;
        if n == 0 || n > 4 || b.len() < n {
            return None;
        }
        let v = b[..n].iter().fold(0usize, |a, &x| (a << 8) | x as usize);
        b = &b[n..];
        v
    };
    (b.len() >= len).then(|| (tag, &b[..len], &b[len..]))
}

fn der_time(tag: u8, v: &[u8]) -> Option<Timestamp> {
    let s = std::str::from_utf8(v).ok()?.strip_suffix('Z')?;
    let full = match (tag, s.len()) {
        (0x17, 12) => {
            let yy: i32 = s[..2].parse().ok()?;
            format!("{}{s}", if yy >= 50 { "19" } else { "20" })
        }
        (0x18, 14) => s.to_string(),
        _ => return None,
    };
    if !full.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| full[r].parse::<i16>().ok();
    let dt = jiff::civil::DateTime::new(
        n(0..4)?,
        n(4..6)? as i8,
        n(6..8)? as i8,
        n(8..10)? as i8,
        n(10..12)? as i8,
        n(12..14)? as i8,
        0,
    )
    .ok()?;
    dt.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// (notBefore, notAfter) of an X.509 certificate.
pub fn validity(cert: &[u8]) -> Option<(Timestamp, Timestamp)> {
    let (_, c, _) = tlv(cert)?;
    let (_, mut tbs, _) = tlv(c)?;
    let (tag, _, rest) = tlv(tbs)?;
    if tag == 0xa0 {
        tbs = rest; // explicit version
    }
    let (_, _, rest) = tlv(tbs)?; // serial
    let (_, _, rest) = tlv(rest)?; // signature algorithm
    let (_, _, rest) = tlv(rest)?; // issuer
    let (_, validity, _) = tlv(rest)?;
    let (t1, v1, rest) = tlv(validity)?;
    let (t2, v2, _) = tlv(rest)?;
    Some((der_time(t1, v1)?, der_time(t2, v2)?))
}

/// Why a call failed, and whether trying again may help.
struct CallError {
    message: String,
    transient: bool,
}

/// Describe a reqwest error for a sysadmin: TLS problems named as such.
fn describe(e: &reqwest::Error, s: &Sipil, url: &str) -> CallError {
    let mut chain = vec![];
    let mut tls: Option<String> = None;
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = src {
        chain.push(err.to_string());
        let rustls_err = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|i| i.downcast_ref::<rustls::Error>())
        });
        if let Some(r) = rustls_err {
            tls.get_or_insert_with(|| tls_hint(r, s));
        }
        src = err.source();
    }
    chain.dedup();
    let detail = chain.join(": ");
    if tls.is_none() {
        tls = tls_hint_from_text(&detail, s);
    }
    if let Some(hint) = tls {
        return CallError {
            message: format!("{url}: TLS handshake failed: {hint} ({detail})"),
            transient: false,
        };
    }
    let lower = detail.to_ascii_lowercase();
    if e.is_timeout() {
        return CallError {
            message: format!(
                "{url}: timed out (sipil.timeout_secs / connect_timeout_secs): {detail}"
            ),
            transient: true,
        };
    }
    let closed = lower.contains("reset")
        || lower.contains("closed")
        || lower.contains("broken pipe")
        || lower.contains("close_notify")
        || lower.contains("unexpected eof");
    let hint = if closed {
        " (if the server always closes the connection right after the TLS handshake, it is refusing our client certificate: check that sipil.client_cert is the certificate declared in the ANS white list)"
    } else {
        ""
    };
    CallError {
        message: format!("{url}: {detail}{hint}"),
        transient: true,
    }
}

/// When the rustls error is not reachable through `source()` (boxed by a
/// layer), recognise its text.
fn tls_hint_from_text(detail: &str, s: &Sipil) -> Option<String> {
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

fn tls_hint(e: &rustls::Error, s: &Sipil) -> String {
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

impl Client {
    /// Load and check the TLS identity, build the HTTP client.
    ///
    /// # Errors
    /// See [`tls_config`].
    pub fn new(s: &Sipil) -> Result<Client, Error> {
        let tls = tls_config(s, Timestamp::now())?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(Duration::from_secs(s.timeout_secs))
            .connect_timeout(Duration::from_secs(s.connect_timeout_secs))
            .user_agent(concat!("mss-export/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .build()
            .map_err(|e| Error::Other(format!("HTTP client: {e}")))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Other(format!("runtime: {e}")))?;
        Ok(Client {
            http,
            cfg: s.clone(),
            rt,
        })
    }

    /// Send a request, retrying network errors, timeouts and HTTP 5xx up to
    /// `sipil.max_attempts` times with a doubling delay.
    fn call(
        &self,
        what: &str,
        url: &str,
        make: &dyn Fn() -> Result<reqwest::RequestBuilder, Error>,
    ) -> Result<Answer, Error> {
        let mut delay = Duration::from_millis(self.cfg.retry_delay_ms);
        let max = self.cfg.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            let req = make()?;
            let res = self.rt.block_on(async {
                let r = req.send().await?;
                let status = r.status().as_u16();
                let content_type = r
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let body = r.bytes().await?.to_vec();
                Ok::<_, reqwest::Error>(Answer {
                    status,
                    content_type,
                    body,
                })
            });
            let failure = match res {
                Ok(a) if a.status >= 500 => CallError {
                    message: format!("{url}: HTTP {}: {}", a.status, excerpt(&a.text())),
                    transient: true,
                },
                Ok(a) => return Ok(a),
                Err(e) => describe(&e, &self.cfg, url),
            };
            if !failure.transient || attempt >= max {
                let tries = if attempt > 1 {
                    format!(" (after {attempt} attempts)")
                } else {
                    String::new()
                };
                return Err(Error::Remote(format!("{what}: {}{tries}", failure.message)));
            }
            eprintln!(
                "warning: {what}: attempt {attempt}/{max} failed, retrying in {:.1}s: {}",
                delay.as_secs_f64(),
                failure.message
            );
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(300));
            attempt += 1;
        }
    }

    /// Deposit one archive. Returns the HTTP answer whatever its status
    /// (4xx included, for the record); network failures are errors.
    pub fn post_archive(&self, name: &str, bytes: &[u8]) -> Result<Answer, Error> {
        let s = &self.cfg;
        let method = if s.post_method == "PUT" {
            reqwest::Method::PUT
        } else {
            reqwest::Method::POST
        };
        let make = || {
            let part = reqwest::multipart::Part::bytes(bytes.to_vec())
                .file_name(name.to_string())
                .mime_str("application/zip")
                .map_err(|e| Error::Other(format!("multipart: {e}")))?;
            let mut form = reqwest::multipart::Form::new().part(s.file_field.clone(), part);
            if let Some(m) = &s.report_email {
                form = form.text(s.email_field.clone(), m.clone());
            }
            Ok(self
                .http
                .request(method.clone(), &s.post_url)
                .multipart(form))
        };
        self.call(&format!("deposit of {name}"), &s.post_url, &make)
    }

    /// Ask for the report of a deposit.
    pub fn get_report(&self, deposit_id: &str) -> Result<Answer, Error> {
        let s = &self.cfg;
        let url = reqwest::Url::parse(&s.report_url)
            .map_err(|e| cfg_err("sipil.report_url", format!("{:?}: {e}", s.report_url)))?;
        let make = || {
            if s.report_method == "POST" {
                let mut enc = reqwest::Url::parse("https://x.invalid/").expect("static URL");
                enc.query_pairs_mut()
                    .append_pair(&s.report_id_param, deposit_id);
                Ok(self
                    .http
                    .post(url.clone())
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(enc.query().unwrap_or_default().to_string()))
            } else {
                let mut u = url.clone();
                u.query_pairs_mut()
                    .append_pair(&s.report_id_param, deposit_id);
                Ok(self.http.get(u))
            }
        };
        self.call(
            &format!("report of deposit {deposit_id}"),
            &s.report_url,
            &make,
        )
    }
}

/// The deposit id in a deposit response, per `sipil.deposit_id_regex`.
pub fn deposit_id(s: &Sipil, body: &str) -> Option<String> {
    let id = match s.deposit_id_regex() {
        Some(re) => re.captures(body)?.get(1)?.as_str().trim().to_string(),
        None => body.trim().to_string(),
    };
    (!id.is_empty() && id.len() <= 1024).then_some(id)
}

/// Classify a report: rejected, then pending, then accepted patterns; no
/// match at all counts as pending. Returns the verdict and the matched text.
pub fn classify(s: &Sipil, report: &str) -> (Verdict, Option<String>) {
    let (rejected, pending, accepted) = s.report_patterns();
    for (re, v) in [
        (rejected, Verdict::Rejected),
        (pending, Verdict::Pending),
        (accepted, Verdict::Accepted),
    ] {
        if let Some(m) = re.find(report) {
            return (v, Some(m.as_str().to_string()));
        }
    }
    (Verdict::Pending, None)
}

/// A short one-line excerpt of a response body for error messages.
pub fn excerpt(s: &str) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 200 {
        format!("{}…", one.chars().take(200).collect::<String>())
    } else if one.is_empty() {
        "(empty body)".into()
    } else {
        one
    }
}

/// A report made readable: pretty JSON, XML/HTML without tags, or the text.
pub fn readable(raw: &str) -> String {
    let t = raw.trim();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(t) {
        if v.is_object() || v.is_array() {
            return serde_json::to_string_pretty(&v).unwrap_or_else(|_| t.to_string());
        }
    }
    if t.starts_with('<') {
        let mut out = String::new();
        let mut in_tag = false;
        for c in t.chars() {
            match c {
                '<' => {
                    in_tag = true;
                    out.push('\n');
                }
                '>' => in_tag = false,
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        return out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
    }
    t.to_string()
}

/// SHA-256 of bytes, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sipil(extra: &str) -> Sipil {
        let text = format!(
            "[operator]\ndomains = [\"a.fr\"]\n[sipil]\npost_url = \"https://x.fr/p\"\nreport_url = \"https://x.fr/r\"\n{extra}"
        );
        mss_shared::config::Config::parse(&text)
            .unwrap()
            .sipil
            .unwrap()
    }

    #[test]
    fn default_patterns_classify_plausible_reports() {
        let s = sipil("");
        for (text, want) in [
            ("Dépôt accepté", Verdict::Accepted),
            (
                "Fichier intégré avec succès, 0 erreur bloquante",
                Verdict::Accepted,
            ),
            ("STATUS=OK", Verdict::Accepted),
            ("Traitement en cours", Verdict::Pending),
            ("validation en attente", Verdict::Pending),
            ("Dépôt rejeté : 2 erreurs bloquantes", Verdict::Rejected),
            ("3 blocking errors found", Verdict::Rejected),
            ("STATUS=KO", Verdict::Rejected),
            ("", Verdict::Pending),
        ] {
            assert_eq!(classify(&s, text).0, want, "{text}");
        }
    }

    #[test]
    fn deposit_id_default_and_regex() {
        assert_eq!(
            deposit_id(&sipil(""), "  DEP-42\n").as_deref(),
            Some("DEP-42")
        );
        assert_eq!(deposit_id(&sipil(""), " \n"), None);
        let s = sipil("deposit_id_regex = '<id>(\\w+)</id>'\n");
        assert_eq!(deposit_id(&s, "<r><id>A1</id></r>").as_deref(), Some("A1"));
        assert_eq!(deposit_id(&s, "<r>error</r>"), None);
    }

    #[test]
    fn der_validity_of_garbage_is_none() {
        assert_eq!(validity(b""), None);
        assert_eq!(validity(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(validity(&[0x30, 0x03, 0x30, 0x01, 0x02]), None);
    }

    #[test]
    fn readable_reports() {
        assert_eq!(readable("<r><s>OK</s>\n<m>fine</m></r>"), "OK\nfine");
        assert!(readable("{\"a\":1}").contains("\"a\": 1"));
    }
}
