//! The registry store (`store.registry_path`): what the operator declares.
//!
//! # Layout
//! | column family | key | value |
//! |---|---|---|
//! | `mailbox` | domain · `0x00` · BAL | JSON [`Mailbox`] (type, test flag, FINESS, login tracking, every dated status change) |
//! | `meta` | name | JSON: `sipil/month/YYYY-MM` (delivery state, mss-export), `structure/<FINESS>` (name, contact: `mss-admin structure set`), `report/mailed/YYYY-MM/<FINESS>` (report mailed) |
//! | `login` | `AAAAMM` · BAL · `0x00` · service | last imported login in that month (u64 BE µs), from `mss-admin logins import` |
//! | `filled` | `AAAAMM` · domain · `0x00` · µs (u64 BE) · MAIL_ID · `0x00` · recipient | JSON `Filled` (`store::filled`): a row `mss-admin reconcile --fill` rebuilt from Postfix's log (TAILLE estimated) |
//!
//! Written by `mss-admin` (and later `mss-export`) with short opens; a second
//! writer gets a clear "in use" error. Keys are domain-first so an export
//! reads each domain's mailboxes with one prefix scan.
//!
//! Status history is never rewritten, only appended: exporting an old month
//! again gives the same files even after later changes (see
//! `Mailbox::included_in`, in `indicators::membership`).

use std::path::Path;

use jiff::civil::Date;
use rocksdb::{ColumnFamilyDescriptor, IteratorMode, DB};
use serde::{Deserialize, Serialize};

use crate::config::domain_of;
use crate::error::{Error, Result};
use crate::month::Month;

pub const CF_MAILBOX: &str = "mailbox";
pub const CF_META: &str = "meta";
pub const CF_LOGIN: &str = "login";
/// Rows rebuilt by `reconcile --fill` (see `store::filled`).
pub const CF_FILLED: &str = "filled";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BalType {
    Personnelle,
    Organisationnelle,
    Applicative,
}

impl BalType {
    pub fn parse(s: &str) -> Option<BalType> {
        match s.trim().to_ascii_lowercase().as_str() {
            "personnelle" => Some(BalType::Personnelle),
            "organisationnelle" => Some(BalType::Organisationnelle),
            "applicative" => Some(BalType::Applicative),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Suspended,
    Deleted,
}

impl Status {
    pub fn parse(s: &str) -> Option<Status> {
        match s.trim().to_ascii_lowercase().as_str() {
            "active" => Some(Status::Active),
            "suspended" => Some(Status::Suspended),
            "deleted" => Some(Status::Deleted),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Suspended => "suspended",
            Status::Deleted => "deleted",
        }
    }
}

/// One dated status change. `date` is `None` only for a first registration
/// whose start is unknown ("exists since before we knew": never a proof of
/// creation). `recorded` is the day (in `operator.timezone`) the change was
/// written: month M is decided by the history as recorded by the end of
/// `sipil.deadline_day` of M+1, so a later change never alters a month
/// already due (`None`: recorded before this was tracked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    pub status: Status,
    pub date: Option<Date>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded: Option<Date>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    pub bal: String,
    #[serde(rename = "type")]
    pub kind: BalType,
    pub test: bool,
    pub finess_ej: Option<String>,
    pub finess_eg: Option<String>,
    /// False when the operator has no login information for this BAL: the
    /// Connexions date is then `1900-01-01 00:00:00`.
    pub login_tracking: bool,
    /// Chronological (undated first).
    pub history: Vec<StatusChange>,
}

impl Mailbox {
    pub fn domain(&self) -> String {
        domain_of(&self.bal).unwrap_or_default()
    }

    /// The current status (last change).
    pub fn status(&self) -> Option<&StatusChange> {
        self.history.last()
    }

    /// Append a change unless it repeats the current one (same status and
    /// date); keeps the history chronological.
    pub fn record(&mut self, change: StatusChange) -> bool {
        if self
            .history
            .last()
            .is_some_and(|c| (c.status, c.date) == (change.status, change.date))
        {
            return false;
        }
        self.history.push(change);
        self.history.sort_by_key(|c| c.date);
        true
    }

