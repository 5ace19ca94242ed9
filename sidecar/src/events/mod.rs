//! Login events (`[events]`): an HTTP endpoint and Dovecot's `last_login`
//! dict-proxy socket. Every accepted event becomes a [`LoginRecord`] committed
//! through the capture writer (same path, same journal fallback as mail).
//!
//! - `POST /v1/dovecot`: what Dovecot's `event_exporter` sends (`format =
//!   json`, `transport = http-post`). Only `auth_request_finished` with
//!   `fields.success = "yes"` is recorded; the service is `fields.service`
//!   (Dovecot 2.3) or `fields.protocol` (2.4); `doveadm` and failures
//!   are ignored (200, nothing stored). `end_time` may be RFC 3339
//!   (`format_args = time-rfc3339`) or unix seconds (the default).
//! - `POST /v1/logins`: `{"bal", "time" (RFC 3339), "service"}` or an array
//!   of them, for webmails and portals.
//!
//! Bad JSON, unknown fields, a non-address, a date before 2000 or more than a
//! day ahead, a body over 1 MiB → `400`/`413` with a one-line reason, nothing
//! stored (an array is all-or-nothing), counted in
//! `mss_login_events_rejected_total{reason}`.

pub mod dict;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;

use mss_shared::config::Token;
use mss_shared::model::{normalize_address, LoginRecord, Record};

use crate::capture::Capture;

/// Largest request body accepted.
pub const MAX_BODY: usize = 1 << 20;

/// Shared by the HTTP endpoint and the dict socket.
pub struct EventsContext {
    pub capture: Capture,
}

type Reply = (StatusCode, String);

fn reject(ctx: &EventsContext, status: StatusCode, reason: &str, msg: String) -> Reply {
    ctx.capture.metrics().events_rejected.inc(reason);
    tracing::info!(reason, "login event refused: {msg}");
    (status, format!("{msg}\n"))
}

/// A login time is plausible: after 2000-01-01, at most a day ahead.
pub fn plausible(us: i64) -> bool {
    let now = jiff::Timestamp::now().as_microsecond();
    us >= 946_684_800_000_000 && us <= now + 86_400_000_000
}

pub use mss_shared::indicators::address::valid_bal;

/// Commit login records; the caller has validated them all.
pub async fn store(ctx: &EventsContext, recs: Vec<LoginRecord>) {
    for r in recs {
        ctx.capture.metrics().login_sources.inc(&r.source);
        ctx.capture.commit(Record::Login(r)).await;
    }
}

#[derive(Deserialize)]
struct DovecotEvent {
    event: Option<String>,
    end_time: Option<serde_json::Value>,
    #[serde(default)]
    fields: serde_json::Map<String, serde_json::Value>,
}

/// `end_time` / `time` as RFC 3339 text or unix seconds (number or text).
fn parse_time(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64().map(|f| (f * 1e6).round() as i64),
        serde_json::Value::String(s) => s
            .parse::<jiff::Timestamp>()
            .ok()
            .map(|t| t.as_microsecond())
            .or_else(|| s.parse::<f64>().ok().map(|f| (f * 1e6).round() as i64)),
        _ => None,
    }
}

fn field<'a>(e: &'a DovecotEvent, k: &str) -> Option<&'a str> {
    e.fields.get(k).and_then(|v| v.as_str())
}

/// Why an event is refused: HTTP status, metric label, one-line message.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    pub status: StatusCode,
    pub reason: &'static str,
    pub msg: String,
}

fn refused<T>(status: StatusCode, reason: &'static str, msg: String) -> Result<T, Refused> {
    Err(Refused {
        status,
        reason,
        msg,
    })
}

/// What a Dovecot event becomes.
#[derive(Debug, PartialEq, Eq)]
pub enum DovecotOutcome {
    /// Not a login to record (200, with this reason).
    Ignored(&'static str),
    Login(LoginRecord),
}

/// Decode and check one `event_exporter` event (no I/O: fuzzed).
///
/// # Errors
/// [`Refused`] for bad JSON, a missing or bad user, a bad time.
pub fn parse_dovecot(body: &[u8]) -> Result<DovecotOutcome, Refused> {
    let ev: DovecotEvent = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(e) => {
            return refused(
                StatusCode::BAD_REQUEST,
                "bad_json",
                format!("bad JSON: {e}"),
            )
        }
    };
    if ev.event.as_deref() != Some("auth_request_finished") {
        return Ok(DovecotOutcome::Ignored("not auth_request_finished"));
    }
    if field(&ev, "success") != Some("yes") {
        return Ok(DovecotOutcome::Ignored("not a successful login"));
    }
    // Dovecot 2.3 names the protocol `service`, 2.4 `protocol`.
    let svc23 = field(&ev, "service").map(str::to_ascii_lowercase);
    let proto24 = field(&ev, "protocol").map(str::to_ascii_lowercase);
    if svc23.as_deref() == Some("doveadm") || proto24.as_deref() == Some("doveadm") {
        return Ok(DovecotOutcome::Ignored("doveadm"));
    }
    let service = svc23.or(proto24).unwrap_or_else(|| "unknown".into());
    let Some(user) = field(&ev, "user") else {
        return refused(
            StatusCode::BAD_REQUEST,
            "missing_field",
            "fields.user is missing".into(),
        );
    };
    let bal = normalize_address(user);
    if !valid_bal(&bal) {
        return refused(
            StatusCode::BAD_REQUEST,
            "bad_address",
            format!("fields.user {user:?} is not a mailbox address"),
        );
    }
    let Some(t) = ev.end_time.as_ref().and_then(parse_time) else {
        return refused(
            StatusCode::BAD_REQUEST,
            "bad_time",
            "end_time is missing or not RFC 3339 / unix seconds".into(),
        );
    };
    if !plausible(t) {
        return refused(
            StatusCode::BAD_REQUEST,
            "bad_time",
            format!(
                "end_time {} is not plausible",
                ev.end_time.unwrap_or_default()
            ),
        );
    }
    Ok(DovecotOutcome::Login(LoginRecord {
        bal,
        time_us: t,
        service,
        source: "dovecot".into(),
    }))
}

