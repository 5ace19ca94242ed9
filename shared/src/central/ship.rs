//! One batch of outbox entries to PostgreSQL, exactly once: binary COPY into
//! a temporary table, `INSERT … SELECT … ON CONFLICT DO NOTHING` on
//! `(node_id, seq)`, and the node's progress (`GREATEST`), all in one
//! transaction. The caller trims its outbox only after this returns Ok, and
//! re-reads the progress from PostgreSQL after any reconnect: an entry
//! shipped twice (a crash between commit and trim) is dropped by the
//! conflict rule.

use futures_util::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::pg;
use crate::error::{Error, Result};
use crate::model::Record;

/// One outbox entry decoded for the `records` table.
pub struct Entry {
    pub seq: i64,
    pub kind: i16,
    pub time_us: i64,
    pub body: String,
}

impl Entry {
    /// From an outbox (seq, JSON) pair; `None` for an unreadable value.
    pub fn decode(seq: u64, json: &[u8]) -> Option<Entry> {
        let r: Record = serde_json::from_slice(json).ok()?;
        let (kind, time_us) = match &r {
            Record::Message(m) => (1, m.time_us),
            Record::Login(l) => (2, l.time_us),
            Record::Outside(o) => (3, o.time_us),
        };
        Some(Entry {
            seq: seq as i64,
            kind,
            time_us,
            body: String::from_utf8_lossy(json).into_owned(),
        })
    }
}

/// Ship `entries` of node `id`; `complete_until_us`: when the batch empties
/// the outbox, everything captured before this instant is then central.
///
/// # Errors
/// [`Error::Central`]: nothing was committed (the whole batch is retried).
pub async fn ship(
    c: &mut Client,
    id: &str,
    entries: &[Entry],
    complete_until_us: Option<i64>,
) -> Result<()> {
    let tx = c
        .transaction()
        .await
        .map_err(|e| pg("starting a batch", e))?;
    tx.batch_execute(
        "CREATE TEMP TABLE IF NOT EXISTS incoming
           (node_id text, seq bigint, kind smallint, time_us bigint, body text)
           ON COMMIT DELETE ROWS",
    )
    .await
    .map_err(|e| pg("temporary table", e))?;
    let sink = tx
        .copy_in("COPY incoming (node_id, seq, kind, time_us, body) FROM STDIN BINARY")
        .await
        .map_err(|e| pg("COPY", e))?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[Type::TEXT, Type::INT8, Type::INT2, Type::INT8, Type::TEXT],
    );
    pin_mut!(writer);
    for e in entries {
        writer
            .as_mut()
            .write(&[&id, &e.seq, &e.kind, &e.time_us, &e.body])
            .await
            .map_err(|e| pg("COPY", e))?;
    }
    writer.finish().await.map_err(|e| pg("COPY", e))?;
    tx.execute(
        "INSERT INTO records (node_id, seq, kind, time_us, body)
         SELECT node_id, seq, kind, time_us, body FROM incoming
         ON CONFLICT (node_id, seq) DO NOTHING",
        &[],
    )
    .await
    .map_err(|e| pg("inserting the batch", e))?;
    let last = entries.iter().map(|e| e.seq).max().unwrap_or(-1);
    let n = tx
        .execute(
            "UPDATE nodes SET shipped_seq = GREATEST(shipped_seq, $2),
                 complete_until_us = GREATEST(complete_until_us, COALESCE($3, complete_until_us)),
                 last_contact = now()
             WHERE id = $1 AND retired IS NULL",
            &[&id, &last, &complete_until_us],
        )
        .await
        .map_err(|e| pg("updating this node's progress", e))?;
    if n != 1 {
        return Err(Error::Central(format!(
            "node id {id} is not an active node centrally (retired?)"
        )));
    }
    tx.commit()
        .await
        .map_err(|e| pg("committing the batch", e))?;
    Ok(())
}
