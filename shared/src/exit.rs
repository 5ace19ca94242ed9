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
/// `mss-export validate` (or a build's own check) found problems in the files.
pub const INVALID: i32 = 5;
/// `mss-export run`/`report`: deposited, the report is not final yet (or could
/// not be fetched yet): the timer tries again later. Not a failure before the
/// deadline warning window.
pub const PENDING: i32 = 6;
/// `mss-export run`/`report`: the deposit report shows blocking errors and a
/// rebuild gives the same archive: fix the data or the mailbox registry.
pub const REJECTED: i32 = 7;
/// `mss-export run`: past `sipil.deadline_day` of the month and the previous
/// month's figures are not accepted.
pub const DEADLINE: i32 = 8;
/// The SIPIL web service could not be used: TLS handshake refused, network
/// error or timeout, HTTP error status, response without a deposit id.
pub const SIPIL: i32 = 9;
/// `mss-admin reconcile`: the month's rows and Postfix's logs do not
/// reconcile (a recipient missing or a phantom row).
pub const UNRECONCILED: i32 = 12;
/// `mss-export build` / `mss-admin counts|connexions` for a month older than
/// `store.retention_months`: its rows are purged, the files would be false.
pub const TOO_OLD: i32 = 13;
/// `mss-admin mailbox import|set`: a status date in the future, or inside a
/// month whose deposit the ANS already accepted (without `--force`).
pub const REFUSED: i32 = 14;
/// `[central]`: PostgreSQL unreachable, refusing us (password, TLS, role),
/// on an unknown newer schema, or this node's name taken by another node.
pub const CENTRAL: i32 = 15;
/// `mss-export build` (with `[central]`): the month is not complete, a node
/// has not shipped everything it captured up to its end (`--allow-incomplete`).
pub const INCOMPLETE: i32 = 16;
