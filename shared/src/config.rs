//! The TOML configuration (`/etc/mss-sidecar/config.toml`, contract in DESIGN.md).
//!
//! Loading is strict: an unknown key, a missing mandatory key or a bad value is
//! one [`Error::Config`] whose message names the key (and the line when the
//! parser knows it), so that `mss-sidecar` exits 2 with a single actionable line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// Default configuration file, overridden by `--config` or `MSS_CONFIG`.
pub const DEFAULT_PATH: &str = "/etc/mss-sidecar/config.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub operator: Operator,
    #[serde(default)]
    pub store: Store,
    pub proxy: Option<Proxy>,
    pub milter: Option<Milter>,
    pub events: Option<Events>,
    pub metrics: Option<Metrics>,
    #[serde(default)]
    pub export: Export,
    pub sipil: Option<Sipil>,
    pub policy: Option<Policy>,
    #[serde(default)]
    pub service: Service,
    /// `[coverage]`: from which day logins are all captured (see [`crate::coverage`]).
    #[serde(default)]
    pub coverage: crate::coverage::Coverage,
    /// `[report]`: structures' reports mailed after acceptance (see [`crate::report::settings`]).
    #[serde(default)]
    pub report: crate::report::settings::ReportSettings,
}

/// `[service]`: how the daemon runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// When `mss-sidecar` is started as root, the user it becomes once its
    /// listeners are bound (before any store is opened). Ignored otherwise;
    /// `"root"` explicitly keeps root (tests, containers: not recommended).
    #[serde(default = "default_service_user")]
    pub user: String,
}

impl Default for Service {
    fn default() -> Self {
        Service {
            user: default_service_user(),
        }
    }
}

fn default_service_user() -> String {
    "mss".into()
}

/// A bearer token read from a `token_file`. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Shortest token accepted (a guessable token is no protection).
pub const MIN_TOKEN_LEN: usize = 16;

impl Token {
    /// Read the token (surrounding whitespace trimmed) from `path`.
    ///
    /// # Errors
    /// [`Error::Config`] naming `key`: unreadable, readable by others,
    /// shorter than [`MIN_TOKEN_LEN`], or holding spaces/control characters.
    /// The message never contains the file's content.
    pub fn from_file(key: &str, path: &Path) -> Result<Token> {
        use std::os::unix::fs::PermissionsExt;
        let bad = |why: String| Error::Config(format!("key `{key}`: {}: {why}", path.display()));
        let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
        if meta.permissions().mode() & 0o004 != 0 {
            return Err(bad(
                "readable by everyone: chmod o-r (0600 or 0640) so the token stays secret".into(),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let t = text.trim();
        if t.len() < MIN_TOKEN_LEN {
            return Err(bad(format!(
                "the token must be at least {MIN_TOKEN_LEN} characters"
            )));
        }
        if t.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(bad(
                "the token must be printable ASCII without spaces".into()
            ));
        }
        Ok(Token(t.to_string()))
    }

    /// A token from its text (tests).
    pub fn new(t: &str) -> Token {
        Token(t.to_string())
    }

    /// True when `authorization` (an `Authorization` header value) is
    /// `Bearer <token>`. The comparison takes the same time whatever the
    /// position of the first differing byte.
    pub fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        let Some(v) = authorization else {
            return false;
        };
        let v = v.trim_ascii();
        let Some(scheme) = v.get(..7) else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(b"Bearer ") {
            return false;
        }
        ct_eq(v[7..].trim_ascii(), self.0.as_bytes())
    }
}

/// Constant-time equality (only the lengths may leak).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// What to do with a recipient outside the Espace de Confiance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    /// Refuse the recipient (`550 5.7.1`).
    Enforce,
    /// Let it through; count and log it.
    Report,
}

