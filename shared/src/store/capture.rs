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

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use jiff::tz::TimeZone;
use rocksdb::{
    ColumnFamilyDescriptor, IteratorMode, MergeOperands, ReadOptions, WriteBatch, WriteOptions, DB,
};
use serde::Serialize;

use crate::config::domain_of;
use crate::error::{Error, Result};
use crate::indicators::address::drop_trailing_dot;
use crate::model::{LoginRecord, MessageRecord, Record};
use crate::month::{from_micros, Month};

pub const CF_OUT: &str = "out";
pub const CF_RCV: &str = "rcv";
pub const CF_LOGIN: &str = "login";
pub const CF_SNT: &str = "snt";
pub const CF_POL: &str = "pol";
/// Per-BAL summary of purged months (key BAL): never purged, see [`super::history`].
pub const CF_BAL: &str = "bal";
const CFS: [&str; 6] = [CF_OUT, CF_RCV, CF_LOGIN, CF_SNT, CF_POL, CF_BAL];
/// The month-keyed column families, purged by retention.
const MONTH_CFS: [&str; 5] = [CF_OUT, CF_RCV, CF_LOGIN, CF_SNT, CF_POL];

/// Decides which keys a record produces: the operator's domains and time zone.
#[derive(Debug, Clone)]
pub struct Classifier {
    pub domains: HashSet<String>,
    pub tz: TimeZone,
}

impl Classifier {
    pub fn new(domains: &[String], tz: TimeZone) -> Self {
        Classifier {
            domains: domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            tz,
        }
    }

    pub fn from_config(cfg: &crate::config::Config) -> Self {
        Classifier::new(&cfg.operator.domains, cfg.tz())
    }

    /// The operator domain of `addr`, if it is on one.
    pub fn operator_domain(&self, addr: &str) -> Option<String> {
        domain_of(addr).filter(|d| self.domains.contains(d))
    }
}

/// One Echanges row as read back from the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutRow {
    pub domain: String,
    pub time_us: i64,
    pub mail_id: String,
    pub recipient: String,
    pub sender: String,
    pub size: u64,
    pub frontend: String,
    pub queue_id: Option<String>,
    pub message_id: Option<String>,
}

/// The capture database.
pub struct CaptureStore {
    pub(super) db: DB,
    pub(super) path: String,
}

/// Stop RocksDB's background jobs and wait for them before the database
/// closes: a job still running when a short-lived tool exits aborts the
/// process ("pthread lock: Invalid argument", seen in the test binaries).
impl Drop for CaptureStore {
    fn drop(&mut self) {
        self.db.cancel_all_background_work(true);
    }
}

fn merge_max(_key: &[u8], existing: Option<&[u8]>, ops: &MergeOperands) -> Option<Vec<u8>> {
    let mut best = existing.map(read_u64).unwrap_or(0);
    for op in ops {
        best = best.max(read_u64(op));
    }
    Some(best.to_be_bytes().to_vec())
}

fn merge_login(_key: &[u8], existing: Option<&[u8]>, ops: &MergeOperands) -> Option<Vec<u8>> {
    let (mut last, mut count) = existing.map(split_login).unwrap_or((0, 0));
    for op in ops {
        let (t, n) = split_login(op);
        last = last.max(t);
        count = count.saturating_add(n);
    }
    let mut v = last.to_be_bytes().to_vec();
    v.extend_from_slice(&count.to_be_bytes());
    Some(v)
}

fn merge_sum(_key: &[u8], existing: Option<&[u8]>, ops: &MergeOperands) -> Option<Vec<u8>> {
    let mut n = existing.map(read_u64).unwrap_or(0);
    for op in ops {
        n = n.saturating_add(read_u64(op));
    }
    Some(n.to_be_bytes().to_vec())
}

pub(super) fn read_u64(b: &[u8]) -> u64 {
    b.get(..8)
        .map(|s| u64::from_be_bytes(s.try_into().expect("8 bytes")))
        .unwrap_or(0)
}

pub(super) fn split_login(b: &[u8]) -> (u64, u64) {
    (read_u64(b), b.get(8..).map(read_u64).unwrap_or(0))
}

