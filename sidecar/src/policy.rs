//! The liste blanche policy (`[policy]`): an operator BAL must not send to a
//! mailbox outside the Espace de Confiance.
//!
//! When the envelope sender is on an operator domain and a recipient's domain
//! is neither an operator domain, nor in the ANS liste blanche, nor in
//! `policy.allow`, the recipient is *outside*: in `enforce` mode the RCPT is
//! answered `550 5.7.1` (proxy: instead of forwarding it; milter: the
//! recipient is rejected), in `report` mode it goes through. Both count it
//! (`mss_outside_trust_space_total`, `mss-admin counts` → `outside_trust_space`)
//! and log sender domain → recipient domain (never the full addresses).
//!
//! The list is reloaded when its file changes (checked every 10 s) and on
//! SIGHUP, atomically (sessions keep the copy they started the RCPT with); a
//! copy that does not parse, is empty, or loses more than
//! `max_drop_percent` % of the domains is refused and the good one kept.
//!
//! With `refresh_url`, the list is also fetched over HTTPS (trusting only
//! `ca_file`) at start and every `refresh_interval_secs`: a copy that parses,
//! is not empty and is a plausible successor replaces the file atomically
//! (temporary file, fsync, rename) and is loaded; anything else — HTTP error,
//! TLS refusal, garbage, too large, too many domains lost — is logged as an
//! error and the good copy stays.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use mss_shared::config::{domain_of, Config, PolicyMode};
use mss_shared::listeblanche::ListeBlanche;
use mss_shared::Error;

/// The reply to a refused recipient (French first: the users are French).
pub const REFUSAL: &str = "Destinataire hors de l'Espace de Confiance MSSante (liste blanche) / Recipient outside the MSSante trust space";

pub struct Policy {
    path: PathBuf,
    pub enforce: bool,
    allow: HashSet<String>,
    operator: HashSet<String>,
    max_drop: u32,
    list: RwLock<Arc<ListeBlanche>>,
    mtime: Mutex<Option<SystemTime>>,
    refresh: Option<Refresh>,
}

struct Refresh {
    url: String,
    every: Duration,
    http: reqwest::Client,
}

/// Largest liste blanche accepted from `refresh_url` (the real one is ~1 MB).
const MAX_LIST_BYTES: usize = 64 * 1024 * 1024;

fn refresh_client(ca: &std::path::Path) -> Result<reqwest::Client, Error> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let bad = |why: String| Error::Config(format!("key `policy.ca_file`: {}: {why}", ca.display()));
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(bad("no PEM CA certificate in it".into()));
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Other(format!("TLS setup: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(120))
        .connect_timeout(Duration::from_secs(20))
        .user_agent(concat!("mss-sidecar/", env!("CARGO_PKG_VERSION")))
        .no_proxy()
        .build()
        .map_err(|e| Error::Other(format!("HTTP client: {e}")))
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("path", &self.path)
            .field("enforce", &self.enforce)
            .finish()
    }
}

