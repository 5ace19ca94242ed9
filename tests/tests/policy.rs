//! The liste blanche policy through real Postfix, with the milter and with
//! the proxy, in enforce and report modes.

use std::path::Path;
use std::time::Duration;

use mss_shared::config::Config;
use mss_shared::month::Month;
use mss_shared::store::capture::CaptureStore;
use mss_tests::postfix::{Postfix, PostfixBuilder};
use mss_tests::sidecar::{config_text, milter_config_text, row_triples, RunningProxy, DOMAIN};
use mss_tests::smtp::RawClient;

const LISTED: &str = "ch-listed.mssante.fr";
const OUT: &str = "gmail.example";

fn liste(dir: &Path) -> String {
    let p = dir.join("listeblanche.xml");
    std::fs::write(
        &p,
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListeBlancheMSSante xmlns=\"https://listeblanche.mssante.fr/schema\"><DateDeGeneration>2026-11-01T00:00:00Z</DateDeGeneration><ListeDomaines><Domaine><Nom>{LISTED}</Nom><DNCertificatOperateur>CN=op</DNCertificatOperateur></Domaine><Domaine><Nom>other.mssante.fr</Nom></Domaine></ListeDomaines></ListeBlancheMSSante>"),
    )
    .unwrap();
    p.display().to_string()
}

fn policy(dir: &Path, mode: &str) -> String {
    format!(
        "\n[policy]\nliste_blanche = \"{}\"\nmode = \"{mode}\"\n",
        liste(dir)
    )
}

fn outside(dir: &Path) -> Vec<((String, String), u64)> {
    let sec = tempfile::tempdir().unwrap();
    let s = CaptureStore::open_secondary(&dir.join("capture"), sec.path()).unwrap();
    let now = Month::current(&jiff::tz::TimeZone::get("Europe/Paris").unwrap());
    let mut v: Vec<_> = s.outside(now).unwrap().into_iter().collect();
    v.extend(s.outside(now.prev()).unwrap());
    v
}