fn cf_descriptors() -> Vec<ColumnFamilyDescriptor> {
    CFS.iter()
        .map(|name| {
            let mut o = super::base_options();
            match *name {
                CF_RCV | CF_SNT => o.set_merge_operator_associative("mss_max_u64", merge_max),
                CF_LOGIN => o.set_merge_operator_associative("mss_login", merge_login),
                CF_POL => o.set_merge_operator_associative("mss_sum_u64", merge_sum),
                CF_BAL => {
                    o.set_merge_operator_associative("mss_max3_u64", super::history::merge_max3)
                }
                _ => {}
            }
            ColumnFamilyDescriptor::new(*name, o)
        })
        .collect()
}

impl CaptureStore {
    /// Open (creating if needed) as the one writer.
    ///
    /// # Errors
    /// [`Error::Store`] when RocksDB refuses: held by another process (LOCK),
    /// permissions, corruption.
    pub fn open(path: &Path) -> Result<Self> {
        let opts = super::base_options();
        super::ensure_private_dir(path).map_err(|e| Error::store(path.display(), e))?;
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
        let mut opts = super::base_options();
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

    /// Apply records in one atomic batch; with `sync`, the WAL is fsync'd
    /// before returning (the capture writer's group commit).
    pub fn apply(&self, records: &[Record], cls: &Classifier, sync: bool) -> Result<()> {
        let mut batch = WriteBatch::default();
        for r in records {
            self.add_to_batch(&mut batch, r, cls);
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db
            .write_opt(batch, &wo)
            .map_err(|e| Error::store(&self.path, explain(&e)))
    }

    fn add_to_batch(&self, batch: &mut WriteBatch, r: &Record, cls: &Classifier) {
        match r {
            Record::Message(m) => self.add_message(batch, m, cls),
            Record::Outside(o) => {
                let month = Month::of(from_micros(o.time_us), &cls.tz);
                let mut k = month.key().to_vec();
                k.extend_from_slice(o.sender_domain.as_bytes());
                k.push(0);
                k.extend_from_slice(o.recipient_domain.as_bytes());
                batch.merge_cf(self.cf(CF_POL), k, 1u64.to_be_bytes());
            }
            Record::Login(l) => {
                let month = Month::of(from_micros(l.time_us), &cls.tz);
                batch.merge_cf(
                    self.cf(CF_LOGIN),
                    login_key(month, l),
                    login_value(l.time_us, 1),
                );
            }
        }
    }

    fn add_message(&self, batch: &mut WriteBatch, m: &MessageRecord, cls: &Classifier) {
        let month = Month::of(from_micros(m.time_us), &cls.tz);
        // A domain's trailing dot (`a@ch-a.fr.`) is dropped here: one BAL, one spelling.
        let sender = drop_trailing_dot(&m.sender);
        if let Some(domain) = cls.operator_domain(&sender) {
            let value = if sender.len() == m.sender.len() {
                out_value(m)
            } else {
                out_value(&MessageRecord {
                    sender: sender.to_string(),
                    ..m.clone()
                })
            };
            let mut k = month.key().to_vec();
            k.extend_from_slice(sender.as_bytes());
            batch.merge_cf(self.cf(CF_SNT), k, (m.time_us.max(0) as u64).to_be_bytes());
            for rcpt in &m.recipients {
                batch.put_cf(
                    self.cf(CF_OUT),
                    out_key(
                        month,
                        &domain,
                        m.time_us,
                        &m.mail_id,
                        &drop_trailing_dot(rcpt),
                    ),
                    &value,
                );
            }
        }
        for rcpt in &m.recipients {
            let rcpt = drop_trailing_dot(rcpt);
            if cls.operator_domain(&rcpt).is_some() {
                let mut k = month.key().to_vec();
                k.extend_from_slice(rcpt.as_bytes());
                batch.merge_cf(self.cf(CF_RCV), k, (m.time_us.max(0) as u64).to_be_bytes());
            }
        }
    }

    /// Every Echanges row of `month` (all domains, or one), in key order:
    /// domain, then date, then MAIL_ID, then recipient.
    pub fn for_each_out(
        &self,
        month: Month,
        domain: Option<&str>,
        mut f: impl FnMut(OutRow),
    ) -> Result<()> {
        let mut prefix = month.key().to_vec();
        if let Some(d) = domain {
            prefix.extend_from_slice(d.as_bytes());
            prefix.push(0);
        }
        self.scan(CF_OUT, &prefix, |k, v| {
            if let Some(row) = decode_out(k, v) {
                f(row);
            }
        })
    }

    /// Last reception per BAL for `month`.
    pub fn received(&self, month: Month) -> Result<BTreeMap<String, i64>> {
        self.last_per_bal(CF_RCV, month)
    }

    /// Last message sent per operator BAL for `month`.
    /// Recipients outside the Espace de Confiance, per (sender domain,
    /// recipient domain), in `month`.
    pub fn outside(&self, month: Month) -> Result<BTreeMap<(String, String), u64>> {
        let mut out = BTreeMap::new();
        self.scan(CF_POL, &month.key(), |k, v| {
            let rest = &k[6..];
            let mut parts = rest.splitn(2, |b| *b == 0);
            let s = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            let r = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            *out.entry((s, r)).or_default() += read_u64(v);
        })?;
        Ok(out)
    }

    pub fn sent(&self, month: Month) -> Result<BTreeMap<String, i64>> {
        self.last_per_bal(CF_SNT, month)
    }

    fn last_per_bal(&self, cf: &str, month: Month) -> Result<BTreeMap<String, i64>> {
        let mut out = BTreeMap::new();
        self.scan(cf, &month.key(), |k, v| {
            out.insert(
                String::from_utf8_lossy(&k[6..]).into_owned(),
                read_u64(v) as i64,
            );
        })?;
        Ok(out)
    }

    /// Logins of `month`: (BAL, service) → (last time µs, count).
    pub fn logins(&self, month: Month) -> Result<BTreeMap<(String, String), (i64, u64)>> {
        let mut out = BTreeMap::new();
        self.scan(CF_LOGIN, &month.key(), |k, v| {
            let rest = &k[6..];
            let (bal, service) = match rest.iter().position(|&b| b == 0) {
                Some(p) => (&rest[..p], &rest[p + 1..]),
                None => (rest, &[][..]),
            };
            let (t, n) = split_login(v);
            out.insert(
                (
                    String::from_utf8_lossy(bal).into_owned(),
                    String::from_utf8_lossy(service).into_owned(),
                ),
                (t as i64, n),
            );
        })?;
        Ok(out)
    }

    pub(super) fn scan(
        &self,
        cf: &str,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]),
    ) -> Result<()> {
        if self.db.cf_handle(cf).is_none() {
            return Ok(()); // not created yet by the primary (older store)
        }
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(prefix_upper_bound(prefix));
        ro.fill_cache(false);
        let it = self.db.iterator_cf_opt(
            self.cf(cf),
            ro,
            IteratorMode::From(prefix, rocksdb::Direction::Forward),
        );
        for item in it {
            let (k, v) = item.map_err(|e| Error::store(&self.path, explain(&e)))?;
            if !k.starts_with(prefix) {
                break;
            }
            f(&k, &v);
        }
        Ok(())
    }

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

fn explain(e: &rocksdb::Error) -> String {
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

fn prefix_upper_bound(prefix: &[u8]) -> Vec<u8> {
    let mut ub = prefix.to_vec();
    while let Some(last) = ub.pop() {
        if last < 0xff {
            ub.push(last + 1);
            return ub;
        }
    }
    vec![0xff; 16]
}

fn out_key(month: Month, domain: &str, time_us: i64, mail_id: &str, rcpt: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(6 + domain.len() + 10 + mail_id.len() + rcpt.len());
    k.extend_from_slice(&month.key());
    k.extend_from_slice(domain.as_bytes());
    k.push(0);
    k.extend_from_slice(&(time_us.max(0) as u64).to_be_bytes());
    k.extend_from_slice(mail_id.as_bytes());
    k.push(0);
    k.extend_from_slice(rcpt.as_bytes());
    k
}

fn out_value(m: &MessageRecord) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + m.sender.len() + 64);
    v.extend_from_slice(&m.size.to_be_bytes());
    v.push(match m.frontend.as_str() {
        "milter" => b'm',
        _ => b'p',
    });
    v.extend_from_slice(m.sender.as_bytes());
    v.push(0);
    v.extend_from_slice(m.queue_id.as_deref().unwrap_or("").as_bytes());
    v.push(0);
    v.extend_from_slice(m.message_id.as_deref().unwrap_or("").as_bytes());
    v
}

