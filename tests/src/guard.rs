//! Bounded waits on child processes, and a guard that stops a child on drop.
//!
//! A suite that can hang is a red suite: every wait on an external process in
//! the test support goes through [`wait_within`] or [`output_within`], and every
//! long-lived child is held by a [`Guard`] (or a type whose `Drop` uses these),
//! so that it is stopped even when its test panics.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Wait for `child` at most `limit`; `None` if it is still running then.
pub fn wait_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let t = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if t.elapsed() < limit => std::thread::sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}

/// Run `cmd` (stdin null, stdout and stderr captured) and wait at most
/// `limit`; past it the command is killed and the error says so, with what it
/// printed until then.
pub fn output_within(cmd: &mut Command, limit: Duration) -> std::io::Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let reader = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    };
    let out = reader(child.stdout.take().map(|s| Box::new(s) as _));
    let err = reader(child.stderr.take().map(|s| Box::new(s) as _));
    let status = wait_within(&mut child, limit);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let (stdout, stderr) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => Err(std::io::Error::other(format!(
            "{cmd:?} did not finish within {limit:?} (killed); stdout: {}; stderr: {}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ))),
    }
}

/// Send `sig` (a name for kill(1): `TERM`, `KILL`) to `pid`; a negative pid
/// is a process group. Errors (no such process) are ignored.
pub fn signal(pid: i64, sig: &str) {
    let _ = output_within(
        Command::new("kill")
            .arg(format!("-{sig}"))
            .arg("--")
            .arg(pid.to_string()),
        Duration::from_secs(5),
    );
}

/// The process group of `pid` (field 5 of `/proc/PID/stat`), if it runs.
pub fn process_group(pid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parens.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// A child process killed (SIGKILL, then a bounded wait) when dropped:
/// `mss-sidecar` is crash-safe by design, so the tests stop it the hard way.
pub struct Guard(pub Child);

impl Guard {
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        if wait_within(&mut self.0, Duration::from_secs(10)).is_none() {
            eprintln!("warning: process {} survived SIGKILL for 10 s", self.0.id());
        }
    }
}