fn wait<T>(mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..100 {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timeout")
}

/// One message from an operator BAL to a listed and an unlisted recipient;
/// the replies to the two RCPTs and to the final dot.
fn send(addr: &str) -> Vec<String> {
    let (mut c, _) = RawClient::connect(addr);
    let mut r = c.exchange(
        format!("EHLO c\r\nMAIL FROM:<dr.a@{DOMAIN}>\r\nRCPT TO:<ok@{LISTED}>\r\nRCPT TO:<someone@{OUT}>\r\nRCPT TO:<colleague@{DOMAIN}>\r\nDATA\r\n").as_bytes(),
        6,
    );
    r.extend(c.exchange(b"From: <dr.a@ch-test.mssante.fr>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0100\r\nMessage-ID: <p@x>\r\nSubject: p\r\n\r\nhi\r\n.\r\nQUIT\r\n", 2));
    r
}

fn milter_postfix(port: u16) -> Postfix {
    PostfixBuilder::new()
        .main_cf(&format!("smtpd_milters = inet:127.0.0.1:{port}"))
        .main_cf("milter_default_action = accept")
        .start()
        .expect("postfix")
}

#[test]
fn milter_enforce_refuses_the_unlisted_recipient_and_captures_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let port = Postfix::free_port();
    let text = milter_config_text(dir.path(), &format!("127.0.0.1:{port}"))
        + &policy(dir.path(), "enforce");
    let side = RunningProxy::start_config(dir.path(), Config::parse(&text).unwrap());
    let pf = milter_postfix(port);
    let r = send(&pf.addr());
    assert_eq!(
        RawClient::codes(&r),
        vec![250, 250, 250, 550, 250, 354, 250, 221],
        "{r:?}"
    );
    assert!(
        r[3].contains("5.7.1") && r[3].contains("Espace de Confiance"),
        "{}",
        r[3]
    );
    let rows = wait(|| Some(row_triples(dir.path())).filter(|v| v.len() == 2));
    let a = format!("dr.a@{DOMAIN}");
    assert_eq!(
        rows.iter()
            .map(|(s, r, _)| (s.as_str(), r.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (a.as_str(), format!("colleague@{DOMAIN}").as_str()),
            (a.as_str(), format!("ok@{LISTED}").as_str())
        ]
    );
    let o = wait(|| Some(outside(dir.path())).filter(|v| !v.is_empty()));
    assert_eq!(o, vec![((DOMAIN.to_string(), OUT.to_string()), 1)]);
    assert_eq!(side.metrics.outside.get("refused"), 1);
}

#[test]
fn milter_report_lets_both_through_and_counts_one_outside() {
    let dir = tempfile::tempdir().unwrap();
    let port = Postfix::free_port();
    let text = milter_config_text(dir.path(), &format!("127.0.0.1:{port}"))
        + &policy(dir.path(), "report");
    let side = RunningProxy::start_config(dir.path(), Config::parse(&text).unwrap());
    let pf = milter_postfix(port);
    let r = send(&pf.addr());
    assert_eq!(
        RawClient::codes(&r),
        vec![250, 250, 250, 250, 250, 354, 250, 221],
        "{r:?}"
    );
    let rows = wait(|| Some(row_triples(dir.path())).filter(|v| v.len() == 3));
    assert_eq!(rows.len(), 3);
    let o = wait(|| Some(outside(dir.path())).filter(|v| !v.is_empty()));
    assert_eq!(o, vec![((DOMAIN.to_string(), OUT.to_string()), 1)]);
    assert_eq!(side.metrics.outside.get("reported"), 1);
}

#[test]
fn proxy_enforce_answers_550_itself_and_report_forwards() {
    for (mode, codes, nrows) in [
        ("enforce", vec![250, 250, 250, 550, 250, 354, 250, 221], 2),
        ("report", vec![250, 250, 250, 250, 250, 354, 250, 221], 3),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let pf = PostfixBuilder::new().start().expect("postfix");
        let text =
            config_text(dir.path(), "127.0.0.1:0", &pf.addr(), "") + &policy(dir.path(), mode);
        let side = RunningProxy::start_config(dir.path(), Config::parse(&text).unwrap());
        let r = send(&side.addr());
        assert_eq!(RawClient::codes(&r), codes, "{mode}: {r:?}");
        let rows = wait(|| Some(row_triples(dir.path())).filter(|v| v.len() == nrows));
        assert!(
            rows.iter()
                .all(|(_, r, _)| !(mode == "enforce" && r.ends_with(OUT))),
            "{rows:?}"
        );
        let o = wait(|| Some(outside(dir.path())).filter(|v| !v.is_empty()));
        assert_eq!(
            o,
            vec![((DOMAIN.to_string(), OUT.to_string()), 1)],
            "{mode}"
        );
        if mode == "enforce" {
            // The upstream never saw the refused RCPT.
            assert!(!pf.log().contains(OUT), "{}", pf.log());
        }
    }
}

#[test]
fn a_missing_or_empty_list_is_a_clear_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let base = milter_config_text(dir.path(), "127.0.0.1:1");
    let e = Config::parse(&format!(
        "{base}\n[policy]\nliste_blanche = \"/nonexistent.xml\"\n"
    ))
    .unwrap_err();
    assert!(e.to_string().contains("`policy.liste_blanche`"), "{e}");
    let junk = dir.path().join("junk.xml");
    std::fs::write(&junk, "<html>502</html>").unwrap();
    let cfg = Config::parse(&format!(
        "{base}\n[policy]\nliste_blanche = \"{}\"\n",
        junk.display()
    ))
    .unwrap();
    let e = mss_sidecar::policy::Policy::load(&cfg).unwrap_err();
    assert!(e.to_string().contains("no <Domaine><Nom> entry"), "{e}");
    let e = Config::parse(&format!(
        "{base}\n[policy]\nliste_blanche = \"{}\"\nmode = \"block\"\n",
        junk.display()
    ))
    .unwrap_err();
    assert!(
        e.to_string().contains("expected `enforce` or `report`"),
        "{e}"
    );
}

