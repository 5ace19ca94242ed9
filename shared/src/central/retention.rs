//! Retention centrally (`mss-admin central purge`, admin role): the records
//! of months before `store.retention_months` are folded into the per-BAL
//! summary (`bal_summary`, never purged: the last login, sent and received
//! dates the Connexions rules need at any age), then deleted, in one
//! transaction that holds off the shippers meanwhile (a lagging node's old
//! record cannot slip between the fold and the delete). The fold is the
//! nodes' own (`CaptureStore::purge_before`) on the records replayed.

use tokio_postgres::Client;

use super::pg;
use crate::error::{Error, Result};
use crate::month::Month;
use crate::store::capture::{CaptureStore, Classifier};

/// What a purge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub records: u64,
    pub summaries: usize,
}

/// Fold then delete the records before `keep_from` (start in `cls.tz`).
///
/// # Errors
/// [`Error::Central`]; nothing changed then.
pub async fn purge(c: &mut Client, cls: &Classifier, keep_from: Month) -> Result<Purged> {
    let cutoff = keep_from.start(&cls.tz).as_microsecond();
    let dir = tempfile::Builder::new()
        .prefix("mss-central-purge-")
        .tempdir()
        .map_err(|e| Error::Other(format!("temporary directory: {e}")))?;
    let tmp = CaptureStore::open(&dir.path().join("fold"))?;
    let tx = c
        .transaction()
        .await
        .map_err(|e| pg("starting the purge", e))?;
    tx.batch_execute("LOCK TABLE records IN SHARE ROW EXCLUSIVE MODE")
        .await
        .map_err(|e| pg("locking records", e))?;
    let rows = tx
        .query_raw("SELECT body FROM records WHERE time_us < $1", [&cutoff])
        .await
        .map_err(|e| pg("reading old records", e))?;
    let n = super::snapshot::replay(rows, &tmp, cls).await?;
    tmp.purge_before(keep_from)?;
    let summaries = tmp.summaries()?;
    let up = tx
        .prepare(
            "INSERT INTO bal_summary (bal, last_login_us, last_sent_us, last_received_us)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (bal) DO UPDATE SET
               last_login_us = GREATEST(bal_summary.last_login_us, EXCLUDED.last_login_us),
               last_sent_us = GREATEST(bal_summary.last_sent_us, EXCLUDED.last_sent_us),
               last_received_us = GREATEST(bal_summary.last_received_us, EXCLUDED.last_received_us)",
        )
        .await
        .map_err(|e| pg("bal_summary", e))?;
    for (bal, v) in &summaries {
        let [l, s, r] = v.map(|x| x as i64);
        tx.execute(&up, &[bal, &l, &s, &r])
            .await
            .map_err(|e| pg("bal_summary", e))?;
    }
    let deleted = tx
        .execute("DELETE FROM records WHERE time_us < $1", &[&cutoff])
        .await
        .map_err(|e| pg("deleting old records", e))?;
    if deleted != n {
        return Err(Error::Central(format!(
            "purge: {deleted} records to delete but {n} folded: nothing changed, run it again"
        )));
    }
    tx.commit()
        .await
        .map_err(|e| pg("committing the purge", e))?;
    Ok(Purged {
        records: n,
        summaries: summaries.len(),
    })
}
