//! What every binary does around its real work: logging, `error: …` output
//! with its causes, exit codes.

use mss_shared::{exit, Error};

/// Log to stderr (journald adds the timestamps under systemd). Filter with
/// `MSS_LOG` (e.g. `MSS_LOG=debug`), default `info`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MSS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Print `error: …` and its `caused by:` chain; return the exit code.
pub fn report(e: &Error) -> i32 {
    eprintln!("error: {e}");
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        eprintln!("  caused by: {s}");
        src = s.source();
    }
    e.exit_code()
}

/// Run `f` and turn its result into the process exit code.
pub fn exit_with(f: impl FnOnce() -> Result<i32, Error>) -> ! {
    let code = match f() {
        Ok(c) => c,
        Err(e) => report(&e),
    };
    std::process::exit(code)
}

pub use exit::{CONFIG, OK};