fn decode_out(k: &[u8], v: &[u8]) -> Option<OutRow> {
    let rest = k.get(6..)?;
    let z = rest.iter().position(|&b| b == 0)?;
    let domain = std::str::from_utf8(&rest[..z]).ok()?.to_string();
    let rest = &rest[z + 1..];
    let time_us = read_u64(rest.get(..8)?) as i64;
    let rest = &rest[8..];
    let z = rest.iter().position(|&b| b == 0)?;
    let mail_id = std::str::from_utf8(&rest[..z]).ok()?.to_string();
    let recipient = std::str::from_utf8(&rest[z + 1..]).ok()?.to_string();
    let size = read_u64(v.get(..8)?);
    let frontend = match v.get(8)? {
        b'm' => "milter",
        _ => "proxy",
    }
    .to_string();
    let mut parts = v[9..].split(|&b| b == 0);
    let sender = String::from_utf8_lossy(parts.next()?).into_owned();
    let opt = |p: Option<&[u8]>| {
        p.filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
    };
    let queue_id = opt(parts.next());
    let message_id = opt(parts.next());
    Some(OutRow {
        domain,
        time_us,
        mail_id,
        recipient,
        sender,
        size,
        frontend,
        queue_id,
        message_id,
    })
}

fn login_key(month: Month, l: &LoginRecord) -> Vec<u8> {
    let mut k = month.key().to_vec();
    k.extend_from_slice(l.bal.as_bytes());
    k.push(0);
    k.extend_from_slice(l.service.as_bytes());
    k
}

