//! Start and stop marks in the MTA's own log (`[service] mail_log_marks`),
//! so that `mss-admin reconcile` can bound the windows the sidecar was down
//! even when Postfix had no message to warn about.
//!
//! One `postlog -c <postfix_config_dir> -t mss-sidecar -p info` child is
//! spawned before root is dropped, as the service user with group
//! `postdrop` (Postfix's `postlog` writes into `maillog_file` only for root or
//! `postdrop`; through syslog otherwise it logs with facility mail as well).
//! Its stdin is a pipe: each mark is one line. The child ends when the pipe
//! closes, so a daemon killed with SIGKILL leaves a `started` with no
//! `stopping` before it: reconcile reports that restart as unclean.
//!
//! Never fatal: a missing `postlog`, a failed spawn or write is a warning in
//! the daemon's own log, and marks stop there. Nothing here is on the SMTP
//! path (marks are written at start and stop only).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use mss_shared::config::Config;

/// The tag of every mark (`mss-sidecar[pid]: started …`).
pub const TAG: &str = "mss-sidecar";

/// Postfix's logging tool (Debian's path).
pub const POSTLOG: &str = "/usr/sbin/postlog";

pub struct Marks {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
}

impl Marks {
    /// No marks (`mail_log_marks = false`).
    pub fn off() -> Marks {
        Marks {
            child: None,
            stdin: None,
        }
    }

    /// Spawn the `postlog` child (call before dropping root). `user`: the
    /// service user the child runs as when we are root.
    pub fn spawn(cfg: &Config, as_root: bool) -> Marks {
        if !cfg.service.mail_log_marks {
            return Marks::off();
        }
        if !Path::new(POSTLOG).exists() {
            tracing::warn!(
                "[service] mail_log_marks: {POSTLOG} not found (no Postfix on this host?): no start/stop marks in the mail log"
            );
            return Marks::off();
        }
        let mut cmd = Command::new(POSTLOG);
        cmd.arg("-c")
            .arg(&cfg.service.postfix_config_dir)
            .args(["-t", TAG, "-p", "info"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if as_root {
            let user = nix::unistd::User::from_name(&cfg.service.user)
                .ok()
                .flatten();
            let group = nix::unistd::Group::from_name("postdrop").ok().flatten();
            if let Some(u) = user.filter(|u| !u.uid.is_root()) {
                cmd.uid(u.uid.as_raw());
                cmd.gid(group.map_or(u.gid.as_raw(), |g| g.gid.as_raw()));
            }
        }
        match cmd.spawn() {
            Ok(mut child) => Marks {
                stdin: child.stdin.take(),
                child: Some(child),
            },
            Err(e) => {
                tracing::warn!("[service] mail_log_marks: cannot run {POSTLOG}: {e}: no start/stop marks in the mail log");
                Marks::off()
            }
        }
    }

    /// Write one mark (one line).
    pub fn mark(&mut self, text: &str) {
        let Some(w) = self.stdin.as_mut() else {
            return;
        };
        let line = format!("{}\n", text.replace('\n', " "));
        if let Err(e) = w.write_all(line.as_bytes()).and_then(|()| w.flush()) {
            tracing::warn!("[service] mail_log_marks: {POSTLOG} gone ({e}): no more marks");
            self.stdin = None;
        }
    }

    /// Close the pipe and wait (at most 2 s) for `postlog` to log and exit.
    pub fn close(&mut self) {
        self.stdin = None;
        let Some(mut child) = self.child.take() else {
            return;
        };
        let t = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if t.elapsed() < Duration::from_secs(2) => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
            }
        }
    }
}

impl Drop for Marks {
    fn drop(&mut self) {
        self.close();
    }
}

/// The `started` mark: version and front ends.
pub fn started(cfg: &Config) -> String {
    let mut s = format!("started: version {}", env!("CARGO_PKG_VERSION"));
    if let Some(m) = &cfg.milter {
        s.push_str(&format!(", milter {}", m.listen));
    }
    if let Some(p) = &cfg.proxy {
        s.push_str(&format!(", proxy {} -> {}", p.listen, p.upstream));
    }
    s.push_str(&format!(", node {}", cfg.operator.node));
    s
}
