//! `[proxy]`: the SMTP proxy front end; `[milter]`: the milter front end and its listen address.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::checks::{bad, is_host_port};
use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamTls {
    /// Never STARTTLS towards the upstream.
    #[default]
    Off,
    /// STARTTLS when the upstream offers it.
    Opportunistic,
    /// Refuse to relay if the upstream does not offer STARTTLS.
    Required,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Proxy {
    pub listen: String,
    pub upstream: String,
    /// Certificate chain (PEM) offered to clients with STARTTLS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    #[serde(default)]
    pub upstream_tls: UpstreamTls,
    /// CA bundle (PEM) to verify the upstream's certificate; when absent the
    /// upstream certificate is not verified (loopback next hop).
    pub upstream_ca_file: Option<PathBuf>,
    /// Name used in the proxy's own replies (421 at shutdown, limits).
    #[serde(default = "default_hostname")]
    pub hostname: String,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Idle time allowed to the client between two reads (RFC 5321 §4.5.3.2: 5 min).
    #[serde(default = "default_io_timeout")]
    pub client_timeout_secs: u64,
    /// Time allowed to the upstream to answer a command (RFC 5321: up to 10 min for DATA).
    #[serde(default = "default_upstream_timeout")]
    pub upstream_timeout_secs: u64,
    /// Concurrent client sessions; further connections wait in the backlog.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Recipients per transaction beyond which RCPT gets `452 4.5.3`.
    #[serde(default = "default_max_recipients")]
    pub max_recipients: usize,
    /// Commands a client may have in flight (pipelined) before we stop reading it.
    #[serde(default = "default_max_pipeline")]
    pub max_pipeline: usize,
    /// Largest message (bytes after dot-unstuffing) the proxy lets through:
    /// beyond it the client gets `552 5.3.4` and both connections close
    /// (the upstream never sees the end of the message). 0 = no limit of
    /// ours: the upstream decides (Postfix: `message_size_limit`).
    #[serde(default)]
    pub max_message_bytes: u64,
    /// On SIGTERM, how long in-flight transactions may take to finish.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_secs: u64,
}

fn default_hostname() -> String {
    "mss-sidecar".into()
}

fn default_connect_timeout() -> u64 {
    10
}

fn default_io_timeout() -> u64 {
    300
}

fn default_upstream_timeout() -> u64 {
    600
}

fn default_max_sessions() -> usize {
    1000
}

fn default_max_recipients() -> usize {
    1000
}

fn default_max_pipeline() -> usize {
    200
}

fn default_shutdown_grace() -> u64 {
    30
}

impl Proxy {
    /// A proxy on `listen` in front of `upstream`, every other key at its default.
    pub fn new(listen: &str, upstream: &str) -> Proxy {
        Proxy {
            listen: listen.into(),
            upstream: upstream.into(),
            tls_cert: Default::default(),
            tls_key: Default::default(),
            upstream_tls: Default::default(),
            upstream_ca_file: Default::default(),
            hostname: default_hostname(),
            connect_timeout_secs: default_connect_timeout(),
            client_timeout_secs: default_io_timeout(),
            upstream_timeout_secs: default_upstream_timeout(),
            max_sessions: default_max_sessions(),
            max_recipients: default_max_recipients(),
            max_pipeline: default_max_pipeline(),
            max_message_bytes: Default::default(),
            shutdown_grace_secs: default_shutdown_grace(),
        }
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.parse().expect("validated at load")
    }
}

impl Proxy {
    pub(super) fn validate(&self) -> Result<()> {
        let p = self;
        if p.listen.parse::<SocketAddr>().is_err() {
            return bad(
                "proxy.listen",
                format!(
                    "{:?} is not an address:port such as \"127.0.0.1:10030\"",
                    p.listen
                ),
            );
        }
        if !is_host_port(&p.upstream) {
            return bad(
                "proxy.upstream",
                format!(
                    "{:?} is not a host:port such as \"127.0.0.1:10025\"",
                    p.upstream
                ),
            );
        }
        match (&p.tls_cert, &p.tls_key) {
            (Some(c), Some(k)) => {
                for (key, f) in [("proxy.tls_cert", c), ("proxy.tls_key", k)] {
                    if let Err(e) = std::fs::metadata(f) {
                        return bad(key, format!("{}: {e}", f.display()));
                    }
                }
            }
            (None, None) => {}
            _ => {
                return bad(
                    "proxy.tls_cert",
                    "tls_cert and tls_key must be set together".into(),
                )
            }
        }
        if let Some(ca) = &p.upstream_ca_file {
            if let Err(e) = std::fs::metadata(ca) {
                return bad("proxy.upstream_ca_file", format!("{}: {e}", ca.display()));
            }
        }
        if p.max_sessions == 0 || p.max_recipients == 0 || p.max_pipeline == 0 {
            return bad(
                "proxy.max_sessions",
                "max_sessions, max_recipients and max_pipeline must be positive".into(),
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Milter {
    pub listen: String,
}

impl Milter {
    pub(super) fn validate(&self) -> Result<()> {
        let m = self;
        if ListenAddr::parse(&m.listen).is_none() {
            return bad(
                "milter.listen",
                format!(
                    "{:?} is neither address:port nor unix:/absolute/path",
                    m.listen
                ),
            );
        }
        Ok(())
    }
}

/// Where a listener binds: TCP or a Unix socket path (`unix:/path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl ListenAddr {
    pub fn parse(s: &str) -> Option<ListenAddr> {
        if let Some(p) = s.strip_prefix("unix:") {
            let p = Path::new(p);
            return p.is_absolute().then(|| ListenAddr::Unix(p.to_path_buf()));
        }
        s.parse().ok().map(ListenAddr::Tcp)
    }
}
