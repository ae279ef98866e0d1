//! The `ragchat` command line: the clap types, loading settings, and
//! dispatching to one module per command.

mod check;
mod collections;
mod delete_collection;
mod eval;
mod eval_answers;
mod extract_pdf;
mod ingest;
mod migrate;
mod query;
mod reindex;
mod serve;
mod user;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::app::{App, Role};
use crate::config::Settings;
use crate::error::Error;
use crate::telemetry;

#[derive(Parser)]
#[command(
    name = "ragchat",
    version,
    about = "A knowledge base you can search and chat with"
)]
struct Cli {
    /// Settings file (default: ./ragchat.toml if present; env RAGCHAT_CONFIG).
    #[arg(long, global = true, env = "RAGCHAT_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve {
        /// Address to listen on (overrides server.bind).
        #[arg(long)]
        bind: Option<String>,
        /// Development mode: without `auth.jwt_secret`, sign tokens with a
        /// random per-process secret (tokens end with the process).
        #[arg(long)]
        dev: bool,
    },
    /// Run job workers only, without the HTTP server: ingestion and crawls
    /// that scale apart from serving (see docs/ARCHITECTURE.md).
    Worker {
        /// Workers in this process (default `jobs.workers`, at least 1).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Ingest a file or directory (.txt, .md, .html, BEIR .jsonl) into a collection.
    Ingest {
        path: PathBuf,
        #[arg(long, short)]
        collection: String,
        /// Make the collection readable by every signed-in user.
        #[arg(long)]
        public: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Search from the terminal.
    Query {
        query: String,
        /// Collections to search (repeatable; default all).
        #[arg(long = "collection", short)]
        collections: Vec<String>,
        #[arg(long, default_value_t = 5)]
        top_k: i64,
        #[arg(long, default_value = "hybrid")]
        mode: String,
        /// `rrf` or `convex` (default: the collection's tuned or the configured one).
        #[arg(long)]
        fusion: Option<String>,
        /// Convex fusion: the dense signal's share, 0 to 1.
        #[arg(long)]
        alpha: Option<f32>,
        /// Print the JSON the HTTP API would return.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate retrieval on a BEIR-layout dataset.
    Eval(EvalArgs),
    /// Evaluate chat answers on a BEIR-layout dataset: citations against the
    /// judgments, refusals of answerable and of off-domain questions.
    EvalAnswers(EvalAnswersArgs),
    /// Rebuild the vector and full-text indexes from the database.
    Reindex,
    /// Verify that the database and both indexes agree.
    Check {
        /// Make the indexes agree with the database: remove entries whose
        /// chunk is gone, index chunks an index lacks.
        #[arg(long)]
        repair: bool,
        /// Apply the database's change log to the lexical index first (what
        /// any other command does at start); without it, the index is
        /// compared as it is on disk.
        #[arg(long)]
        catch_up: bool,
    },
    /// Delete a collection from the database and both indexes.
    DeleteCollection { name: String },
    /// List collections.
    Collections,
    /// Internal: extract one PDF (stdin) to text (stdout) under resource
    /// limits; the server runs it as a child process.
    #[command(hide = true, name = "extract-pdf")]
    ExtractPdf(extract_pdf::ExtractPdfArgs),
}

// A plain comment, not a doc comment: clap would take a doc comment for the
// command's help, which the `Eval` variant's gives.
#[derive(Args)]
struct EvalArgs {
    dir: PathBuf,
    #[arg(long, default_value = "test")]
    split: String,
    /// One or more of hybrid, dense, lexical (comma-separated).
    #[arg(long, default_value = "hybrid")]
    mode: String,
    /// Write a TREC run file (mode appended to the name when several modes run).
    #[arg(long)]
    run_out: Option<PathBuf>,
    /// Collection to ingest into (default eval-<dataset dir name>).
    #[arg(long)]
    collection: Option<String>,
    /// Chunks each signal returns per query.
    #[arg(long, default_value_t = 400)]
    candidates: usize,
    /// RRF weight of the dense signal.
    #[arg(long)]
    dense_weight: Option<f32>,
    /// RRF weight of the lexical signal.
    #[arg(long)]
    lexical_weight: Option<f32>,
    /// `rrf` or `convex` (default: the collection's tuned or the configured one).
    #[arg(long)]
    fusion: Option<String>,
    /// Convex fusion: the dense signal's share, 0 to 1.
    #[arg(long)]
    alpha: Option<f32>,
    /// Convex fusion: `min_max` or `theoretical_min`.
    #[arg(long)]
    normalization: Option<String>,
    /// How a document scores from its chunks: `max` (its best chunk) or
    /// `decay:D` (best + D × second + D² × third ...).
    #[arg(long, default_value = "max")]
    aggregate: String,
    /// Sweep the fusion parameters and report the cross-validated choice.
    #[arg(long)]
    tune: bool,
    /// With --tune: write every swept fusion's scores (tab-separated).
    #[arg(long, requires = "tune")]
    sweep_out: Option<PathBuf>,
    /// Cross-validation folds for --tune.
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// With --tune: store the parameters chosen on all judged queries on the
    /// collection, so searches of it use them.
    #[arg(long, requires = "tune")]
    store: bool,
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

#[derive(Args)]
struct EvalAnswersArgs {
    dir: PathBuf,
    #[arg(long, default_value = "test")]
    split: String,
    /// Collection to ingest into (default eval-<dataset dir name>).
    #[arg(long)]
    collection: Option<String>,
    /// Another BEIR set whose questions this collection cannot answer
    /// (repeatable).
    #[arg(long = "off-domain")]
    off_domain: Vec<PathBuf>,
    /// Questions per set (a stable sample); all when absent.
    #[arg(long)]
    limit: Option<usize>,
    /// Sources per answer (default chat.default_top_k).
    #[arg(long)]
    top_k: Option<i64>,
    /// Write each question's outcome as JSON lines.
    #[arg(long)]
    outcomes_out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user (prints it as JSON).
    Create {
        /// The username (or give it as --username).
        #[arg(required_unless_present = "username_flag")]
        username: Option<String>,
        #[arg(long = "username", conflicts_with = "username")]
        username_flag: Option<String>,
        /// Make the user an admin (bootstraps the first admin).
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        email: Option<String>,
        /// Read the password from the first line of stdin.
        #[arg(long, conflicts_with = "password")]
        password_stdin: bool,
        /// The password (visible to other local users in the process list;
        /// prefer --password-stdin).
        #[arg(long)]
        password: Option<String>,
    },
    /// Set a user's password (recovery when an admin is locked out); ends
    /// all of the user's sessions.
    SetPassword {
        username: String,
        #[arg(long, conflicts_with = "password")]
        password_stdin: bool,
        #[arg(long)]
        password: Option<String>,
    },
}

/// Parse the command line, run the command, and say how it ended: 0 on
/// success, 2 for unusable settings, 1 for any other error.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::ExtractPdf(args) = &cli.command {
        return extract_pdf::run(args);
    }
    if let Some(exe) = extract_pdf::this_executable() {
        crate::ingest::formats::extract_pdfs_in_child_processes(exe);
    }
    let settings = match load_settings(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let telemetry = telemetry::init(&settings.log, &settings.telemetry);
    let code = match run(cli.command, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

/// The settings file (explicit, or `./ragchat.toml` if present) with the
/// environment over it, and `serve`'s flags over both.
fn load_settings(cli: &Cli) -> Result<Settings, crate::config::ConfigError> {
    let (file, explicit) = match &cli.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from("ragchat.toml"), false),
    };
    let mut settings = Settings::load(Some(&file), explicit, std::env::vars())?;
    if let Command::Serve { bind, dev } = &cli.command {
        serve::prepare(&mut settings, bind.as_deref(), *dev)?;
    }
    Ok(settings)
}

async fn run(command: Command, settings: Settings) -> Result<(), Error> {
    // Database-only commands must not need models or the index locks, so they
    // work next to a running server.
    match command {
        Command::Migrate => return migrate::run(&settings).await,
        Command::User { command } => return user::run(command, &settings).await,
        _ => {}
    }
    let role = match command {
        Command::Worker { .. } => Role::Worker,
        _ => Role::Node,
    };
    let app = App::open(settings, role).await?;
    // `check` reports the lexical index as it stands on disk (`--catch-up`
    // brings it up to the log first, as `--repair` does before repairing);
    // `reindex` rebuilds it anyway.
    let as_found = match &command {
        Command::Check { catch_up, .. } => !catch_up,
        Command::Reindex => true,
        _ => false,
    };
    if !as_found {
        app.catch_up().await?;
    }
    let result = dispatch(command, &app).await;
    // Indexes are flushed on every exit path, error or not.
    let flushed = app.flush().await;
    result.and(flushed)
}

async fn dispatch(command: Command, app: &Arc<App>) -> Result<(), Error> {
    match command {
        Command::Serve { .. } => serve::run(app.clone()).await,
        Command::Worker { workers } => worker::run(app.clone(), workers).await,
        Command::Ingest {
            path,
            collection,
            public,
        } => ingest::run(app, &path, &collection, public).await,
        Command::Migrate | Command::User { .. } | Command::ExtractPdf(_) => Ok(()),
        Command::Query {
            query,
            collections,
            top_k,
            mode,
            fusion,
            alpha,
            json,
        } => {
            let req = crate::retrieve::SearchRequest {
                query,
                collections: (!collections.is_empty()).then_some(collections),
                top_k: Some(top_k),
                mode: Some(mode),
                fusion,
                alpha,
                ..Default::default()
            };
            query::run(app, req, json).await
        }
        Command::Eval(args) => eval::run(app, args).await,
        Command::EvalAnswers(args) => eval_answers::run(app, args).await,
        Command::Reindex => reindex::run(app).await,
        Command::Check { repair, .. } => check::run(app, repair).await,
        Command::DeleteCollection { name } => delete_collection::run(app, &name).await,
        Command::Collections => collections::run(app).await,
    }
}

/// A progress bar on stderr for `len` steps of `what`.
fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    let style = ProgressStyle::with_template(&format!(
        "{{spinner}} {what} [{{bar:40}}] {{pos}}/{{len}} ({{per_sec}}, eta {{eta}})"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    pb
}
