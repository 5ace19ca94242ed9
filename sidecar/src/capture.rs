//! The capture writer: one thread owns the store; sessions hand it records and
//! wait (a bounded time) for the acknowledgement.
//!
//! - **Group commit**: the writer takes every record queued while the previous
//!   synced write was in progress and commits them in one `WriteBatch` with
//!   one fsync, then acknowledges each.
//! - **Mail first**: [`Capture::commit`] never fails and never waits longer
//!   than `store.commit_timeout_ms`. When the store refuses or is too slow,
//!   the record is appended (fsync'd) to the journal file, an error is logged
//!   and `mss_journal_records_total` grows; the session goes on.
//! - **Replay**: the journal is replayed into the store at start and, once
//!   the store works again, by the writer itself; replay is idempotent
//!   (message keys derive from MAIL_ID + recipient).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use mss_shared::model::Record;
use mss_shared::store::capture::{CaptureStore, Classifier};

use crate::metrics::Metrics;

/// Where committed records go. The real one is the RocksDB capture store;
/// tests swap in failing or stalling ones.
pub trait Sink: Send + Sync + 'static {
    /// Durably apply all records (one atomic, synced write), or fail.
    fn commit(&self, records: &[Record]) -> Result<(), String>;

    /// Size on disk, for the `mss_store_bytes` gauge (when known).
    fn size(&self) -> Option<u64> {
        None
    }

    /// Retention: delete what is older than month `keep_from` (a sink that
    /// keeps nothing has nothing to purge).
    fn purge_before(&self, _keep_from: mss_shared::month::Month) -> Result<(), String> {
        Ok(())
    }
}

/// The RocksDB capture store as a sink.
///
/// After a failed write (a full or failing disk) RocksDB keeps refusing
/// writes even once the cause is gone (a "background error" that its C API
/// cannot clear): the sink then closes the database and reopens it, at most
/// once a second, at the next commit. Acknowledged writes are synced in the
/// WAL and come back with it; the failed batch was journaled by the writer.
pub struct StoreSink {
    store: std::sync::Mutex<Option<CaptureStore>>,
    path: std::path::PathBuf,
    last_reopen: std::sync::Mutex<Option<Instant>>,
    pub classifier: Classifier,
    /// `[central]`: every commit also fills the outbox (kept across reopens).
    outbox: bool,
}

impl StoreSink {
    pub fn new(store: CaptureStore, classifier: Classifier) -> Self {
        StoreSink {
            path: std::path::PathBuf::from(store.path()),
            store: std::sync::Mutex::new(Some(store)),
            last_reopen: std::sync::Mutex::new(None),
            classifier,
            outbox: false,
        }
    }

    /// Fill the outbox with every commit from now on (`[central]`).
    ///
    /// # Errors
    /// The store's, when its outbox cannot be read.
    pub fn with_outbox(mut self) -> Result<Self, mss_shared::Error> {
        if let Some(s) = self.store.get_mut().unwrap_or_else(|p| p.into_inner()) {
            s.enable_outbox()?;
        }
        self.outbox = true;
        Ok(self)
    }

    /// Run `f` on the open store (the writer's lock held: keep it short).
    pub fn with_store<T>(
        &self,
        f: impl FnOnce(&CaptureStore) -> Result<T, mss_shared::Error>,
    ) -> Result<T, String> {
        let guard = self.store.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(s) => f(s).map_err(|e| e.to_string()),
            None => Err("capture store closed after a write failure; reopening".into()),
        }
    }
}

