//! A faithful local SIPIL: HTTPS that **requires** a client certificate
//! signed by the test CA (rustls `WebPkiClientVerifier`), a multipart
//! `postFile` that records every part, a `getReport` with scripted answers.
//! Every certificate is generated here with rcgen.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub const POST_PATH: &str = "/sipil/postFile";
pub const REPORT_PATH: &str = "/sipil/getReport";

/// A certificate and its key, in PEM and DER.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
}

/// A test CA able to sign leaves.
pub struct Ca {
    pub issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Ca {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    fn leaf(&self, cn: &str, sans: Vec<String>, eku: ExtendedKeyUsagePurpose) -> Leaf {
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![eku];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    /// A server certificate for 127.0.0.1 and localhost.
    pub fn server(&self) -> Leaf {
        self.leaf(
            "sipil.test",
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// An operator (client) certificate.
    pub fn client(&self, cn: &str) -> Leaf {
        self.leaf(cn, vec![], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// The whole test PKI: the ANS-like CA (server and operator certificates)
/// and a rogue CA (a rogue operator certificate and a rogue server).
pub struct Pki {
    pub ca: Ca,
    pub server: Leaf,
    pub client: Leaf,
    pub rogue_ca: Ca,
    pub rogue_client: Leaf,
    pub rogue_server: Leaf,
}

impl Pki {
    pub fn new() -> Pki {
        let ca = Ca::new("Test IGC-Santé");
        let rogue_ca = Ca::new("Rogue CA");
        Pki {
            server: ca.server(),
            client: ca.client("operateur.test"),
            rogue_client: rogue_ca.client("operateur.test"),
            rogue_server: rogue_ca.server(),
            ca,
            rogue_ca,
        }
    }

    /// Write `ca.pem`, `client.crt`/`client.key` (0600), `rogue.crt`/`rogue.key`.
    pub fn write(&self, dir: &Path) -> PkiFiles {
        use std::os::unix::fs::PermissionsExt;
        let w = |name: &str, text: &str, mode: u32| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p
        };
        PkiFiles {
            ca: w("ca.pem", &self.ca.pem(), 0o644),
            client_cert: w("client.crt", &self.client.cert_pem, 0o644),
            client_key: w("client.key", &self.client.key_pem, 0o600),
            rogue_cert: w("rogue.crt", &self.rogue_client.cert_pem, 0o644),
            rogue_key: w("rogue.key", &self.rogue_client.key_pem, 0o600),
        }
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

pub struct PkiFiles {
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
}

/// One multipart part received.
#[derive(Debug, Clone)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub data: Vec<u8>,
}

/// One request received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub parts: Vec<Part>,
}

impl Received {
    pub fn part(&self, name: &str) -> Option<&Part> {
        self.parts.iter().find(|p| p.name == name)
    }
}

#[derive(Default)]
struct Inner {
    posts: Vec<Received>,
    reports: Vec<Received>,
    post_script: VecDeque<(u16, String)>,
    report_script: VecDeque<(u16, String)>,
    issued: Vec<String>,
    handshake_errors: Vec<String>,
}

/// The running server (stopped on drop).
pub struct SipilServer {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The default report: accepted.
pub const ACCEPTED_REPORT: &str =
    "<rapport><statut>Dépôt accepté</statut><erreurs>0</erreurs></rapport>";

impl SipilServer {
    /// Serve with `server` as certificate, requiring clients signed by `client_ca`.
    pub fn start(server: &Leaf, client_ca: CertificateDer<'static>) -> SipilServer {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(client_ca).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.key_der.clone()));
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![server.cert_der.clone()], key)
            .unwrap();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));

        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let inner = Arc::new(Mutex::new(Inner::default()));
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let shared = inner.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                loop {
                    let (tcp, _) = tokio::select! {
                        r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                        _ = &mut rx => break,
                    };
                    let acceptor = acceptor.clone();
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        let tls = match acceptor.accept(tcp).await {
                            Ok(t) => t,
                            Err(e) => {
                                shared.lock().unwrap().handshake_errors.push(e.to_string());
                                return;
                            }
                        };
                        let svc = hyper::service::service_fn(move |req| {
                            let shared = shared.clone();
                            async move { Ok::<_, hyper::Error>(handle(req, shared).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                            .await;
                    });
                }
            });
        });
        SipilServer {
            addr,
            inner,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn post_url(&self) -> String {
        format!("https://{}{POST_PATH}", self.addr)
    }

    pub fn report_url(&self) -> String {
        format!("https://{}{REPORT_PATH}", self.addr)
    }

    /// Answers for the next deposits (then: 200 with a fresh deposit id).
    pub fn script_posts(&self, answers: &[(u16, &str)]) {
        let mut i = self.inner.lock().unwrap();
        i.post_script
            .extend(answers.iter().map(|(s, b)| (*s, b.to_string())));
    }

    /// Answers for the next report calls (then: 200 [`ACCEPTED_REPORT`]).
    pub fn script_reports(&self, answers: &[(u16, &str)]) {
        let mut i = self.inner.lock().unwrap();
        i.report_script
            .extend(answers.iter().map(|(s, b)| (*s, b.to_string())));
    }

    pub fn posts(&self) -> Vec<Received> {
        self.inner.lock().unwrap().posts.clone()
    }

    pub fn reports(&self) -> Vec<Received> {
        self.inner.lock().unwrap().reports.clone()
    }

    /// Deposit ids handed out, in order.
    pub fn issued(&self) -> Vec<String> {
        self.inner.lock().unwrap().issued.clone()
    }

    pub fn handshake_errors(&self) -> Vec<String> {
        self.inner.lock().unwrap().handshake_errors.clone()
    }
}

impl Drop for SipilServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    shared: Arc<Mutex<Inner>>,
) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let ct = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => vec![],
    };
    let mut inner = shared.lock().unwrap();
    let (status, text) = match path.as_str() {
        POST_PATH => {
            inner.posts.push(Received {
                method,
                path,
                query,
                parts: parse_multipart(&ct, &body),
            });
            match inner.post_script.pop_front() {
                Some(a) => a,
                None => {
                    let id = format!("DEP-{:04}", inner.issued.len() + 1);
                    inner.issued.push(id.clone());
                    (200, format!("{id}\n"))
                }
            }
        }
        REPORT_PATH => {
            inner.reports.push(Received {
                method,
                path,
                query,
                parts: vec![],
            });
            inner
                .report_script
                .pop_front()
                .unwrap_or((200, ACCEPTED_REPORT.to_string()))
        }
        _ => (404, "not found".into()),
    };
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(text)))
        .unwrap()
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn disposition_param(headers: &str, key: &str) -> Option<String> {
    let line = headers
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))?;
    line.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
    })
}

