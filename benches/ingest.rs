//! Ingestion throughput against the raw embedder on the same chunks.
//!
//!     cargo bench --bench ingest -- [CORPUS.jsonl] [MAX_DOCS]
//!
//! Defaults to the SciFact corpus in the shared eval data. Ingests into a
//! fresh temporary data directory (clean → chunk → DB → embed → both indexes),
//! then embeds exactly the chunk texts that ingestion produced, with the same
//! session pool, and prints both rates. Prints numbers; asserts nothing.

use std::path::PathBuf;
use std::time::Instant;

use ragchat::app::{App, Role};
use ragchat::config::Settings;
use ragchat::db::{collections, documents};
use ragchat::eval::beir;
use ragchat::ingest::load::RawDocument;
use ragchat::ingest::pipeline::{self, embedding_text};

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    if let Err(e) = rt.block_on(run()) {
        eprintln!("bench failed: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let corpus = args
        .first()
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/eval/scifact-train/corpus.jsonl"));
    let max_docs: usize = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(usize::MAX);

    let tmp = tempfile::tempdir()?;
    let mut settings = Settings::load(None, false, std::env::vars())?;
    settings.data_dir = tmp.path().join("data");
    if std::env::var_os("RAGCHAT_MODELS_DIR").is_none() {
        settings.models_dir = root.join("models");
    }
    let app = App::open(settings, Role::Node).await?;

    let docs: Vec<RawDocument> = beir::load_corpus(&corpus)?
        .into_iter()
        .take(max_docs)
        .map(|d| RawDocument::from_beir(d, None))
        .collect();
    println!(
        "corpus {} ({} documents); embedding pool {} x {} thread(s), batch {}",
        corpus.display(),
        docs.len(),
        app.settings.embedding.pool_size,
        app.settings.embedding.threads_per_session,
        app.settings.embedding.batch_size
    );

    let collection = collections::ensure_collection(&app.db, "bench").await?;
    let report = pipeline::ingest(&app.indexer(), &collection, docs, &|_| {}).await?;
    println!(
        "ingest:        {} documents, {} chunks in {:.1} s = {:.1} chunks/s, {:.1} documents/s",
        report.documents,
        report.chunks_embedded,
        report.seconds,
        report.chunks_per_second(),
        report.documents as f64 / report.seconds
    );

    let mut texts = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = documents::chunks_page(&app.db, after.as_deref(), 4096).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.chunk.id.to_string());
        texts.extend(page.iter().map(|c| embedding_text(&c.title, &c.chunk.text)));
    }
    let n = texts.len();
    let started = Instant::now();
    let vectors = app.embedder.embed(texts).await?;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(vectors.len(), n);
    println!(
        "raw embedder:  {n} chunks in {secs:.1} s = {:.1} chunks/s",
        n as f64 / secs
    );
    println!(
        "ingestion runs at {:.0}% of the raw embedder's rate",
        100.0 * report.chunks_per_second() / (n as f64 / secs)
    );
    app.flush().await?;
    Ok(())
}
