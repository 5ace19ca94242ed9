use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// mss-admin: inspect what mss-sidecar captured and manage the mailbox registry.
#[derive(Parser)]
#[command(name = "mss-admin", version, about)]
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
    /// Every BAL of a month's Connexions files with its date and the rule that produced it.
    Connexions {
        /// The month, YYYY-MM.
        #[arg(long)]
        month: String,
        /// Only this operator domain.
        #[arg(long)]
        domain: Option<String>,
        /// Only this BAL.
        #[arg(long)]
        bal: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The mailbox registry: types, dated statuses, test flags.
    #[command(subcommand)]
    Mailbox(MailboxCmd),
    /// Login history from mail logs.
    #[command(subcommand)]
    Logins(LoginsCmd),
    /// Sidecar listeners, stores, last captured row, unregistered BALs, export state, certificate expiry.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Consistent RocksDB checkpoints of both stores into DIR (for backups).
    Checkpoint { dir: PathBuf },
    /// Prove a month's rows against Postfix's own logs (exit 12 when they do not reconcile).
    Reconcile {
        /// The month, YYYY-MM.
        #[arg(long)]
        month: String,
        /// Postfix log files (plain or .gz), in any order.
        #[arg(long = "log", required = true, num_args = 1..)]
        logs: Vec<PathBuf>,
        /// Only rows captured by this node (MAIL_ID prefix).
        #[arg(long)]
        node: Option<String>,
        #[arg(long)]
        json: bool,
        /// Add rows for the recipients the log proves passed while the
        /// milter was down (`milter_down` only; TAILLE estimated), kept in
        /// the registry. Idempotent.
        #[arg(long)]
        fill: bool,
    },
    /// The ANS liste blanche copy of [policy].
    #[command(subcommand)]
    Listeblanche(ListeBlancheCmd),
    /// A structure's monthly report (HTML, JSON, CSV): the figures of the month's ANS files.
    Report {
        /// The month, YYYY-MM.
        #[arg(long)]
        month: String,
        /// One structure: its FINESS (EG, or EJ for BALs without an EG).
        #[arg(long)]
        structure: Option<String>,
        /// Every structure with a BAL in this operator domain.
        #[arg(long)]
        domain: Option<String>,
        /// Every structure (and each domain's BALs attached to no FINESS).
        #[arg(long)]
        all: bool,
        /// Directory for AAAAMM_<structure>.{html,json,csv} (created if needed).
        #[arg(long)]
        out: PathBuf,
        /// Comma-separated: html, json, csv.
        #[arg(long, default_value = "html,json,csv")]
        format: String,
        /// fr or en.
        #[arg(long, default_value = "fr")]
        lang: String,
    },
    /// Structures (FINESS): name and contact address for their reports.
    #[command(subcommand)]
    Structure(StructureCmd),
    /// Several nodes ([central]): the PostgreSQL schema and the nodes.
    #[command(subcommand)]
    Central(CentralCmd),
}

#[derive(Subcommand)]
enum CentralCmd {
    /// Apply the schema migrations embedded in this binary (admin role).
    Migrate,
    /// Each node: shipped up to where, its lag, its last contact.
    Nodes {
        #[arg(long)]
        json: bool,
    },
    /// A decommissioned node: it stops counting for completeness.
    Retire { node: String },
    /// Move this host's registry store (store.registry_path) to PostgreSQL, once, all or nothing.
    ImportRegistry,
    /// Retention: records older than store.retention_months folded into the per-BAL summary, then deleted (admin role; monthly).
    Purge,
}

