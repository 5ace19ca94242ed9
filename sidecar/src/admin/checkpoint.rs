//! `mss-admin checkpoint DIR`: consistent RocksDB checkpoints of both stores.

use std::path::Path;

use mss_shared::config::Config;
use mss_shared::store::capture::CaptureStore;
use mss_shared::store::registry::RegistryStore;
use mss_shared::{exit, Error};

/// `mss-admin checkpoint DIR`: consistent RocksDB checkpoints of both stores
/// into `DIR/capture` and `DIR/registry` (hard links on the same filesystem).
///
/// The capture store's checkpoint needs its primary: when `mss-sidecar` holds
/// it, a checkpoint through a secondary would miss the writes not yet flushed,
/// so we refuse rather than produce an incomplete backup.
pub fn checkpoint(config: &Path, dir: &Path) -> Result<i32, Error> {
    let cfg = Config::load(config)?;
    if dir.exists() {
        return Err(Error::Usage(format!(
            "{}: already exists; give a new directory",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::Usage(format!("{}: {e}", dir.display())))?;
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    let reg = RegistryStore::open(&cfg.store.registry_path)?;
    reg.checkpoint(&dir.join("registry"))?;
    println!("{}", dir.join("registry").display());
    drop(reg);
    let cap = CaptureStore::open(&cfg.store.capture_path).map_err(|e| match e {
        Error::Store { path, reason } if reason.contains("already running") || reason.contains("LOCK") => Error::Store {
            path,
            reason: format!(
                "{reason}; a complete checkpoint of the capture store needs it: stop mss-sidecar for the moment it takes (milter: Postfix accepts mail meanwhile; proxy: senders get 4xx and retry), or snapshot the filesystem"
            ),
        },
        e => e,
    })?;
    cap.checkpoint(&dir.join("capture"))?;
    println!("{}", dir.join("capture").display());
    Ok(exit::OK)
}