async fn dovecot(State(ctx): State<Arc<EventsContext>>, body: Bytes) -> Reply {
    match parse_dovecot(&body) {
        Err(r) => reject(&ctx, r.status, r.reason, r.msg),
        Ok(DovecotOutcome::Ignored(why)) => (StatusCode::OK, format!("ignored: {why}\n")),
        Ok(DovecotOutcome::Login(rec)) => {
            store(&ctx, vec![rec]).await;
            (StatusCode::OK, "stored\n".into())
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenericLogin {
    bal: String,
    time: String,
    service: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(GenericLogin),
    Many(Vec<GenericLogin>),
}

/// Decode and check a `/v1/logins` body: all entries or none (no I/O: fuzzed).
///
/// # Errors
/// [`Refused`] naming the first bad entry.
pub fn parse_logins(body: &[u8]) -> Result<Vec<LoginRecord>, Refused> {
    let list = match serde_json::from_slice::<serde_json::Value>(body) {
        Err(e) => {
            return refused(
                StatusCode::BAD_REQUEST,
                "bad_json",
                format!("bad JSON: {e}"),
            )
        }
        // Decode again with the exact shape to name the offending field.
        Ok(serde_json::Value::Array(_)) => {
            serde_json::from_slice::<Vec<GenericLogin>>(body).map(OneOrMany::Many)
        }
        Ok(_) => serde_json::from_slice::<GenericLogin>(body).map(OneOrMany::One),
    };
    let list = match list {
        Ok(OneOrMany::One(l)) => vec![l],
        Ok(OneOrMany::Many(v)) => v,
        Err(e) => {
            return refused(
                StatusCode::BAD_REQUEST,
                "bad_field",
                format!("expected {{\"bal\", \"time\", \"service\"}} or an array of them: {e}"),
            )
        }
    };
    let mut recs = Vec::with_capacity(list.len());
    for (i, l) in list.into_iter().enumerate() {
        let bal = normalize_address(&l.bal);
        if !valid_bal(&bal) {
            return refused(
                StatusCode::BAD_REQUEST,
                "bad_address",
                format!("entry {i}: bal {:?} is not a mailbox address", l.bal),
            );
        }
        let Ok(t) = l.time.parse::<jiff::Timestamp>() else {
            return refused(
                StatusCode::BAD_REQUEST,
                "bad_time",
                format!("entry {i}: time {:?} is not RFC 3339", l.time),
            );
        };
        if !plausible(t.as_microsecond()) {
            return refused(
                StatusCode::BAD_REQUEST,
                "bad_time",
                format!("entry {i}: time {} is not plausible", l.time),
            );
        }
        let service = l.service.trim().to_ascii_lowercase();
        if service.is_empty()
            || service.len() > 32
            || !service
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return refused(
                StatusCode::BAD_REQUEST,
                "bad_field",
                format!(
                    "entry {i}: service {:?} must be 1-32 letters, digits, - or _",
                    l.service
                ),
            );
        }
        recs.push(LoginRecord {
            bal,
            time_us: t.as_microsecond(),
            service,
            source: "api".into(),
        });
    }
    Ok(recs)
}

async fn logins(State(ctx): State<Arc<EventsContext>>, body: Bytes) -> Reply {
    match parse_logins(&body) {
        Err(r) => reject(&ctx, r.status, r.reason, r.msg),
        Ok(recs) => {
            let n = recs.len();
            store(&ctx, recs).await;
            (StatusCode::OK, format!("stored {n}\n"))
        }
    }
}

async fn too_large(ctx: Arc<EventsContext>) -> Reply {
    reject(
        &ctx,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("body larger than {MAX_BODY} bytes"),
    )
}

/// The router (also used by tests).
pub fn router(ctx: Arc<EventsContext>) -> Router {
    let c2 = ctx.clone();
    Router::new()
        .route("/v1/dovecot", post(dovecot))
        .route("/v1/logins", post(logins))
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let c = c2.clone();
                async move {
                    let declared = req
                        .headers()
                        .get(axum::http::header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<usize>().ok());
                    if declared.is_some_and(|n| n > MAX_BODY) {
                        use axum::response::IntoResponse;
                        return too_large(c).await.into_response();
                    }
                    next.run(req).await
                }
            },
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(ctx)
}

/// Serve the HTTP endpoint until `stop` turns true, answering `401` to
/// requests without the bearer token when one is configured.
pub async fn serve_http_auth(
    listener: tokio::net::TcpListener,
    ctx: Arc<EventsContext>,
    token: Option<Token>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let app = crate::http::with_bearer(router(ctx), token);
    crate::http::serve(listener, app, stop, "events endpoint").await;
}

#[cfg(test)]
mod generations;
