//! The Debian 13 "trixie" lane: a chroot with Debian 13's Dovecot 2.4 and
//! Postfix 3.10, built once by `tests/debian13-root.sh` (debootstrap, cached
//! in `~/.cache/mss-debian13/root`, outside the clone), and a private
//! Dovecot 2.4 run in it. The chroot shares the host's loopback, so its
//! daemons reach the sidecar (a bookworm-built binary run on the host) on
//! 127.0.0.1. Every process started in the chroot is stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The chroot, built on first use (a few minutes cold, instant warm).
/// Panics loudly if it cannot be built (no root, no debootstrap, archive
/// unreachable): the lane fails, it is never skipped.
pub fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("debian13-root.sh");
        let out = Command::new("timeout")
            .args(["1800", "bash"])
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .expect("run tests/debian13-root.sh");
        assert!(
            out.status.success(),
            "Debian 13 chroot could not be built (tests/debian13-root.sh: {})",
            out.status
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// `path` (under the chroot) as the chroot's processes see it.
pub fn inner(path: &Path) -> PathBuf {
    Path::new("/").join(path.strip_prefix(root()).expect("path under the chroot"))
}

/// The metric filter of `packaging/dovecot-2.4-events.conf`.
pub const FILTER: &str = "event=auth_request_finished AND success=yes AND NOT protocol=doveadm";

/// A private Dovecot 2.4 of the chroot: IMAP on `127.0.0.1:port`,
/// passwd-file users, reporting logins to the events URL and/or the dict
/// socket (a host path under the chroot).
pub struct Dovecot24 {
    pub dir: PathBuf,
    child: Option<Child>,
    _tmp: tempfile::TempDir,
}

impl Dovecot24 {
    pub fn start(
        users: &[(&str, &str)],
        imap_port: u16,
        events_url: Option<&str>,
        dict_socket: Option<&Path>,
    ) -> std::io::Result<Dovecot24> {
        let events = events_url.map(|u| (u, FILTER));
        Self::start_with(users, imap_port, events, dict_socket)
    }

    /// As [`Dovecot24::start`], with the metric filter given beside the URL.
    pub fn start_with(
        users: &[(&str, &str)],
        imap_port: u16,
        events: Option<(&str, &str)>,
        dict_socket: Option<&Path>,
    ) -> std::io::Result<Dovecot24> {
        let r = root();
        let tmp = tempfile::Builder::new()
            .prefix("mss-dovecot-24-")
            .tempdir_in(r.join("tmp"))?;
        let dir = tmp.path().to_path_buf();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        std::fs::create_dir_all(dir.join("state"))?;
        std::fs::create_dir_all(dir.join("mail"))?;
        std::fs::set_permissions(dir.join("mail"), std::fs::Permissions::from_mode(0o777))?;
        let passwd: String = users
            .iter()
            .map(|(u, p)| format!("{u}:{{PLAIN}}{p}\n"))
            .collect();
        std::fs::write(dir.join("passwd"), passwd)?;
        let d = inner(&dir);
        let d = d.display();
        let mut extra = String::new();
        if let Some((url, filter)) = events {
            extra.push_str(&format!(
                "event_exporter mss_sidecar {{\n  driver = http-post\n  http_post_url = {url}\n  format = json\n  time_format = rfc3339\n}}\n\
                 metric mss_sidecar_logins {{\n  exporter = mss_sidecar\n  exporter_include = name hostname timestamps fields\n  filter = {filter}\n}}\n"
            ));
        }
        if let Some(sock) = dict_socket {
            extra.push_str(&format!(
                "protocol imap {{\n  mail_plugins {{\n    last_login = yes\n  }}\n}}\n\
                 last_login {{\n  dict proxy {{\n    name = lastlogin\n    socket_path = {}\n  }}\n}}\n",
                inner(sock).display()
            ));
        }
        let conf = format!(
            "dovecot_config_version = 2.4.1\ndovecot_storage_version = 2.4.1\n\
             base_dir = {d}/run\nstate_dir = {d}/state\nprotocols = imap\nlisten = 127.0.0.1\nlog_path = {d}/dovecot.log\n\
             auth_mechanisms = plain login\nauth_allow_cleartext = yes\nssl = no\n\
             passdb passwd-file {{\n  passwd_file_path = {d}/passwd\n}}\n\
             userdb static {{\n  fields {{\n    uid = nobody\n    gid = nogroup\n    home = {d}/mail/%{{user}}\n  }}\n}}\n\
             mail_driver = maildir\nmail_path = {d}/mail/%{{user}}/Maildir\n\
             service imap-login {{\n  inet_listener imap {{\n    port = {imap_port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
             service anvil {{\n  chroot =\n}}\n{extra}"
        );
        std::fs::write(dir.join("dovecot.conf"), conf)?;
        let child = Command::new("chroot")
            .arg(r)
            .args(["/usr/sbin/dovecot", "-F", "-c"])
            .arg(inner(&dir.join("dovecot.conf")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr"))?)
            .spawn()?;
        let mut dv = Dovecot24 {
            dir,
            child: Some(child),
            _tmp: tmp,
        };
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", imap_port)).is_err() {
            let exited = dv
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited || t.elapsed() > Duration::from_secs(15) {
                return Err(std::io::Error::other(format!(
                    "dovecot 2.4 did not listen: {}",
                    dv.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(dv)
    }

    /// `doveadm auth test USER PASSWORD` against this instance (an admin
    /// check, not a user login); whether it succeeded.
    pub fn doveadm_auth_test(&self, user: &str, password: &str) -> bool {
        Command::new("timeout")
            .args(["30", "chroot"])
            .arg(root())
            .args(["doveadm", "-c"])
            .arg(inner(&self.dir.join("dovecot.conf")))
            .args(["auth", "test", user, password])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Its log and stderr.
    pub fn log(&self) -> String {
        let mut s = std::fs::read_to_string(self.dir.join("dovecot.log")).unwrap_or_default();
        s.push_str(&std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default());
        s
    }
}

impl Drop for Dovecot24 {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // `chroot` execs dovecot: the child is Dovecot's master.
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(5) {
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
