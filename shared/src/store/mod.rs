//! The two RocksDB stores: [`capture`] (written by mss-sidecar) and
//! [`registry`] (written by mss-admin and mss-export).

pub mod capture;
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
