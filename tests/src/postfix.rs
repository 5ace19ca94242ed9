//! Private Postfix instances for tests (Debian 12's Postfix 3.7, or Debian 13's
//! Postfix 3.10 in the chroot of [`crate::debian13`]; tests run as root).
//!
//! Each instance has its own temp dir with `conf/` (main.cf, master.cf,
//! tables), `queue/` and `data/`, listens on `127.0.0.1:PORT` only, delivers
//! everything to the `discard` transport, and runs `postfix start-fg` with
//! `maillog_file = /dev/stdout` redirected into `dir/maillog` (Postfix refuses a
//! `maillog_file` outside `maillog_file_prefixes`, i.e. /var and /dev/stdout).
//! The system instance is never touched. Stopped with `postfix -c DIR stop`
//! on drop (killing start-fg alone would leave `master` running), bounded: past
//! the limit the master (pid file) and its process group are killed.
//!
//! `main.cf` holds each key once: a duplicate makes every Postfix program warn
//! at start, and with `maillog_file` those warnings go as datagrams to
//! `postlogd`, which warns too and can block on its own full socket
//! (`max_dgram_qlen` = 10): the whole instance then deadlocks. So the builder
//! keeps one value per key (the last one given wins), and any `warning:` that
//! `postfix check` or the start-up prints fails the start with its text.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::guard::{output_within, process_group, signal, wait_within};

pub struct PostfixBuilder {
    /// main.cf entries in order, each key once.
    main: Vec<(String, String)>,
    /// Appended verbatim after the entries (see [`PostfixBuilder::raw_main_cf`]).
    raw_main: String,
    master: Vec<String>,
    tables: Vec<(String, String, bool)>,
    port: Option<u16>,
    /// Run the Postfix of this Debian root (`chroot ROOT postfix …`).
    root: Option<PathBuf>,
}

impl Default for PostfixBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PostfixBuilder {
    pub fn new() -> Self {
        PostfixBuilder {
            main: vec![],
            raw_main: String::new(),
            master: vec![],
            tables: vec![],
            port: None,
            root: None,
        }
    }

    /// Set main.cf entries: one or more `key = value` lines (a line starting
    /// with white space continues the previous value; blank and `#` lines are
    /// skipped). A key given again replaces its earlier value, the base
    /// defaults' included: the file holds each key once.
    pub fn main_cf(mut self, lines: &str) -> Self {
        for (k, v) in parse_main_cf(lines) {
            set_entry(&mut self.main, k, v);
        }
        self
    }

    /// Text appended to main.cf verbatim, not deduplicated: only for the test
    /// that proves a duplicate key fails the start loudly.
    pub fn raw_main_cf(mut self, text: &str) -> Self {
        self.raw_main.push_str(text);
        self.raw_main.push('\n');
        self
    }

    /// Extra master.cf lines, appended verbatim.
    pub fn master_cf(mut self, lines: &str) -> Self {
        self.master.push(lines.to_string());
        self
    }

    /// A lookup table in the config dir: `hash:$config_directory/NAME`
    /// (postmap'ed) or, with `regexp`, `regexp:$config_directory/NAME`.
    pub fn table(mut self, name: &str, content: &str, regexp: bool) -> Self {
        self.tables
            .push((name.to_string(), content.to_string(), regexp));
        self
    }

    /// Listen on this port instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Run the Postfix installed in this root (the Debian 13 chroot of
    /// [`crate::debian13`]) instead of the host's: the instance's dir is
    /// under `ROOT/tmp`, every command runs through `chroot ROOT`.
    pub fn in_root(mut self, root: &Path) -> Self {
        self.root = Some(root.to_path_buf());
        self
    }

