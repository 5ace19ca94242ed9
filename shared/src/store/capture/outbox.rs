//! The outbox (`[central]` only): every record the capture writer applies is
//! also written, in the same atomic batch, as an outbox entry keyed by a
//! per-node sequence number, so that what the store holds and what must go
//! to PostgreSQL can never differ. The daemon's shipper reads entries in
//! order, ships them, and trims them only once PostgreSQL has committed them
//! (see `crate::central`).
//!
//! | column family | key | value |
//! |---|---|---|
//! | `outbox` | seq (u64 BE) | the record, JSON |
//! | `meta` | `outbox/next` | the next seq (u64 BE): never reused, even once the outbox is empty |
//! | `meta` | `central/node_id` | this node's random id, registered centrally with `operator.node` |

use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::{explain, CaptureStore};
use crate::error::{Error, Result};
use crate::model::Record;

pub const CF_OUTBOX: &str = "outbox";
pub const CF_META: &str = "meta";
const NEXT: &[u8] = b"outbox/next";
const NODE_ID: &[u8] = b"central/node_id";

fn be(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    let n = b.len().min(8);
    a[..n].copy_from_slice(&b[..n]);
    u64::from_be_bytes(a)
}

impl CaptureStore {
    /// From now on every applied record also goes to the outbox.
    ///
    /// # Errors
    /// [`Error::Store`] when the outbox cannot be read.
    pub fn enable_outbox(&self) -> Result<()> {
        let meta = self.cf(CF_META);
        let stored = self
            .db
            .get_cf(meta, NEXT)
            .map_err(|e| Error::store(&self.path, explain(&e)))?
            .map_or(0, |v| be(&v));
        let last = self
            .db
            .iterator_cf(self.cf(CF_OUTBOX), IteratorMode::End)
            .next()
            .transpose()
            .map_err(|e| Error::store(&self.path, explain(&e)))?
            .map_or(0, |(k, _)| be(&k) + 1);
        *self.outbox.lock().unwrap_or_else(|p| p.into_inner()) = Some(stored.max(last));
        Ok(())
    }

    /// Add `records` to the outbox part of `batch` (when enabled).
    pub(super) fn outbox_add(&self, batch: &mut WriteBatch, records: &[Record]) {
        let mut next = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        let Some(n) = next.as_mut() else {
            return;
        };
        for r in records {
            let body = serde_json::to_vec(r).expect("records serialise");
            batch.put_cf(self.cf(CF_OUTBOX), n.to_be_bytes(), body);
            *n += 1;
        }
        batch.put_cf(self.cf(CF_META), NEXT, n.to_be_bytes());
    }

    /// The next seq to be written (`None`: outbox not enabled). With the
    /// first waiting seq, bounds what waits (a failed write leaves a gap).
    pub fn outbox_next(&self) -> Option<u64> {
        *self.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Up to `max` entries from the oldest, as (seq, JSON record).
    ///
    /// # Errors
    /// [`Error::Store`].
    pub fn outbox_read(&self, max: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::with_capacity(max.min(100_000));
        let Some(cf) = self.db.cf_handle(CF_OUTBOX) else {
            return Ok(out);
        };
        for item in self.db.iterator_cf(cf, IteratorMode::Start).take(max) {
            let (k, v) = item.map_err(|e| Error::store(&self.path, explain(&e)))?;
            out.push((be(&k), v.to_vec()));
        }
        Ok(out)
    }

    /// Remove every entry up to `seq` included (PostgreSQL has them).
    ///
    /// # Errors
    /// [`Error::Store`].
    pub fn outbox_trim(&self, seq: u64) -> Result<()> {
        let cf = self.cf(CF_OUTBOX);
        self.db
            .delete_range_cf(cf, 0u64.to_be_bytes(), (seq + 1).to_be_bytes())
            .map_err(|e| Error::store(&self.path, explain(&e)))?;
        Ok(())
    }

    /// The number of entries waiting (counted: for status and tests).
    ///
    /// # Errors
    /// [`Error::Store`].
    pub fn outbox_len(&self) -> Result<u64> {
        let Some(cf) = self.db.cf_handle(CF_OUTBOX) else {
            return Ok(0);
        };
        let mut n = 0;
        for item in self.db.iterator_cf(
            cf,
            IteratorMode::From(&0u64.to_be_bytes(), Direction::Forward),
        ) {
            item.map_err(|e| Error::store(&self.path, explain(&e)))?;
            n += 1;
        }
        Ok(n)
    }

    /// This node's central id, if it has one.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub fn node_id(&self) -> Result<Option<String>> {
        let Some(cf) = self.db.cf_handle(CF_META) else {
            return Ok(None);
        };
        Ok(self
            .db
            .get_cf(cf, NODE_ID)
            .map_err(|e| Error::store(&self.path, explain(&e)))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Keep `id` as this node's central id (synced).
    ///
    /// # Errors
    /// [`Error::Store`].
    pub fn set_node_id(&self, id: &str) -> Result<()> {
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        self.db
            .put_cf_opt(self.cf(CF_META), NODE_ID, id.as_bytes(), &wo)
            .map_err(|e| Error::store(&self.path, explain(&e)))
    }
}
