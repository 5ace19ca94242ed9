//! The shipper (`[central]`): sends the capture store's outbox to the
//! operator's PostgreSQL in batches, exactly once (see
//! `mss_shared::central::ship`), and keeps this node's completeness mark up
//! to date. It never touches the SMTP path: sessions commit to the local
//! store as without `[central]`; when PostgreSQL is down, slow, or refuses
//! this node (duplicate name, newer schema), the outbox simply grows and the
//! shipper retries (1 s, doubling to 30 s), saying why in the log.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use mss_shared::central::{self, nodes, schema, ship::Entry};
use mss_shared::config::Config;
use mss_shared::Error;

use crate::capture::StoreSink;
use crate::metrics::Metrics;

/// How long after its acceptance a record is surely committed to the
/// store (the commit wait, plus slack): the completeness mark stays this
/// far behind the moment the outbox was seen empty.
fn margin(cfg: &Config) -> Duration {
    cfg.store.commit_timeout() + Duration::from_secs(5)
}

/// Ship until `stop` turns true.
pub async fn run(
    cfg: Config,
    sink: Arc<StoreSink>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        if *stop.borrow() {
            return;
        }
        let r = session(&cfg, &sink, &metrics, &mut stop).await;
        metrics.central.up.set(0);
        match r {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(
                    "central: {e}; retrying in {}s (capture goes on locally, nothing is lost)",
                    backoff.as_secs()
                );
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

fn now_us() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

async fn blocking<T: Send + 'static>(
    sink: &Arc<StoreSink>,
    f: impl FnOnce(&mss_shared::store::capture::CaptureStore) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let sink = sink.clone();
    tokio::task::spawn_blocking(move || sink.with_store(f))
        .await
        .map_err(|e| Error::Other(format!("shipper task: {e}")))?
        .map_err(|e| Error::Store {
            path: "capture".into(),
            reason: e,
        })
}

/// One connection's life: register, re-read progress, ship until stopped
/// (`Ok`) or an error (the caller reconnects).
async fn session(
    cfg: &Config,
    sink: &Arc<StoreSink>,
    metrics: &Metrics,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), Error> {
    let c = cfg.central.as_ref().expect("shipper runs with [central]");
    let mut client = central::connect(c).await?;
    schema::check(&client).await?;
    // The id is kept before it is registered: a crash in between registers
    // the same id again.
    let id = match blocking(sink, |s| s.node_id()).await? {
        Some(id) => id,
        None => {
            let id = nodes::new_id();
            let keep = id.clone();
            blocking(sink, move |s| s.set_node_id(&keep)).await?;
            id
        }
    };
    nodes::register(&client, &cfg.operator.node, &id).await?;
    // What PostgreSQL has is the truth: trim it (a crash after a commit
    // and before the trim), never ship it again.
    let shipped = nodes::shipped(&client, &id).await?;
    if shipped >= 0 {
        blocking(sink, move |s| s.outbox_trim(shipped as u64)).await?;
    }
    tracing::info!(node = %cfg.operator.node, %id, shipped, "central: connected, shipping");
    metrics.central.up.set(1);
    let batch = c.batch_rows;
    let margin = margin(cfg).as_micros() as i64;
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let seen_at = now_us();
        let (raw, next) =
            blocking(sink, move |s| Ok((s.outbox_read(batch)?, s.outbox_next()))).await?;
        let waiting = match (raw.first(), next) {
            (Some((first, _)), Some(n)) => n.saturating_sub(*first),
            _ => raw.len() as u64,
        };
        metrics.central.outbox.set(waiting as i64);
        if raw.is_empty() {
            nodes::complete_until(&client, &id, seen_at - margin).await?;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.changed() => return Ok(()),
            }
            continue;
        }
        let last = raw.last().map(|(s, _)| *s).unwrap_or(0);
        let drained = raw.len() < batch;
        let entries: Vec<Entry> = raw
            .iter()
            .filter_map(|(seq, json)| {
                let e = Entry::decode(*seq, json);
                if e.is_none() {
                    tracing::error!(seq, "central: an unreadable outbox entry, skipped");
                }
                e
            })
            .collect();
        central::ship::ship(
            &mut client,
            &id,
            &entries,
            drained.then_some(seen_at - margin),
        )
        .await?;
        blocking(sink, move |s| s.outbox_trim(last)).await?;
        metrics.central.shipped.inc_by(entries.len() as u64);
        tracing::debug!(entries = entries.len(), last, "central: batch shipped");
    }
}
