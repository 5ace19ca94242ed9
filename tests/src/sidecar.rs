//! Run the sidecar's proxy front end in-process (so a test can swap the
//! store), or the real binaries, and read back what was captured.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mss_shared::config::Config;
use mss_shared::model::MailIdGen;
use mss_shared::month::Month;
use mss_shared::store::capture::{CaptureStore, Classifier, OutRow};
use mss_sidecar::capture::{Capture, Journal, Sink, StoreSink};
use mss_sidecar::metrics::Metrics;
use mss_sidecar::milter::{self, MilterContext, MilterListener};
use mss_sidecar::proxy::{self, ProxyContext};

/// Operator domain used by every test.
pub const DOMAIN: &str = "ch-test.mssante.fr";

/// Tests run as root and their stores live in root's temporary directories:
/// the daemon keeps root (instead of dropping to `mss`).
pub const STAY_ROOT: &str = "[service]\nuser = \"root\"\n\n";

/// A configuration text for a proxy in front of `upstream`.
pub fn config_text(dir: &Path, listen: &str, upstream: &str, extra_proxy: &str) -> String {
    format!(
        "{STAY_ROOT}[operator]\ndomains = [\"{DOMAIN}\", \"ch-autre.mssante.fr\"]\nnode = \"t1\"\n\n[store]\ncapture_path = \"{}\"\nregistry_path = \"{}\"\ncommit_timeout_ms = 500\n\n[proxy]\nlisten = \"{listen}\"\nupstream = \"{upstream}\"\nhostname = \"proxy.test\"\nupstream_timeout_secs = 20\nclient_timeout_secs = 20\nshutdown_grace_secs = 5\n{extra_proxy}\n",
        dir.join("capture").display(),
        dir.join("registry").display()
    )
}

/// A configuration text for the milter front end only.
pub fn milter_config_text(dir: &Path, listen: &str) -> String {
    format!(
        "{STAY_ROOT}[operator]\ndomains = [\"{DOMAIN}\", \"ch-autre.mssante.fr\"]\nnode = \"t1\"\n\n[store]\ncapture_path = \"{}\"\nregistry_path = \"{}\"\ncommit_timeout_ms = 500\n\n[milter]\nlisten = \"{listen}\"\n",
        dir.join("capture").display(),
        dir.join("registry").display()
    )
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

    /// Start with any sink (failing stores in tests).
    pub fn start_with_sink(dir: &Path, cfg: Config, sink: Arc<dyn Sink>) -> RunningProxy {
        let metrics = Arc::new(Metrics::default());
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let m = metrics.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let journal = Arc::new(Journal::new(cfg.store.journal_path()));
                let capture = Capture::start(sink, journal, cfg.store.commit_timeout(), m);
                let ids = Arc::new(MailIdGen::new(&cfg.operator.node));
                let policy = mss_sidecar::policy::Policy::load(&cfg).expect("policy");
                let recorder = mss_sidecar::recorder::Recorder::new(
                    capture,
                    Classifier::from_config(&cfg),
                    ids,
                    policy,
                );
                let mut milter_addr = None;
                let mut tasks = tokio::task::JoinSet::new();
                if let Some(mcfg) = &cfg.milter {
                    let l = tokio::net::TcpListener::bind(mcfg.listen.as_str())
                        .await
                        .unwrap();
                    milter_addr = Some(l.local_addr().unwrap());
                    let ctx = Arc::new(MilterContext {
                        recorder: recorder.clone(),
                    });
                    let mut stop = stop_rx.clone();
                    tasks.spawn(milter::run(MilterListener::Tcp(l), ctx, async move {
                        let _ = stop.wait_for(|s| *s).await;
                    }));
                }
                let mut proxy_addr: SocketAddr = "0.0.0.0:0".parse().unwrap();
                if let Some(pcfg) = cfg.proxy.clone() {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    proxy_addr = listener.local_addr().unwrap();
                    let ctx = ProxyContext::new(pcfg, recorder).unwrap();
                    tasks.spawn(proxy::run(listener, Arc::new(ctx), stop_rx));
                }
                addr_tx.send((proxy_addr, milter_addr)).unwrap();
                while tasks.join_next().await.is_some() {}
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