impl Sink for StoreSink {
    fn commit(&self, records: &[Record]) -> Result<(), String> {
        let mut guard = self.store.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            let mut last = self.last_reopen.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return Err("capture store closed after a write failure; reopening".into());
            }
            *last = Some(Instant::now());
            match CaptureStore::open(&self.path).and_then(|s| {
                if self.outbox {
                    s.enable_outbox()?;
                }
                Ok(s)
            }) {
                Ok(s) => {
                    tracing::info!(store = %self.path.display(), "capture store reopened after a write failure");
                    *guard = Some(s);
                }
                Err(e) => return Err(format!("reopening after a write failure: {e}")),
            }
        }
        let store = guard.as_ref().expect("opened above");
        let res = store
            .apply(records, &self.classifier, true)
            .map_err(|e| e.to_string());
        if res.is_err() {
            // Close now (releases the LOCK): the next commit reopens.
            *guard = None;
        }
        res
    }

    /// Retention (daily): fold then delete the months before `keep_from`
    /// (see `CaptureStore::purge_before`). Holds the writer's lock for the
    /// purge only: range deletes, and a fold of at most a month of
    /// per-BAL keys.
    fn purge_before(&self, keep_from: mss_shared::month::Month) -> Result<(), String> {
        let guard = self.store.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(s) => s.purge_before(keep_from).map_err(|e| e.to_string()),
            None => Err("capture store closed; retention runs again tomorrow".into()),
        }
    }

    fn size(&self) -> Option<u64> {
        let guard = self.store.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map(CaptureStore::approximate_size)
    }
}

/// How a record ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// In the store, synced.
    Stored,
    /// In the journal (store failed or too slow); replayed later.
    Journaled,
    /// Neither store nor journal took it (both failing): logged as an error.
    Lost,
}

struct Job {
    record: Record,
    ack: oneshot::Sender<Result<(), String>>,
}

/// The append-only fallback journal: one JSON record per line.
pub struct Journal {
    path: PathBuf,
    lock: Mutex<()>,
    /// Set when records were appended since the last successful replay.
    dirty: AtomicBool,
}

impl Journal {
    pub fn new(path: PathBuf) -> Self {
        let dirty = path.metadata().map(|m| m.len() > 0).unwrap_or(false);
        Journal {
            path,
            lock: Mutex::new(()),
            dirty: AtomicBool::new(dirty),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one record and fsync.
    pub fn append(&self, r: &Record) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut f = open_append(&self.path)?;
        f.write_all(&line)?;
        f.sync_data()?;
        self.dirty.store(true, Ordering::SeqCst);
        Ok(())
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::SeqCst)
    }

    /// Replay every record into `sink`, then empty the journal. A torn last
    /// line (crash during append) is skipped with a warning. Returns how many
    /// records were replayed.
    pub fn replay(&self, sink: &dyn Sink) -> Result<usize, String> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.dirty.store(false, Ordering::SeqCst);
                return Ok(0);
            }
            Err(e) => return Err(format!("journal {}: {e}", self.path.display())),
        };
        let mut batch = Vec::new();
        let mut n = 0;
        for (i, line) in BufReader::new(f).split(b'\n').enumerate() {
            let line = line.map_err(|e| format!("journal {}: {e}", self.path.display()))?;
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<Record>(&line) {
                Ok(r) => batch.push(r),
                Err(e) => {
                    tracing::warn!(journal = %self.path.display(), line = i + 1, "skipping unreadable journal line: {e}")
                }
            }
            if batch.len() >= 1000 {
                sink.commit(&batch)?;
                n += batch.len();
                batch.clear();
            }
        }
        if !batch.is_empty() {
            sink.commit(&batch)?;
            n += batch.len();
        }
        std::fs::remove_file(&self.path)
            .map_err(|e| format!("journal {}: {e}", self.path.display()))?;
        self.dirty.store(false, Ordering::SeqCst);
        Ok(n)
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// The sessions' handle on the writer. Cheap to clone.
#[derive(Clone)]
pub struct Capture {
    tx: mpsc::Sender<Job>,
    writer: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
    journal: Arc<Journal>,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

impl Capture {
    /// Start the writer thread over `sink`. The journal is replayed first.
    pub fn start(
        sink: Arc<dyn Sink>,
        journal: Arc<Journal>,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        match journal.replay(sink.as_ref()) {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(records = n, journal = %journal.path().display(), "journal replayed into the capture store")
            }
            Err(e) => {
                tracing::error!("journal replay failed, will retry when the store works: {e}")
            }
        }
        let (tx, rx) = mpsc::channel(16_384);
        let j = journal.clone();
        let m = metrics.clone();
        let writer = std::thread::Builder::new()
            .name("capture-writer".into())
            .spawn(move || writer_loop(rx, sink, j, m))
            .expect("spawn capture writer");
        Capture {
            tx,
            writer: Arc::new(std::sync::Mutex::new(Some(writer))),
            journal,
            timeout,
            metrics,
        }
    }