/// `[policy]`: the liste blanche (Espace de Confiance) policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The ANS liste blanche XML (kept up to date by `refresh_url` or by
    /// the operator).
    pub liste_blanche: PathBuf,
    #[serde(default = "default_policy_mode")]
    pub mode: PolicyMode,
    /// Extra domains treated as inside (e.g. a partner not yet listed).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Refuse a new copy that loses more than this share of the domains.
    #[serde(default = "default_max_drop")]
    pub max_drop_percent: u32,
    /// HTTPS address of the ANS liste blanche: fetched at start and every
    /// `refresh_interval_secs`; a copy that passes the same checks as a
    /// reload replaces `liste_blanche` (atomically), any other is refused and
    /// the good copy kept.
    #[serde(default)]
    pub refresh_url: Option<String>,
    /// CA certificates (PEM) trusted for `refresh_url`, and only those
    /// (e.g. `/etc/ssl/certs/ca-certificates.crt`); required with it.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_refresh_interval")]
    pub refresh_interval_secs: u64,
}

fn default_refresh_interval() -> u64 {
    86_400
}

fn default_policy_mode() -> PolicyMode {
    PolicyMode::Report
}

fn default_max_drop() -> u32 {
    10
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    /// Mail domains of the operator: senders on these domains make Echanges rows.
    pub domains: Vec<String>,
    #[serde(default = "default_tz")]
    pub timezone: String,
    /// Node name, part of every MAIL_ID: unique per sidecar.
    #[serde(default = "default_node")]
    pub node: String,
    /// Postfix's `recipient_delimiter` (e.g. `"+"`): `alice+x@d` is BAL `alice@d`. Empty = off.
    #[serde(default)]
    pub recipient_delimiter: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Store {
    #[serde(default = "default_capture_path")]
    pub capture_path: PathBuf,
    #[serde(default = "default_registry_path")]
    pub registry_path: PathBuf,
    #[serde(default = "default_retention")]
    pub retention_months: u32,
    /// Fallback journal; default `<capture_path>.journal`.
    pub journal_path: Option<PathBuf>,
    /// How long a session waits for the store to acknowledge a transaction
    /// before it journals it and goes on (milliseconds).
    #[serde(default = "default_commit_timeout_ms")]
    pub commit_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
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

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Milter {
    pub listen: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Events {
    pub listen: Option<String>,
    pub dict_socket: Option<PathBuf>,
    /// File holding the bearer token HTTP clients must send
    /// (`Authorization: Bearer …`); mandatory when `listen` is not loopback.
    pub token_file: Option<PathBuf>,
    /// The token read from `token_file` at load.
    #[serde(skip)]
    pub token: Option<Token>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    pub listen: String,
    /// File holding the bearer token scrapers must send; mandatory when
    /// `listen` is not loopback.
    pub token_file: Option<PathBuf>,
    /// The token read from `token_file` at load.
    #[serde(skip)]
    pub token: Option<Token>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Export {
    #[serde(default = "default_out_dir")]
    pub out_dir: PathBuf,
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    #[serde(default = "default_max_archive")]
    pub max_archive_bytes: u64,
    #[serde(default = "default_true")]
    pub crlf: bool,
}

/// The ANS deposit (`postFile`) and report (`getReport`) web services.
///
/// We do not have the wire format (Référentiel #1 Opérateurs §5.8.3.2): every
/// wire detail is a key here, with the defaults documented in README.md
/// ("Delivering to the ANS").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sipil {
    pub post_url: String,
    pub report_url: String,
    /// The operator's certificate chain (PEM), leaf first.
    pub client_cert: Option<PathBuf>,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub client_key: Option<PathBuf>,
    /// The CA(s) trusted for the SIPIL server certificate (PEM, IGC-Santé chain).
    pub ca_file: Option<PathBuf>,
    /// Also trust the system's CA bundle (off: only `ca_file` is trusted).
    #[serde(default)]
    pub use_system_roots: bool,
    /// Accept a private key file readable by group or others (refused by default).
    #[serde(default)]
    pub allow_readable_key: bool,
    pub report_email: Option<String>,
    /// Day of month M by which the figures of M-1 must be accepted.
    #[serde(default = "default_deadline")]
    pub deadline_day: u8,
    /// HTTP method of the deposit: "POST" or "PUT".
    #[serde(default = "default_post_method")]
    pub post_method: String,
    /// multipart/form-data field carrying the ZIP.
    #[serde(default = "default_file_field")]
    pub file_field: String,
    /// multipart/form-data field carrying `report_email` (sent only when it is set).
    #[serde(default = "default_email_field")]
    pub email_field: String,
    /// How to find the deposit id in the deposit response: unset = the whole
    /// trimmed body; else a regex with exactly one capture group.
    pub deposit_id_regex: Option<String>,
    /// HTTP method of the report call: "GET" (id in the query) or "POST" (id in a form).
    #[serde(default = "default_report_method")]
    pub report_method: String,
    /// Name of the parameter carrying the deposit id on the report call.
    #[serde(default = "default_report_id_param")]
    pub report_id_param: String,
    /// Regex: the report shows blocking errors (checked first).
    #[serde(default = "default_report_rejected")]
    pub report_rejected: String,
    /// Regex: the report is not final yet (checked second).
    #[serde(default = "default_report_pending")]
    pub report_pending: String,
    /// Regex: the deposit is accepted (checked last; no match at all = pending).
    #[serde(default = "default_report_accepted")]
    pub report_accepted: String,
    /// Whole-request timeout (the upload of up to 70 MB included).
    #[serde(default = "default_sipil_timeout")]
    pub timeout_secs: u64,
    #[serde(default = "default_sipil_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Attempts per call and per run on network errors, timeouts and HTTP 5xx.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Delay before the 2nd attempt; doubled each time, capped at 5 minutes.
    #[serde(default = "default_retry_delay_ms")]
    pub retry_delay_ms: u64,
    /// `mss-export run`: report fetches after a deposit while it is pending.
    #[serde(default = "default_report_polls")]
    pub report_polls: u32,
    #[serde(default = "default_report_poll_interval")]
    pub report_poll_interval_secs: u64,
}

/// Default `sipil.report_rejected`.
pub const DEFAULT_REPORT_REJECTED: &str = r"(?i)\b(rejet\w*|rejected|refus\w*|ko|[1-9][0-9]*\s+(erreurs?\s+bloquantes?|blocking\s+errors?))\b";
/// Default `sipil.report_pending`.
pub const DEFAULT_REPORT_PENDING: &str =
    r"(?i)\b(en\s+cours|en\s+attente|pending|in\s+progress|processing|non\s+trait\w*)\b";
/// Default `sipil.report_accepted`.
pub const DEFAULT_REPORT_ACCEPTED: &str =
    r"(?i)\b(accept\w*|valid[ée]\w*|int[ée]gr[ée]\w*|ok|succ[eè]s|success\w*)\b";

fn default_post_method() -> String {
    "POST".into()
}
fn default_file_field() -> String {
    "file".into()
}
fn default_email_field() -> String {
    "email".into()
}
fn default_report_method() -> String {
    "GET".into()
}
fn default_report_id_param() -> String {
    "id".into()
}
fn default_report_rejected() -> String {
    DEFAULT_REPORT_REJECTED.into()
}
fn default_report_pending() -> String {
    DEFAULT_REPORT_PENDING.into()
}
fn default_report_accepted() -> String {
    DEFAULT_REPORT_ACCEPTED.into()
}
fn default_sipil_timeout() -> u64 {
    300
}
fn default_sipil_connect_timeout() -> u64 {
    30
}
fn default_max_attempts() -> u32 {
    4
}
fn default_retry_delay_ms() -> u64 {
    10_000
}
fn default_report_polls() -> u32 {
    3
}
fn default_report_poll_interval() -> u64 {
    60
}

impl Sipil {
    /// The compiled `deposit_id_regex` (validated at load).
    pub fn deposit_id_regex(&self) -> Option<regex::Regex> {
        self.deposit_id_regex
            .as_deref()
            .map(|r| regex::Regex::new(r).expect("validated at load"))
    }

    /// The compiled report patterns: (rejected, pending, accepted).
    pub fn report_patterns(&self) -> (regex::Regex, regex::Regex, regex::Regex) {
        let c = |r: &str| regex::Regex::new(r).expect("validated at load");
        (
            c(&self.report_rejected),
            c(&self.report_pending),
            c(&self.report_accepted),
        )
    }

    fn validate(&self) -> Result<()> {
        let bad = |key: &str, why: String| Err(Error::Config(format!("key `{key}`: {why}")));
        if let Some(m) = &self.report_email {
            if !is_address(m) {
                return bad("sipil.report_email", format!("{m:?} is not a mail address"));
            }
        }
        if !(1..=28).contains(&self.deadline_day) {
            return bad("sipil.deadline_day", "must be between 1 and 28".into());
        }
        for (key, u) in [
            ("sipil.post_url", &self.post_url),
            ("sipil.report_url", &self.report_url),
        ] {
            let ok = u
                .strip_prefix("https://")
                .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
            if !ok {
                return bad(
                    key,
                    format!("{u:?} must be an https:// URL (mutual TLS is mandatory)"),
                );
            }
        }
        if !matches!(self.post_method.as_str(), "POST" | "PUT") {
            return bad(
                "sipil.post_method",
                format!("{:?} must be \"POST\" or \"PUT\"", self.post_method),
            );
        }
        if !matches!(self.report_method.as_str(), "GET" | "POST") {
            return bad(
                "sipil.report_method",
                format!("{:?} must be \"GET\" or \"POST\"", self.report_method),
            );
        }
        for (key, v) in [
            ("sipil.file_field", &self.file_field),
            ("sipil.email_field", &self.email_field),
            ("sipil.report_id_param", &self.report_id_param),
        ] {
            if v.is_empty() || v.bytes().any(|b| b.is_ascii_control() || b == b'"') {
                return bad(
                    key,
                    format!("{v:?} must be a non-empty name without quotes"),
                );
            }
        }
        if let Some(r) = &self.deposit_id_regex {
            match regex::Regex::new(r) {
                Ok(re) if re.captures_len() == 2 => {}
                Ok(re) => {
                    return bad(
                        "sipil.deposit_id_regex",
                        format!(
                            "{r:?} has {} capture groups: exactly one is needed (the deposit id)",
                            re.captures_len() - 1
                        ),
                    )
                }
                Err(e) => return bad("sipil.deposit_id_regex", format!("{r:?}: {e}")),
            }
        }
        for (key, r) in [
            ("sipil.report_rejected", &self.report_rejected),
            ("sipil.report_pending", &self.report_pending),
            ("sipil.report_accepted", &self.report_accepted),
        ] {
            if let Err(e) = regex::Regex::new(r) {
                return bad(key, format!("{r:?}: {e}"));
            }
        }
        if self.timeout_secs == 0 || self.connect_timeout_secs == 0 {
            return bad(
                "sipil.timeout_secs",
                "timeout_secs and connect_timeout_secs must be positive".into(),
            );
        }
        if !(1..=20).contains(&self.max_attempts) {
            return bad("sipil.max_attempts", "must be between 1 and 20".into());
        }
        if self.report_polls > 100 {
            return bad("sipil.report_polls", "must be at most 100".into());
        }
        Ok(())
    }
}

fn default_tz() -> String {
    "Europe/Paris".into()
}
fn default_node() -> String {
    "mx1".into()
}
fn default_capture_path() -> PathBuf {
    "/var/lib/mss-sidecar/capture".into()
}
fn default_registry_path() -> PathBuf {
    "/var/lib/mss-sidecar/registry".into()
}
fn default_out_dir() -> PathBuf {
    "/var/lib/mss-sidecar/exports".into()
}
fn default_retention() -> u32 {
    13
}
fn default_commit_timeout_ms() -> u64 {
    1000
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
fn default_delimiter() -> String {
    ";".into()
}
fn default_max_archive() -> u64 {
    70_000_000
}
fn default_true() -> bool {
    true
}
fn default_deadline() -> u8 {
    5
}

impl Default for Store {
    fn default() -> Self {
        Store {
            capture_path: default_capture_path(),
            registry_path: default_registry_path(),
            retention_months: default_retention(),
            journal_path: None,
            commit_timeout_ms: default_commit_timeout_ms(),
        }
    }
}

impl Default for Export {
    fn default() -> Self {
        Export {
            out_dir: default_out_dir(),
            delimiter: default_delimiter(),
            max_archive_bytes: default_max_archive(),
            crlf: true,
        }
    }
}

impl Store {
    pub fn journal_path(&self) -> PathBuf {
        self.journal_path.clone().unwrap_or_else(|| {
            let mut p = self.capture_path.clone().into_os_string();
            p.push(".journal");
            PathBuf::from(p)
        })
    }

    pub fn commit_timeout(&self) -> Duration {
        Duration::from_millis(self.commit_timeout_ms)
    }
}

impl Proxy {
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.parse().expect("validated at load")
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

impl Config {
    /// Read, parse and validate the file.
    ///
    /// # Errors
    /// [`Error::Config`] naming the file, the key and (when known) the line.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        Config::parse(&text).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parse and validate a configuration text.
    pub fn parse(text: &str) -> Result<Config> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| {
            let mut msg = e.message().trim().to_string();
            if let Some(span) = e.span() {
                let line = text[..span.start.min(text.len())].lines().count().max(1);
                let section = text[..span.start.min(text.len())]
                    .lines()
                    .rev()
                    .find_map(|l| {
                        let l = l.trim();
                        (l.starts_with('[') && l.ends_with(']')).then(|| l.to_string())
                    });
                msg = match section {
                    Some(s) => format!("line {line} in {s}: {msg}"),
                    None => format!("line {line}: {msg}"),
                };
            }
            Error::Config(msg)
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&mut self) -> Result<()> {
        let bad = |key: &str, why: String| Err(Error::Config(format!("key `{key}`: {why}")));
        self.report.validate()?;
        if self.operator.domains.is_empty() {
            return bad(
                "operator.domains",
                "at least one mail domain is required".into(),
            );
        }
        for d in &self.operator.domains {
            if !is_domain(d) {
                return bad(
                    "operator.domains",
                    format!("{d:?} is not a mail domain (lower-case labels, e.g. \"ch-exemple.mssante.fr\")"),
                );
            }
        }
        if jiff::tz::TimeZone::get(&self.operator.timezone).is_err() {
            return bad(
                "operator.timezone",
                format!(
                    "unknown time zone {:?} (e.g. \"Europe/Paris\")",
                    self.operator.timezone
                ),
            );
        }
        let node_ok = !self.operator.node.is_empty()
            && self.operator.node.len() <= 64
            && self
                .operator
                .node
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !node_ok {
            return bad(
                "operator.node",
                format!(
                    "{:?} must be 1-64 letters, digits or '-' (it is part of every MAIL_ID)",
                    self.operator.node
                ),
            );
        }
        for (key, p) in [
            ("store.capture_path", &self.store.capture_path),
            ("store.registry_path", &self.store.registry_path),
        ] {
            if !p.is_absolute() {
                return bad(key, format!("{} must be an absolute path", p.display()));
            }
        }
        if self.store.retention_months == 0 {
            return bad("store.retention_months", "must be at least 1".into());
        }
        if self.store.commit_timeout_ms == 0 || self.store.commit_timeout_ms > 60_000 {
            return bad(
                "store.commit_timeout_ms",
                "must be between 1 and 60000 (mail waits this long at most)".into(),
            );
        }
        if let Some(p) = &self.proxy {
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
        }
        if let Some(m) = &self.milter {
            if ListenAddr::parse(&m.listen).is_none() {
                return bad(
                    "milter.listen",
                    format!(
                        "{:?} is neither address:port nor unix:/absolute/path",
                        m.listen
                    ),
                );
            }
        }
        if let Some(e) = &mut self.events {
            if let Some(l) = &e.listen {
                let Ok(addr) = l.parse::<SocketAddr>() else {
                    return bad("events.listen", format!("{l:?} is not an address:port"));
                };
                e.token = load_token("events", addr, e.token_file.as_deref())?;
            } else if e.token_file.is_some() {
                return bad(
                    "events.token_file",
                    "set without `events.listen` (the token protects the HTTP endpoint)".into(),
                );
            }
        }
        if let Some(p) = &mut self.policy {
            for d in &mut p.allow {
                *d = d.trim().trim_end_matches('.').to_ascii_lowercase();
                if !is_domain(d) {
                    return bad("policy.allow", format!("{d:?} is not a domain name"));
                }
            }
            if p.max_drop_percent > 100 {
                return bad(
                    "policy.max_drop_percent",
                    "must be between 0 and 100".into(),
                );
            }
            if let Some(u) = &p.refresh_url {
                if !u.starts_with("https://") || u.len() <= "https://".len() {
                    return bad(
                        "policy.refresh_url",
                        format!("{u:?}: must be an https:// address"),
                    );
                }
                match &p.ca_file {
                    None => {
                        return bad(
                            "policy.ca_file",
                            "required with policy.refresh_url: the CA certificates (PEM) to trust for it".into(),
                        )
                    }
                    Some(ca) if !ca.is_file() => {
                        return bad("policy.ca_file", format!("{}: no such file", ca.display()))
                    }
                    Some(_) => {}
                }
                if p.refresh_interval_secs == 0 {
                    return bad("policy.refresh_interval_secs", "must be at least 1".into());
                }
            }
            if !p.liste_blanche.is_file() {
                return bad(
                    "policy.liste_blanche",
                    format!("{}: no such file (download it from https://espacedeconfiance.mssante.fr/listeblanchemssante.xml)", p.liste_blanche.display()),
                );
            }
        }
        if let Some(m) = &mut self.metrics {
            let Ok(addr) = m.listen.parse::<SocketAddr>() else {
                return bad(
                    "metrics.listen",
                    format!("{:?} is not an address:port", m.listen),
                );
            };
            m.token = load_token("metrics", addr, m.token_file.as_deref())?;
        }
        let u = &self.service.user;
        if u.is_empty()
            || u.len() > 32
            || !u
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return bad("service.user", format!("{u:?} is not a user name"));
        }
        let d = self.export.delimiter.as_bytes();
        if d.len() != 1 || d[0] == b'"' || d[0] == b'\r' || d[0] == b'\n' {
            return bad(
                "export.delimiter",
                format!(
                    "{:?} must be one ASCII character other than a quote or newline",
                    self.export.delimiter
                ),
            );
        }
        if let Some(s) = &self.sipil {
            s.validate()?;
        }
        Ok(())
    }

    /// The configured time zone.
    pub fn tz(&self) -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get(&self.operator.timezone).expect("validated at load")
    }

    /// Create the capture store's directory if needed and prove it is writable
    /// (the daemon calls this before it binds anything).
    ///
    /// # Errors
    /// [`Error::Config`] naming `store.capture_path` (or the journal path).
    pub fn check_capture_writable(&self) -> Result<()> {
        check_dir_writable("store.capture_path", &self.store.capture_path)?;
        let j = self.store.journal_path();
        if let Some(parent) = j.parent() {
            check_dir_writable("store.journal_path", parent)?;
        }
        Ok(())
    }

    /// True when `addr`'s domain is one of the operator's.
    pub fn is_operator_address(&self, addr: &str) -> bool {
        domain_of(addr).is_some_and(|d| self.operator.domains.iter().any(|o| o == &d))
    }
}

/// The token of an HTTP listener (`section` = `events` or `metrics`): read
/// from `token_file` when set; mandatory when `addr` is not loopback.
fn load_token(section: &str, addr: SocketAddr, file: Option<&Path>) -> Result<Option<Token>> {
    match file {
        Some(f) => Token::from_file(&format!("{section}.token_file"), f).map(Some),
        None if addr.ip().is_loopback() => Ok(None),
        None => Err(Error::Config(format!(
            "key `{section}.token_file`: required because `{section}.listen` = \"{addr}\" is not a loopback address (a file holding the bearer token clients must send)"
        ))),
    }
}

/// Create `dir` (mode 0700 on creation) and write a probe file into it.
pub fn check_dir_writable(key: &str, dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                Error::Config(format!("key `{key}`: cannot create {}: {e}", dir.display()))
            })?;
    }
    let probe = dir.join(format!(".write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| {
            Error::Config(format!(
                "key `{key}`: {} is not writable: {e}",
                dir.display()
            ))
        })
}

