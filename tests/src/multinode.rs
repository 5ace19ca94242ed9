//! Support for the several-nodes tests (`tests/tests/central.rs`): a
//! private PostgreSQL migrated by the admin role with the documented grants,
//! node configurations, proxy nodes in front of their own Postfix, and the
//! MAIL_IDs on each side.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mss_shared::month::{format_csv_date, from_micros, Month};
use mss_shared::store::capture::OutRow;

use crate::config::TestConfig;
use crate::daemon::Daemon;
use crate::postfix::{Postfix, PostfixBuilder};
use crate::postgres::Pg;
use crate::sidecar::{bin, rows};

pub fn run(tool: &str, cfg: &Path, args: &[&str]) -> (i32, String, String) {
    let o = crate::guard::output_within(
        Command::new(bin(tool)).arg("--config").arg(cfg).args(args),
        Duration::from_secs(120),
    )
    .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A configuration directory for a tool with `role` (admin, export).
pub fn tool_config(pg: &Pg, role: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let text = TestConfig::new(dir.path())
        .with(|c| c.central = Some(pg.central(role)))
        .text();
    let p = dir.path().join("config.toml");
    std::fs::write(&p, text).unwrap();
    (dir, p)
}

/// A PostgreSQL migrated by the admin role, with the documented grants.
pub fn central() -> (Pg, tempfile::TempDir, PathBuf) {
    let pg = Pg::start();
    let (d, admin) = tool_config(&pg, "mss_admin");
    let (c, out, err) = run("mss-admin", &admin, &["central", "migrate"]);
    assert_eq!(c, 0, "{out}{err}\n{}", pg.log());
    assert_eq!(
        out.trim(),
        "applied migration 1\napplied migration 2\napplied migration 3"
    );
    let (c, out, _) = run("mss-admin", &admin, &["central", "migrate"]);
    assert_eq!((c, out.trim()), (0, "schema already at version 3"));
    pg.grant();
    (pg, d, admin)
}

/// A generic login of `bal` at `time` (RFC 3339) on the events endpoint `addr`.
pub fn post_login(addr: &str, bal: &str, time: &str) {
    crate::files::post_login(
        addr,
        &format!(r#"{{"bal": "{bal}", "time": "{time}", "service": "imap"}}"#),
    );
}

pub fn send(addr: &str, from: &str, to: &[&str]) {
    let r = crate::swaks::send(addr, from, to, &[]);
    assert!(r.ok, "{}", r.transcript);
}

/// Wait (bounded) until PostgreSQL holds `n` records (`dirs`: the nodes',
/// whose stderr is shown on failure).
pub fn wait_central(pg: &Pg, n: usize, dirs: &[&Path]) {
    let t = Instant::now();
    loop {
        let have: usize = pg
            .psql_db("mss", "SELECT count(*) FROM records")
            .parse()
            .unwrap();
        if have >= n {
            assert_eq!(have, n, "more records centrally than captured");
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{have} of {n} records shipped after 60 s: {}",
            dirs.iter()
                .map(|d| std::fs::read_to_string(d.join("stderr.log")).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A node: its directory, config text and `[central]` as `mss_node`.
pub fn node_config(
    pg: &Pg,
    dir: &Path,
    name: &str,
    f: impl FnOnce(TestConfig) -> TestConfig,
) -> String {
    f(TestConfig::new(dir))
        .with(|c| {
            c.operator.node = name.into();
            c.central = Some(pg.central("mss_node"));
        })
        .text()
}

pub fn stop(mut d: Daemon) {
    let _ = Command::new("kill").arg(d.pid().to_string()).status();
    let _ = crate::guard::wait_within(&mut d.child, Duration::from_secs(20));
}

pub fn echanges_line(r: &OutRow, tz: &jiff::tz::TimeZone) -> (i64, String, String) {
    (
        r.time_us,
        r.mail_id.clone(),
        format!(
            "{};{};{};{};{}\r\n",
            r.mail_id,
            r.sender,
            r.recipient,
            format_csv_date(from_micros(r.time_us), tz),
            r.size
        ),
    )
}

/// The month's two files for DOMAIN from `mss-export build`:
/// (exit code, Echanges, Connexions, stderr).
pub fn build(cfg: &Path, month: Month, extra: &[&str]) -> (i32, String, String, String) {
    let b = crate::files::build(cfg, &month.to_string(), extra);
    (b.code, b.echanges, b.connexions, b.stderr)
}

/// A node in front of its own Postfix as SMTP proxy, with an events
/// endpoint; returns (daemon, node dir, proxy address, events address).
pub struct ProxyNode {
    pub dir: tempfile::TempDir,
    text: String,
    pub proxy: String,
    pub events: String,
    _pf: Postfix,
}

impl ProxyNode {
    pub fn new(pg: &Pg, name: &str, batch_rows: usize) -> ProxyNode {
        let dir = tempfile::tempdir().unwrap();
        let pf = PostfixBuilder::new().start().unwrap();
        let proxy = format!("127.0.0.1:{}", Postfix::free_port());
        let events = format!("127.0.0.1:{}", Postfix::free_port());
        let text = TestConfig::new(dir.path())
            .proxy(&proxy, &pf.addr())
            .events(&events)
            .with(|c| {
                c.operator.node = name.into();
                let mut central = pg.central("mss_node");
                central.batch_rows = batch_rows;
                c.central = Some(central);
            })
            .text();
        ProxyNode {
            dir,
            text,
            proxy,
            events,
            _pf: pf,
        }
    }

    pub fn start(&self) -> Daemon {
        Daemon::start(self.dir.path(), &self.text, &self.events)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }
}

/// The MAIL_IDs of the message records PostgreSQL holds, sorted.
pub fn central_mail_ids(pg: &Pg) -> Vec<String> {
    let out = pg.psql_db(
        "mss",
        "SELECT body::json->>'mail_id' FROM records WHERE kind = 1 ORDER BY 1",
    );
    out.lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

/// The MAIL_IDs of a node's local rows, sorted and unique.
pub fn local_mail_ids(dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = rows(dir).into_iter().map(|r| r.mail_id).collect();
    ids.sort();
    ids.dedup();
    ids
}
