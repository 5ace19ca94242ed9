//! Support for the reconcile tests (`tests/tests/reconcile*.rs`): a
//! private Postfix with the sidecar as milter, its log, and `mss-admin
//! reconcile` / `counts` run against them.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::postfix::{Postfix, PostfixBuilder};
use crate::sidecar::bin;
use crate::smtp::queued_as;

pub fn postfix_with_milter(milter_port: u16) -> Postfix {
    PostfixBuilder::new()
        .main_cf(&format!("smtpd_milters = inet:127.0.0.1:{milter_port}"))
        .main_cf(&format!("non_smtpd_milters = inet:127.0.0.1:{milter_port}"))
        .main_cf("milter_default_action = accept")
        .main_cf("milter_connect_timeout = 5s")
        .start()
        .expect("postfix")
}

pub fn reconcile(cfg: &Path, month: &str, log: &Path) -> (i32, serde_json::Value, String) {
    reconcile_with(cfg, month, &[log], &[])
}

/// Send one message with swaks; its queue id.
pub fn send(pf: &Postfix, from: &str, to: &[&str]) -> String {
    let r = crate::swaks::send(&pf.addr(), from, to, &[]);
    assert!(r.ok, "{}", r.transcript);
    r.transcript
        .lines()
        .find_map(queued_as)
        .unwrap_or_else(|| panic!("no queue id: {}", r.transcript))
}

/// The queue id of the message logged as delivered to `rcpt` (waits for it).
pub fn queue_id_of(pf: &Postfix, rcpt: &str) -> String {
    let needle = format!("to=<{rcpt}>");
    assert!(
        pf.wait_log(&needle, Duration::from_secs(30)),
        "{}",
        pf.log()
    );
    pf.log()
        .lines()
        .find(|l| l.contains(&needle))
        .and_then(|l| l.split(": ").nth(1).map(str::to_string))
        .unwrap()
}

/// Wait until every recipient line of `qid` and its `removed` are logged.
pub fn wait_removed(pf: &Postfix, qid: &str) {
    assert!(
        pf.wait_log(&format!("{qid}: removed"), Duration::from_secs(30)),
        "{}",
        pf.log()
    );
}

pub fn wait_rows(cfg: &Path, month: &str, n: u64) {
    for _ in 0..100 {
        let v = counts(cfg, month);
        let rows: u64 = v["domains"]
            .as_array()
            .map(|a| a.iter().filter_map(|d| d["rows"].as_u64()).sum())
            .unwrap_or(0);
        if rows >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{n} rows never stored");
}

pub fn reconcile_with(
    cfg: &Path,
    month: &str,
    logs: &[&Path],
    extra: &[&str],
) -> (i32, serde_json::Value, String) {
    let o = Command::new(bin("mss-admin"))
        .arg("--config")
        .arg(cfg)
        .args(["reconcile", "--month", month, "--json"])
        .args(extra)
        .arg("--log")
        .args(logs)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{err}", String::from_utf8_lossy(&o.stdout)));
    (o.status.code().unwrap_or(-1), v, err)
}

/// Run a Postfix admin command (`postsuper`, `postqueue`) on this instance.
pub fn postfix_cmd(pf: &Postfix, prog: &str, args: &[&str]) {
    let o = crate::guard::output_within(
        Command::new(prog).arg("-c").arg(&pf.conf).args(args),
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(
        o.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// How many messages Postfix has finished with (`removed` lines).
pub fn removed_count(pf: &Postfix) -> usize {
    pf.log()
        .lines()
        .filter(|l| l.ends_with(": removed"))
        .count()
}

/// DOMAIN's entry of `mss-admin counts --month M --json`.
pub fn domain_counts(cfg: &Path, month: &str) -> serde_json::Value {
    let counts = counts(cfg, month);
    counts["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["domain"] == crate::sidecar::DOMAIN)
        .cloned()
        .unwrap_or_else(|| panic!("no {} in {counts}", crate::sidecar::DOMAIN))
}

/// `mss-admin counts --month M --json` (`null` when it printed no JSON).
pub fn counts(cfg: &Path, month: &str) -> serde_json::Value {
    let o = Command::new(bin("mss-admin"))
        .arg("--config")
        .arg(cfg)
        .args(["counts", "--month", month, "--json"])
        .output()
        .unwrap();
    serde_json::from_slice(&o.stdout).unwrap_or_default()
}