/// A small multipart/form-data parser (binary-safe).
pub fn parse_multipart(content_type: &str, body: &[u8]) -> Vec<Part> {
    let Some(boundary) = content_type.split(';').find_map(|p| {
        p.trim()
            .strip_prefix("boundary=")
            .map(|b| b.trim_matches('"').to_string())
    }) else {
        return vec![];
    };
    let delim = format!("--{boundary}").into_bytes();
    let mut parts = vec![];
    let Some(mut pos) = find(body, &delim, 0) else {
        return parts;
    };
    loop {
        let start = pos + delim.len();
        if body[start..].starts_with(b"--") {
            break;
        }
        let start = start + 2; // CRLF after the delimiter
        let Some(next) = find(body, &delim, start) else {
            break;
        };
        let seg = &body[start.min(next)..next];
        if let Some(h) = find(seg, b"\r\n\r\n", 0) {
            let headers = String::from_utf8_lossy(&seg[..h]).into_owned();
            let mut data = seg[h + 4..].to_vec();
            if data.ends_with(b"\r\n") {
                data.truncate(data.len() - 2);
            }
            parts.push(Part {
                name: disposition_param(&headers, "name").unwrap_or_default(),
                filename: disposition_param(&headers, "filename"),
                data,
            });
        }
        pos = next;
    }
    parts
}
