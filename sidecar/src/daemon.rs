//! The `mss-sidecar` daemon.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use mss_shared::config::{Config, ListenAddr};
use mss_shared::model::MailIdGen;
use mss_shared::store::capture::{CaptureStore, Classifier};
use mss_shared::{exit, Error};

use crate::capture::{Capture, Journal, Sink, StoreSink};
use crate::metrics::Metrics;
use crate::milter::{self, MilterContext, MilterListener};
use crate::proxy::{self, ProxyContext};
use crate::recorder::Recorder;

/// The listeners, bound before anything else runs (and before root is
/// dropped). Tests bind `127.0.0.1:0` through the same [`bind_all`].
pub struct Listeners {
    pub proxy: Option<TcpListener>,
    pub milter: Option<MilterListener>,
    pub events: Option<TcpListener>,
    pub dict: Option<crate::events::dict::DictListener>,
    pub metrics: Option<TcpListener>,
}

/// Load and check everything, bind the listeners, drop root (if started as
/// root), open the store, then serve until SIGTERM.
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
    let root = crate::privdrop::is_root();
    if !root {
        cfg.check_capture_writable()?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("tokio runtime: {e}")))?;
    let listeners = rt.block_on(bind_all(&cfg))?;
    // Spawned while still root (postlog runs as the service user, group postdrop).
    let marks = Arc::new(std::sync::Mutex::new(crate::marks::Marks::spawn(
        &cfg, root,
    )));
    if root {
        // Privileged ports are bound: nothing else needs root. The stores
        // are created and opened by the unprivileged user only.
        let mut sockets: Vec<&Path> = vec![];
        if let Some(MilterListener::Unix(_, p)) = &listeners.milter {
            sockets.push(p);
        }
        if let Some(p) = cfg.events.as_ref().and_then(|e| e.dict_socket.as_deref()) {
            sockets.push(p);
        }
        crate::privdrop::drop_to(&cfg.service.user, &sockets)?;
        cfg.check_capture_writable()?;
    }
    let store = CaptureStore::open(&cfg.store.capture_path)?;
    store.purge_before(mss_shared::figures::oldest_kept(
        &cfg,
        jiff::Timestamp::now(),
    ))?;
    let mut store_sink = StoreSink::new(store, Classifier::from_config(&cfg));
    if cfg.central.is_some() {
        store_sink = store_sink.with_outbox()?;
    }
    let store_sink = Arc::new(store_sink);
    let sink: Arc<dyn Sink> = store_sink.clone();
    let metrics = Arc::new(Metrics::for_config(&cfg));
    let mark = |text: &str| marks.lock().unwrap_or_else(|e| e.into_inner()).mark(text);
    mark(&crate::marks::started(&cfg));
    let result = rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| Error::Other(format!("signal handler: {e}")))?;
        let signal = async {
            let why = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            };
            tracing::info!("{why}: stopping (in-flight transactions may finish)");
            mark(&format!("stopping ({why})"));
        };
        // [central]: the shipper, off the SMTP path, stopped after the front ends.
        let (ship_stop, ship_rx) = watch::channel(false);
        let shipper = cfg.central.is_some().then(|| {
            tokio::spawn(crate::shipper::run(
                cfg.clone(),
                store_sink,
                metrics.clone(),
                ship_rx,
            ))
        });
        let r = serve(listeners, cfg, sink, metrics, signal).await;
        let _ = ship_stop.send(true);
        if let Some(s) = shipper {
            if tokio::time::timeout(Duration::from_secs(5), s)
                .await
                .is_err()
            {
                tracing::warn!("central: the shipper did not stop within 5 s");
            }
        }
        r
    });
    mark(match &result {
        Ok(_) => "stopped",
        Err(_) => "stopped on an error",
    });
    marks.lock().unwrap_or_else(|e| e.into_inner()).close();
    result
}

async fn bind(key: &str, addr: &str) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Bind(format!("cannot listen on {addr} (`{key}`): {e}")))
}