fn mtime(p: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl Policy {
    /// From the configuration; `None` when `[policy]` is absent.
    ///
    /// # Errors
    /// The list cannot be read or holds no domain (exit 2: the admin must
    /// fix `policy.liste_blanche` before mail flows under a policy).
    pub fn load(cfg: &Config) -> Result<Option<Arc<Policy>>, Error> {
        let Some(p) = &cfg.policy else {
            return Ok(None);
        };
        let list = ListeBlanche::load(&p.liste_blanche).map_err(|e| {
            Error::Config(format!(
                "key `policy.liste_blanche`: {}: {e}",
                p.liste_blanche.display()
            ))
        })?;
        tracing::info!(
            domains = list.len(),
            entries = list.entries,
            generated = list.generated.as_deref().unwrap_or("?"),
            mode = if p.mode == PolicyMode::Enforce {
                "enforce"
            } else {
                "report"
            },
            "liste blanche loaded"
        );
        let refresh = match (&p.refresh_url, &p.ca_file) {
            (Some(url), Some(ca)) => Some(Refresh {
                url: url.clone(),
                every: Duration::from_secs(p.refresh_interval_secs.max(1)),
                http: refresh_client(ca)?,
            }),
            _ => None,
        };
        Ok(Some(Arc::new(Policy {
            refresh,
            path: p.liste_blanche.clone(),
            enforce: p.mode == PolicyMode::Enforce,
            allow: p.allow.iter().cloned().collect(),
            operator: cfg.operator.domains.iter().cloned().collect(),
            max_drop: p.max_drop_percent,
            list: RwLock::new(Arc::new(list)),
            mtime: Mutex::new(mtime(&p.liste_blanche)),
        })))
    }

    /// `Some((sender domain, recipient domain))` when this recipient is
    /// outside the Espace de Confiance for this sender.
    pub fn outside(&self, sender: &str, rcpt: &str) -> Option<(String, String)> {
        let sd = domain_of(sender)?;
        if !self.operator.contains(&sd) {
            return None;
        }
        let rd = domain_of(rcpt)?;
        if self.operator.contains(&rd) || self.allow.contains(&rd) {
            return None;
        }
        let list = self.list.read().unwrap_or_else(|e| e.into_inner()).clone();
        (!list.contains(&rd)).then_some((sd, rd))
    }

    /// Re-read the file; keep the current list if the new one is not
    /// acceptable. Returns what happened, for the log.
    pub fn reload(&self) -> Result<usize, String> {
        *self.mtime.lock().unwrap_or_else(|e| e.into_inner()) = mtime(&self.path);
        let new =
            ListeBlanche::load(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
        let cur = self.list.read().unwrap_or_else(|e| e.into_inner()).clone();
        if !cur.plausible_successor(&new, self.max_drop) {
            return Err(format!(
                "{}: {} domains instead of {}: more than policy.max_drop_percent = {} % lost, kept the previous list",
                self.path.display(),
                new.len(),
                cur.len(),
                self.max_drop
            ));
        }
        let n = new.len();
        *self.list.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
        Ok(n)
    }

    /// The current copy.
    pub fn list(&self) -> Arc<ListeBlanche> {
        self.list.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn changed(&self) -> bool {
        let now = mtime(&self.path);
        now.is_some() && now != *self.mtime.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reload_logged(&self, why: &str) {
        match self.reload() {
            Ok(n) => tracing::info!(domains = n, "liste blanche reloaded ({why})"),
            Err(e) => tracing::error!("liste blanche NOT reloaded ({why}): {e}"),
        }
    }

    /// Fetch `refresh_url` once; on success the file is replaced and
    /// loaded. Returns the number of domains, or why the copy was refused.
    async fn refresh_once(&self, r: &Refresh) -> Result<usize, String> {
        let mut resp = r
            .http
            .get(&r.url)
            .send()
            .await
            .map_err(|e| format!("{}: {}", r.url, error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(format!("{}: HTTP {}", r.url, resp.status()));
        }
        let mut body: Vec<u8> = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("{}: {}", r.url, error_chain(&e)))?
        {
            if body.len() + chunk.len() > MAX_LIST_BYTES {
                return Err(format!("{}: larger than {MAX_LIST_BYTES} bytes", r.url));
            }
            body.extend_from_slice(&chunk);
        }
        let new = ListeBlanche::parse(&body[..]).map_err(|e| format!("{}: {e}", r.url))?;
        let cur = self.list();
        if !cur.plausible_successor(&new, self.max_drop) {
            return Err(format!(
                "{}: {} domains instead of {}: empty or more than policy.max_drop_percent = {} % lost",
                r.url,
                new.len(),
                cur.len(),
                self.max_drop
            ));
        }
        let part = self.path.with_extension("xml.part");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&part)?;
            f.write_all(&body)?;
            f.sync_all()?;
            std::fs::rename(&part, &self.path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&part);
            format!("writing {}: {e}", self.path.display())
        })?;
        self.reload()
    }

    async fn refresh_logged(&self) {
        let Some(r) = &self.refresh else { return };
        match self.refresh_once(r).await {
            Ok(n) => tracing::info!(domains = n, url = %r.url, "liste blanche refreshed"),
            Err(e) => {
                tracing::error!("liste blanche refresh refused, the current copy is kept: {e}")
            }
        }
    }

    /// Reload on file change (polled) and on SIGHUP, refresh from
    /// `refresh_url` (at start, then periodically), until `stop`.
    pub async fn watch(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(
                    "SIGHUP handler: {e}; the liste blanche reloads on file change only"
                );
                None
            }
        };
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        let mut refresh_tick = tokio::time::interval(
            self.refresh
                .as_ref()
                .map_or(Duration::from_secs(86_400), |r| r.every),
        );
        refresh_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = refresh_tick.tick(), if self.refresh.is_some() => self.refresh_logged().await,
                _ = tick.tick() => if self.changed() { self.reload_logged("file changed") },
                Some(_) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => self.reload_logged("SIGHUP"),
                r = stop.changed() => if r.is_err() || *stop.borrow() { return },
            }
        }
    }
}

/// An error with its causes (reqwest's Display hides the TLS reason).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
