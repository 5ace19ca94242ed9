//! The month's files as `mss-export build` writes them, and the generic
//! login endpoint, a plain HTTP GET (`/metrics`): what end-to-end tests
//! compare byte for byte.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::sidecar::{bin, DOMAIN};

/// What one `mss-export build` gave.
pub struct Built {
    pub code: i32,
    /// `AAAAMM_EchangesMSSante_<DOMAIN>.csv` (empty when the build failed).
    pub echanges: String,
    /// `AAAAMM_ConnexionsMSSante_<DOMAIN>.csv` (empty when the build failed).
    pub connexions: String,
    pub stderr: String,
}

/// `mss-export --config CFG build --month MONTH --out <tmp> EXTRA…`, and
/// DOMAIN's two files read from the archive. `month` is `YYYY-MM`.
pub fn build(cfg: &Path, month: &str, extra: &[&str]) -> Built {
    let out = tempfile::tempdir().unwrap();
    let o = crate::guard::output_within(
        Command::new(bin("mss-export"))
            .arg("--config")
            .arg(cfg)
            .args(["build", "--month", month, "--out"])
            .arg(out.path())
            .args(extra),
        Duration::from_secs(120),
    )
    .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let code = o.status.code().unwrap_or(-1);
    if code != 0 {
        return Built {
            code,
            echanges: String::new(),
            connexions: String::new(),
            stderr,
        };
    }
    let zip_path = String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut z = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
    let compact = month.replace('-', "");
    let mut read = |kind: &str| {
        let mut s = String::new();
        z.by_name(&format!("{compact}_{kind}MSSante_{DOMAIN}.csv"))
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    };
    Built {
        code,
        echanges: read("Echanges"),
        connexions: read("Connexions"),
        stderr,
    }
}

/// POST one generic login (`/v1/logins`) and expect 200.
pub fn post_login(addr: &str, body: &str) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /v1/logins HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut r = String::new();
    let _ = s.read_to_string(&mut r);
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

/// GET `path` from `addr` (HTTP/1.1, `Connection: close`): the body.
pub fn get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = String::new();
    let _ = s.read_to_string(&mut r);
    r.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}