    /// The mailbox as the registry knew it at the end of day `cutoff`
    /// (changes recorded later left out).
    pub fn as_recorded_by(&self, cutoff: Date) -> Mailbox {
        let mut m = self.clone();
        m.history.retain(|c| c.recorded.is_none_or(|d| d <= cutoff));
        m
    }
}

pub struct RegistryStore {
    pub(crate) db: DB,
    path: String,
}

/// See `CaptureStore`'s `Drop`: background jobs stopped before close.
impl Drop for RegistryStore {
    fn drop(&mut self) {
        self.db.cancel_all_background_work(true);
    }
}

fn cfs() -> Vec<ColumnFamilyDescriptor> {
    [CF_MAILBOX, CF_META, CF_LOGIN, CF_FILLED]
        .iter()
        .map(|n| ColumnFamilyDescriptor::new(*n, super::base_options()))
        .collect()
}

fn mailbox_key(bal: &str) -> Vec<u8> {
    let mut k = domain_of(bal).unwrap_or_default().into_bytes();
    k.push(0);
    k.extend_from_slice(bal.as_bytes());
    k
}

impl RegistryStore {
    /// Open for reading and writing (short-lived: mss-admin, mss-export).
    ///
    /// # Errors
    /// [`Error::Store`], with a hint when another process holds it.
    pub fn open(path: &Path) -> Result<Self> {
        super::ensure_private_dir(path).map_err(|e| Error::store(path.display(), e))?;
        let db = DB::open_cf_descriptors(&super::base_options(), path, cfs()).map_err(|e| {
            let s = e.to_string();
            if s.contains("LOCK") {
                Error::store(
                    path.display(),
                    format!("{s} (another mss-admin or mss-export is writing the registry: retry when it is done)"),
                )
            } else {
                Error::store(path.display(), s)
            }
        })?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
        }
        Ok(RegistryStore {
            db,
            path: path.display().to_string(),
        })
    }

