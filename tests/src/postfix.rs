//! Private Postfix instances for tests (Debian 12's Postfix 3.7, or Debian 13's
//! Postfix 3.10 in the chroot of [`crate::debian13`]; tests run as root).
//!
//! Each instance has its own temp dir with `conf/` (main.cf, master.cf,
//! tables), `queue/` and `data/`, listens on `127.0.0.1:PORT` only, delivers
//! everything to the `discard` transport, and runs `postfix start-fg` with
//! `maillog_file = /dev/stdout` redirected into `dir/maillog` (Postfix refuses a
//! `maillog_file` outside `maillog_file_prefixes`, i.e. /var and /dev/stdout).
//! The system instance is never touched. Stopped with `postfix -c DIR stop`
//! on drop (killing start-fg alone would leave `master` running).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct PostfixBuilder {
    main: Vec<String>,
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
            master: vec![],
            tables: vec![],
            port: None,
            root: None,
        }
    }

    /// Run the Postfix installed in this root (the Debian 13 chroot of
    /// [`crate::debian13`]) instead of the host's: the instance's dir is
    /// under `ROOT/tmp`, every command runs through `chroot ROOT`.
    pub fn in_root(mut self, root: &std::path::Path) -> Self {
        self.root = Some(root.to_path_buf());
        self
    }

    /// An extra main.cf line (later lines override earlier ones).
    pub fn main_cf(mut self, line: &str) -> Self {
        self.main.push(line.to_string());
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
        let inner = |p: &std::path::Path| -> PathBuf {
            match &root {
                Some(r) => Path::new("/").join(p.strip_prefix(r).expect("under root")),
                None => p.to_path_buf(),
            }
        };
        let run = |prog: &str| -> Command { in_root(root.as_deref(), prog) };
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
        let mut main = format!(
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
             disable_dns_lookups = yes\n\
             smtp_host_lookup = native\n\
             alias_maps =\n\
             alias_database =\n\
             smtpd_banner = $myhostname ESMTP\n",
            q = inner(&dir.join("queue")).display(),
            d = inner(&dir.join("data")).display()
        );
        if root.is_some() {
            // /dev/stdout needs /proc, which the chroot does not mount:
            // the log goes straight to the instance's file.
            main.push_str(&format!(
                "maillog_file_prefixes = /tmp\nmaillog_file = {}\n",
                inner(&dir.join("maillog")).display()
            ));
        }
        for l in &self.main {
            main.push_str(l);
            main.push('\n');
        }
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
        let check = run("postfix")
            .arg("-c")
            .arg(inner(&conf))
            .arg("check")
            .output()?;
        if !check.status.success() {
            return Err(std::io::Error::other(format!(
                "postfix check: {}",
                String::from_utf8_lossy(&check.stderr)
            )));
        }
        let log = std::fs::File::create(dir.join(if root.is_some() {
            "start-fg.out"
        } else {
            "maillog"
        }))?;
        let child = run("postfix")
            .arg("-c")
            .arg(inner(&conf))
            .arg("start-fg")
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
        Ok(pf)
    }
}

pub struct Postfix {
    pub port: u16,
    /// The instance's temp dir (conf/, queue/, data/, maillog).
    pub dir: PathBuf,
    /// The config dir (`postfix -c`).
    pub conf: PathBuf,
    /// The Debian root this instance's Postfix runs in, if not the host.
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
            .arg(self.inner_conf())
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
        c.wait_with_output()
    }

    /// The config dir as this instance's Postfix sees it.
    fn inner_conf(&self) -> PathBuf {
        match &self.root {
            Some(r) => Path::new("/").join(self.conf.strip_prefix(r).expect("under root")),
            None => self.conf.clone(),
        }
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
    fn drop(&mut self) {
        let _ = in_root(self.root.as_deref(), "postfix")
            .arg("-c")
            .arg(self.inner_conf())
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut c) = self.child.take() {
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
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
