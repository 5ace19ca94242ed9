//! The SIPIL client: deposit (`postFile`) and deposit report (`getReport`)
//! over mutual TLS.
//!
//! TLS is a `rustls::ClientConfig` built here (ring provider, like the rest of
//! the workspace) and handed to reqwest preconfigured: the trust store holds
//! `sipil.ca_file` only (plus the system bundle when `sipil.use_system_roots`),
//! and the client presents `sipil.client_cert` + `sipil.client_key`. Every wire
//! detail (method, field names, id parameter, id extraction, report patterns)
//! comes from the `[sipil]` configuration.
//!
//! Key material is never logged: errors name the files, never their content.
//!
//! # Files
//! - this file: the [`Client`], its two calls and what a failed call means.
//! - `tls`: the mutual-TLS configuration from `[sipil]` (certificates, key,
//!   permissions, validity) and the hints a TLS failure gives.
//! - `answer`: reading the answers: deposit id, report verdict, excerpts.

mod answer;
#[cfg(test)]
mod tests;
mod tls;

use std::time::Duration;

use jiff::Timestamp;
use mss_shared::config::Sipil;
use mss_shared::Error;
use serde::{Deserialize, Serialize};

pub use answer::{classify, deposit_id, excerpt, readable, sha256_hex};
use tls::{cfg_err, tls_hint, tls_hint_from_text};
pub use tls::{tls_config, validity, EXPIRY_WARNING_DAYS};

/// Verdict of a deposit report, from the `sipil.report_*` patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Accepted,
    /// Blocking errors: fix and submit again.
    Rejected,
    Pending,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Accepted => "accepted",
            Verdict::Rejected => "rejected (blocking errors)",
            Verdict::Pending => "pending",
        })
    }
}

/// The answer to one HTTP call.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A SIPIL client with its TLS identity loaded and checked.
pub struct Client {
    http: reqwest::Client,
    cfg: Sipil,
    rt: tokio::runtime::Runtime,
}

/// Why a call failed, and whether trying again may help.
struct CallError {
    message: String,
    transient: bool,
}

/// Describe a reqwest error for a sysadmin: TLS problems named as such.
fn describe(e: &reqwest::Error, s: &Sipil, url: &str) -> CallError {
    let mut chain = vec![];
    let mut tls: Option<String> = None;
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = src {
        chain.push(err.to_string());
        let rustls_err = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|i| i.downcast_ref::<rustls::Error>())
        });
        if let Some(r) = rustls_err {
            tls.get_or_insert_with(|| tls_hint(r, s));
        }
        src = err.source();
    }
    chain.dedup();
    let detail = chain.join(": ");
    if tls.is_none() {
        tls = tls_hint_from_text(&detail, s);
    }
    if let Some(hint) = tls {
        return CallError {
            message: format!("{url}: TLS handshake failed: {hint} ({detail})"),
            transient: false,
        };
    }
    let lower = detail.to_ascii_lowercase();
    if e.is_timeout() {
        return CallError {
            message: format!(
                "{url}: timed out (sipil.timeout_secs / connect_timeout_secs): {detail}"
            ),
            transient: true,
        };
    }
    let closed = lower.contains("reset")
        || lower.contains("closed")
        || lower.contains("broken pipe")
        || lower.contains("close_notify")
        || lower.contains("unexpected eof");
    let hint = if closed {
        " (if the server always closes the connection right after the TLS handshake, it is refusing our client certificate: check that sipil.client_cert is the certificate declared in the ANS white list)"
    } else {
        ""
    };
    CallError {
        message: format!("{url}: {detail}{hint}"),
        transient: true,
    }
}

