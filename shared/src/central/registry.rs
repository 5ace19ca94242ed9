//! The mailbox registry with `[central]`: kept in PostgreSQL (table
//! `registry`: the registry store's column families, key by key), so that
//! every host running `mss-admin` or `mss-export` sees one registry (types,
//! dated status history, structures, imported logins, filled rows, the
//! months' delivery states and reports).
//!
//! A command opens it as a private local copy pulled from PostgreSQL and
//! works on the very same [`RegistryStore`] as on one node. A writer holds a
//! PostgreSQL advisory lock from the pull to its [`Registry::commit`], which
//! pushes the whole registry back in one transaction: all or nothing, and a
//! second writer meanwhile gets a clear "in use" error (as with the local
//! store's lock). A command that fails never commits.
//!
//! Without `[central]` these are the local store, and `commit` does nothing.

use std::ops::Deref;

use futures_util::pin_mut;
use rocksdb::IteratorMode;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::pg;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::registry::RegistryStore;

/// The advisory lock of registry writers.
const LOCK: i64 = 0x6d73_735f_7265_6701;

const CFS: [&str; 4] = [
    crate::store::registry::CF_MAILBOX,
    crate::store::registry::CF_META,
    crate::store::registry::CF_LOGIN,
    crate::store::filled::CF_FILLED,
];

pub struct Registry {
    store: RegistryStore,
    /// `[central]`: the copy's directory, and for a writer its runtime and
    /// the connection holding the lock.
    _dir: Option<tempfile::TempDir>,
    writer: Option<(tokio::runtime::Runtime, Client)>,
}

impl Deref for Registry {
    type Target = RegistryStore;
    fn deref(&self) -> &RegistryStore {
        &self.store
    }
}

fn tempdir() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("mss-central-registry-")
        .tempdir()
        .map_err(|e| Error::Other(format!("temporary directory: {e}")))
}

/// One registry entry: (column family, key, value).
pub type Entry = (String, Vec<u8>, Vec<u8>);

/// Every entry of `store`.
pub fn rows(store: &RegistryStore) -> Result<Vec<Entry>> {
    let mut out = vec![];
    for cf in CFS {
        let Some(h) = store.db.cf_handle(cf) else {
            continue;
        };
        for item in store.db.iterator_cf(h, IteratorMode::Start) {
            let (k, v) = item.map_err(|e| Error::store(cf, e))?;
            out.push((cf.to_string(), k.to_vec(), v.to_vec()));
        }
    }
    Ok(out)
}

async fn pull(c: &Client, store: &RegistryStore) -> Result<usize> {
    let all = c
        .query("SELECT cf, key, value FROM registry", &[])
        .await
        .map_err(|e| pg("reading the registry", e))?;
    let mut b = rocksdb::WriteBatch::default();
    for r in &all {
        let cf: String = r.get(0);
        let Some(h) = store.db.cf_handle(&cf) else {
            return Err(Error::Central(format!(
                "the central registry holds an unknown part {cf:?}: upgrade mss-sidecar"
            )));
        };
        let (k, v): (Vec<u8>, Vec<u8>) = (r.get(1), r.get(2));
        b.put_cf(h, k, v);
    }
    store
        .db
        .write(b)
        .map_err(|e| Error::store("registry copy", e))?;
    Ok(all.len())
}

/// Take the writers' lock (held until the session ends), or say who has it.
async fn lock(c: &Client) -> Result<()> {
    let got: bool = c
        .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK])
        .await
        .map_err(|e| pg("locking the registry", e))?
        .get(0);
    if got {
        Ok(())
    } else {
        Err(Error::Central(
            "another mss-admin or mss-export is writing the central registry: retry when it is done"
                .into(),
        ))
    }
}

