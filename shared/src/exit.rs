//! Exit codes shared by every binary (documented in README.md, relied upon by
//! systemd units and monitoring scripts).

/// Success.
pub const OK: i32 = 0;
/// Unexpected failure (a bug, an I/O error nobody planned for).
pub const UNEXPECTED: i32 = 1;
/// Usage or configuration error: fix the command line or the configuration file.
pub const CONFIG: i32 = 2;
/// A store (capture or registry DB) cannot be opened or read: missing, locked,
/// corrupt, or a permission problem.
pub const STORE: i32 = 3;
/// A listener cannot be bound (address in use, permission denied).
pub const BIND: i32 = 4;
