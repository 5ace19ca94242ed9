//! # `mss-admin`: the operator's commands
//!
//! Admin code depends on `mss-shared` (stores, registry, figures,
//! indicators, reports) and never on the daemon's modules; the daemon never
//! depends on admin. `bin/mss-admin.rs` parses the command line and calls
//! one function here.
//!
//! ## Layout
//! - [`counts`]: `counts` and `connexions`, through `mss_shared::figures`.
//! - [`mailbox`]: the registry edits (`import`, `add`, `set`);
//!   [`mailbox_view`]: `list`, `show`, and the BALs seen but not registered.
//! - [`logins`]: `logins import` (Dovecot / Postfix logs).
//! - [`status`]: `status`; [`checkpoint`]: `checkpoint`; [`listeblanche`]: `listeblanche`.
//! - [`reconcile`]: `reconcile`, the month proved against Postfix's logs.
//! - [`report`]: `report` (a structure's monthly report) and `structure`.
//! - [`central`]: `central migrate | nodes | retire` (several nodes, `[central]`).

pub mod central;
pub mod checkpoint;
pub mod counts;
pub mod listeblanche;
pub mod logins;
pub mod mailbox;
pub mod mailbox_view;
pub mod reconcile;
pub mod report;
pub mod status;

use mss_shared::config::Config;
use mss_shared::store::capture::CaptureStore;
use mss_shared::Error;

/// Open the capture store as a RocksDB secondary (works while the sidecar
/// runs). The secondary's own files live in a private temporary directory
/// removed on drop.
pub struct SecondaryCapture {
    pub store: CaptureStore,
    _dir: tempfile::TempDir,
}

impl SecondaryCapture {
    pub fn open(cfg: &Config) -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("mss-admin-secondary-")
            .tempdir()
            .map_err(|e| Error::Other(format!("temporary directory: {e}")))?;
        // With [central]: the merged snapshot of every node.
        let store = mss_shared::central::snapshot::open_for_reading(cfg, dir.path())?;
        Ok(SecondaryCapture { store, _dir: dir })
    }
}
