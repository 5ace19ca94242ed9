//! The central schema, in versioned migrations embedded in the binaries
//! (`mss-admin central migrate`). A binary meeting a newer schema than it
//! knows refuses to write (a node keeps capturing locally and says so).
//!
//! | table | what |
//! |---|---|
//! | `schema_version` | one row per migration applied |
//! | `nodes` | `id` (random, kept in the node's local store), `name` (`operator.node`, unique among active nodes), `shipped_seq` (the last outbox seq committed), `complete_until_us` (everything the node captured before this instant is here), `last_contact`, `retired` |
//! | `registry` | the mailbox registry (`cf`, `key`, `value`: the registry store's column families, see [`super::registry`]) |
//! | `bal_summary` | per BAL, the last login / sent / received of the records retention purged (never purged) |
//! | `records` | `(node_id, seq)` primary key, `kind` (1 message, 2 login, 3 outside), `time_us`, `body` (the record, JSON: addresses and dates, never a message body) |

use tokio_postgres::Client;

use super::pg;
use crate::error::{Error, Result};

/// (version, SQL), in order. Never edit a shipped one: add the next.
pub const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "CREATE TABLE nodes (
        id text PRIMARY KEY,
        name text NOT NULL,
        registered timestamptz NOT NULL DEFAULT now(),
        last_contact timestamptz,
        shipped_seq bigint NOT NULL DEFAULT -1,
        complete_until_us bigint NOT NULL DEFAULT 0,
        retired timestamptz
    );
    CREATE UNIQUE INDEX nodes_active_name ON nodes (name) WHERE retired IS NULL;
    CREATE TABLE records (
        node_id text NOT NULL REFERENCES nodes (id),
        seq bigint NOT NULL,
        kind smallint NOT NULL,
        time_us bigint NOT NULL,
        body text NOT NULL,
        PRIMARY KEY (node_id, seq)
    );
    CREATE INDEX records_time ON records (time_us);",
    ),
    (
        2,
        "CREATE TABLE registry (
        cf text NOT NULL,
        key bytea NOT NULL,
        value bytea NOT NULL,
        PRIMARY KEY (cf, key)
    );",
    ),
    (
        3,
        "CREATE TABLE bal_summary (
        bal text PRIMARY KEY,
        last_login_us bigint NOT NULL DEFAULT 0,
        last_sent_us bigint NOT NULL DEFAULT 0,
        last_received_us bigint NOT NULL DEFAULT 0
    );",
    ),
];

/// The schema version these binaries write.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// The version applied in the database (0: none).
///
/// # Errors
/// [`Error::Central`].
pub async fn current(c: &Client) -> Result<i32> {
    let exists: bool = c
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
        .await
        .map_err(|e| pg("reading the schema version", e))?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: Option<i32> = c
        .query_one("SELECT max(version) FROM schema_version", &[])
        .await
        .map_err(|e| pg("reading the schema version", e))?
        .get(0);
    Ok(v.unwrap_or(0))
}

/// Apply the missing migrations, each in its own transaction. Returns the
/// versions applied.
///
/// # Errors
/// [`Error::Central`], also for a database newer than these binaries.
pub async fn migrate(c: &mut Client) -> Result<Vec<i32>> {
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version int PRIMARY KEY,
            applied timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(|e| pg("creating schema_version", e))?;
    let have = current(c).await?;
    if have > latest() {
        return Err(newer(have));
    }
    let mut done = vec![];
    for (v, sql) in MIGRATIONS.iter().filter(|m| m.0 > have) {
        let tx = c
            .transaction()
            .await
            .map_err(|e| pg("starting a migration", e))?;
        tx.batch_execute(sql)
            .await
            .map_err(|e| pg(&format!("migration {v}"), e))?;
        tx.execute("INSERT INTO schema_version (version) VALUES ($1)", &[v])
            .await
            .map_err(|e| pg(&format!("migration {v}"), e))?;
        tx.commit()
            .await
            .map_err(|e| pg(&format!("migration {v}"), e))?;
        done.push(*v);
    }
    Ok(done)
}

fn newer(have: i32) -> Error {
    Error::Central(format!(
        "the database has schema version {have}, newer than this mss-sidecar knows ({}): upgrade mss-sidecar on this host (it keeps capturing locally meanwhile)",
        latest()
    ))
}

/// The database is at exactly the version these binaries write.
///
/// # Errors
/// [`Error::Central`] naming what to do (migrate, or upgrade us).
pub async fn check(c: &Client) -> Result<()> {
    let have = current(c).await?;
    if have > latest() {
        return Err(newer(have));
    }
    if have < latest() {
        return Err(Error::Central(format!(
            "the database has schema version {have}, these binaries need {}: run `mss-admin central migrate` (with the admin role)",
            latest()
        )));
    }
    Ok(())
}
