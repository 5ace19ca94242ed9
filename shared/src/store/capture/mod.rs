//! The capture store (`store.capture_path`): what the sidecar saw.
//!
//! # Layout
//! One RocksDB database, written only by `mss-sidecar`'s capture writer, read by
//! `mss-admin` and `mss-export` as a *secondary* instance. Every key starts with
//! the 6-byte local month `AAAAMM` (in `operator.timezone`), so that an export
//! is one range scan and retention is one range delete per column family.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `out` | `AAAAMM` · sender domain · `0x00` · accept time (u64 BE µs) · MAIL_ID · `0x00` · recipient | size (u64 BE) · frontend (1 byte) · sender `0x00` queue id `0x00` Message-ID |
//! | `rcv` | `AAAAMM` · recipient BAL | last reception in that month (u64 BE µs), merged with *max* |
//! | `login` | `AAAAMM` · BAL · `0x00` · service | last login in that month (u64 BE µs) · count (u64 BE), merged *max/sum* |
//! | `snt` | `AAAAMM` · sender BAL | last message sent in that month (u64 BE µs), merged with *max* |
//! | `pol` | `AAAAMM` · sender domain · `0x00` · recipient domain | recipients outside the Espace de Confiance (u64 BE count), merged with *sum* |
//! | `outbox` | seq (u64 BE) | a record waiting for PostgreSQL (`[central]` only, see [`outbox`]) |
//! | `meta` | name | the outbox's next seq, this node's central id |
//!
//! * `out` holds one row per (message, accepted recipient) for senders on an
//!   operator domain: within a month and a domain, keys sort by date then
//!   MAIL_ID, exactly the order of the Echanges file. The key is derived from
//!   the MAIL_ID and the recipient, so writing a message twice (journal replay)
//!   leaves one row.
//! * `rcv` holds, for recipients on an operator domain, the last time they
//!   received a mail in the month: the applicative BALs' Connexions date.
//! * `login` holds, per BAL, service and month, the last successful login and
//!   how many were seen (a count replayed from the journal may be counted twice;
//!   the last-login date, which is what the ANS file needs, cannot be wrong).
//!
//! Addresses are stored lower-cased; message bodies are never stored.
//!
//! # Files
//! - this file: the database handle (open, secondary, checkpoint, flush, size).
//! - [`keys`]: column families, key and value encodings, merge operators.
//! - [`write`]: the [`Classifier`] and the atomic batch of records.
//! - [`read`]: one month's keys (rows, receptions, sendings, logins, policy).
//! - [`history`]: beyond one month key: the per-BAL summary, last dates up to a
//!   month's end, a month's rows by UTC time.
//! - [`retention`]: fold then range-delete the months past `retention_months`.
//! - [`outbox`]: with `[central]`, each record also queued (same batch) for PostgreSQL.

mod history;
mod keys;
pub mod outbox;
mod read;
mod retention;
#[cfg(test)]
mod tests;
mod write;

use std::path::Path;

use rocksdb::{ColumnFamilyDescriptor, DB};

use crate::error::{Error, Result};

pub use history::{bump, LastDates};
pub use keys::{OutRow, CF_BAL, CF_LOGIN, CF_OUT, CF_POL, CF_RCV, CF_SNT};
pub use write::Classifier;

use keys::{cf_descriptors, CFS};

/// The capture database.
pub struct CaptureStore {
    pub(crate) db: DB,
    pub(crate) path: String,
    /// The next outbox seq, when the outbox is enabled (`[central]`).
    pub(crate) outbox: std::sync::Mutex<Option<u64>>,
}

/// Stop RocksDB's background jobs and wait for them before the database
/// closes: a job still running when a short-lived tool exits aborts the
/// process ("pthread lock: Invalid argument", seen in the test binaries).
impl Drop for CaptureStore {
    fn drop(&mut self) {
        self.db.cancel_all_background_work(true);
    }
}

