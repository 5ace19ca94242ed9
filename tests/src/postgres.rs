//! A private PostgreSQL 15 per test (Debian's `postgresql-15`), never the
//! system cluster and never port 5432: `initdb` in a temporary directory
//! owned by `postgres` (it refuses root), TLS with a test CA (rcgen), scram
//! passwords, listening on 127.0.0.1 and a Unix socket in that directory.
//! Stopped on drop (`pg_ctl stop -m immediate`, bounded; the postmaster
//! killed if it survives). The three documented roles are created:
//! `mss_admin` (owns the database, runs the migrations), `mss_node` (the
//! nodes' shippers) and `mss_export` (exporter and reports, read-only).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::guard::output_within;
use crate::sipil::Ca;

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// The password of every test role.
pub const PASSWORD: &str = "test-password-7Qk";

pub struct Pg {
    pub port: u16,
    pub dir: PathBuf,
    /// The CA that signed the server certificate (PEM file).
    pub ca_file: PathBuf,
    /// A file holding [`PASSWORD`].
    pub password_file: PathBuf,
    _tmp: tempfile::TempDir,
}

fn as_postgres(cmd: &str, args: &[&str], limit: u64) -> std::process::Output {
    let o = output_within(
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(format!("{BIN}/{cmd}"))
            .args(args),
        Duration::from_secs(limit),
    )
    .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    o
}

impl Pg {
    /// Create, configure and start an instance with the database `mss`.
    pub fn start() -> Pg {
        let tmp = tempfile::Builder::new()
            .prefix("mss-pg-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().to_path_buf();
        let st = Command::new("chown")
            .arg("postgres:postgres")
            .arg(&dir)
            .status()
            .unwrap();
        assert!(st.success(), "chown postgres (tests run as root)");
        let pw = dir.join("pwfile");
        std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
        Command::new("chown")
            .arg("postgres")
            .arg(&pw)
            .status()
            .unwrap();
        let data = dir.join("data");
        let o = as_postgres(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--pwfile",
                pw.to_str().unwrap(),
                "--no-sync",
            ],
            120,
        );
        assert!(
            o.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        // TLS: a server certificate for 127.0.0.1 and localhost from a test CA.
        let ca = Ca::new("mss test PostgreSQL CA");
        let leaf = ca.server();
        std::fs::write(data.join("server.crt"), &leaf.cert_pem).unwrap();
        std::fs::write(data.join("server.key"), &leaf.key_pem).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        Command::new("chown")
            .arg("postgres:postgres")
            .arg(data.join("server.crt"))
            .arg(data.join("server.key"))
            .status()
            .unwrap();
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        use std::io::Write;
        writeln!(conf, "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nfsync = off\nsynchronous_commit = on\nfull_page_writes = off").unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let password_file = dir.join("password");
        std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
        let port = crate::postfix::Postfix::free_port();
        let pg = Pg {
            port,
            dir,
            ca_file,
            password_file,
            _tmp: tmp,
        };
        pg.start_again();
        pg.psql(&format!(
            "CREATE ROLE mss_admin LOGIN PASSWORD '{PASSWORD}';
             CREATE ROLE mss_node LOGIN PASSWORD '{PASSWORD}';
             CREATE ROLE mss_export LOGIN PASSWORD '{PASSWORD}';"
        ));
        pg.psql("CREATE DATABASE mss OWNER mss_admin");
        pg
    }

    /// Start the (stopped) instance; waits until it accepts.
    pub fn start_again(&self) {
        let data = self.dir.join("data");
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {}",
            self.port,
            self.dir.display()
        );
        let o = as_postgres(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                self.dir.join("log").to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "-o",
                &opts,
                "start",
            ],
            90,
        );
        assert!(
            o.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&o.stderr),
            self.log()
        );
    }

    /// Stop (fast: sessions are cut), waiting until it is down.
    pub fn stop(&self) {
        let data = self.dir.join("data");
        let _ = as_postgres(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "-t",
                "30",
                "stop",
            ],
            45,
        );
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Run SQL as the superuser on database `db` (Unix socket); its output.
    pub fn psql_db(&self, db: &str, sql: &str) -> String {
        let o = output_within(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(format!("{BIN}/psql"))
                .args(["-X", "-q", "-t", "-A"])
                .args(["-v", "ON_ERROR_STOP=1", "-h"])
                .arg(&self.dir)
                .args(["-p", &self.port.to_string(), "-d", db, "-c", sql]),
            Duration::from_secs(60),
        )
        .unwrap();
        assert!(
            o.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// [`Pg::psql_db`] on `postgres`.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_db("postgres", sql)
    }

    /// The least-privilege grants of README "Several nodes" (after the
    /// migrations created the tables).
    pub fn grant(&self) {
        self.psql_db("mss", GRANTS);
    }

    /// A `[central]` section for `role` (verify-full against the test CA).
    pub fn central(&self, role: &str) -> mss_shared::config::Central {
        mss_shared::config::Central {
            url: format!("postgresql://{role}@localhost:{}/mss", self.port),
            password_file: Some(self.password_file.clone()),
            ca_file: Some(self.ca_file.clone()),
            tls: mss_shared::config::CentralTls::VerifyFull,
            batch_rows: 5000,
        }
    }

    /// The instance's directory (Unix socket, data, log).
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

/// The grants README documents (run by the database owner).
pub const GRANTS: &str = "
GRANT CONNECT, TEMPORARY ON DATABASE mss TO mss_node, mss_export;
GRANT USAGE ON SCHEMA public TO mss_node, mss_export;
GRANT SELECT ON schema_version TO mss_node, mss_export;
GRANT SELECT, INSERT ON nodes TO mss_node;
GRANT UPDATE (shipped_seq, complete_until_us, last_contact) ON nodes TO mss_node;
GRANT INSERT, SELECT (node_id, seq) ON records TO mss_node;
GRANT SELECT ON nodes, records, bal_summary TO mss_export;
GRANT SELECT, INSERT, DELETE ON registry TO mss_export;
";

impl Drop for Pg {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = as_postgres(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "-t",
                "20",
                "stop",
            ],
            30,
        );
        if let Ok(pid) = std::fs::read_to_string(data.join("postmaster.pid")) {
            if let Some(pid) = pid.lines().next() {
                let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
            }
        }
    }
}
