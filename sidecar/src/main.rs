use std::path::PathBuf;

use clap::Parser;

/// mss-sidecar: capture MSSanté exchange and login statistics inline
/// (SMTP proxy and milter front ends), for the monthly ANS indicators.
#[derive(Parser)]
#[command(name = "mss-sidecar", version, about)]
struct Args {
    /// Configuration file.
    #[arg(long, env = "MSS_CONFIG", default_value = mss_shared::config::DEFAULT_PATH)]
    config: PathBuf,
    /// Only check the configuration and the store path, then exit.
    #[arg(long)]
    check: bool,
}

fn main() {
    let args = Args::parse();
    mss_sidecar::cli::init_logging();
    mss_sidecar::cli::exit_with(|| {
        if args.check {
            let cfg = mss_shared::config::Config::load(&args.config)?;
            cfg.check_capture_writable()?;
            println!("configuration OK: {}", args.config.display());
            return Ok(mss_sidecar::cli::OK);
        }
        mss_sidecar::daemon::run(&args.config)
    })
}