impl CaptureStore {
    /// Open (creating if needed) as the one writer.
    ///
    /// # Errors
    /// [`Error::Store`] when RocksDB refuses: held by another process (LOCK),
    /// permissions, corruption.
    pub fn open(path: &Path) -> Result<Self> {
        let opts = crate::store::base_options();
        crate::store::ensure_private_dir(path).map_err(|e| Error::store(path.display(), e))?;
        let db = DB::open_cf_descriptors(&opts, path, cf_descriptors())
            .map_err(|e| Error::store(path.display(), explain(&e)))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
        }
        Ok(CaptureStore {
            db,
            path: path.display().to_string(),
            outbox: Default::default(),
        })
    }

    /// Open read-only as a RocksDB secondary of a (possibly running) primary.
    /// `secondary_dir` holds the secondary's own info log; it is created.
    pub fn open_secondary(path: &Path, secondary_dir: &Path) -> Result<Self> {
        if !path.join("CURRENT").exists() {
            return Err(Error::store(
                path.display(),
                "no capture store here (has mss-sidecar run with this store.capture_path?)",
            ));
        }
        let mut opts = crate::store::base_options();
        opts.create_if_missing(false);
        opts.set_max_open_files(-1);
        // Only the column families the primary has created (an older
        // store may lack the newer ones: they read as empty).
        let existing = DB::list_cf(&opts, path).unwrap_or_default();
        let cfs: Vec<ColumnFamilyDescriptor> = cf_descriptors()
            .into_iter()
            .filter(|d| existing.is_empty() || existing.iter().any(|e| e == d.name()))
            .collect();
        let db = DB::open_cf_descriptors_as_secondary(&opts, path, secondary_dir, cfs)
            .map_err(|e| Error::store(path.display(), explain(&e)))?;
        db.try_catch_up_with_primary()
            .map_err(|e| Error::store(path.display(), explain(&e)))?;
        Ok(CaptureStore {
            db,
            path: path.display().to_string(),
            outbox: Default::default(),
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub(super) fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column family created at open")
    }

    /// A consistent checkpoint (hard links where possible) into `dir`, which
    /// must not exist. Only from the primary: a secondary's checkpoint
    /// misses what the primary has not flushed yet (tested).
    pub fn checkpoint(&self, dir: &Path) -> Result<()> {
        let c = rocksdb::checkpoint::Checkpoint::new(&self.db)
            .map_err(|e| Error::store(&self.path, e))?;
        c.create_checkpoint(dir).map_err(|e| {
            Error::store(
                &self.path,
                format!("checkpoint into {}: {e}", dir.display()),
            )
        })
    }

    /// Flush every column family's memtable to SST files (the writer does not
    /// need it: RocksDB flushes by itself; tools and benchmarks do).
    ///
    /// # Errors
    /// [`Error::Store`] when RocksDB cannot write.
    pub fn flush(&self) -> Result<()> {
        for cf in CFS {
            if let Some(h) = self.db.cf_handle(cf) {
                self.db
                    .flush_cf(h)
                    .map_err(|e| Error::store(&self.path, explain(&e)))?;
            }
        }
        Ok(())
    }

    /// Approximate on-disk size (SST + WAL-backed memtables), for status/metrics.
    pub fn approximate_size(&self) -> u64 {
        CFS.iter()
            .filter_map(|cf| {
                self.db
                    .property_int_value_cf(self.db.cf_handle(cf)?, "rocksdb.total-sst-files-size")
                    .ok()
                    .flatten()
            })
            .sum()
    }
}

pub(super) fn explain(e: &rocksdb::Error) -> String {
    let s = e.to_string();
    if s.contains("LOCK")
        && (s.contains("Resource temporarily unavailable") || s.contains("lock hold"))
    {
        format!("{s} (another process holds this store open for writing: is mss-sidecar already running?)")
    } else if s.contains("No space left") {
        format!("{s} (the disk is full)")
    } else {
        s
    }
}