/// Lower-cased domain part of an address, if any.
pub fn domain_of(addr: &str) -> Option<String> {
    let (_, d) = addr.rsplit_once('@')?;
    (!d.is_empty()).then(|| d.trim_end_matches('.').to_ascii_lowercase())
}

fn is_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

fn is_address(a: &str) -> bool {
    match a.rsplit_once('@') {
        Some((l, d)) => !l.is_empty() && is_domain(&d.to_ascii_lowercase()),
        None => false,
    }
}

fn is_host_port(s: &str) -> bool {
    if s.parse::<SocketAddr>().is_ok() {
        return true;
    }
    match s.rsplit_once(':') {
        Some((h, p)) => !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "[operator]\ndomains = [\"ch-a.mssante.fr\"]\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(MIN).unwrap();
        assert_eq!(c.operator.timezone, "Europe/Paris");
        assert_eq!(c.store.retention_months, 13);
        assert_eq!(c.export.max_archive_bytes, 70_000_000);
        assert_eq!(
            c.store.journal_path(),
            PathBuf::from("/var/lib/mss-sidecar/capture.journal")
        );
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = Config::parse(&format!("{MIN}\n[proxy]\nlisen = \"x\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `lisen`"), "{e}");
        assert!(e.contains("line 4 in [proxy]"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("[operator]\ndomains = []\n", "operator.domains"),
            ("[operator]\ndomains = [\"Not A Domain\"]\n", "operator.domains"),
            (
                "[operator]\ndomains = [\"a.fr\"]\ntimezone = \"Mars/Base\"\n",
                "operator.timezone",
            ),
            (
                "[operator]\ndomains = [\"a.fr\"]\n[proxy]\nlisten = \"nowhere\"\nupstream = \"127.0.0.1:25\"\n",
                "proxy.listen",
            ),
            (
                "[operator]\ndomains = [\"a.fr\"]\n[proxy]\nlisten = \"127.0.0.1:1\"\nupstream = \"x\"\n",
                "proxy.upstream",
            ),
            (
                "[operator]\ndomains = [\"a.fr\"]\n[sipil]\npost_url = \"u\"\nreport_url = \"u\"\nreport_email = \"nobody\"\n",
                "sipil.report_email",
            ),
            (
                "[operator]\ndomains = [\"a.fr\"]\n[sipil]\npost_url = \"http://x.fr/p\"\nreport_url = \"https://x.fr/r\"\n",
                "sipil.post_url",
            ),
            (
                "[operator]\ndomains = [\"a.fr\"]\n[sipil]\npost_url = \"https://x.fr/p\"\nreport_url = \"https://x.fr/r\"\ndeposit_id_regex = \"id=\\\\d+\"\n",
                "sipil.deposit_id_regex",
            ),
            (
                "[operator]\ndomains = [\"a.fr\"]\n[sipil]\npost_url = \"https://x.fr/p\"\nreport_url = \"https://x.fr/r\"\nreport_pending = \"(unclosed\"\n",
                "sipil.report_pending",
            ),
            (
                "[operator]\ndomains = [\"a.fr\"]\n[store]\ncapture_path = \"relative\"\n",
                "store.capture_path",
            ),
            (
                "[operator]\ndomains = [\"a.fr\"]\n[policy]\nliste_blanche = \"/nonexistent.xml\"\nrefresh_url = \"http://x.fr/l.xml\"\nca_file = \"/nonexistent.pem\"\n",
                "policy.refresh_url",
            ),
            (
                "[operator]\ndomains = [\"a.fr\"]\n[policy]\nliste_blanche = \"/nonexistent.xml\"\nrefresh_url = \"https://x.fr/l.xml\"\n",
                "policy.ca_file",
            ),
        ];
        for (text, key) in cases {
            let e = Config::parse(text).unwrap_err().to_string();
            assert!(e.contains(&format!("`{key}`")), "{key}: {e}");
        }
        let e = Config::parse("[store]\nretention_months = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `operator`"), "{e}");
    }

    #[test]
    fn unwritable_store_is_refused() {
        let mut c = Config::parse(MIN).unwrap();
        c.store.capture_path = "/proc/mss-cannot-exist/capture".into();
        let e = c.check_capture_writable().unwrap_err().to_string();
        assert!(e.contains("`store.capture_path`"), "{e}");
    }

    #[test]
    fn non_loopback_http_listeners_need_a_token_file() {
        for (sec, body) in [
            ("metrics", "listen = \"0.0.0.0:9892\""),
            ("events", "listen = \"[::]:8892\""),
        ] {
            let e = Config::parse(&format!("{MIN}[{sec}]\n{body}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("key `{sec}.token_file`")), "{e}");
            assert!(e.contains("not a loopback address"), "{e}");
        }
        let c = Config::parse(&format!(
            "{MIN}[metrics]\nlisten = \"[::1]:9892\"\n[events]\nlisten = \"127.0.0.2:8892\"\n"
        ))
        .unwrap();
        assert!(c.metrics.unwrap().token.is_none());
        assert!(c.events.unwrap().token.is_none());
    }

    #[test]
    fn token_file_is_read_checked_and_never_shown() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "s3cret-token-0123456789\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = format!(
            "{MIN}[metrics]\nlisten = \"0.0.0.0:9892\"\ntoken_file = \"{}\"\n",
            f.display()
        );
        let c = Config::parse(&text).unwrap();
        let t = c.metrics.as_ref().unwrap().token.clone().unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(t.accepts(Some(b"Bearer s3cret-token-0123456789")));
        assert!(t.accepts(Some(b"bearer  s3cret-token-0123456789 ")));
        assert!(!t.accepts(Some(b"Bearer s3cret-token-012345678")));
        assert!(!t.accepts(Some(b"Bearer s3cret-token-01234567890")));
        assert!(!t.accepts(Some(b"Basic s3cret-token-0123456789")));
        assert!(!t.accepts(Some(b"Bearer")));
        assert!(!t.accepts(None));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Config::parse(&text).unwrap_err().to_string();
        assert!(
            e.contains("key `metrics.token_file`") && e.contains("readable by everyone"),
            "{e}"
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&f, "short\n").unwrap();
        let e = Config::parse(&text).unwrap_err().to_string();
        assert!(e.contains("at least 16") && !e.contains("short"), "{e}");
    }

    #[test]
    fn service_user_defaults_to_mss() {
        assert_eq!(Config::parse(MIN).unwrap().service.user, "mss");
        let e = Config::parse(&format!("{MIN}[service]\nuser = \"a b\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`service.user`"), "{e}");
    }

    #[test]
    fn operator_addresses() {
        let c = Config::parse(MIN).unwrap();
        assert!(c.is_operator_address("Dr.X@CH-A.mssante.fr"));
        assert!(!c.is_operator_address("x@other.fr"));
        assert!(!c.is_operator_address("<>"));
    }
}