    pub fn start(self) -> std::io::Result<Postfix> {
        let root = self.root.clone();
        let tmp = match &root {
            Some(r) => tempfile::Builder::new()
                .prefix("mss-postfix-")
                .tempdir_in(r.join("tmp"))?,
            None => tempfile::Builder::new().prefix("mss-postfix-").tempdir()?,
        };
        let dir = tmp.path().to_path_buf();
        // The instance's paths as its Postfix sees them.
        let inner = |p: &Path| inner_path(root.as_deref(), p);
        let run = |prog: &str| in_root(root.as_deref(), prog);
        let conf = dir.join("conf");
        std::fs::create_dir_all(&conf)?;
        std::fs::create_dir_all(dir.join("queue"))?;
        std::fs::create_dir_all(dir.join("data"))?;
        let st = run("chown")
            .arg("postfix")
            .arg(inner(&dir.join("data")))
            .status()?;
        assert!(st.success(), "chown postfix (tests must run as root)");
        let port = self.port.unwrap_or_else(Postfix::free_port);
        let mut entries = base_main_cf(&inner(&dir));
        if root.is_some() {
            // /dev/stdout needs /proc, which the chroot does not mount:
            // the log goes straight to the instance's file.
            let log = inner(&dir.join("maillog")).display().to_string();
            set_entry(&mut entries, "maillog_file_prefixes".into(), "/tmp".into());
            set_entry(&mut entries, "maillog_file".into(), log);
        }
        for (k, v) in self.main {
            set_entry(&mut entries, k, v);
        }
        let mut main = render_main_cf(&entries);
        main.push_str(&self.raw_main);
        std::fs::write(conf.join("main.cf"), main)?;
        let mut master = String::new();
        for line in std::fs::read_to_string(match &root {
            Some(r) => r.join("etc/postfix/master.cf"),
            None => PathBuf::from("/etc/postfix/master.cf"),
        })?
        .lines()
        {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if line.starts_with(|c: char| !c.is_whitespace() && c != '#') && fields.len() >= 8 {
                // No chroot (column 5): the queue is in a temp dir.
                let mut f: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
                if f[0] == "smtp" && f[1] == "inet" {
                    f[0] = format!("127.0.0.1:{port}");
                } else if f[1] == "inet" {
                    continue;
                }
                f[4] = "n".into();
                master.push_str(&f.join(" "));
            } else {
                master.push_str(line);
            }
            master.push('\n');
        }
        for l in &self.master {
            master.push_str(l);
            master.push('\n');
        }
        std::fs::write(conf.join("master.cf"), master)?;
        for (name, content, regexp) in &self.tables {
            let p = conf.join(name);
            std::fs::write(&p, content)?;
            if !regexp {
                let out = run("postmap")
                    .arg("-c")
                    .arg(inner(&conf))
                    .arg(format!("hash:{}", inner(&p).display()))
                    .output()?;
                assert!(
                    out.status.success(),
                    "postmap {name}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        // `postfix check` runs postconf, postsuper…: with maillog_file set
        // their warnings come on stdout.
        let check = output_within(
            run("postfix").arg("-c").arg(inner(&conf)).arg("check"),
            Duration::from_secs(30),
        )?;
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        if !check.status.success() || !warnings(&printed).is_empty() {
            return Err(std::io::Error::other(format!(
                "postfix check ({}): {}",
                check.status,
                warnings(&printed).join("\n")
            )));
        }
        // In a root, Postfix writes `maillog` itself (see above).
        let log = std::fs::File::create(dir.join(if root.is_some() {
            "start-fg.out"
        } else {
            "maillog"
        }))?;
        // Its own process group, so that a stuck instance can be killed
        // whole without touching the test runner.
        let child = run("postfix")
            .arg("-c")
            .arg(inner(&conf))
            .arg("start-fg")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let pf = Postfix {
            port,
            dir,
            conf,
            root,
            child: Some(child),
            _tmp: tmp,
        };
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if t.elapsed() > Duration::from_secs(20) {
                return Err(std::io::Error::other(format!(
                    "postfix did not listen on {port}: {}",
                    pf.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // A warning at start-up is the deadlock's first step (see above).
        let log = pf.log();
        let started = warnings(&log);
        if !started.is_empty() {
            return Err(std::io::Error::other(format!(
                "postfix warned at start-up: {}",
                started.join("\n")
            )));
        }
        Ok(pf)
    }
}

pub struct Postfix {
    pub port: u16,
    /// The instance's temp dir (conf/, queue/, data/, maillog).
    pub dir: PathBuf,
    /// The config dir (`postfix -c`).
    pub conf: PathBuf,
    /// The Debian root this instance's Postfix runs in, if not the host's.
    pub root: Option<PathBuf>,
    child: Option<Child>,
    _tmp: tempfile::TempDir,
}

impl Postfix {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Everything Postfix logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default()
    }

    /// Wait until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let t = Instant::now();
        while t.elapsed() < timeout {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Inject with sendmail(1) into this instance (`sendmail -C DIR -f FROM RCPT…`).
    pub fn sendmail(
        &self,
        from: &str,
        rcpts: &[&str],
        message: &str,
    ) -> std::io::Result<std::process::Output> {
        let mut c = in_root(self.root.as_deref(), "/usr/sbin/sendmail")
            .arg("-C")
            .arg(inner_path(self.root.as_deref(), &self.conf))
            .arg("-f")
            .arg(from)
            .args(rcpts)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        c.stdin
            .take()
            .expect("stdin")
            .write_all(message.as_bytes())?;
        // stdin is closed: sendmail (postdrop) finishes on its own, bounded.
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (so, se) = (c.stdout.take(), c.stderr.take());
        let Some(status) = wait_within(&mut c, Duration::from_secs(30)) else {
            let _ = c.kill();
            let _ = c.wait();
            return Err(std::io::Error::other("sendmail did not finish within 30 s"));
        };
        use std::io::Read;
        if let Some(mut so) = so {
            so.read_to_end(&mut out)?;
        }
        if let Some(mut se) = se {
            se.read_to_end(&mut err)?;
        }
        Ok(std::process::Output {
            status,
            stdout: out,
            stderr: err,
        })
    }

    /// The master's pid, from its pid file.
    pub fn master_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("queue/pid/master.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// A free loopback TCP port.
    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port")
    }
}

impl Drop for Postfix {
    /// `postfix stop` (bounded), then the start-fg child (bounded); past the
    /// bounds, SIGKILL to the master's and the child's process groups.
    fn drop(&mut self) {
        let master = self.master_pid();
        let stopped = output_within(
            in_root(self.root.as_deref(), "postfix")
                .arg("-c")
                .arg(inner_path(self.root.as_deref(), &self.conf))
                .arg("stop"),
            Duration::from_secs(20),
        )
        .is_ok();
        let Some(mut c) = self.child.take() else {
            return;
        };
        if stopped && wait_within(&mut c, Duration::from_secs(10)).is_some() {
            return;
        }
        eprintln!(
            "warning: postfix {} did not stop within its bounds: killed ({})",
            self.conf.display(),
            self.log()
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let own = process_group(std::process::id());
        for pid in master.into_iter().chain([c.id()]) {
            match process_group(pid) {
                Some(g) if Some(g) != own => signal(-g, "KILL"),
                _ => signal(pid as i64, "KILL"),
            }
        }
        let _ = c.kill();
        let _ = wait_within(&mut c, Duration::from_secs(10));
    }
}

/// `prog`, or `chroot ROOT prog` when a root is given.
pub fn in_root(root: Option<&Path>, prog: &str) -> Command {
    match root {
        Some(r) => {
            let mut c = Command::new("chroot");
            c.arg(r).arg(prog);
            c
        }
        None => Command::new(prog),
    }
}

/// `p` (under `root`, if any) as the processes run in that root see it.
fn inner_path(root: Option<&Path>, p: &Path) -> PathBuf {
    match root {
        Some(r) => Path::new("/").join(p.strip_prefix(r).expect("path under the root")),
        None => p.to_path_buf(),
    }
}

/// The `warning:` (and `fatal:`/`panic:`) lines of Postfix output.
pub fn warnings(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains(" warning: ") || l.contains(" fatal: ") || l.contains(" panic: "))
        .collect()
}

/// `key = value` entries of main.cf text, in order (continuation lines
/// joined, blank and comment lines skipped). Panics on a line that is not an
/// entry: the builder never writes what it did not understand.
fn parse_main_cf(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            let last = out.last_mut().expect("continuation line without an entry");
            last.1.push(' ');
            last.1.push_str(t);
            continue;
        }
        let (k, v) = t
            .split_once('=')
            .unwrap_or_else(|| panic!("main.cf line is not `key = value`: {line:?}"));
        out.push((k.trim().to_string(), v.trim().to_string()));
    }
    out
}

/// Set `key` in `entries`: replaced in place if present, else appended.
fn set_entry(entries: &mut Vec<(String, String)>, key: String, value: String) {
    match entries.iter_mut().find(|(k, _)| *k == key) {
        Some(e) => e.1 = value,
        None => entries.push((key, value)),
    }
}

fn render_main_cf(entries: &[(String, String)]) -> String {
    entries
        .iter()
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect()
}

/// The base main.cf of a private instance in `dir`.
fn base_main_cf(dir: &std::path::Path) -> Vec<(String, String)> {
    parse_main_cf(&format!(
        "compatibility_level = 3.6\n\
         queue_directory = {q}\n\
         data_directory = {d}\n\
         mail_owner = postfix\n\
         setgid_group = postdrop\n\
         inet_interfaces = 127.0.0.1\n\
         inet_protocols = ipv4\n\
         myhostname = postfix.test\n\
         mydomain = postfix.test\n\
         myorigin = postfix.test\n\
         mydestination =\n\
         mynetworks = 127.0.0.0/8\n\
         relay_domains =\n\
         smtpd_relay_restrictions = permit_mynetworks, reject\n\
         default_transport = discard\n\
         local_transport = discard\n\
         relay_transport = discard\n\
         maillog_file = /dev/stdout\n\
         smtputf8_enable = yes\n\
         smtp_dns_support_level = disabled\n\
         smtp_host_lookup = native\n\
         alias_maps =\n\
         alias_database =\n\
         smtpd_banner = $myhostname ESMTP\n",
        q = dir.join("queue").display(),
        d = dir.join("data").display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Vec<String> {
        parse_main_cf(text).into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn a_key_given_again_replaces_its_value_and_main_cf_holds_each_key_once() {
        let b = PostfixBuilder::new()
            .main_cf("mynetworks = 10.0.0.0/8")
            .main_cf("smtpd_milters = inet:127.0.0.1:1\nmilter_default_action = accept")
            .main_cf("smtpd_milters = inet:127.0.0.1:2")
            .main_cf("smtpd_relay_restrictions = permit_sasl_authenticated,\n    permit_mynetworks, reject");
        let mut entries = base_main_cf(std::path::Path::new("/x"));
        for (k, v) in b.main {
            set_entry(&mut entries, k, v);
        }
        let text = render_main_cf(&entries);
        let mut ks = keys(&text);
        let n = ks.len();
        ks.sort();
        ks.dedup();
        assert_eq!(ks.len(), n, "a duplicate key in:\n{text}");
        assert!(text.contains("\nmynetworks = 10.0.0.0/8\n"), "{text}");
        assert!(!text.contains("127.0.0.0/8"), "{text}");
        assert!(
            text.contains("\nsmtpd_milters = inet:127.0.0.1:2\n"),
            "{text}"
        );
        assert!(text.contains(
            "\nsmtpd_relay_restrictions = permit_sasl_authenticated, permit_mynetworks, reject\n"
        ));
        assert_eq!(text.matches("milter_default_action").count(), 1);
    }

    #[test]
    #[should_panic(expected = "not `key = value`")]
    fn a_line_that_is_not_an_entry_is_refused() {
        let _ = PostfixBuilder::new().main_cf("permit_mynetworks");
    }

    #[test]
    fn warnings_are_found_in_postfix_output() {
        let log = "Dec  2 10:00:00 postfix.test postfix/postlogd[7]: warning: /t/main.cf, line 30: overriding earlier entry: mynetworks=127.0.0.0/8\n\
                   Dec  2 10:00:00 postfix.test postfix/master[8]: daemon started\n";
        assert_eq!(warnings(log).len(), 1);
        assert!(warnings(log)[0].contains("mynetworks"));
    }
}