#[test]
fn a_garbage_or_implausible_reload_keeps_the_previous_list() {
    let dir = tempfile::tempdir().unwrap();
    let real = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/listeblanchemssante-2025-03-13.xml");
    let path = dir.path().join("lb.xml");
    std::fs::copy(&real, &path).unwrap();
    let base = milter_config_text(dir.path(), "127.0.0.1:1");
    let cfg = Config::parse(&format!(
        "{base}\n[policy]\nliste_blanche = \"{}\"\nmode = \"enforce\"\n",
        path.display()
    ))
    .unwrap();
    let p = mss_sidecar::policy::Policy::load(&cfg).unwrap().unwrap();
    assert_eq!(p.list().len(), 5002);
    let from = format!("dr.a@{DOMAIN}");
    assert!(p.outside(&from, "x@adsea29.mssante.fr").is_none());
    assert_eq!(
        p.outside(&from, "x@gmail.com"),
        Some((DOMAIN.to_string(), "gmail.com".to_string()))
    );
    assert!(
        p.outside("x@ext.fr", "y@gmail.com").is_none(),
        "senders outside the operator are not judged"
    );
    std::fs::write(&path, "<html>502 Bad Gateway</html>").unwrap();
    assert!(p.reload().is_err());
    let data = std::fs::read(&real).unwrap();
    std::fs::write(&path, &data[..data.len() / 3]).unwrap();
    let e = p.reload().unwrap_err();
    assert!(e.contains("kept the previous list"), "{e}");
    assert_eq!(p.list().len(), 5002);
    assert!(p.outside(&from, "x@adsea29.mssante.fr").is_none());
    std::fs::copy(&real, &path).unwrap();
    assert_eq!(p.reload(), Ok(5002));
}

#[test]
fn mss_admin_listeblanche_check_and_stats_on_the_real_file() {
    let dir = tempfile::tempdir().unwrap();
    let real = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/listeblanchemssante-2025-03-13.xml");
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        milter_config_text(dir.path(), "127.0.0.1:1")
            + &format!(
                "\n[policy]\nliste_blanche = \"{}\"\nallow = [\"Partner.example\"]\n",
                real.display()
            ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let o = std::process::Command::new(mss_tests::sidecar::bin("mss-admin"))
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let (code, out) = run(&[
        "listeblanche",
        "check",
        "a@ADSEA29.mssante.fr",
        &format!("b@{DOMAIN}"),
        "c@partner.example",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        out,
        format!("a@ADSEA29.mssante.fr: inside (liste blanche)\nb@{DOMAIN}: inside (operator domain)\nc@partner.example: inside (policy.allow)\n")
    );
    let (code, out) = run(&["listeblanche", "check", "d@gmail.com"]);
    assert_eq!(
        (code, out.as_str()),
        (Some(1), "d@gmail.com: OUTSIDE the Espace de Confiance\n")
    );
    let (code, out) = run(&["listeblanche", "stats"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("domains       5002 distinct (6554 entries)"),
        "{out}"
    );
    assert!(out.contains("operators     392"), "{out}");
    assert!(out.contains("generated     2025-03-13T14:54:10Z"), "{out}");
    assert!(out.contains("mode          report"), "{out}");
}

/// A local HTTPS server (certificate from a test CA, no client certificate
/// asked) answering every GET with the current `body`, or `status` when set.
struct ListServer {
    addr: std::net::SocketAddr,
    body: std::sync::Arc<std::sync::Mutex<(u16, Vec<u8>)>>,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl ListServer {
    fn start(leaf: &mss_tests::sipil::Leaf) -> ListServer {
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der.clone()));
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.cert_der.clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let body = std::sync::Arc::new(std::sync::Mutex::new((200u16, Vec::new())));
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (b, h) = (body.clone(), hits.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(l).unwrap();
                loop {
                    let Ok((s, _)) = l.accept().await else { continue };
                    let (acc, b, h) = (acceptor.clone(), b.clone(), h.clone());
                    tokio::spawn(async move {
                        let Ok(mut tls) = acc.accept(s).await else { return };
                        let mut req = Vec::new();
                        let mut buf = [0u8; 4096];
                        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                            match tls.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => req.extend_from_slice(&buf[..n]),
                            }
                        }
                        h.fetch_add(1, Ordering::SeqCst);
                        let (status, body) = b.lock().unwrap().clone();
                        let head = format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = tls.write_all(head.as_bytes()).await;
                        let _ = tls.write_all(&body).await;
                        let _ = tls.shutdown().await;
                    });
                }
            });
        });
        ListServer { addr, body, hits }
    }

    fn serve(&self, status: u16, body: &[u8]) {
        *self.body.lock().unwrap() = (status, body.to_vec());
    }

    /// Wait until `n` more requests were answered.
    fn wait_hits(&self, n: usize) {
        use std::sync::atomic::Ordering;
        let start = self.hits.load(Ordering::SeqCst);
        wait(|| (self.hits.load(Ordering::SeqCst) >= start + n).then_some(()));
    }
}