    /// Drop this handle and wait (at most `wait`) for the writer to drain its
    /// queue and close the store. The writer stops once every handle is
    /// dropped; returns whether it did in time. Closing the store before the
    /// process exits matters: RocksDB aborts if `exit()` races its threads.
    pub fn shutdown(self, wait: Duration) -> bool {
        let writer = self.writer.clone();
        drop(self);
        let deadline = Instant::now() + wait;
        loop {
            let mut guard = writer.lock().unwrap_or_else(|e| e.into_inner());
            match guard.as_ref() {
                None => return true,
                Some(h) if h.is_finished() => {
                    let _ = guard.take().map(|h| h.join());
                    return true;
                }
                Some(_) if Instant::now() >= deadline => return false,
                Some(_) => {}
            }
            drop(guard);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Commit a record: wait for the store's acknowledgement at most the
    /// configured bound, else journal it. Never fails the caller.
    pub async fn commit(&self, record: Record) -> Outcome {
        let started = Instant::now();
        let (ack, rx) = oneshot::channel();
        let job = Job {
            record: record.clone(),
            ack,
        };
        let deadline = tokio::time::Instant::now() + self.timeout;
        let why = match tokio::time::timeout_at(deadline, self.tx.send(job)).await {
            Ok(Ok(())) => match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(Ok(()))) => {
                    self.metrics
                        .commit_latency
                        .observe(started.elapsed().as_secs_f64());
                    return Outcome::Stored;
                }
                Ok(Ok(Err(e))) => e,
                Ok(Err(_)) => "capture writer stopped".to_string(),
                Err(_) => format!(
                    "store did not acknowledge within {} ms",
                    self.timeout.as_millis()
                ),
            },
            Ok(Err(_)) => "capture writer stopped".to_string(),
            Err(_) => format!("capture queue full for {} ms", self.timeout.as_millis()),
        };
        self.fallback(record, &why).await
    }

    async fn fallback(&self, record: Record, why: &str) -> Outcome {
        let j = self.journal.clone();
        let r = record.clone();
        let res = tokio::task::spawn_blocking(move || j.append(&r))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match res {
            Ok(()) => {
                self.metrics.journal_records.inc();
                tracing::error!(journal = %self.journal.path().display(), "capture store unavailable ({why}): record journaled, mail goes on");
                Outcome::Journaled
            }
            Err(e) => {
                self.metrics.lost_records.inc();
                tracing::error!(journal = %self.journal.path().display(), record = ?summary(&record),
                    "capture store unavailable ({why}) and journal write failed ({e}): record LOST, mail goes on");
                Outcome::Lost
            }
        }
    }
}

/// What to log of a record that could not be kept (no addresses at error level
/// beyond the sender, which the admin needs to reconcile).
fn summary(r: &Record) -> String {
    match r {
        Record::Message(m) => format!(
            "message {} from {} to {} recipients",
            m.mail_id,
            m.sender,
            m.recipients.len()
        ),
        Record::Login(l) => format!("login {} {}", l.bal, l.service),
        Record::Outside(o) => format!(
            "outside trust space {} -> {}",
            o.sender_domain, o.recipient_domain
        ),
    }
}