/// Replace the central registry by `rows`, in one transaction.
async fn push(c: &mut Client, rows: &[Entry]) -> Result<()> {
    let tx = c
        .transaction()
        .await
        .map_err(|e| pg("writing the registry", e))?;
    tx.execute("DELETE FROM registry", &[])
        .await
        .map_err(|e| pg("writing the registry", e))?;
    let sink = tx
        .copy_in("COPY registry (cf, key, value) FROM STDIN BINARY")
        .await
        .map_err(|e| pg("writing the registry", e))?;
    let w = BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::BYTEA, Type::BYTEA]);
    pin_mut!(w);
    for (cf, k, v) in rows {
        w.as_mut()
            .write(&[cf, k, v])
            .await
            .map_err(|e| pg("writing the registry", e))?;
    }
    w.finish()
        .await
        .map_err(|e| pg("writing the registry", e))?;
    tx.commit().await.map_err(|e| pg("writing the registry", e))
}

/// Open for reading; `None` when there is no registry (never created
/// locally; with `[central]` a copy is always made, maybe empty).
///
/// # Errors
/// Store errors; [`Error::Central`].
pub fn open_read(cfg: &Config) -> Result<Option<Registry>> {
    let Some(c) = &cfg.central else {
        return Ok(
            RegistryStore::open_read_only(&cfg.store.registry_path)?.map(|store| Registry {
                store,
                _dir: None,
                writer: None,
            }),
        );
    };
    let dir = tempdir()?;
    let store = RegistryStore::open(&dir.path().join("registry"))?;
    super::runtime()?.block_on(async {
        let client = super::connect(c).await?;
        super::schema::check(&client).await?;
        pull(&client, &store).await
    })?;
    Ok(Some(Registry {
        store,
        _dir: Some(dir),
        writer: None,
    }))
}

/// Open for writing (one writer at a time); call [`Registry::commit`] once
/// the command has succeeded.
///
/// # Errors
/// Store errors; [`Error::Central`], also when another writer holds it.
pub fn open_write(cfg: &Config) -> Result<Registry> {
    let Some(c) = &cfg.central else {
        return Ok(Registry {
            store: RegistryStore::open(&cfg.store.registry_path)?,
            _dir: None,
            writer: None,
        });
    };
    let dir = tempdir()?;
    let store = RegistryStore::open(&dir.path().join("registry"))?;
    let rt = super::runtime()?;
    let client = rt.block_on(async {
        let client = super::connect(c).await?;
        super::schema::check(&client).await?;
        lock(&client).await?;
        pull(&client, &store).await?;
        Ok(client)
    })?;
    Ok(Registry {
        store,
        _dir: Some(dir),
        writer: Some((rt, client)),
    })
}

impl Registry {
    /// Push the registry back (with `[central]`), all at once.
    ///
    /// # Errors
    /// [`Error::Central`]: nothing was changed centrally.
    pub fn commit(mut self) -> Result<()> {
        let Some((rt, mut client)) = self.writer.take() else {
            return Ok(());
        };
        let all = rows(&self.store)?;
        rt.block_on(push(&mut client, &all))
    }
}

/// `mss-admin central import-registry`: the local registry store moved to
/// PostgreSQL once, all or nothing; refused when the central one has data.
///
/// # Errors
/// [`Error::Central`], [`Error::Refused`] when the centre already has a registry.
pub fn import(cfg: &Config) -> Result<usize> {
    let c = cfg
        .central
        .as_ref()
        .ok_or_else(|| Error::Usage("no [central] section: nothing to import into".into()))?;
    let local = RegistryStore::open_read_only(&cfg.store.registry_path)?.ok_or_else(|| {
        Error::Usage(format!(
            "no registry at {} (store.registry_path)",
            cfg.store.registry_path.display()
        ))
    })?;
    let all = rows(&local)?;
    super::runtime()?.block_on(async {
        let mut client = super::connect(c).await?;
        super::schema::check(&client).await?;
        lock(&client).await?;
        let n: i64 = client
            .query_one("SELECT count(*) FROM registry", &[])
            .await
            .map_err(|e| pg("reading the registry", e))?
            .get(0);
        if n > 0 {
            return Err(Error::Refused(format!(
                "the central registry already holds {n} entries: import-registry runs once, into an empty one"
            )));
        }
        push(&mut client, &all).await
    })?;
    Ok(all.len())
}
