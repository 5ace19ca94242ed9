//! The `mss-sidecar` daemon.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use mss_shared::config::{Config, ListenAddr};
use mss_shared::model::MailIdGen;
use mss_shared::month::Month;
use mss_shared::store::capture::{CaptureStore, Classifier};
use mss_shared::{exit, Error};

use crate::capture::{Capture, Journal, StoreSink};
use crate::metrics::Metrics;
use crate::milter::{self, MilterContext, MilterListener};
use crate::proxy::{self, ProxyContext};

/// Load and check everything, bind the listeners, then serve until SIGTERM.
///
/// # Errors
/// Configuration (exit 2), store (exit 3) and bind (exit 4) problems.
pub fn run(config_path: &Path) -> Result<i32, Error> {
    let cfg = Config::load(config_path)?;
    let events_on = cfg
        .events
        .as_ref()
        .is_some_and(|e| e.listen.is_some() || e.dict_socket.is_some());
    if cfg.proxy.is_none() && cfg.milter.is_none() && !events_on {
        return Err(Error::Config(format!(
            "{}: nothing to run: add a [proxy], [milter] or [events] section",
            config_path.display()
        )));
    }
    cfg.check_capture_writable()?;
    let store = CaptureStore::open(&cfg.store.capture_path)?;
    let keep_from =
        (0..cfg.store.retention_months).fold(Month::current(&cfg.tz()), |m, _| m.prev());
    store.purge_before(keep_from)?;
    let classifier = Classifier::from_config(&cfg);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("tokio runtime: {e}")))?;
    rt.block_on(serve(cfg, store, classifier))
}

async fn bind(key: &str, addr: &str) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Bind(format!("cannot listen on {addr} (`{key}`): {e}")))
}

async fn serve(cfg: Config, store: CaptureStore, classifier: Classifier) -> Result<i32, Error> {
    // Bind everything first: a bind failure exits before anything runs.
    let proxy_listener = match &cfg.proxy {
        Some(p) => Some(bind("proxy.listen", &p.listen).await?),
        None => None,
    };
    let milter_listener = match &cfg.milter {
        Some(m) => {
            let addr = ListenAddr::parse(&m.listen).expect("validated at load");
            Some(MilterListener::bind(&addr).await.map_err(|e| {
                Error::Bind(format!(
                    "cannot listen on {} (`milter.listen`): {e}",
                    m.listen
                ))
            })?)
        }
        None => None,
    };
    let events_listener = match cfg.events.as_ref().and_then(|e| e.listen.as_ref()) {
        Some(l) => Some(bind("events.listen", l).await?),
        None => None,
    };
    let dict_listener = match cfg.events.as_ref().and_then(|e| e.dict_socket.as_ref()) {
        Some(p) => Some(crate::events::dict::DictListener::bind(p).map_err(|e| {
            Error::Bind(format!(
                "cannot listen on {} (`events.dict_socket`): {e}",
                p.display()
            ))
        })?),
        None => None,
    };
    let metrics_listener = match &cfg.metrics {
        Some(m) => Some(bind("metrics.listen", &m.listen).await?),
        None => None,
    };

    let policy = crate::policy::Policy::load(&cfg)?;
    // Only now start the writer: an early error drops the store cleanly.
    let metrics = Arc::new(Metrics::default());
    let journal = Arc::new(Journal::new(cfg.store.journal_path()));
    let sink = Arc::new(StoreSink {
        store,
        classifier: classifier.clone(),
    });
    let capture = Capture::start(sink, journal, cfg.store.commit_timeout(), metrics.clone());
    let ids = Arc::new(MailIdGen::new(&cfg.operator.node));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();

    if let (Some(l), Some(p)) = (proxy_listener, &cfg.proxy) {
        let ctx = ProxyContext::new(p.clone(), capture.clone(), classifier.clone(), ids.clone())
            .map_err(Error::Config)?
            .with_policy(policy.clone());
        tracing::info!(listen = %p.listen, upstream = %p.upstream, tls = ctx.client_tls.is_some(), "proxy front end ready");
        tasks.spawn(proxy::run(l, Arc::new(ctx), stop_rx.clone()));
    }
    if let (Some(l), Some(m)) = (milter_listener, &cfg.milter) {
        let ctx = Arc::new(MilterContext {
            capture: capture.clone(),
            classifier: classifier.clone(),
            ids: ids.clone(),
            policy: policy.clone(),
        });
        tracing::info!(listen = %m.listen, "milter front end ready");
        let mut stop = stop_rx.clone();
        tasks.spawn(milter::run(l, ctx, async move {
            let _ = stop.wait_for(|s| *s).await;
        }));
    }
    if events_listener.is_some() || dict_listener.is_some() {
        let ectx = Arc::new(crate::events::EventsContext {
            capture: capture.clone(),
        });
        if let Some(l) = events_listener {
            tracing::info!(listen = ?l.local_addr().ok(), "login events endpoint ready");
            tasks.spawn(crate::events::serve_http(l, ectx.clone(), stop_rx.clone()));
        }
        if let Some(l) = dict_listener {
            tracing::info!("Dovecot last_login dict socket ready");
            tasks.spawn(crate::events::dict::serve(l, ectx, stop_rx.clone()));
        }
    }
    if let Some(p) = &policy {
        tasks.spawn(p.clone().watch(stop_rx.clone()));
    }
    if let Some(l) = metrics_listener {
        tasks.spawn(serve_metrics(l, metrics.clone(), stop_rx.clone()));
    }
    tracing::info!(version = env!("CARGO_PKG_VERSION"), store = %cfg.store.capture_path.display(), "mss-sidecar started");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::Other(format!("signal handler: {e}")))?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping (in-flight transactions may finish)"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
    }
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    let closed = tokio::task::spawn_blocking(move || capture.shutdown(Duration::from_secs(10)))
        .await
        .unwrap_or(false);
    if !closed {
        tracing::warn!(
            "capture writer still busy after 10 s; exiting (unacknowledged records are journaled)"
        );
    }
    tracing::info!("mss-sidecar stopped");
    Ok(exit::OK)
}

/// A minimal HTTP/1.1 responder for `GET /metrics` (Prometheus scrapes).
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (mut sock, _peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            _ = stop.changed() => return,
        };
        let m = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let n =
                match tokio::time::timeout(std::time::Duration::from_secs(5), sock.read(&mut buf))
                    .await
                {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
            let req = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if req.starts_with("GET /metrics ") {
                ("200 OK", m.render())
            } else {
                ("404 Not Found", "try /metrics\n".to_string())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}
