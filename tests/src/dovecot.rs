//! A private Dovecot (Debian's dovecot-core) used as the SASL server of a
//! test Postfix: passwd-file users, the auth socket in a temp dir, no mail
//! protocol. Stopped (master killed) on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Dovecot {
    pub dir: PathBuf,
    /// The auth socket for Postfix's `smtpd_sasl_path`.
    pub auth_socket: PathBuf,
    child: Option<Child>,
    _tmp: tempfile::TempDir,
}

impl Dovecot {
    /// Start with these `(user, password)` pairs.
    pub fn start(users: &[(&str, &str)]) -> std::io::Result<Dovecot> {
        let tmp = tempfile::Builder::new().prefix("mss-dovecot-").tempdir()?;
        let dir = tmp.path().to_path_buf();
        std::fs::create_dir_all(dir.join("state"))?;
        let passwd: String = users
            .iter()
            .map(|(u, p)| format!("{u}:{{PLAIN}}{p}\n"))
            .collect();
        std::fs::write(dir.join("passwd"), passwd)?;
        let d = dir.display();
        let conf = format!(
            "base_dir = {d}/run\nstate_dir = {d}/state\nprotocols =\nlisten = 127.0.0.1\nlog_path = {d}/dovecot.log\n\
             auth_mechanisms = plain login\ndisable_plaintext_auth = no\nssl = no\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {d}/passwd\n}}\n\
             userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home={d}\n}}\n\
             service auth {{\n  unix_listener {d}/auth {{\n    mode = 0666\n  }}\n}}\n\
             service anvil {{\n  chroot =\n}}\n"
        );
        std::fs::write(dir.join("dovecot.conf"), conf)?;
        let child = Command::new("dovecot")
            .args(["-F", "-c"])
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
        while !dv.auth_socket.exists() {
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dovecot.log")).unwrap_or_default()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
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
