//! Run the sidecar in-process through the daemon's own `serve` (so a test
//! can swap the store), or the real binaries, and read back what was captured.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mss_shared::config::Config;
use mss_shared::month::Month;
use mss_shared::store::capture::{CaptureStore, Classifier, OutRow};
use mss_sidecar::capture::{Sink, StoreSink};
use mss_sidecar::daemon;
use mss_sidecar::metrics::Metrics;
use mss_sidecar::milter::MilterListener;

use crate::config::TestConfig;

/// Operator domain used by every test.
pub const DOMAIN: &str = "ch-test.mssante.fr";

/// Tests run as root and their stores live in root's temporary directories:
/// the daemon keeps root (instead of dropping to `mss`).
pub const STAY_ROOT: &str = "[service]\nuser = \"root\"\nmail_log_marks = false\n\n";

/// A configuration text for a proxy in front of `upstream` (`extra_proxy`:
/// more `[proxy]` keys), from [`TestConfig`].
pub fn config_text(dir: &Path, listen: &str, upstream: &str, extra_proxy: &str) -> String {
    TestConfig::new(dir)
        .proxy(listen, upstream)
        .text_with("proxy", extra_proxy)
}

/// A configuration text for the milter front end only, from [`TestConfig`].
pub fn milter_config_text(dir: &Path, listen: &str) -> String {
    TestConfig::new(dir).milter(listen).text()
}

/// The sidecar's front ends (proxy and/or milter, per the config) running
/// in-process on their own runtime thread.
pub struct RunningProxy {
    /// The proxy's address (unspecified when only the milter runs).
    pub addr: SocketAddr,
    /// The milter's address, when `[milter]` is configured.
    pub milter: Option<SocketAddr>,
    pub dir: PathBuf,
    pub metrics: Arc<Metrics>,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningProxy {
    /// Start with the real RocksDB store under `dir`.
    pub fn start(dir: &Path, upstream: &str, extra_proxy: &str) -> RunningProxy {
        let cfg = Config::parse(&config_text(dir, "127.0.0.1:0", upstream, extra_proxy))
            .expect("test config");
        Self::start_config(dir, cfg)
    }

    /// Start the milter only (listening on `listen`), with the real store.
    pub fn start_milter(dir: &Path, listen: &str) -> RunningProxy {
        let cfg = Config::parse(&milter_config_text(dir, listen)).expect("test config");
        Self::start_config(dir, cfg)
    }

    /// Start what `cfg` configures, with the real RocksDB store.
    pub fn start_config(dir: &Path, cfg: Config) -> RunningProxy {
        let store = CaptureStore::open(&cfg.store.capture_path).expect("open store");
        let sink = Arc::new(StoreSink::new(store, Classifier::from_config(&cfg)));
        Self::start_with_sink(dir, cfg, sink)
    }

    /// Start with any sink (failing stores in tests): the daemon's own
    /// [`daemon::serve`] on listeners bound by [`daemon::bind_all`] (the
    /// proxy on `127.0.0.1:0`), stopped by [`RunningProxy::stop`].
    pub fn start_with_sink(dir: &Path, mut cfg: Config, sink: Arc<dyn Sink>) -> RunningProxy {
        if let Some(p) = cfg.proxy.as_mut() {
            p.listen = "127.0.0.1:0".into();
        }
        let metrics = Arc::new(Metrics::for_config(&cfg));
        let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let m = metrics.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listeners = daemon::bind_all(&cfg).await.expect("bind");
                let proxy_addr: SocketAddr = match &listeners.proxy {
                    Some(l) => l.local_addr().unwrap(),
                    None => "0.0.0.0:0".parse().unwrap(),
                };
                let milter_addr = match &listeners.milter {
                    Some(MilterListener::Tcp(l)) => Some(l.local_addr().unwrap()),
                    _ => None,
                };
                addr_tx.send((proxy_addr, milter_addr)).unwrap();
                let shutdown = async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                };
                daemon::serve(listeners, cfg, sink, m, shutdown)
                    .await
                    .expect("daemon");
            });
        });
        let (addr, milter) = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("sidecar started");
        RunningProxy {
            addr,
            milter,
            dir: dir.to_path_buf(),
            metrics,
            stop,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Stop (SIGTERM path) and wait for the runtime to end.
    pub fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every Echanges row of the current month, read through a secondary instance
/// (as mss-admin does), waiting a little for them to appear.
pub fn rows(dir: &Path) -> Vec<OutRow> {
    let sec = tempfile::tempdir().unwrap();
    let store = CaptureStore::open_secondary(&dir.join("capture"), sec.path()).expect("secondary");
    let tz = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
    let mut out = vec![];
    let now = Month::current(&tz);
    for m in [now.prev(), now] {
        store.for_each_out(m, None, |r| out.push(r)).unwrap();
    }
    out
}

/// (sender, recipient, size) of each row, in store order.
pub fn row_triples(dir: &Path) -> Vec<(String, String, u64)> {
    rows(dir)
        .into_iter()
        .map(|r| (r.sender, r.recipient, r.size))
        .collect()
}

/// Wait (up to 20 s) until something accepts TCP connections on `addr`.
pub fn wait_port(addr: &str) {
    let t = std::time::Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{addr} never listened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Path of a workspace binary (built by `cargo build --bins`, which `tests/run` does).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} missing: run `cargo build --bins` first (tests/run does)",
        p.display()
    );
    p
}
