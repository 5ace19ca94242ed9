//! swaks, the SMTP swiss-army knife (Debian package `swaks`), as a test client.

use std::process::Command;

/// What a swaks run gave.
pub struct SwaksResult {
    /// swaks exit code 0: every step accepted.
    pub ok: bool,
    /// The whole transcript, for assertion messages.
    pub transcript: String,
}

/// Run swaks with raw arguments.
pub fn swaks(args: &[&str]) -> std::process::Output {
    Command::new("swaks")
        .args(args)
        .output()
        .expect("swaks (apt-get install swaks)")
}

/// Send one message: `extra` passes options through (`--tls`, `--pipeline`,
/// `--auth`, `--body`…).
pub fn send(server: &str, from: &str, to: &[&str], extra: &[&str]) -> SwaksResult {
    let to = to.join(",");
    let mut args = vec![
        "--server",
        server,
        "--from",
        from,
        "--to",
        &to,
        "--timeout",
        "30",
    ];
    args.extend_from_slice(extra);
    let out = swaks(&args);
    SwaksResult {
        ok: out.status.success(),
        transcript: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}
