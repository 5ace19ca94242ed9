//! Debian's headless Chromium, bounded: prints a page to PDF or takes a
//! PNG screenshot. Chromium runs in its own process group, output to files
//! (its helpers could hold pipes open), and the whole group is killed when
//! the call returns, whatever happened.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::guard::{signal, wait_within};

/// The Chromium binary, if installed.
pub fn binary() -> Option<&'static str> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

/// Run headless Chromium on `page` with `action` (`--print-to-pdf=…` or
/// `--screenshot=…`), at most 120 s. Returns what it printed on failure.
pub fn run(page: &Path, action: &str, work: &Path) -> Result<(), String> {
    let bin = binary().ok_or("chromium is not installed (apt-get install chromium)")?;
    let profile = work.join("chromium-profile");
    let log = work.join("chromium.log");
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-extensions",
            "--no-pdf-header-footer",
            "--hide-scrollbars",
            "--window-size=1000,1400",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(action)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).map_err(|e| e.to_string())?)
        .stderr(std::fs::File::create(work.join("chromium.err")).map_err(|e| e.to_string())?)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("{bin}: {e}"))?;
    let pgid = i64::from(child.id());
    let status = wait_within(&mut child, Duration::from_secs(120));
    signal(-pgid, "KILL");
    let _ = child.wait();
    let printed = format!(
        "{}{}",
        std::fs::read_to_string(&log).unwrap_or_default(),
        std::fs::read_to_string(work.join("chromium.err")).unwrap_or_default()
    );
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(format!("chromium {action}: {s}: {printed}")),
        None => Err(format!(
            "chromium {action}: still running after 120 s (killed): {printed}"
        )),
    }
}
