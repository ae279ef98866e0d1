//! `ragchat eval`: ingest a BEIR corpus into its own collection (skipped when
//! the corpus and chunking are unchanged), run every judged query, map chunk
//! hits to documents (a document ranks at its best chunk) and score the run.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures::stream::{self, StreamExt};
use sha2::{Digest, Sha256};

use super::beir::{self, BeirDataset};
use super::metrics::{evaluate, Scores};
use super::trec::write_run;
use crate::app::App;
use crate::db::collections;
use crate::db::collections::Collection;
use crate::db::documents;
use crate::error::{Error, ErrorCode, Result};
use crate::ids::{CollectionId, DocumentId};
use crate::ingest::load::RawDocument;
use crate::ingest::pipeline::{self, IngestReport};
use crate::retrieve::fusion::{self, Aggregation};
use crate::retrieve::{fusion_for, rank, Fusion, FusionOverrides, Mode};

/// One query's ranking: documents with scores, best first.
pub type QueryRun = (String, Vec<(String, f32)>);

/// Documents per ranking: recall@100 needs 100 distinct documents.
pub const DOCS_PER_QUERY: usize = 100;

#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub dir: PathBuf,
    pub split: String,
    pub modes: Vec<Mode>,
    pub collection: Option<String>,
    pub run_out: Option<PathBuf>,
    /// Chunks each signal returns per query.
    pub candidates: usize,
    /// Fusion parameters set on the command line; the rest come from the
    /// collection's tuned values or the configuration.
    pub fusion: FusionOverrides,
    /// How chunk scores make a document's score.
    pub aggregation: Aggregation,
    pub concurrency: usize,
}

#[derive(Debug, Clone)]
pub struct EvalResult {
    pub mode: Mode,
    pub scores: Scores,
    pub seconds: f64,
}

pub struct Prepared {
    pub dataset: BeirDataset,
    pub collection_id: CollectionId,
    pub collection: String,
    /// The collection as it was after ingestion (with its tuned fusion).
    pub record: Collection,
    pub ingest: Option<IngestReport>,
    pub doc_names: HashMap<DocumentId, String>,
}

fn file_sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::new(ErrorCode::BadDataset, format!("{}: {e}", path.display())))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// Load the dataset and make sure its corpus is ingested.
pub async fn prepare(
    app: &Arc<App>,
    opts: &EvalOptions,
    progress: &(dyn Fn(usize, usize) + Send + Sync),
) -> Result<Prepared> {
    let dataset = BeirDataset::open(&opts.dir, &opts.split)
        .map_err(|e| Error::new(ErrorCode::BadDataset, e.to_string()))?;
    let name = match &opts.collection {
        Some(n) => n.clone(),
        None => {
            let base = opts
                .dir
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|s| s.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "beir".into());
            format!("eval-{base}")
        }
    };
    let marker = format!(
        "eval corpus sha256 {} {}",
        file_sha256(&dataset.corpus_path)?,
        app.chunker.signature()
    );
    let collection = collections::ensure_collection(&app.db, &name).await?;
    let mut ingest = None;
    let has_docs = documents::count_documents(&app.db, Some(&collection.id)).await? > 0;
    if collection.description != marker || !has_docs {
        let docs: Vec<RawDocument> = beir::load_corpus(&dataset.corpus_path)
            .map_err(|e| Error::new(ErrorCode::BadDataset, e.to_string()))?
            .into_iter()
            .map(|d| RawDocument::from_beir(d, None))
            .collect();
        let total = docs.len();
        let report =
            pipeline::ingest(&app.indexer(), &collection, docs, &|n| progress(n, total)).await?;
        collections::set_collection_description(&app.db, &collection.id, &marker).await?;
        ingest = Some(report);
    }
    let record = collections::collection_by_id(&app.db, &collection.id)
        .await?
        .unwrap_or(collection.clone());
    let doc_names = documents::document_sources(&app.db, &collection.id)
        .await?
        .into_iter()
        .collect();
    Ok(Prepared {
        dataset,
        collection_id: collection.id.clone(),
        collection: name,
        record,
        ingest,
        doc_names,
    })
}

/// The fusion `run_mode` uses: the command line's values over the
/// collection's tuned ones or the configuration's.
pub fn fusion_of(app: &App, prepared: &Prepared, opts: &EvalOptions) -> Fusion {
    fusion_for(
        &app.settings.retrieval,
        std::slice::from_ref(&prepared.record),
        &opts.fusion,
    )
}

/// Run every judged query in one mode; returns the scores and the run
/// (query id → documents with scores, best first).
pub async fn run_mode(
    app: &Arc<App>,
    prepared: &Prepared,
    opts: &EvalOptions,
    mode: Mode,
) -> Result<(EvalResult, Vec<QueryRun>)> {
    let started = Instant::now();
    let cols = [prepared.collection_id.clone()];
    let fusion = fusion_of(app, prepared, opts);
    let results: Vec<Result<QueryRun>> = stream::iter(prepared.dataset.queries.iter())
        .map(|q| async {
            let fused = rank(app, &q.text, &cols, mode, opts.candidates, &fusion).await?;
            let docs: Vec<(String, f32)> = fusion::documents(&fused, opts.aggregation, usize::MAX)
                .into_iter()
                .filter_map(|(d, score)| {
                    prepared.doc_names.get(&d).map(|name| (name.clone(), score))
                })
                .take(DOCS_PER_QUERY)
                .collect();
            Ok((q.id.clone(), docs))
        })
        .buffered(opts.concurrency.max(1))
        .collect()
        .await;
    let run: Vec<QueryRun> = results.into_iter().collect::<Result<_>>()?;
    let ranked: HashMap<String, Vec<String>> = run
        .iter()
        .map(|(q, docs)| (q.clone(), docs.iter().map(|(d, _)| d.clone()).collect()))
        .collect();
    let scores = evaluate(&ranked, &prepared.dataset.qrels);
    Ok((
        EvalResult {
            mode,
            scores,
            seconds: started.elapsed().as_secs_f64(),
        },
        run,
    ))
}

/// Write a TREC run file; with several modes the mode is added to the name.
pub fn write_run_file(path: &Path, mode: Mode, several: bool, run: &[QueryRun]) -> Result<PathBuf> {
    let path = if several {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ext = path
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        path.with_file_name(format!("{stem}.{}{ext}", mode_name(mode)))
    } else {
        path.to_path_buf()
    };
    let io =
        |e: std::io::Error| Error::new(ErrorCode::BadRunFile, format!("{}: {e}", path.display()));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).map_err(io)?);
    write_run(&mut f, run, &format!("ragchat-{}", mode_name(mode))).map_err(io)?;
    f.flush().map_err(io)?;
    Ok(path)
}

pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Hybrid => "hybrid",
        Mode::Dense => "dense",
        Mode::Lexical => "lexical",
    }
}
