//! `[central]`: several nodes, one month. Each node keeps capturing into its
//! local store (mail never waits for the network); every record also goes,
//! in the same atomic write, into the store's outbox
//! (`store::capture::outbox`); the daemon's shipper sends the outbox to the
//! operator's PostgreSQL, exactly once, and `mss-export` / `mss-admin` read
//! the merged month from there.
//!
//! - here: the connection (libpq-style URL, password file, TLS through the
//!   workspace's ring rustls: verify-full, require, or none on a Unix socket).
//! - [`schema`]: versioned migrations embedded in the binaries.
//! - [`registry`]: the mailbox registry kept centrally (a private copy per command, pushed back all at once).
//! - [`retention`]: `central purge`: old records folded into `bal_summary`, then deleted.
//! - [`nodes`]: node registration (name ↔ random id), progress, completeness.
//! - [`ship`]: one batch in one transaction (binary COPY into a temporary
//!   table, `INSERT … SELECT … ON CONFLICT DO NOTHING` on `(node_id, seq)`,
//!   the node's progress with `GREATEST`).
//! - [`snapshot`]: the shipped records replayed into a local store, which the
//!   single-node code then reads (so the merged month's files follow exactly
//!   the same rules).

pub mod nodes;
pub mod registry;
pub mod retention;
pub mod schema;
pub mod ship;
pub mod snapshot;

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::config::SslMode;
use tokio_postgres::Client;

use crate::config::{Central, CentralTls};
use crate::error::{Error, Result};

/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Central(format!("{what}: {e}"))
}

/// A PostgreSQL error with its detail (tokio-postgres' Display says only "db error").
pub fn pg(what: &str, e: tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        Some(d) => err(what, format!("{} ({})", d.message(), d.code().code())),
        None => err(what, e),
    }
}

/// The parsed URL with the password and timeouts set.
///
/// # Errors
/// [`Error::Config`] for an unreadable password file.
pub fn pg_config(c: &Central) -> Result<tokio_postgres::Config> {
    let mut pc: tokio_postgres::Config = c
        .url
        .parse()
        .map_err(|e| Error::Config(format!("central.url: {e}")))?;
    if let Some(f) = &c.password_file {
        let text = std::fs::read_to_string(f)
            .map_err(|e| Error::Config(format!("central.password_file {}: {e}", f.display())))?;
        let pw = text.lines().next().unwrap_or("").trim_end();
        pc.password(pw);
    }
    pc.connect_timeout(CONNECT_TIMEOUT);
    pc.application_name("mss-sidecar");
    pc.ssl_mode(match c.tls {
        CentralTls::Disable => SslMode::Disable,
        _ => SslMode::Require,
    });
    Ok(pc)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls client configuration for `c.tls`.
///
/// # Errors
/// [`Error::Config`] for a missing or unusable `ca_file`.
pub fn tls_config(c: &Central) -> Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("central TLS: {e}")))?;
    let cfg = match c.tls {
        CentralTls::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
            .with_no_client_auth(),
        _ => {
            let mut roots = rustls::RootCertStore::empty();
            if let Some(ca) = &c.ca_file {
                let bad = |e: &dyn std::fmt::Display| {
                    Error::Config(format!("central.ca_file {}: {e}", ca.display()))
                };
                for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad(&e))? {
                    roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
                }
                if roots.is_empty() {
                    return Err(bad(&"no PEM certificate in this file"));
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(cfg)
}

/// Encryption without authentication: the server's certificate is not
/// checked (`[central] tls = "require"`; the proxy's opportunistic TLS to a
/// next hop without a CA, as Postfix's `smtp_tls_security_level = may`).
#[derive(Debug)]
pub struct NoVerify(pub Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Connect (within [`CONNECT_TIMEOUT`]); the connection's I/O runs as a task
/// on the current tokio runtime and ends with the client.
///
/// # Errors
/// [`Error::Central`] naming what failed (network, TLS, password, role).
pub async fn connect(c: &Central) -> Result<Client> {
    let pc = pg_config(c)?;
    let what = format!("connecting to {}", c.url);
    let limit = CONNECT_TIMEOUT + Duration::from_secs(2);
    let connected = match c.tls {
        CentralTls::Disable => tokio::time::timeout(limit, open(&pc, tokio_postgres::NoTls)).await,
        _ => {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(c)?);
            tokio::time::timeout(limit, open(&pc, tls)).await
        }
    };
    match connected {
        Ok(r) => r.map_err(|e| pg(&what, e)),
        Err(_) => Err(err(&what, "timed out")),
    }
}

/// Connect with `tls`; the connection's I/O runs as its own task.
async fn open<T>(pc: &tokio_postgres::Config, tls: T) -> Result<Client, tokio_postgres::Error>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, conn) = pc.connect(tls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("central connection ended: {e}");
        }
    });
    Ok(client)
}

/// A current-thread runtime for the command-line tools.
///
/// # Errors
/// [`Error::Other`] when tokio cannot start.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("tokio runtime: {e}")))
}
