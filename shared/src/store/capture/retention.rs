//! Retention: the months before `keep_from` are folded into the per-BAL
//! summary (`bal`, never purged), then range-deleted.

use std::collections::HashMap;

use rocksdb::WriteBatch;

use super::keys::{bal_of, read_u64, CF_BAL, CF_LOGIN, CF_RCV, CF_SNT, MONTH_CFS};
use super::{explain, CaptureStore};
use crate::error::{Error, Result};
use crate::month::Month;

impl CaptureStore {
    /// Delete every captured key of months before `keep_from`, after folding
    /// their last login / sent / received dates into the per-BAL summary
    /// (never purged).
    pub fn purge_before(&self, keep_from: Month) -> Result<()> {
        self.fold_before(keep_from)?;
        for cf in MONTH_CFS {
            self.db
                .delete_range_cf(
                    self.cf(cf),
                    b"000000".as_slice(),
                    keep_from.key().as_slice(),
                )
                .map_err(|e| Error::store(&self.path, explain(&e)))?;
        }
        Ok(())
    }

    /// Fold the last dates of months before `keep_from` into the summary
    /// (idempotent: *max*), before retention deletes them.
    pub(super) fn fold_before(&self, keep_from: Month) -> Result<()> {
        let mut acc: HashMap<Vec<u8>, [u64; 3]> = HashMap::new();
        for (i, cf) in [CF_LOGIN, CF_SNT, CF_RCV].into_iter().enumerate() {
            self.scan_range(cf, b"", &keep_from.key(), |k, v| {
                let e = acc.entry(bal_of(k).to_vec()).or_insert([0; 3]);
                e[i] = e[i].max(read_u64(v));
            })?;
        }
        if acc.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for (bal, v) in acc {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_be_bytes()).collect();
            batch.merge_cf(self.cf(CF_BAL), bal, bytes);
        }
        self.db
            .write(batch)
            .map_err(|e| Error::store(&self.path, e))
    }
}

impl CaptureStore {
    /// Every per-BAL summary entry: (BAL, [last login, last sent, last
    /// received] µs, 0 when unknown).
    ///
    /// # Errors
    /// [`Error::Store`].
    pub fn summaries(&self) -> Result<Vec<(String, [u64; 3])>> {
        let mut out = vec![];
        self.scan_range(CF_BAL, b"", &[0xff; 8], |k, v| {
            out.push((
                String::from_utf8_lossy(k).into_owned(),
                super::keys::read3(v),
            ));
        })?;
        Ok(out)
    }

    /// Merge summary entries (with *max*), e.g. those kept centrally.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub fn merge_summaries(&self, entries: &[(String, [u64; 3])]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for (bal, v) in entries {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_be_bytes()).collect();
            batch.merge_cf(self.cf(CF_BAL), bal.as_bytes(), bytes);
        }
        self.db
            .write(batch)
            .map_err(|e| Error::store(&self.path, e))
    }
}