impl Client {
    /// Load and check the TLS identity, build the HTTP client.
    ///
    /// # Errors
    /// See [`tls_config`].
    pub fn new(s: &Sipil) -> Result<Client, Error> {
        let tls = tls_config(s, Timestamp::now())?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(Duration::from_secs(s.timeout_secs))
            .connect_timeout(Duration::from_secs(s.connect_timeout_secs))
            .user_agent(concat!("mss-export/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .build()
            .map_err(|e| Error::Other(format!("HTTP client: {e}")))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Other(format!("runtime: {e}")))?;
        Ok(Client {
            http,
            cfg: s.clone(),
            rt,
        })
    }

    /// Send a request, retrying network errors, timeouts and HTTP 5xx up to
    /// `sipil.max_attempts` times with a doubling delay.
    fn call(
        &self,
        what: &str,
        url: &str,
        make: &dyn Fn() -> Result<reqwest::RequestBuilder, Error>,
    ) -> Result<Answer, Error> {
        let mut delay = Duration::from_millis(self.cfg.retry_delay_ms);
        let max = self.cfg.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            let req = make()?;
            let res = self.rt.block_on(async {
                let r = req.send().await?;
                let status = r.status().as_u16();
                let content_type = r
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let body = r.bytes().await?.to_vec();
                Ok::<_, reqwest::Error>(Answer {
                    status,
                    content_type,
                    body,
                })
            });
            let failure = match res {
                Ok(a) if a.status >= 500 => CallError {
                    message: format!("{url}: HTTP {}: {}", a.status, excerpt(&a.text())),
                    transient: true,
                },
                Ok(a) => return Ok(a),
                Err(e) => describe(&e, &self.cfg, url),
            };
            if !failure.transient || attempt >= max {
                let tries = if attempt > 1 {
                    format!(" (after {attempt} attempts)")
                } else {
                    String::new()
                };
                return Err(Error::Remote(format!("{what}: {}{tries}", failure.message)));
            }
            eprintln!(
                "warning: {what}: attempt {attempt}/{max} failed, retrying in {:.1}s: {}",
                delay.as_secs_f64(),
                failure.message
            );
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(300));
            attempt += 1;
        }
    }

    /// Deposit one archive. Returns the HTTP answer whatever its status
    /// (4xx included, for the record); network failures are errors.
    pub fn post_archive(&self, name: &str, bytes: &[u8]) -> Result<Answer, Error> {
        let s = &self.cfg;
        let method = if s.post_method == "PUT" {
            reqwest::Method::PUT
        } else {
            reqwest::Method::POST
        };
        let make = || {
            let part = reqwest::multipart::Part::bytes(bytes.to_vec())
                .file_name(name.to_string())
                .mime_str("application/zip")
                .map_err(|e| Error::Other(format!("multipart: {e}")))?;
            let mut form = reqwest::multipart::Form::new().part(s.file_field.clone(), part);
            if let Some(m) = &s.report_email {
                form = form.text(s.email_field.clone(), m.clone());
            }
            Ok(self
                .http
                .request(method.clone(), &s.post_url)
                .multipart(form))
        };
        self.call(&format!("deposit of {name}"), &s.post_url, &make)
    }

    /// Ask for the report of a deposit.
    pub fn get_report(&self, deposit_id: &str) -> Result<Answer, Error> {
        let s = &self.cfg;
        let url = reqwest::Url::parse(&s.report_url)
            .map_err(|e| cfg_err("sipil.report_url", format!("{:?}: {e}", s.report_url)))?;
        let make = || {
            if s.report_method == "POST" {
                let mut enc = reqwest::Url::parse("https://x.invalid/").expect("static URL");
                enc.query_pairs_mut()
                    .append_pair(&s.report_id_param, deposit_id);
                Ok(self
                    .http
                    .post(url.clone())
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(enc.query().unwrap_or_default().to_string()))
            } else {
                let mut u = url.clone();
                u.query_pairs_mut()
                    .append_pair(&s.report_id_param, deposit_id);
                Ok(self.http.get(u))
            }
        };
        self.call(
            &format!("report of deposit {deposit_id}"),
            &s.report_url,
            &make,
        )
    }
}