    /// Open read-only (no lock: works while another process writes);
    /// `None` if the registry was never created.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub fn open_read_only(path: &Path) -> Result<Option<Self>> {
        if !path.join("CURRENT").exists() {
            return Ok(None);
        }
        let mut o = super::base_options();
        o.create_if_missing(false);
        let names = DB::list_cf(&o, path).map_err(|e| Error::store(path.display(), e))?;
        let db = DB::open_cf_for_read_only(&o, path, names, false)
            .map_err(|e| Error::store(path.display(), e))?;
        Ok(Some(RegistryStore {
            db,
            path: path.display().to_string(),
        }))
    }

    /// Record imported logins (bal, service, µs), keeping the latest per
    /// (month in `tz`, BAL, service). Returns how many keys changed:
    /// importing the same logins again changes nothing.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub fn import_logins(
        &self,
        logins: &[(String, String, i64)],
        tz: &jiff::tz::TimeZone,
    ) -> Result<usize> {
        let Some(cf) = self.db.cf_handle(CF_LOGIN) else {
            return Err(self.err("registry opened without its login column family"));
        };
        let mut latest: std::collections::BTreeMap<Vec<u8>, i64> = Default::default();
        for (bal, service, us) in logins {
            let month = Month::of(crate::month::from_micros(*us), tz);
            let mut k = month.key().to_vec();
            k.extend_from_slice(bal.as_bytes());
            k.push(0);
            k.extend_from_slice(service.as_bytes());
            let e = latest.entry(k).or_insert(*us);
            *e = (*e).max(*us);
        }
        let mut b = rocksdb::WriteBatch::default();
        let mut changed = 0;
        for (k, us) in latest {
            let old = self
                .db
                .get_cf(cf, &k)
                .map_err(|e| self.err(e))?
                .and_then(|v| {
                    v.get(..8)
                        .map(|x| i64::from_be_bytes(x.try_into().expect("8 bytes")))
                });
            if old.is_none_or(|o| o < us) {
                b.put_cf(cf, k, us.to_be_bytes());
                changed += 1;
            }
        }
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(b, &wo).map_err(|e| self.err(e))?;
        Ok(changed)
    }

    /// Last imported login per BAL in `month` (µs).
    ///
    /// # Errors
    /// [`Error::Store`].
    pub fn imported_logins(&self, month: Month) -> Result<std::collections::BTreeMap<String, i64>> {
        let mut out = std::collections::BTreeMap::new();
        let Some(cf) = self.db.cf_handle(CF_LOGIN) else {
            return Ok(out);
        };
        let prefix = month.key();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&prefix, rocksdb::Direction::Forward))
        {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if !k.starts_with(&prefix) {
                break;
            }
            let rest = &k[prefix.len()..];
            let bal = rest.split(|b| *b == 0).next().unwrap_or_default();
            let Some(t) = v
                .get(..8)
                .map(|x| i64::from_be_bytes(x.try_into().expect("8 bytes")))
            else {
                continue;
            };
            let e = out
                .entry(String::from_utf8_lossy(bal).into_owned())
                .or_insert(t);
            *e = (*e).max(t);
        }
        Ok(out)
    }

    /// Months whose deposit the ANS accepted (`mss-export` delivery record,
    /// `meta` key `sipil/month/YYYY-MM`, state `accepted`).
    ///
    /// # Errors
    /// [`Error::Store`].
    pub fn accepted_months(&self) -> Result<Vec<Month>> {
        Ok(self
            .list_meta("sipil/month/")?
            .into_iter()
            .filter(|(_, v)| v["state"] == "accepted")
            .filter_map(|(k, _)| Month::parse(k.rsplit('/').next()?).ok())
            .collect())
    }

    /// Every imported login ever recorded, as (BAL, µs UTC): imports are
    /// kept whatever the capture's retention (they are the proof of a date).
    ///
    /// # Errors
    /// [`Error::Store`].
    pub fn imported_logins_all(&self) -> Result<Vec<(String, i64)>> {
        let mut out = vec![];
        let Some(cf) = self.db.cf_handle(CF_LOGIN) else {
            return Ok(out);
        };
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let rest = k.get(6..).unwrap_or_default();
            let bal = rest.split(|b| *b == 0).next().unwrap_or_default();
            if let Some(t) = v.get(..8) {
                let t = i64::from_be_bytes(t.try_into().expect("8 bytes"));
                out.push((String::from_utf8_lossy(bal).into_owned(), t));
            }
        }
        Ok(out)
    }

    /// A consistent checkpoint into `dir` (must not exist).
    ///
    /// # Errors
    /// [`Error::Store`].
    pub fn checkpoint(&self, dir: &Path) -> Result<()> {
        let c = rocksdb::checkpoint::Checkpoint::new(&self.db).map_err(|e| self.err(e))?;
        c.create_checkpoint(dir)
            .map_err(|e| self.err(format!("checkpoint into {}: {e}", dir.display())))
    }

    /// Every `meta` entry (name, JSON).
    ///
    /// # Errors
    /// [`Error::Store`].
    pub fn all_meta(&self) -> Result<Vec<(String, serde_json::Value)>> {
        let mut out = vec![];
        let Some(cf) = self.db.cf_handle(CF_META) else {
            return Ok(out);
        };
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if let Ok(j) = serde_json::from_slice(&v) {
                out.push((String::from_utf8_lossy(&k).into_owned(), j));
            }
        }
        Ok(out)
    }

    pub(super) fn cf(&self, n: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(n).expect("column family created at open")
    }

    pub(super) fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::store(&self.path, e)
    }

    pub fn get(&self, bal: &str) -> Result<Option<Mailbox>> {
        match self
            .db
            .get_cf(self.cf(CF_MAILBOX), mailbox_key(bal))
            .map_err(|e| self.err(e))?
        {
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| self.err(format!("mailbox {bal}: {e}"))),
            None => Ok(None),
        }
    }

    /// Write all mailboxes in one atomic, synced batch.
    pub fn put_all(&self, boxes: &[Mailbox]) -> Result<()> {
        let mut b = rocksdb::WriteBatch::default();
        for m in boxes {
            b.put_cf(
                self.cf(CF_MAILBOX),
                mailbox_key(&m.bal),
                serde_json::to_vec(m).expect("serialisable"),
            );
        }
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(b, &wo).map_err(|e| self.err(e))
    }

    /// Every mailbox (of one domain), sorted by domain then address.
    pub fn list(&self, domain: Option<&str>) -> Result<Vec<Mailbox>> {
        let prefix = domain.map(|d| {
            let mut p = d.as_bytes().to_vec();
            p.push(0);
            p
        });
        let mode = match &prefix {
            Some(p) => IteratorMode::From(p, rocksdb::Direction::Forward),
            None => IteratorMode::Start,
        };
        let mut out = vec![];
        for item in self.db.iterator_cf(self.cf(CF_MAILBOX), mode) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if let Some(p) = &prefix {
                if !k.starts_with(p) {
                    break;
                }
            }
            out.push(serde_json::from_slice(&v).map_err(|e| self.err(e))?);
        }
        Ok(out)
    }

    pub fn put_meta(&self, name: &str, value: &serde_json::Value) -> Result<()> {
        self.db
            .put_cf(
                self.cf(CF_META),
                name,
                serde_json::to_vec(value).expect("json"),
            )
            .map_err(|e| self.err(e))
    }

    /// Every meta entry whose name starts with `prefix`, in name order.
    pub fn list_meta(&self, prefix: &str) -> Result<Vec<(String, serde_json::Value)>> {
        let mode = IteratorMode::From(prefix.as_bytes(), rocksdb::Direction::Forward);
        let mut out = vec![];
        for item in self.db.iterator_cf(self.cf(CF_META), mode) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if !k.starts_with(prefix.as_bytes()) {
                break;
            }
            let name = String::from_utf8_lossy(&k).into_owned();
            let value = serde_json::from_slice(&v).map_err(|e| self.err(format!("{name}: {e}")))?;
            out.push((name, value));
        }
        Ok(out)
    }

    /// Write a meta entry with a synced write (records that must survive a crash).
    pub fn put_meta_synced(&self, name: &str, value: &serde_json::Value) -> Result<()> {
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        self.db
            .put_cf_opt(
                self.cf(CF_META),
                name,
                serde_json::to_vec(value).expect("json"),
                &wo,
            )
            .map_err(|e| self.err(e))
    }

    pub fn get_meta(&self, name: &str) -> Result<Option<serde_json::Value>> {
        Ok(self
            .db
            .get_cf(self.cf(CF_META), name)
            .map_err(|e| self.err(e))?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(history: &[(Status, Option<&str>)]) -> Mailbox {
        Mailbox {
            bal: "a@ch.fr".into(),
            kind: BalType::Personnelle,
            test: false,
            finess_ej: None,
            finess_eg: None,
            login_tracking: true,
            history: history
                .iter()
                .map(|(s, d)| StatusChange {
                    recorded: None,
                    status: *s,
                    date: d.map(|d| d.parse().unwrap()),
                })
                .collect(),
        }
    }

    #[test]
    fn exclusion_rules_of_spec() {
        let r = Month::parse("2026-10").unwrap(); // M-1 = October, M = November
        use Status::*;
        assert!(mb(&[(Active, None)]).included_in(r));
        // Suspended before October: out. During October or November: in.
        assert!(!mb(&[(Active, None), (Suspended, Some("2026-09-30"))]).included_in(r));
        assert!(mb(&[(Active, None), (Suspended, Some("2026-10-01"))]).included_in(r));
        assert!(mb(&[(Active, None), (Deleted, Some("2026-11-30"))]).included_in(r));
        // A change after M does not alter October's files.
        assert!(mb(&[(Active, None), (Deleted, Some("2026-12-01"))]).included_in(r));
        assert!(!mb(&[
            (Active, None),
            (Deleted, Some("2026-09-01")),
            (Active, Some("2026-12-02"))
        ])
        .included_in(r));
        // Reactivated in November: not a suspended BAL any more.
        assert!(mb(&[
            (Suspended, Some("2026-01-01")),
            (Active, Some("2026-11-02"))
        ])
        .included_in(r));
        // Created in November: not in October's files.
        assert!(!mb(&[(Active, Some("2026-11-02"))]).included_in(r));
        let mut t = mb(&[(Active, None)]);
        t.test = true;
        assert!(!t.included_in(r));
    }

    #[test]
    fn store_roundtrip_and_domain_listing() {
        let dir = tempfile::tempdir().unwrap();
        let s = RegistryStore::open(&dir.path().join("r")).unwrap();
        let mut a = mb(&[(Status::Active, None)]);
        let mut b = a.clone();
        b.bal = "b@other.fr".into();
        assert!(a.record(StatusChange {
            recorded: None,
            status: Status::Suspended,
            date: Some("2026-10-03".parse().unwrap())
        }));
        assert!(!a.record(a.history.last().unwrap().clone()));
        s.put_all(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(s.get("a@ch.fr").unwrap(), Some(a.clone()));
        assert_eq!(s.list(Some("ch.fr")).unwrap(), vec![a]);
        assert_eq!(s.list(None).unwrap().len(), 2);
        assert!(RegistryStore::open(&dir.path().join("r")).is_err());
    }
}
