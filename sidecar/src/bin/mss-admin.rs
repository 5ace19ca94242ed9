use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// mss-admin: inspect what mss-sidecar captured and manage the mailbox registry.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Configuration file.
    #[arg(long, global = true, env = "MSS_CONFIG", default_value = mss_shared::config::DEFAULT_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Captured figures of a month, per domain and per day.
    Counts {
        /// The month, YYYY-MM.
        #[arg(long)]
        month: String,
        /// Only this operator domain.
        #[arg(long)]
        domain: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    let args = Args::parse();
    mss_sidecar::cli::init_logging();
    mss_sidecar::cli::exit_with(|| match &args.cmd {
        Cmd::Counts {
            month,
            domain,
            json,
        } => mss_sidecar::admin::counts(&args.config, month, domain.as_deref(), *json),
    })
}
