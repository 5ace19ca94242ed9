//! Nodes: registration (name ↔ random id), progress, completeness.

use tokio_postgres::Client;

use super::pg;
use crate::error::{Error, Result};

/// One node as the centre knows it.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub id: String,
    /// The last outbox seq committed centrally (-1: none).
    pub shipped_seq: i64,
    /// Everything the node captured before this instant (µs) is here.
    pub complete_until_us: i64,
    /// RFC 3339, or `None` before the first batch.
    pub last_contact: Option<String>,
    pub retired: bool,
}

/// A random node id (128 bits from the OS, hex).
pub fn new_id() -> String {
    use std::io::Read;
    let mut b = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        // Never reached on Linux; time and pid still make a collision unlikely.
        let t = jiff::Timestamp::now().as_nanosecond() as u128 ^ u128::from(std::process::id());
        b = t.to_be_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Register `name` with `id`, or check that it is ours. A name held by
/// another active id is refused (two hosts with one `operator.node`, or a
/// host that lost its store).
///
/// # Errors
/// [`Error::Central`] naming the conflict and the way out.
pub async fn register(c: &Client, name: &str, id: &str) -> Result<()> {
    let rows = c
        .query(
            "SELECT id, retired IS NOT NULL, registered::text FROM nodes WHERE name = $1 OR id = $2",
            &[&name, &id],
        )
        .await
        .map_err(|e| pg("reading nodes", e))?;
    for r in &rows {
        let (other, retired, when): (String, bool, String) = (r.get(0), r.get(1), r.get(2));
        if other == id && retired {
            return Err(Error::Central(format!(
                "this node (operator.node = {name:?}, id {id}) was retired centrally: it ships nothing more (remove [central], or clear its local store to register anew)"
            )));
        }
        if other != id && !retired {
            return Err(Error::Central(format!(
                "operator.node = {name:?} is already registered centrally by another node (id {other}, since {when}): give each host its own operator.node, or, if that node is gone, `mss-admin central retire {name}` first. This host keeps capturing locally; nothing is lost"
            )));
        }
    }
    if !rows.iter().any(|r| r.get::<_, String>(0) == id) {
        c.execute(
            "INSERT INTO nodes (id, name) VALUES ($1, $2)",
            &[&id, &name],
        )
        .await
        .map_err(|e| match e.as_db_error().map(|d| d.code().code()) {
            // Two hosts registering one name at the same instant.
            Some("23505") => Error::Central(format!(
                "operator.node = {name:?} was registered by another node just now"
            )),
            _ => pg("registering this node", e),
        })?;
    }
    Ok(())
}

/// The last seq of `id` committed centrally (-1: none).
///
/// # Errors
/// [`Error::Central`].
pub async fn shipped(c: &Client, id: &str) -> Result<i64> {
    let r = c
        .query_one("SELECT shipped_seq FROM nodes WHERE id = $1", &[&id])
        .await
        .map_err(|e| pg("reading this node's progress", e))?;
    Ok(r.get(0))
}

/// Nothing of `id` is waiting before `until_us`: raise its mark.
///
/// # Errors
/// [`Error::Central`].
pub async fn complete_until(c: &Client, id: &str, until_us: i64) -> Result<()> {
    c.execute(
        "UPDATE nodes SET complete_until_us = GREATEST(complete_until_us, $2), last_contact = now() WHERE id = $1",
        &[&id, &until_us],
    )
    .await
    .map_err(|e| pg("updating this node's progress", e))?;
    Ok(())
}

/// Every node, active first, by name.
///
/// # Errors
/// [`Error::Central`].
pub async fn list(c: &Client) -> Result<Vec<Node>> {
    let rows = c
        .query(
            "SELECT name, id, shipped_seq, complete_until_us, last_contact::text, retired IS NOT NULL
             FROM nodes ORDER BY retired IS NOT NULL, name, registered",
            &[],
        )
        .await
        .map_err(|e| pg("reading nodes", e))?;
    Ok(rows
        .iter()
        .map(|r| Node {
            name: r.get(0),
            id: r.get(1),
            shipped_seq: r.get(2),
            complete_until_us: r.get(3),
            last_contact: r.get(4),
            retired: r.get(5),
        })
        .collect())
}

/// Retire the active node `name` (decommissioned): it no longer counts for
/// completeness; what it shipped stays.
///
/// # Errors
/// [`Error::Central`]; [`Error::Usage`] when no active node has that name.
pub async fn retire(c: &Client, name: &str) -> Result<()> {
    let n = c
        .execute(
            "UPDATE nodes SET retired = now() WHERE name = $1 AND retired IS NULL",
            &[&name],
        )
        .await
        .map_err(|e| pg("retiring a node", e))?;
    if n == 0 {
        return Err(Error::Usage(format!("no active node named {name:?}")));
    }
    Ok(())
}

/// The active nodes that have not shipped everything up to `end_us`.
///
/// # Errors
/// [`Error::Central`].
pub async fn lagging(c: &Client, end_us: i64) -> Result<Vec<Node>> {
    Ok(list(c)
        .await?
        .into_iter()
        .filter(|n| !n.retired && n.complete_until_us < end_us)
        .collect())
}

/// With `[central]`: the lagging nodes of month `m`, described for humans
/// (empty: complete; always empty without `[central]`).
///
/// # Errors
/// [`Error::Central`].
pub fn incomplete(cfg: &crate::config::Config, m: crate::month::Month) -> Result<Vec<String>> {
    let Some(c) = &cfg.central else {
        return Ok(vec![]);
    };
    let tz = cfg.tz();
    let end_us = m.end(&tz).as_microsecond();
    let lag = super::runtime()?.block_on(async {
        let client = super::connect(c).await?;
        super::schema::check(&client).await?;
        lagging(&client, end_us).await
    })?;
    Ok(lag
        .iter()
        .map(|n| {
            if n.complete_until_us <= 0 {
                format!("node {} has never shipped", n.name)
            } else {
                let short = (end_us - n.complete_until_us) / 1_000_000;
                format!(
                    "node {} has shipped up to {} ({} h {} min short of the end of {m}; last contact {})",
                    n.name,
                    crate::month::format_csv_date(
                        crate::month::from_micros(n.complete_until_us),
                        &tz
                    ),
                    short / 3600,
                    short % 3600 / 60,
                    n.last_contact.as_deref().unwrap_or("never")
                )
            }
        })
        .collect())
}
