//! `mss-export`: build and validate the monthly ANS archive.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use mss_shared::config::Config;
use mss_shared::month::Month;
use mss_shared::{exit, Error};

/// mss-export: build, validate (and, later, submit) the monthly MSSanté indicators archive.
#[derive(Parser)]
#[command(name = "mss-export", version, about)]
struct Args {
    /// Configuration file.
    #[arg(long, global = true, env = "MSS_CONFIG", default_value = mss_shared::config::DEFAULT_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write the month's CSV files into ZIP archive(s); print their paths.
    Build {
        /// The month of the figures, YYYY-MM (the ANS's "M-1").
        #[arg(long)]
        month: String,
        /// Output directory (default: export.out_dir).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Machine-readable report.
        #[arg(long)]
        json: bool,
        /// With [central]: build even if a node has not shipped the whole month.
        #[arg(long)]
        allow_incomplete: bool,
    },
    /// Check a ZIP or CSV file against the ANS format; list every problem (exit 1 if any).
    Validate { path: PathBuf },
    /// Deposit the month's archive(s) to SIPIL (built first when absent).
    Submit {
        #[arg(long)]
        month: String,
    },
    /// Fetch, record and print the deposit report(s) of the month (exit 0 accepted, 6 pending, 7 rejected).
    Report {
        #[arg(long)]
        month: String,
    },
    /// The timer's entry point: deliver the previous month until accepted (exit codes: README).
    Run {
        /// Another month than the previous one (catching up).
        #[arg(long)]
        month: Option<String>,
        /// Pretend the current time is this RFC 3339 instant (tests, rehearsals).
        #[arg(long, hide = true)]
        now: Option<String>,
    },
    /// The months delivered, their states and last reports.
    Status {
        #[arg(long)]
        json: bool,
    },
}

fn run(args: Args) -> Result<i32, Error> {
    let cfg = Config::load(&args.config)?;
    match args.cmd {
        Cmd::Submit { month } => mss_exporter::run::submit(&cfg, Month::parse(&month)?),
        Cmd::Report { month } => mss_exporter::run::report(&cfg, Month::parse(&month)?),
        Cmd::Run { month, now } => {
            let month = month.as_deref().map(Month::parse).transpose()?;
            let now = now
                .map(|n| {
                    n.parse()
                        .map_err(|e| Error::Usage(format!("--now {n:?}: {e}")))
                })
                .transpose()?;
            mss_exporter::run::run(&cfg, month, now)
        }
        Cmd::Status { json } => mss_exporter::status::status(&cfg, json),
        Cmd::Build {
            month,
            out,
            json,
            allow_incomplete,
        } => {
            let month = Month::parse(&month)?;
            let lagging = mss_shared::central::nodes::incomplete(&cfg, month)?;
            if !lagging.is_empty() {
                let why = lagging.join("; ");
                if !allow_incomplete {
                    return Err(Error::Incomplete(format!(
                        "{month} is not complete centrally: {why}. Each node ships when it is back; `mss-admin central nodes` shows them; --allow-incomplete builds anyway"
                    )));
                }
                eprintln!("warning: {month} is not complete centrally: {why}");
            }
            let sec = tempfile::Builder::new()
                .prefix("mss-export-secondary-")
                .tempdir()
                .map_err(|e| Error::Other(format!("temporary directory: {e}")))?;
            let cap = mss_shared::central::snapshot::open_for_reading(&cfg, sec.path())?;
            // Opened as before (created when missing); build writes nothing there.
            let reg = mss_shared::central::registry::open_write(&cfg)?;
            let out = out.unwrap_or_else(|| cfg.export.out_dir.clone());
            let now = Month::current(&cfg.tz());
            if month >= now {
                eprintln!(
                    "warning: {month} is not over yet (today is in {now}): the files will be incomplete"
                );
            }
            let bar = indicatif::ProgressBar::new(cfg.operator.domains.len() as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {pos}/{len} domains {msg}",
                )
                .expect("valid template"),
            );
            let report = mss_exporter::build::build_with_progress(
                &cfg,
                &cap,
                &reg,
                month,
                &out,
                &mut |done, _, domain| {
                    bar.set_position(done as u64);
                    bar.set_message(domain.to_string());
                },
            );
            bar.finish_and_clear();
            let report = report?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report).expect("json"));
            } else {
                eprint!("{}", mss_exporter::build::summary(&report));
                for a in &report.archives {
                    println!("{}", a.display());
                }
            }
            Ok(exit::OK)
        }
        Cmd::Validate { path } => {
            let rules = mss_exporter::validate::Rules {
                delimiter: cfg.export.delimiter.as_bytes()[0],
                crlf: cfg.export.crlf,
                max_archive_bytes: cfg.export.max_archive_bytes,
            };
            let problems = mss_exporter::validate::check_path(&path, &rules)
                .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
            if problems.is_empty() {
                println!("{}: valid", path.display());
                Ok(exit::OK)
            } else {
                for p in &problems {
                    println!("{p}");
                }
                eprintln!("error: {}: {} problem(s)", path.display(), problems.len());
                Ok(exit::INVALID)
            }
        }
    }
}

fn main() {
    let args = Args::parse();
    let code = match run(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}
