//! The real `mss-sidecar` binary as a child process, and what `/proc` says
//! about it (open file descriptors, RSS, threads).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::sidecar::bin;

/// A running `mss-sidecar`; killed on drop.
pub struct Daemon {
    pub child: Child,
    /// Its stderr.
    pub log: PathBuf,
}

impl Daemon {
    /// Write `config` to `dir/config.toml`, start the daemon (`MSS_LOG=warn`,
    /// stderr to `dir/stderr.log`) and wait until `wait_addr` accepts.
    pub fn start(dir: &Path, config: &str, wait_addr: &str) -> Daemon {
        let cfg = dir.join("config.toml");
        std::fs::write(&cfg, config).unwrap();
        let log = dir.join("stderr.log");
        let child = Command::new(bin("mss-sidecar"))
            .arg("--config")
            .arg(&cfg)
            .env("MSS_LOG", "warn")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut d = Daemon { child, log };
        let t = Instant::now();
        while std::net::TcpStream::connect(wait_addr).is_err() {
            if let Some(s) = d.child.try_wait().unwrap() {
                panic!("mss-sidecar exited {s}: {}", d.stderr());
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "{wait_addr} never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Open file descriptors (`/proc/<pid>/fd`).
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// A `kB` line of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), or `Threads`.
    pub fn status(&self, key: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{key} not in /proc status"))
    }

    /// Resident memory, KiB.
    pub fn rss_kb(&self) -> u64 {
        self.status("VmRSS")
    }

    /// Wait until `f` holds (polling), at most `secs`; returns whether it did.
    pub fn settle(&self, secs: u64, f: impl Fn(&Daemon) -> bool) -> bool {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(secs) {
            if f(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        f(self)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