#[test]
fn refresh_url_replaces_the_list_and_a_bad_refresh_keeps_the_good_copy() {
    let dir = tempfile::tempdir().unwrap();
    let ca = mss_tests::sipil::Ca::new("Test list CA");
    let rogue = mss_tests::sipil::Ca::new("Rogue CA");
    let server = ListServer::start(&ca.server());
    let real = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/data/listeblanchemssante-2025-03-13.xml"),
    )
    .unwrap();
    let start = |name: &str, ca_pem: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let list = liste(&d);
        std::fs::write(d.join("ca.pem"), ca_pem).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = format!(
            "{}\n[policy]\nliste_blanche = \"{list}\"\nrefresh_url = \"https://127.0.0.1:{}/listeblanchemssante.xml\"\nca_file = \"{}\"\nrefresh_interval_secs = 1\n",
            milter_config_text(&d, &format!("127.0.0.1:{port}")),
            server.addr.port(),
            d.join("ca.pem").display()
        );
        std::fs::write(d.join("config.toml"), cfg).unwrap();
        let child = mss_tests::guard::Guard(
            std::process::Command::new(mss_tests::sidecar::bin("mss-sidecar"))
                .arg("--config")
                .arg(d.join("config.toml"))
                .env("MSS_LOG", "info")
                .stderr(std::fs::File::create(d.join("log")).unwrap())
                .spawn()
                .unwrap(),
        );
        (d, list, child)
    };
    let log = |d: &Path| std::fs::read_to_string(d.join("log")).unwrap_or_default();

    // A good copy (the real list) replaces the 2-domain one at start.
    server.serve(200, &real);
    let (d, list, child) = start("good", &ca.pem());
    wait(|| (std::fs::read(&list).ok()? == real).then_some(()));
    wait(|| log(&d).contains("liste blanche refreshed").then_some(()));

    // Garbage, an HTTP error, a copy that lost two thirds of the domains:
    // each refused, logged, and the good copy stays on disk.
    for (status, body, why) in [
        (
            200u16,
            b"<html>502 Bad Gateway</html>".to_vec(),
            "refresh refused",
        ),
        (503, real.clone(), "HTTP 503"),
        (
            200,
            real[..real.len() / 3].to_vec(),
            "domains instead of 5002",
        ),
    ] {
        server.serve(status, &body);
        server.wait_hits(2);
        wait(|| log(&d).contains(why).then_some(()));
        assert_eq!(std::fs::read(&list).unwrap(), real, "after {why}");
    }
    assert!(!d.join("listeblanche.xml.part").exists());
    drop(child);

    // A server whose certificate is not from ca_file: refused, file untouched.
    server.serve(200, &real);
    let (d2, list2, _child2) = start("rogue", &rogue.pem());
    let before = std::fs::read(&list2).unwrap();
    wait(|| log(&d2).contains("refresh refused").then_some(()));
    assert!(
        log(&d2).to_lowercase().contains("certificate"),
        "{}",
        log(&d2)
    );
    assert_eq!(std::fs::read(&list2).unwrap(), before);
}
