//! A private Dovecot (Debian's dovecot-core) used as the SASL server of a
//! test Postfix: passwd-file users, the auth socket in a temp dir, no mail
//! protocol. Stopped (master killed) on drop.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::guard::{signal, wait_within};
use std::time::{Duration, Instant};

pub struct Dovecot {
    pub dir: PathBuf,
    /// The auth socket for Postfix's `smtpd_sasl_path`.
    pub auth_socket: PathBuf,
    child: Option<Child>,
    _tmp: tempfile::TempDir,
}

/// What a Dovecot with IMAP reports to the sidecar.
#[derive(Default)]
pub struct ImapOptions<'a> {
    /// `event_exporter` http-post target (`http://127.0.0.1:P/v1/dovecot`).
    pub events_url: Option<&'a str>,
    /// `format_args` of the exporter (`time-rfc3339` or `time-unix`).
    pub time_format: &'a str,
    /// The sidecar's dict socket for the `last_login` plugin.
    pub dict_socket: Option<&'a std::path::Path>,
}

impl Dovecot {
    /// Start with these `(user, password)` pairs.
    pub fn start(users: &[(&str, &str)]) -> std::io::Result<Dovecot> {
        Self::start_with(users, None, &ImapOptions::default())
    }

    /// Also serve IMAP on `127.0.0.1:imap_port` (needs dovecot-imapd), with
    /// the event exporter and/or the last_login plugin of `opts`.
    pub fn start_imap(
        users: &[(&str, &str)],
        imap_port: u16,
        opts: &ImapOptions,
    ) -> std::io::Result<Dovecot> {
        Self::start_with(users, Some(imap_port), opts)
    }

    fn start_with(
        users: &[(&str, &str)],
        imap_port: Option<u16>,
        opts: &ImapOptions,
    ) -> std::io::Result<Dovecot> {
        let tmp = tempfile::Builder::new().prefix("mss-dovecot-").tempdir()?;
        let dir = tmp.path().to_path_buf();
        std::fs::create_dir_all(dir.join("state"))?;
        let passwd: String = users
            .iter()
            .map(|(u, p)| format!("{u}:{{PLAIN}}{p}\n"))
            .collect();
        std::fs::write(dir.join("passwd"), passwd)?;
        let d = dir.display();
        let mut extra = String::new();
        let mut protocols = "";
        if let Some(port) = imap_port {
            protocols = "imap";
            std::fs::create_dir_all(dir.join("mail"))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.join("mail"), std::fs::Permissions::from_mode(0o777))?;
            extra.push_str(&format!(
                "mail_location = maildir:{d}/mail/%u\n\
                 service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n"
            ));
        }
        if let Some(url) = opts.events_url {
            let fmt = if opts.time_format.is_empty() {
                "time-rfc3339"
            } else {
                opts.time_format
            };
            extra.push_str(&format!(
                "event_exporter mss {{\n  format = json\n  format_args = {fmt}\n  transport = http-post\n  transport_args = {url}\n  transport_timeout = 2sec\n}}\n\
                 metric mss_logins {{\n  exporter = mss\n  exporter_include = name hostname timestamps fields\n  filter = event=auth_request_finished AND success=yes AND NOT service=doveadm\n}}\n"
            ));
        }
        if let Some(sock) = opts.dict_socket {
            extra.push_str(&format!(
                "protocol imap {{\n  mail_plugins = $mail_plugins last_login\n}}\n\
                 plugin {{\n  last_login_dict = proxy:{}:lastlogin\n  last_login_key = last-login/%u\n}}\n",
                sock.display()
            ));
        }
        let conf = format!(
            "base_dir = {d}/run\nstate_dir = {d}/state\nprotocols = {protocols}\nlisten = 127.0.0.1\nlog_path = {d}/dovecot.log\n\
             auth_mechanisms = plain login\ndisable_plaintext_auth = no\nssl = no\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {d}/passwd\n}}\n\
             userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home={d}\n}}\n\
             service auth {{\n  unix_listener {d}/auth {{\n    mode = 0666\n  }}\n}}\n\
             service anvil {{\n  chroot =\n}}\n{extra}"
        );
        std::fs::write(dir.join("dovecot.conf"), conf)?;
        // Its own process group: a stuck instance is killed whole on drop.
        let child = Command::new("dovecot")
            .args(["-F", "-c"])
            .process_group(0)
            .arg(dir.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let auth_socket = dir.join("auth");
        let dv = Dovecot {
            dir,
            auth_socket,
            child: Some(child),
            _tmp: tmp,
        };
        let t = Instant::now();
        while !dv.auth_socket.exists()
            || imap_port.is_some_and(|p| std::net::TcpStream::connect(("127.0.0.1", p)).is_err())
        {
            if t.elapsed() > Duration::from_secs(15) {
                return Err(std::io::Error::other(format!(
                    "dovecot did not start: {}",
                    dv.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(dv)
    }

    /// `LOGIN user password` over IMAP with python3's imaplib; whether it
    /// succeeded.
    pub fn imap_login(port: u16, user: &str, password: &str) -> bool {
        let script = "import imaplib,sys\nc=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]),timeout=15)\ntry:\n c.login(sys.argv[2],sys.argv[3])\nexcept imaplib.IMAP4.error:\n sys.exit(1)\nc.logout()\n";
        Command::new("python3")
            .args(["-c", script, &port.to_string(), user, password])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dovecot.log")).unwrap_or_default()
    }
}

impl Drop for Dovecot {
    /// SIGTERM to the master (it stops its children), a bounded wait, then
    /// SIGKILL to its whole process group.
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id() as i64, "TERM");
            if wait_within(&mut c, Duration::from_secs(10)).is_some() {
                return;
            }
            eprintln!(
                "warning: dovecot {} did not stop within 10 s: killed",
                self.dir.display()
            );
            signal(-(c.id() as i64), "KILL");
            let _ = c.kill();
            let _ = wait_within(&mut c, Duration::from_secs(10));
        }
    }
}
