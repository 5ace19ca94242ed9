//! Rows rebuilt from Postfix's log by `mss-admin reconcile --fill`, kept in
//! the registry (written by mss-admin; the capture store has one writer, the
//! running sidecar). Only recipients the log proves passed while the milter
//! was down are ever written here; their TAILLE is an estimate.
//!
//! Key: `AAAAMM` · domain · `0x00` · µs (u64 BE) · MAIL_ID · `0x00` ·
//! recipient (the capture store's Echanges key), value: JSON [`Filled`].
//! The MAIL_ID is derived from (node, time, queue id), so filling the same
//! gap twice writes the same key: idempotent by construction.

use rocksdb::{Direction, IteratorMode};
use serde::{Deserialize, Serialize};

use super::capture::OutRow;
use super::registry::RegistryStore;
use crate::error::Result;
use crate::month::Month;

pub use super::registry::CF_FILLED;

/// The `frontend` of a filled row as [`OutRow`] reports it.
pub const SOURCE_LOG: &str = "log";

/// One rebuilt row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filled {
    pub domain: String,
    pub time_us: i64,
    pub mail_id: String,
    pub sender: String,
    pub recipient: String,
    /// Estimated TAILLE: `logged_size - overhead`.
    pub size: u64,
    /// Postfix's `size=` (the queue file's content length).
    pub logged_size: u64,
    /// The median `size= − TAILLE` the estimate subtracted.
    pub overhead: i64,
    pub queue_id: String,
    /// `smtpd` or `pickup`.
    pub origin: String,
    pub estimated: bool,
}

fn key(month: Month, f: &Filled) -> Vec<u8> {
    let mut k = month.key().to_vec();
    k.extend_from_slice(f.domain.as_bytes());
    k.push(0);
    k.extend_from_slice(&(f.time_us.max(0) as u64).to_be_bytes());
    k.extend_from_slice(f.mail_id.as_bytes());
    k.push(0);
    k.extend_from_slice(f.recipient.as_bytes());
    k
}

impl Filled {
    /// As the capture store's rows read (`frontend` = `log`).
    pub fn to_row(&self) -> OutRow {
        OutRow {
            domain: self.domain.clone(),
            time_us: self.time_us,
            mail_id: self.mail_id.clone(),
            recipient: self.recipient.clone(),
            sender: self.sender.clone(),
            size: self.size,
            frontend: SOURCE_LOG.into(),
            queue_id: Some(self.queue_id.clone()),
            message_id: None,
        }
    }
}

impl RegistryStore {
    /// Write rows of `month` in one synced batch; returns how many keys were
    /// new (a row already there is left as it was).
    ///
    /// # Errors
    /// [`crate::Error::Store`].
    pub fn add_filled(&self, month: Month, rows: &[Filled]) -> Result<usize> {
        let cf = self.cf(CF_FILLED);
        let mut b = rocksdb::WriteBatch::default();
        let mut new = 0;
        for f in rows {
            let k = key(month, f);
            if self.db.get_cf(cf, &k).map_err(|e| self.err(e))?.is_some() {
                continue;
            }
            b.put_cf(cf, k, serde_json::to_vec(f).expect("serialisable"));
            new += 1;
        }
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(b, &wo).map_err(|e| self.err(e))?;
        Ok(new)
    }

    /// Every filled row of `month` (all domains), in key order: domain,
    /// date, MAIL_ID, recipient. Empty for a registry without the column
    /// family (opened read-only before any fill).
    ///
    /// # Errors
    /// [`crate::Error::Store`] (an unreadable value names its key).
    pub fn filled(&self, month: Month) -> Result<Vec<Filled>> {
        let mut out = vec![];
        let Some(cf) = self.db.cf_handle(CF_FILLED) else {
            return Ok(out);
        };
        let p = month.key();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&p, Direction::Forward))
        {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if !k.starts_with(&p) {
                break;
            }
            out.push(serde_json::from_slice(&v).map_err(|e| {
                self.err(format!(
                    "filled row {}: {e}",
                    String::from_utf8_lossy(&k[6..]).replace('\0', " ")
                ))
            })?);
        }
        Ok(out)
    }

    /// Remove the filled rows of months before `oldest` (retention).
    /// Returns how many were removed.
    ///
    /// # Errors
    /// [`crate::Error::Store`].
    pub fn purge_filled_before(&self, oldest: Month) -> Result<usize> {
        let cf = self.cf(CF_FILLED);
        let bound = oldest.key();
        let mut keys = vec![];
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, _) = item.map_err(|e| self.err(e))?;
            if k[..] >= bound[..] {
                break;
            }
            keys.push(k);
        }
        let mut b = rocksdb::WriteBatch::default();
        for k in &keys {
            b.delete_cf(cf, k);
        }
        self.db.write(b).map_err(|e| self.err(e))?;
        Ok(keys.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(rcpt: &str, t: i64) -> Filled {
        Filled {
            domain: "op.example".into(),
            time_us: t,
            mail_id: format!("mx1.x.{t}"),
            sender: "a@op.example".into(),
            recipient: rcpt.into(),
            size: 400,
            logged_size: 622,
            overhead: 222,
            queue_id: "4Q".into(),
            origin: "smtpd".into(),
            estimated: true,
        }
    }

    #[test]
    fn added_once_read_in_order_purged_by_month() {
        let dir = tempfile::tempdir().unwrap();
        let reg = RegistryStore::open(&dir.path().join("r")).unwrap();
        let (m, next) = (
            Month::parse("2026-10").unwrap(),
            Month::parse("2026-11").unwrap(),
        );
        let rows = [row("b@x.test", 20), row("a@x.test", 10)];
        assert_eq!(reg.add_filled(m, &rows).unwrap(), 2);
        assert_eq!(reg.add_filled(m, &rows).unwrap(), 0, "idempotent");
        assert_eq!(reg.add_filled(next, &[row("c@x.test", 30)]).unwrap(), 1);
        let got = reg.filled(m).unwrap();
        assert_eq!(got, vec![rows[1].clone(), rows[0].clone()]);
        assert_eq!(got[0].to_row().frontend, "log");
        assert_eq!(reg.purge_filled_before(next).unwrap(), 2);
        assert!(reg.filled(m).unwrap().is_empty());
        assert_eq!(reg.filled(next).unwrap().len(), 1);
    }
}