#[derive(Subcommand)]
enum StructureCmd {
    /// Record a structure's name and the address its monthly report is mailed to.
    Set {
        finess: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        contact: Option<String>,
    },
    /// Structures recorded.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ListeBlancheCmd {
    /// Whether each address is inside the Espace de Confiance (exit 1 if any is not).
    Check {
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    /// Domains, operators, generation date, age of the copy.
    Stats,
}

#[derive(Subcommand)]
enum LoginsCmd {
    /// Import successful logins from Dovecot or Postfix logs (plain or .gz); idempotent.
    Import {
        /// dovecot (imap-login/pop3-login "Login:" lines) or postfix (smtpd sasl_username=).
        #[arg(long)]
        format: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(clap::Args, Default)]
struct EditArgs {
    /// personnelle | organisationnelle | applicative.
    #[arg(long = "type")]
    kind: Option<String>,
    /// active | suspended | deleted (with --date unless active).
    #[arg(long)]
    status: Option<String>,
    /// Date of the status change, YYYY-MM-DD.
    #[arg(long)]
    date: Option<String>,
    /// Test mailbox (never exported): yes | no.
    #[arg(long, value_parser = yes_no)]
    test: Option<bool>,
    /// Whether its logins are known (no: exported as 1900-01-01 00:00:00): yes | no.
    #[arg(long, value_parser = yes_no)]
    login_tracking: Option<bool>,
    #[arg(long)]
    finess_ej: Option<String>,
    #[arg(long)]
    finess_eg: Option<String>,
    /// Record a change that alters a month the ANS already accepted.
    #[arg(long)]
    force: bool,
}

fn yes_no(s: &str) -> Result<bool, String> {
    match s {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err("yes or no".into()),
    }
}

#[derive(Subcommand)]
enum MailboxCmd {
    /// Import a CSV: bal;type;status;status_date;test;finess_ej;finess_eg;login_tracking (all or nothing).
    Import {
        file: PathBuf,
        /// Only BALs of this domain (required with --replace).
        #[arg(long)]
        domain: Option<String>,
        /// Mark BALs of --domain absent from the file as deleted today.
        #[arg(long)]
        replace: bool,
        /// Print what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Record changes that alter a month the ANS already accepted.
        #[arg(long)]
        force: bool,
    },
    /// Register a BAL.
    Add {
        bal: String,
        #[command(flatten)]
        edit: EditArgs,
    },
    /// Change a registered BAL (a new status is appended with its date).
    Set {
        bal: String,
        #[command(flatten)]
        edit: EditArgs,
    },
    /// Registered BALs, or with --unregistered those seen but not registered.
    List {
        #[arg(long)]
        domain: Option<String>,
        #[arg(long)]
        unregistered: bool,
        #[arg(long)]
        json: bool,
    },
    /// One BAL: registry data, history, last login/sent/received, whether it is in this month's files.
    Show {
        bal: String,
        #[arg(long)]
        json: bool,
    },
}

fn edit(e: &EditArgs) -> mss_sidecar::admin::mailbox::Edit {
    mss_sidecar::admin::mailbox::Edit {
        kind: e.kind.clone(),
        status: e.status.clone(),
        date: e.date.clone(),
        test: e.test,
        login_tracking: e.login_tracking,
        finess_ej: e.finess_ej.clone(),
        finess_eg: e.finess_eg.clone(),
        force: e.force,
    }
}

fn main() {
    let args = Args::parse();
    mss_sidecar::cli::init_logging();
    mss_sidecar::cli::exit_with(|| match &args.cmd {
        Cmd::Counts {
            month,
            domain,
            json,
        } => mss_sidecar::admin::counts::counts(&args.config, month, domain.as_deref(), *json),
        Cmd::Connexions {
            month,
            domain,
            bal,
            json,
        } => mss_sidecar::admin::counts::connexions(
            &args.config,
            month,
            domain.as_deref(),
            bal.as_deref(),
            *json,
        ),
        Cmd::Mailbox(m) => {
            use mss_sidecar::admin::mailbox;
            match m {
                MailboxCmd::Import {
                    file,
                    domain,
                    replace,
                    dry_run,
                    force,
                } => mailbox::import(
                    &args.config,
                    file,
                    domain.as_deref(),
                    *replace,
                    *dry_run,
                    *force,
                ),
                MailboxCmd::Add { bal, edit: e } => mailbox::add(&args.config, bal, &edit(e)),
                MailboxCmd::Set { bal, edit: e } => mailbox::set(&args.config, bal, &edit(e)),
                MailboxCmd::List {
                    domain,
                    unregistered,
                    json,
                } => mss_sidecar::admin::mailbox_view::list(
                    &args.config,
                    domain.as_deref(),
                    *unregistered,
                    *json,
                ),
                MailboxCmd::Show { bal, json } => {
                    mss_sidecar::admin::mailbox_view::show(&args.config, bal, *json)
                }
            }
        }
        Cmd::Listeblanche(ListeBlancheCmd::Check { addresses }) => {
            mss_sidecar::admin::listeblanche::listeblanche(&args.config, Some(addresses))
        }
        Cmd::Status { json } => mss_sidecar::admin::status::status(&args.config, *json),
        Cmd::Checkpoint { dir } => mss_sidecar::admin::checkpoint::checkpoint(&args.config, dir),
        Cmd::Listeblanche(ListeBlancheCmd::Stats) => {
            mss_sidecar::admin::listeblanche::listeblanche(&args.config, None)
        }
        Cmd::Reconcile {
            month,
            logs,
            node,
            json,
            fill,
        } => mss_sidecar::admin::reconcile::run(
            &args.config,
            month,
            logs,
            node.as_deref(),
            *json,
            *fill,
        ),
        Cmd::Report {
            month,
            structure,
            domain,
            all,
            out,
            format,
            lang,
        } => mss_sidecar::admin::report::report(
            &args.config,
            &mss_sidecar::admin::report::ReportArgs {
                month: month.clone(),
                structure: structure.clone(),
                domain: domain.clone(),
                all: *all,
                out: out.clone(),
                format: format.clone(),
                lang: lang.clone(),
            },
        ),
        Cmd::Structure(StructureCmd::Set {
            finess,
            name,
            contact,
        }) => mss_sidecar::admin::report::set(
            &args.config,
            finess,
            name.as_deref(),
            contact.as_deref(),
        ),
        Cmd::Central(CentralCmd::Migrate) => mss_sidecar::admin::central::migrate(&args.config),
        Cmd::Central(CentralCmd::Nodes { json }) => {
            mss_sidecar::admin::central::list(&args.config, *json)
        }
        Cmd::Central(CentralCmd::Purge) => mss_sidecar::admin::central::purge(&args.config),
        Cmd::Central(CentralCmd::ImportRegistry) => {
            mss_sidecar::admin::central::import_registry(&args.config)
        }
        Cmd::Central(CentralCmd::Retire { node }) => {
            mss_sidecar::admin::central::retire(&args.config, node)
        }
        Cmd::Structure(StructureCmd::List { json }) => {
            mss_sidecar::admin::report::list(&args.config, *json)
        }
        Cmd::Logins(LoginsCmd::Import { format, files }) => {
            mss_sidecar::admin::logins::import(&args.config, format, files)
        }
    })
}