/// Bind everything first: a bind failure exits before anything runs.
///
/// # Errors
/// [`Error::Bind`] naming the key whose address cannot be bound.
pub async fn bind_all(cfg: &Config) -> Result<Listeners, Error> {
    let proxy = match &cfg.proxy {
        Some(p) => Some(bind("proxy.listen", &p.listen).await?),
        None => None,
    };
    let milter = match &cfg.milter {
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
    let events = match cfg.events.as_ref().and_then(|e| e.listen.as_ref()) {
        Some(l) => Some(bind("events.listen", l).await?),
        None => None,
    };
    let dict = match cfg.events.as_ref().and_then(|e| e.dict_socket.as_ref()) {
        Some(p) => Some(crate::events::dict::DictListener::bind(p).map_err(|e| {
            Error::Bind(format!(
                "cannot listen on {} (`events.dict_socket`): {e}",
                p.display()
            ))
        })?),
        None => None,
    };
    let metrics = match &cfg.metrics {
        Some(m) => Some(bind("metrics.listen", &m.listen).await?),
        None => None,
    };
    Ok(Listeners {
        proxy,
        milter,
        events,
        dict,
        metrics,
    })
}

/// Run the daemon on already bound `listeners` until `shutdown` completes
/// (as mini-redis' `server::run`): the capture writer on `sink`, the front
/// ends, the events endpoint, `/metrics`, retention. `main` passes the
/// signals; tests pass a channel.
///
/// # Errors
/// Configuration problems found at start (policy file, TLS material).
pub async fn serve(
    listeners: Listeners,
    cfg: Config,
    sink: Arc<dyn Sink>,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<i32, Error> {
    let classifier = Classifier::from_config(&cfg);
    let Listeners {
        proxy: proxy_listener,
        milter: milter_listener,
        events: events_listener,
        dict: dict_listener,
        metrics: metrics_listener,
    } = listeners;
    let policy = crate::policy::Policy::load(&cfg)?;
    // Only now start the writer: an early error drops the store cleanly.
    let journal = Arc::new(Journal::new(cfg.store.journal_path()));
    let retention_sink = sink.clone();
    let capture = Capture::start(sink, journal, cfg.store.commit_timeout(), metrics.clone());
    let ids = Arc::new(MailIdGen::new(&cfg.operator.node));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    // Retention runs daily, not only at start (a daemon up for months).
    {
        let cfg = cfg.clone();
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(86_400)) => {}
                    _ = stop.changed() => return,
                }
                let keep = mss_shared::figures::oldest_kept(&cfg, jiff::Timestamp::now());
                let sink = retention_sink.clone();
                match tokio::task::spawn_blocking(move || sink.purge_before(keep)).await {
                    Ok(Ok(())) => tracing::info!(%keep, "retention: months before {keep} purged"),
                    Ok(Err(e)) => tracing::warn!("retention: {e}"),
                    Err(e) => tracing::warn!("retention task: {e}"),
                }
            }
        });
    }

    let recorder = Recorder::new(
        capture.clone(),
        classifier.clone(),
        ids.clone(),
        policy.clone(),
    );
    if let (Some(l), Some(p)) = (proxy_listener, &cfg.proxy) {
        let ctx = ProxyContext::new(p.clone(), recorder.clone()).map_err(Error::Config)?;
        tracing::info!(listen = %p.listen, upstream = %p.upstream, tls = ctx.client_tls.is_some(), "proxy front end ready");
        tasks.spawn(proxy::run(l, Arc::new(ctx), stop_rx.clone()));
    }
    if let (Some(l), Some(m)) = (milter_listener, &cfg.milter) {
        let ctx = Arc::new(MilterContext {
            recorder: recorder.clone(),
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
            let token = cfg.events.as_ref().and_then(|e| e.token.clone());
            tasks.spawn(crate::events::serve_http_auth(
                l,
                ectx.clone(),
                token,
                stop_rx.clone(),
            ));
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
        tasks.spawn(watch_export(cfg.clone(), metrics.clone(), stop_rx.clone()));
        let token = cfg.metrics.as_ref().and_then(|m| m.token.clone());
        let app = crate::http::close_after(crate::http::with_bearer(
            crate::http::metrics_router(metrics.clone()),
            token,
        ));
        tasks.spawn(crate::http::serve(
            l,
            app,
            stop_rx.clone(),
            "metrics endpoint",
        ));
    }
    tracing::info!(version = env!("CARGO_PKG_VERSION"), store = %cfg.store.capture_path.display(), "mss-sidecar started");

    shutdown.await;
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    // The last handle on the writer's queue besides `capture`: without it
    // gone the writer would wait for more records until the timeout.
    drop(recorder);
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

/// Refresh `metrics.export` ([`crate::export_watch`]) every minute until `stop`.
async fn watch_export(cfg: Config, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>) {
    loop {
        let c = cfg.clone();
        if let Ok(g) = tokio::task::spawn_blocking(move || crate::export_watch::read(&c)).await {
            metrics.set_export(&g);
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = stop.changed() => return,
        }
    }
}
