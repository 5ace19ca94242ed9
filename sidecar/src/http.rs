//! The daemon's HTTP listeners, one stack (axum): the bearer-token layer
//! shared by the login events endpoint and `/metrics`, the `/metrics`
//! router, and serving until the daemon stops.

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use mss_shared::config::Token;

use crate::metrics::Metrics;

/// `router`, answering `401` (with `WWW-Authenticate: Bearer`) to any
/// request without `Authorization: Bearer <token>` when a token is set.
pub fn with_bearer(router: Router, token: Option<Token>) -> Router {
    let Some(token) = token else {
        return router;
    };
    let token = Arc::new(token);
    router.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let token = token.clone();
            async move {
                let auth = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .map(|v| v.as_bytes());
                if !token.accepts(auth) {
                    return (
                        StatusCode::UNAUTHORIZED,
                        [(header::WWW_AUTHENTICATE, "Bearer")],
                        "missing or wrong bearer token\n",
                    )
                        .into_response();
                }
                next.run(req).await
            }
        },
    ))
}

/// `GET /metrics`: the OpenMetrics text; anything else `404 try /metrics`.
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.render(),
                    )
                }
            }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "try /metrics\n") })
}

/// Every response of `router` closes its connection (`/metrics`: one
/// scrape, one connection, as before axum; a client reading to EOF is not
/// left waiting on a kept-alive connection).
pub fn close_after(router: Router) -> Router {
    router.layer(axum::middleware::map_response(
        |mut r: axum::response::Response| async move {
            r.headers_mut().insert(
                header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            r
        },
    ))
}

/// Serve `router` on `listener` until `stop` turns true; `what` names the
/// listener in the log if it fails.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    mut stop: watch::Receiver<bool>,
    what: &str,
) {
    let res = axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = res {
        tracing::error!("{what} stopped: {e}");
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn get(addr: std::net::SocketAddr, path: &str, auth: Option<&str>) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let auth = auth
            .map(|a| format!("Authorization: Bearer {a}\r\n"))
            .unwrap_or_default();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).await.unwrap();
        r
    }

    #[tokio::test]
    async fn metrics_behind_the_bearer_token() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let m = Arc::new(Metrics::default());
        m.proxy.sessions.inc();
        let app = close_after(with_bearer(
            metrics_router(m),
            Some(Token::new("0123456789abcdef0123")),
        ));
        let server = tokio::spawn(serve(l, app, stop, "test"));
        let r = get(addr, "/metrics", None).await;
        assert!(r.starts_with("HTTP/1.1 401"), "{r}");
        assert!(
            r.to_ascii_lowercase().contains("www-authenticate: bearer"),
            "{r}"
        );
        let r = get(addr, "/metrics", Some("0123456789abcdef0123")).await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(
            r.contains("mss_sessions_total{frontend=\"proxy\"} 1\n"),
            "{r}"
        );
        assert!(r.trim_end().ends_with("# EOF"), "{r}");
        let r = get(addr, "/other", Some("0123456789abcdef0123")).await;
        assert!(
            r.starts_with("HTTP/1.1 404") && r.ends_with("try /metrics\n"),
            "{r}"
        );
        // A client that does not ask for it still gets the connection closed.
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut r = String::new();
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(5), c.read_to_string(&mut r)).await;
        assert!(read.is_ok() && r.starts_with("HTTP/1.1 401"), "{r}");
        stop_tx.send(true).unwrap();
        server.await.unwrap();
    }
}
