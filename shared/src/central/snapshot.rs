//! Reading the merged month: every record shipped by every node replayed,
//! through the same [`CaptureStore::apply`] as on a node, into a private
//! local store; the single-node code (figures, export, counts, reports) then
//! reads it. The files of several nodes therefore follow exactly the rules of
//! one (a record replayed twice leaves one row: keys derive from MAIL_ID and
//! recipient; last dates merge with *max*).

use std::path::Path;

use futures_util::{pin_mut, TryStreamExt};

use tokio_postgres::Client;

use super::pg;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::Record;
use crate::store::capture::{CaptureStore, Classifier};

/// The capture data the tools read: with `[central]` a snapshot of the
/// centre in `dir`, else the local store opened as a secondary (`dir` holds
/// its info log).
///
/// # Errors
/// Store errors; [`Error::Central`] when PostgreSQL cannot be read.
pub fn open_for_reading(cfg: &Config, dir: &Path) -> Result<CaptureStore> {
    let Some(c) = &cfg.central else {
        return CaptureStore::open_secondary(&cfg.store.capture_path, dir);
    };
    let store = CaptureStore::open(&dir.join("central-snapshot"))?;
    let cls = Classifier::from_config(cfg);
    let rt = super::runtime()?;
    rt.block_on(async {
        let client = super::connect(c).await?;
        super::schema::check(&client).await?;
        pull(&client, &store, &cls).await
    })?;
    Ok(store)
}

/// Replay every shipped record into `store`, then the per-BAL summary of
/// what retention purged centrally; returns how many records.
///
/// # Errors
/// [`Error::Central`], store errors.
pub async fn pull(
    client: &tokio_postgres::Client,
    store: &CaptureStore,
    cls: &Classifier,
) -> Result<u64> {
    let rows = client
        .query_raw(
            "SELECT body FROM records ORDER BY node_id, seq",
            std::iter::empty::<i32>(),
        )
        .await
        .map_err(|e| pg("reading records", e))?;
    let n = replay(rows, store, cls).await?;
    // What retention purged centrally: its last dates, never lost.
    store.merge_summaries(&summaries(client).await?)?;
    Ok(n)
}

/// Apply each row's `body` (a record, JSON) to `store` through the nodes'
/// own [`CaptureStore::apply`], in batches; returns how many.
///
/// # Errors
/// [`Error::Central`] for an unreadable record or a failed read, store errors.
pub async fn replay(
    rows: tokio_postgres::RowStream,
    store: &CaptureStore,
    cls: &Classifier,
) -> Result<u64> {
    pin_mut!(rows);
    let mut batch = Vec::with_capacity(10_000);
    let mut n = 0u64;
    while let Some(row) = rows
        .try_next()
        .await
        .map_err(|e| pg("reading records", e))?
    {
        let body: &str = row.get(0);
        let r: Record = serde_json::from_str(body)
            .map_err(|e| Error::Central(format!("an unreadable record: {e}")))?;
        batch.push(r);
        if batch.len() == 10_000 {
            store.apply(&batch, cls, false)?;
            n += batch.len() as u64;
            batch.clear();
        }
    }
    n += batch.len() as u64;
    store.apply(&batch, cls, false)?;
    Ok(n)
}

/// Every summary entry kept centrally.
///
/// # Errors
/// [`Error::Central`].
pub async fn summaries(c: &Client) -> Result<Vec<(String, [u64; 3])>> {
    let rows = c
        .query(
            "SELECT bal, last_login_us, last_sent_us, last_received_us FROM bal_summary",
            &[],
        )
        .await
        .map_err(|e| pg("reading bal_summary", e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let v: [i64; 3] = [r.get(1), r.get(2), r.get(3)];
            (r.get(0), v.map(|x| x.max(0) as u64))
        })
        .collect())
}
