//! `[events]` and `[metrics]`: the HTTP listeners and their bearer tokens.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::checks::bad;
use crate::error::{Error, Result};

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

#[derive(Debug, Clone, Deserialize, Serialize)]
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

impl Events {
    pub(super) fn validate(&mut self) -> Result<()> {
        let e = self;
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
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
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

impl Metrics {
    pub(super) fn validate(&mut self) -> Result<()> {
        let m = self;
        let Ok(addr) = m.listen.parse::<SocketAddr>() else {
            return bad(
                "metrics.listen",
                format!("{:?} is not an address:port", m.listen),
            );
        };
        m.token = load_token("metrics", addr, m.token_file.as_deref())?;
        Ok(())
    }
}
