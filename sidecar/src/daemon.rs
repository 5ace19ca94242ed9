//! The `mss-sidecar` daemon.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use mss_shared::config::{Config, ListenAddr, Token};
use mss_shared::model::MailIdGen;
use mss_shared::store::capture::{CaptureStore, Classifier};
use mss_shared::{exit, Error};

use crate::capture::{Capture, Journal, StoreSink};
use crate::metrics::Metrics;
use crate::milter::{self, MilterContext, MilterListener};
use crate::proxy::{self, ProxyContext};
use crate::recorder::Recorder;

/// The listeners, bound before anything else runs (and before root is dropped).
struct Listeners {
    proxy: Option<TcpListener>,
    milter: Option<MilterListener>,
    events: Option<TcpListener>,
    dict: Option<crate::events::dict::DictListener>,
    metrics: Option<TcpListener>,
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
    let classifier = Classifier::from_config(&cfg);
    rt.block_on(serve(cfg, store, classifier, listeners))
}

async fn bind(key: &str, addr: &str) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Bind(format!("cannot listen on {addr} (`{key}`): {e}")))
}

/// Bind everything first: a bind failure exits before anything runs.
async fn bind_all(cfg: &Config) -> Result<Listeners, Error> {
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

async fn serve(
    cfg: Config,
    store: CaptureStore,
    classifier: Classifier,
    listeners: Listeners,
) -> Result<i32, Error> {
    let Listeners {
        proxy: proxy_listener,
        milter: milter_listener,
        events: events_listener,
        dict: dict_listener,
        metrics: metrics_listener,
    } = listeners;
    let policy = crate::policy::Policy::load(&cfg)?;
    // Only now start the writer: an early error drops the store cleanly.
    let metrics = Arc::new(Metrics::for_domains(&cfg.operator.domains));
    let journal = Arc::new(Journal::new(cfg.store.journal_path()));
    let sink = Arc::new(StoreSink::new(store, classifier.clone()));
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
        tasks.spawn(serve_metrics_auth(
            l,
            metrics.clone(),
            token,
            stop_rx.clone(),
        ));
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

/// Refresh `metrics.export` ([`crate::export_watch`]) every minute until `stop`.
async fn watch_export(cfg: Config, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>) {
    loop {
        let c = cfg.clone();
        if let Ok(g) = tokio::task::spawn_blocking(move || crate::export_watch::read(&c)).await {
            *metrics.export.lock().unwrap_or_else(|e| e.into_inner()) = g;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// A minimal HTTP/1.1 responder for `GET /metrics` (Prometheus scrapes).
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) {
    serve_metrics_auth(listener, metrics, None, stop).await
}

/// [`serve_metrics`], answering `401` to requests without
/// `Authorization: Bearer <token>` when a token is configured.
pub async fn serve_metrics_auth(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    token: Option<Token>,
    mut stop: watch::Receiver<bool>,
) {
    let token = token.map(Arc::new);
    loop {
        let (mut sock, _peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            _ = stop.changed() => return,
        };
        let m = metrics.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut n = 0;
            // Read up to the end of the headers (bounded by the buffer and 5 s).
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < buf.len() {
                match tokio::time::timeout_at(deadline, sock.read(&mut buf[n..])).await {
                    Ok(Ok(0)) if n > 0 => break,
                    Ok(Ok(k)) if k > 0 => n += k,
                    _ => return,
                }
            }
            let req = &buf[..n];
            let authorized = token
                .as_ref()
                .is_none_or(|t| t.accepts(header(req, b"authorization")));
            let (status, extra, body) = if !authorized {
                (
                    "401 Unauthorized",
                    "WWW-Authenticate: Bearer\r\n",
                    "missing or wrong bearer token\n".to_string(),
                )
            } else if req.starts_with(b"GET /metrics ") {
                ("200 OK", "", m.render())
            } else {
                ("404 Not Found", "", "try /metrics\n".to_string())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\n{extra}Content-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

/// The value of header `name` (lower-case) in a raw HTTP/1 request head.
fn header<'a>(req: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let head_end = req
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(req.len());
    req[..head_end]
        .split(|&b| b == b'\n')
        .skip(1)
        .find_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            line[..colon]
                .trim_ascii()
                .eq_ignore_ascii_case(name)
                .then(|| line[colon + 1..].trim_ascii())
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_lookup_is_case_insensitive_and_stops_at_the_body() {
        let req = b"GET /metrics HTTP/1.1\r\nHost: x\r\nauthorization:  Bearer abc \r\n\r\nAuthorization: Bearer body";
        assert_eq!(
            super::header(req, b"authorization"),
            Some(&b"Bearer abc"[..])
        );
        assert_eq!(
            super::header(b"GET / HTTP/1.1\r\n\r\n", b"authorization"),
            None
        );
        assert_eq!(super::header(b"", b"host"), None);
    }
}
