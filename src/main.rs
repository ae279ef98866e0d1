//! The `ragchat` command line: serve, ingest, query, eval, reindex, check.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use ragchat::app::App;
use ragchat::auth;
use ragchat::config::Settings;
use ragchat::db::{collections, documents, Db};
use ragchat::eval::run::{self as eval_run, EvalOptions};
use ragchat::ingest::{load, pipeline};
use ragchat::retrieve::{self, Mode, SearchRequest, Weights};
use ragchat::{http, telemetry, Error};

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
        /// Print the JSON the HTTP API would return.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate retrieval on a BEIR-layout dataset.
    Eval {
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
        #[arg(long)]
        dense_weight: Option<f32>,
        #[arg(long)]
        lexical_weight: Option<f32>,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// Rebuild the vector and full-text indexes from the database.
    Reindex,
    /// Verify that the database and both indexes agree.
    Check,
    /// Delete a collection from the database and both indexes.
    DeleteCollection { name: String },
    /// List collections.
    Collections,
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

/// The password from the flag or the first line of stdin.
fn read_password(password: Option<String>, stdin: bool) -> Result<String, Error> {
    match (password, stdin) {
        (Some(p), _) => Ok(p),
        (None, true) => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| Error::Internal(format!("reading stdin: {e}")))?;
            Ok(line.trim_end_matches(['\r', '\n']).to_string())
        }
        (None, false) => Err(Error::invalid(
            "password_required",
            "give --password-stdin (or --password)",
        )),
    }
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    let style = ProgressStyle::with_template(&format!(
        "{{spinner}} {what} [{{bar:40}}] {{pos}}/{{len}} ({{per_sec}}, eta {{eta}})"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    pb
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let (file, explicit) = match &cli.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from("ragchat.toml"), false),
    };
    let mut settings = match Settings::load(Some(&file), explicit, std::env::vars()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::Serve { bind, dev } = &cli.command {
        if let Some(b) = bind {
            settings.server.bind = b.clone();
        }
        if let Err(e) = settings.validate() {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        match settings.jwt_secret(*dev) {
            // In dev mode the random secret is fixed here so the whole process
            // signs and verifies with the same one.
            Ok(secret) if settings.auth.jwt_secret.is_empty() => {
                eprintln!("warning: --dev: signing tokens with a random secret; they end with this process");
                settings.auth.jwt_secret = hex::encode(secret);
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
        if *dev {
            settings.auth.registration = "open".into();
        }
    }
    telemetry::init(&settings.log);
    match run(cli.command, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> Result<(), Error> {
    // Database-only commands must not need models or the index locks, so they
    // work next to a running server.
    match command {
        Command::Migrate => {
            let db = Db::connect(&settings).await?;
            println!("database schema is up to date ({})", db.backend());
            return Ok(());
        }
        Command::User { command } => return user_command(command, &settings).await,
        _ => {}
    }
    let app = App::open(settings).await?;
    let result = dispatch(command, &app).await;
    // Indexes are flushed on every exit path, error or not.
    let flushed = app.flush().await;
    result.and(flushed)
}

async fn dispatch(command: Command, app: &Arc<App>) -> Result<(), Error> {
    match command {
        Command::Serve { .. } => http::serve(app.clone()).await,
        Command::Worker { workers } => worker(app.clone(), workers).await,
        Command::Ingest {
            path,
            collection,
            public,
        } => ingest(app, &path, &collection, public).await,
        Command::Migrate | Command::User { .. } => Ok(()),
        Command::Query {
            query,
            collections,
            top_k,
            mode,
            json,
        } => {
            let req = SearchRequest {
                query,
                collections: (!collections.is_empty()).then_some(collections),
                top_k: Some(top_k),
                mode: Some(mode),
                dense_weight: None,
                lexical_weight: None,
            };
            // The terminal is the operator's: every collection is readable.
            let resp = retrieve::search(app, req, &auth::Access::All).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&resp)
                        .map_err(|e| Error::Internal(e.to_string()))?
                );
                return Ok(());
            }
            for r in &resp.results {
                let sig = |s: Option<retrieve::Signal>| {
                    s.map(|s| format!("#{} ({:.3})", s.rank, s.score))
                        .unwrap_or_else(|| "-".into())
                };
                println!(
                    "{:>2}. {:.4}  {}  [{}]  dense {}  lexical {}",
                    r.rank,
                    r.score,
                    r.title,
                    r.collection,
                    sig(r.dense),
                    sig(r.lexical)
                );
                println!("    {}", r.snippet.text.replace('\n', " "));
                println!("    document {} chunk {}", r.document_id, r.chunk_id);
            }
            println!("{} results in {:.1} ms", resp.results.len(), resp.took_ms);
            Ok(())
        }
        Command::Eval {
            dir,
            split,
            mode,
            run_out,
            collection,
            candidates,
            dense_weight,
            lexical_weight,
            concurrency,
        } => {
            let modes = mode
                .split(',')
                .map(|m| m.parse::<Mode>())
                .collect::<Result<Vec<_>, _>>()?;
            let r = &app.settings.retrieval;
            let opts = EvalOptions {
                dir,
                split,
                modes,
                collection,
                run_out,
                candidates,
                weights: Weights {
                    dense: dense_weight.unwrap_or(r.dense_weight),
                    lexical: lexical_weight.unwrap_or(r.lexical_weight),
                },
                concurrency,
            };
            eval(app, opts).await
        }
        Command::Reindex => {
            let total = documents::count_chunks(&app.db, None).await?;
            let pb = bar(total as u64, "reindex");
            let started = std::time::Instant::now();
            let n = pipeline::reindex(app, &|n| pb.set_position(n as u64)).await?;
            pb.finish_and_clear();
            println!(
                "reindexed {n} chunks in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Check => {
            let r = pipeline::check(app).await?;
            println!(
                "database {} chunks, vector index {} points, lexical index {} documents",
                r.db_chunks, r.vector_points, r.lexical_docs
            );
            let show = |what: &str, ids: &[String]| {
                if !ids.is_empty() {
                    let head: Vec<&str> = ids.iter().take(5).map(String::as_str).collect();
                    println!("  {what}: {} (e.g. {})", ids.len(), head.join(", "));
                }
            };
            show("missing in vector index", &r.missing_in_vector);
            show("missing in lexical index", &r.missing_in_lexical);
            show("orphans in vector index", &r.orphans_in_vector);
            show("orphans in lexical index", &r.orphans_in_lexical);
            if r.is_consistent() {
                println!("consistent");
                Ok(())
            } else {
                Err(Error::Unavailable(
                    "indexes differ from the database; run `ragchat reindex` to repair".into(),
                ))
            }
        }
        Command::DeleteCollection { name } => {
            let c = collections::collection_by_name(&app.db, &name)
                .await?
                .ok_or_else(|| {
                    Error::not_found(
                        "collection_not_found",
                        format!("no collection named `{name}`"),
                    )
                })?;
            pipeline::delete_collection(app, &c).await?;
            println!("deleted collection {name}");
            Ok(())
        }
        Command::Collections => {
            for c in collections::list_collections(&app.db).await? {
                let docs = documents::count_documents(&app.db, Some(&c.id)).await?;
                let chunks = documents::count_chunks(&app.db, Some(&c.id)).await?;
                println!("{}\t{docs} documents\t{chunks} chunks", c.name);
            }
            Ok(())
        }
    }
}

async fn user_command(command: UserCommand, settings: &Settings) -> Result<(), Error> {
    match command {
        UserCommand::Create {
            username,
            username_flag,
            admin,
            email,
            password_stdin,
            password,
        } => {
            let password = read_password(password, password_stdin)?;
            let username = username.or(username_flag).unwrap_or_default();
            let db = Db::connect(settings).await?;
            let role = if admin {
                auth::Role::Admin
            } else {
                auth::Role::User
            };
            let user = auth::create_user(
                &db,
                &username,
                &password,
                email.as_deref(),
                role,
                settings.auth.min_password_length,
            )
            .await?;
            println!("{}", http::accounts::user_json(&user));
            Ok(())
        }
        UserCommand::SetPassword {
            username,
            password_stdin,
            password,
        } => {
            let password = read_password(password, password_stdin)?;
            auth::check_password("password", &password, settings.auth.min_password_length)?;
            let db = Db::connect(settings).await?;
            let user = ragchat::db::accounts::user_by_username(&db, &username.to_lowercase())
                .await?
                .ok_or_else(|| {
                    Error::not_found("user_not_found", format!("no user `{username}`"))
                })?;
            let hash = auth::password::hash(&password).await?;
            ragchat::db::accounts::set_password(&db, &user.id, &hash).await?;
            println!(
                "password of `{}` changed; its sessions are ended",
                user.username
            );
            Ok(())
        }
    }
}

async fn ingest(
    app: &Arc<App>,
    path: &std::path::Path,
    collection: &str,
    public: bool,
) -> Result<(), Error> {
    if collection.trim().is_empty() {
        return Err(Error::invalid(
            "unknown_collection",
            "collection name must not be empty",
        ));
    }
    let p = path.to_path_buf();
    let docs = tokio::task::spawn_blocking(move || load::load_path(&p))
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
    let c = collections::ensure_collection(&app.db, collection).await?;
    if public && !c.public {
        ragchat::db::collections::update_collection(
            &app.db,
            &c.id,
            ragchat::db::collections::CollectionChanges {
                public: Some(true),
                ..Default::default()
            },
        )
        .await?;
    }
    let pb = bar(docs.len() as u64, "ingest");
    let report = pipeline::ingest(app, &c, docs, &|n| pb.set_position(n as u64)).await?;
    pb.finish_and_clear();
    println!(
        "ingested {} documents into `{collection}` ({} new, {} updated, {} unchanged, {} empty): \
         {} chunks embedded, {} kept, {} deleted in {:.1} s ({:.1} chunks/s)",
        report.documents,
        report.added,
        report.updated,
        report.unchanged,
        report.skipped_empty,
        report.chunks_embedded,
        report.chunks_kept,
        report.chunks_deleted,
        report.seconds,
        report.chunks_per_second()
    );
    Ok(())
}

async fn eval(app: &Arc<App>, opts: EvalOptions) -> Result<(), Error> {
    let pb = bar(0, "ingest corpus");
    let prepared = eval_run::prepare(app, &opts, &|n, total| {
        pb.set_length(total as u64);
        pb.set_position(n as u64);
    })
    .await?;
    pb.finish_and_clear();
    if let Some(r) = &prepared.ingest {
        println!(
            "ingested {} documents: {} chunks in {:.1} s ({:.1} chunks/s)",
            r.documents,
            r.chunks_embedded,
            r.seconds,
            r.chunks_per_second()
        );
    }
    let chunks = documents::count_chunks(&app.db, Some(&prepared.collection_id)).await?;
    println!(
        "dataset {} split {}: {} documents, {} chunks, {} judged queries; candidates {} per signal, weights dense {} lexical {}, rrf k {}",
        opts.dir.display(),
        opts.split,
        prepared.doc_names.len(),
        chunks,
        prepared.dataset.queries.len(),
        opts.candidates,
        opts.weights.dense,
        opts.weights.lexical,
        app.settings.retrieval.rrf_k
    );
    println!(
        "{:<8} {:>8} {:>11} {:>8} {:>9}",
        "mode", "nDCG@10", "recall@100", "MRR@10", "queries/s"
    );
    for &mode in &opts.modes {
        let (result, run) = eval_run::run_mode(app, &prepared, &opts, mode).await?;
        let s = result.scores;
        println!(
            "{:<8} {:>8.4} {:>11.4} {:>8.4} {:>9.1}",
            eval_run::mode_name(mode),
            s.ndcg_at_10,
            s.recall_at_100,
            s.mrr_at_10,
            s.queries as f64 / result.seconds.max(1e-9)
        );
        if let Some(path) = &opts.run_out {
            let written = eval_run::write_run_file(path, mode, opts.modes.len() > 1, &run)?;
            println!("         run file: {}", written.display());
        }
    }
    Ok(())
}

/// Run job workers until SIGINT or SIGTERM; the job in progress goes back to
/// the queue at its next checkpoint.
async fn worker(app: Arc<App>, workers: Option<usize>) -> Result<(), Error> {
    let n = workers.unwrap_or(app.settings.jobs.workers).max(1);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let handle = ragchat::jobs::start(app.clone(), n, stopped);
    println!("ragchat worker running {n} job worker(s)");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::Internal(e.to_string()))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping job workers");
    let _ = stop.send(true);
    let _ = handle.await;
    app.flush().await
}