fn writer_loop(
    mut rx: mpsc::Receiver<Job>,
    sink: Arc<dyn Sink>,
    journal: Arc<Journal>,
    metrics: Arc<Metrics>,
) {
    const MAX_BATCH: usize = 4096;
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut records: Vec<Record> = Vec::with_capacity(MAX_BATCH);
    let mut sized: Option<Instant> = None;
    while let Some(first) = rx.blocking_recv() {
        jobs.push(first);
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        // Skip records whose session already gave up waiting (they are
        // journaled): fewer duplicates, same result either way.
        jobs.retain(|j| !j.ack.is_closed());
        records.clear();
        records.extend(jobs.iter().map(|j| j.record.clone()));
        let res = if records.is_empty() {
            Ok(())
        } else {
            sink.commit(&records)
        };
        match &res {
            Ok(()) => {
                metrics.batches.inc();
                for r in &records {
                    metrics.count_stored(r);
                }
            }
            Err(e) => {
                metrics.store_errors.inc();
                tracing::error!("capture store write failed: {e}");
            }
        }
        let ok = res.is_ok();
        for j in jobs.drain(..) {
            let _ = j.ack.send(res.clone());
        }
        if sized.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            sized = Some(Instant::now());
            if let Some(n) = sink.size() {
                metrics
                    .store_bytes
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        if ok && journal.is_dirty() {
            match journal.replay(sink.as_ref()) {
                Ok(n) if n > 0 => {
                    tracing::info!(records = n, "store works again: journal replayed")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("journal replay deferred: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mss_shared::model::LoginRecord;
    use std::sync::atomic::AtomicUsize;

    struct Flaky {
        fail: AtomicBool,
        stall: AtomicBool,
        stored: Mutex<Vec<Record>>,
        calls: AtomicUsize,
    }

    impl Sink for Flaky {
        fn commit(&self, records: &[Record]) -> Result<(), String> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            while self.stall.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            if self.fail.load(Ordering::SeqCst) {
                return Err("injected failure".into());
            }
            self.stored.lock().unwrap().extend_from_slice(records);
            Ok(())
        }
    }

    fn login(n: i64) -> Record {
        Record::Login(LoginRecord {
            bal: format!("u{n}@ch.fr"),
            time_us: n,
            service: "imap".into(),
            source: "test".into(),
        })
    }

    fn flaky() -> Arc<Flaky> {
        Arc::new(Flaky {
            fail: AtomicBool::new(false),
            stall: AtomicBool::new(false),
            stored: Mutex::new(vec![]),
            calls: AtomicUsize::new(0),
        })
    }

    #[tokio::test]
    async fn failing_store_journals_then_replays_when_it_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let sink = flaky();
        sink.fail.store(true, Ordering::SeqCst);
        let journal = Arc::new(Journal::new(dir.path().join("j")));
        let m = Arc::new(Metrics::default());
        let cap = Capture::start(
            sink.clone(),
            journal.clone(),
            Duration::from_millis(200),
            m.clone(),
        );
        assert_eq!(cap.commit(login(1)).await, Outcome::Journaled);
        assert_eq!(cap.commit(login(2)).await, Outcome::Journaled);
        assert_eq!(m.journal_records.get(), 2);
        assert!(sink.stored.lock().unwrap().is_empty());
        sink.fail.store(false, Ordering::SeqCst);
        assert_eq!(cap.commit(login(3)).await, Outcome::Stored);
        // The writer replays the journal right after the first good write.
        for _ in 0..100 {
            if !journal.is_dirty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stored = sink.stored.lock().unwrap().clone();
        assert_eq!(stored, vec![login(3), login(1), login(2)]);
        assert!(!dir.path().join("j").exists());
    }

    #[tokio::test]
    async fn stalled_store_does_not_hold_the_session() {
        let dir = tempfile::tempdir().unwrap();
        let sink = flaky();
        sink.stall.store(true, Ordering::SeqCst);
        let journal = Arc::new(Journal::new(dir.path().join("j")));
        let cap = Capture::start(
            sink.clone(),
            journal.clone(),
            Duration::from_millis(100),
            Arc::new(Metrics::default()),
        );
        let t = Instant::now();
        assert_eq!(cap.commit(login(7)).await, Outcome::Journaled);
        assert!(t.elapsed() < Duration::from_secs(2));
        // At next start the journal is replayed (idempotent with a late commit).
        let sink2 = flaky();
        let _cap2 = Capture::start(
            sink2.clone(),
            Arc::new(Journal::new(dir.path().join("j"))),
            Duration::from_millis(100),
            Arc::new(Metrics::default()),
        );
        assert_eq!(sink2.stored.lock().unwrap().clone(), vec![login(7)]);
        sink.stall.store(false, Ordering::SeqCst);
    }

    #[test]
    fn torn_journal_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j");
        let j = Journal::new(p.clone());
        j.append(&login(1)).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"{\"kind\":\"lo")
            .unwrap();
        let sink = flaky();
        assert_eq!(j.replay(sink.as_ref()).unwrap(), 1);
        assert_eq!(sink.stored.lock().unwrap().clone(), vec![login(1)]);
    }
}
