//! The two RocksDB stores: [`capture`] (written by mss-sidecar; its key
//! layout, writes, reads, history beyond one month key, and retention) and
//! [`registry`] (written by mss-admin and mss-export), with [`filled`] (the
//! rows `mss-admin reconcile --fill` rebuilt from Postfix's log).

pub mod capture;
pub mod filled;
pub mod registry;

/// Options common to both stores: LZ4 everywhere (the only compression we
/// link), fsync'd WAL writes are chosen per write.
pub(crate) fn base_options() -> rocksdb::Options {
    let mut o = rocksdb::Options::default();
    o.create_if_missing(true);
    o.create_missing_column_families(true);
    o.set_compression_type(rocksdb::DBCompressionType::Lz4);
    o.set_keep_log_file_num(5);
    o.set_max_log_file_size(8 << 20);
    o
}

/// Create a store directory (and missing parents) with mode 0700: RocksDB
/// would create it with the umask's mode. An existing directory is left as is
/// (the stores tighten their own directory to 0700 after opening).
pub(crate) fn ensure_private_dir(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if path.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn both_stores_are_created_0700() {
        let dir = tempfile::tempdir().unwrap();
        let cap = dir.path().join("a/capture");
        let reg = dir.path().join("b/registry");
        drop(super::capture::CaptureStore::open(&cap).unwrap());
        drop(super::registry::RegistryStore::open(&reg).unwrap());
        for p in [&cap, &reg, &dir.path().join("a"), &dir.path().join("b")] {
            let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", p.display());
        }
    }
}