fn login_value(time_us: i64, n: u64) -> Vec<u8> {
    let mut v = (time_us.max(0) as u64).to_be_bytes().to_vec();
    v.extend_from_slice(&n.to_be_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cls() -> Classifier {
        Classifier::new(
            &["ch-a.mssante.fr".into(), "ch-b.mssante.fr".into()],
            TimeZone::get("Europe/Paris").unwrap(),
        )
    }

    fn msg(id: &str, from: &str, to: &[&str], at: &str, size: u64) -> Record {
        Record::Message(MessageRecord {
            mail_id: id.into(),
            queue_id: Some("Q1".into()),
            message_id: Some("<m@x>".into()),
            sender: from.into(),
            recipients: to.iter().map(|s| s.to_string()).collect(),
            size,
            time_us: at.parse::<jiff::Timestamp>().unwrap().as_microsecond(),
            frontend: "proxy".into(),
        })
    }

    #[test]
    fn rows_are_per_recipient_sorted_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let s = CaptureStore::open(&dir.path().join("c")).unwrap();
        let c = cls();
        let recs = vec![
            msg(
                "m2",
                "x@ch-a.mssante.fr",
                &["r1@out.fr"],
                "2026-10-05T10:00:00Z",
                50,
            ),
            msg(
                "m1",
                "y@ch-a.mssante.fr",
                &["r2@out.fr", "z@ch-b.mssante.fr"],
                "2026-10-05T09:00:00Z",
                70,
            ),
            msg(
                "m3",
                "in@else.fr",
                &["z@ch-b.mssante.fr"],
                "2026-10-06T09:00:00Z",
                10,
            ),
        ];
        s.apply(&recs, &c, true).unwrap();
        s.apply(&recs, &c, true).unwrap(); // replay: no duplicate
        let m = Month::parse("2026-10").unwrap();
        let mut rows = vec![];
        s.for_each_out(m, None, |r| {
            rows.push((r.domain, r.mail_id, r.recipient, r.size))
        })
        .unwrap();
        assert_eq!(
            rows,
            vec![
                (
                    "ch-a.mssante.fr".into(),
                    "m1".into(),
                    "r2@out.fr".into(),
                    70
                ),
                (
                    "ch-a.mssante.fr".into(),
                    "m1".into(),
                    "z@ch-b.mssante.fr".into(),
                    70
                ),
                (
                    "ch-a.mssante.fr".into(),
                    "m2".into(),
                    "r1@out.fr".into(),
                    50
                ),
            ]
        );
        let rcv = s.received(m).unwrap();
        assert_eq!(rcv.len(), 1);
        assert_eq!(
            rcv["z@ch-b.mssante.fr"],
            "2026-10-06T09:00:00Z"
                .parse::<jiff::Timestamp>()
                .unwrap()
                .as_microsecond()
        );
    }

    #[test]
    fn checkpoints_hold_unflushed_writes_from_the_primary_only() {
        let d = tempfile::tempdir().unwrap();
        let s = CaptureStore::open(&d.path().join("c")).unwrap();
        let l = |t: i64| {
            Record::Login(LoginRecord {
                bal: "a@ch-a.mssante.fr".into(),
                time_us: 1_790_000_000_000_000 + t,
                service: "imap".into(),
                source: "dovecot".into(),
            })
        };
        // In the WAL and memtable only: the primary keeps running.
        s.apply(&[l(1), l(2)], &cls(), true).unwrap();
        let m = Month::of(from_micros(1_790_000_000_000_000), &cls().tz);
        let sec = CaptureStore::open_secondary(&d.path().join("c"), &d.path().join("s")).unwrap();
        sec.checkpoint(&d.path().join("ck2")).unwrap();
        drop(sec);
        let partial = CaptureStore::open(&d.path().join("ck2")).unwrap();
        assert!(
            partial.logins(m).unwrap().is_empty(),
            "secondary checkpoints miss the memtable"
        );
        s.checkpoint(&d.path().join("ck")).unwrap();
        let back = CaptureStore::open(&d.path().join("ck")).unwrap();
        assert_eq!(
            back.logins(m).unwrap()[&("a@ch-a.mssante.fr".to_string(), "imap".to_string())],
            (1_790_000_000_000_002, 2)
        );
        drop(s);
    }

    #[test]
    fn logins_keep_last_and_count() {
        let dir = tempfile::tempdir().unwrap();
        let s = CaptureStore::open(&dir.path().join("c")).unwrap();
        let l = |t: i64| {
            Record::Login(LoginRecord {
                bal: "a@ch-a.mssante.fr".into(),
                time_us: 1_790_000_000_000_000 + t,
                service: "imap".into(),
                source: "dovecot".into(),
            })
        };
        s.apply(&[l(5), l(1)], &cls(), true).unwrap();
        s.apply(&[l(3)], &cls(), false).unwrap();
        let m = Month::of(from_micros(1_790_000_000_000_000), &cls().tz);
        let got = s.logins(m).unwrap();
        assert_eq!(
            got[&("a@ch-a.mssante.fr".to_string(), "imap".to_string())],
            (1_790_000_000_000_005, 3)
        );
    }

    #[test]
    fn purge_drops_old_months_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = CaptureStore::open(&dir.path().join("c")).unwrap();
        let recs = vec![
            msg(
                "old",
                "x@ch-a.mssante.fr",
                &["r@o.fr"],
                "2025-01-05T10:00:00Z",
                1,
            ),
            msg(
                "new",
                "x@ch-a.mssante.fr",
                &["r@o.fr"],
                "2026-10-05T10:00:00Z",
                1,
            ),
        ];
        s.apply(&recs, &cls(), true).unwrap();
        s.purge_before(Month::parse("2025-10").unwrap()).unwrap();
        let mut n = 0;
        s.for_each_out(Month::parse("2025-01").unwrap(), None, |_| n += 1)
            .unwrap();
        assert_eq!(n, 0);
        s.for_each_out(Month::parse("2026-10").unwrap(), None, |_| n += 1)
            .unwrap();
        assert_eq!(n, 1);
        // The purged month's last sent date survives in the summary, and
        // only up to the end of the month asked for.
        let t = |at: &str| at.parse::<jiff::Timestamp>().unwrap().as_microsecond();
        let oct = Month::parse("2026-10").unwrap();
        let d = s.last_dates(oct, t("2026-11-01T00:00:00Z")).unwrap();
        assert_eq!(d.sent["x@ch-a.mssante.fr"], t("2026-10-05T10:00:00Z"));
        let d = s.last_dates(oct, t("2026-10-01T00:00:00Z")).unwrap();
        assert_eq!(d.sent["x@ch-a.mssante.fr"], t("2025-01-05T10:00:00Z"));
        // Purging again (daily) changes nothing.
        s.purge_before(Month::parse("2025-10").unwrap()).unwrap();
        let d = s.last_dates(oct, t("2026-10-01T00:00:00Z")).unwrap();
        assert_eq!(d.sent["x@ch-a.mssante.fr"], t("2025-01-05T10:00:00Z"));
    }

    #[test]
    fn secondary_sees_primary_writes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c");
        let s = CaptureStore::open(&p).unwrap();
        s.apply(
            &[msg(
                "m",
                "x@ch-a.mssante.fr",
                &["r@o.fr"],
                "2026-10-05T10:00:00Z",
                9,
            )],
            &cls(),
            true,
        )
        .unwrap();
        let sec = CaptureStore::open_secondary(&p, &dir.path().join("sec")).unwrap();
        let mut n = 0;
        sec.for_each_out(
            Month::parse("2026-10").unwrap(),
            Some("ch-a.mssante.fr"),
            |_| n += 1,
        )
        .unwrap();
        assert_eq!(n, 1);
        assert!(
            CaptureStore::open(&p).is_err(),
            "second writer must be refused"
        );
    }
}
