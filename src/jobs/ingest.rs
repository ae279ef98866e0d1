//! The `ingest_upload` job: load the uploaded files, screen their documents
//! (cleaning, quality, duplicates), and ingest what passes in batches, with
//! progress after every batch and a checkpoint before the next.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{JobContext, JobError};
use crate::app::App;
use crate::config::UploadSettings;
use crate::db::collections::Collection;
use crate::db::{collections, documents};
use crate::ingest::formats::{self, Limits, PdfLimits};
use crate::ingest::load::RawDocument;
use crate::ingest::pipeline::{self, IngestReport};
use crate::ingest::screen::{Screener, SkipReason, SkippedDoc};

/// Documents per pipeline call: small enough that progress moves and a
/// cancel is honoured within seconds, large enough to batch embeddings well.
const BATCH: usize = 64;

/// Skipped documents listed by name in the result (all are counted).
const MAX_LISTED: usize = 1000;

/// One uploaded file as the job payload records it; `file` is relative to the
/// upload's directory, so a worker with the data directory mounted elsewhere
/// still finds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadedFile {
    pub name: String,
    pub file: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadPayload {
    pub upload_id: String,
    pub files: Vec<UploadedFile>,
}

/// Where an upload's files wait for their job.
pub fn upload_dir(app: &App, upload_id: &str) -> PathBuf {
    app.settings.uploads_dir().join(upload_id)
}

/// Remove a finished job's files (best effort: the periodic sweep retries).
pub async fn remove_upload(app: &App, job: &crate::db::jobs::Job) {
    let Ok(payload) = serde_json::from_str::<UploadPayload>(&job.payload) else {
        return;
    };
    // The id is ours (a UUID), but never let a payload point outside uploads/.
    if uuid::Uuid::parse_str(&payload.upload_id).is_err() {
        return;
    }
    let dir = upload_dir(app, &payload.upload_id);
    if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("cannot remove {}: {e}", dir.display());
        }
    }
}

pub fn limits(u: &UploadSettings) -> Limits {
    Limits {
        max_entries: u.zip_max_entries,
        max_total_bytes: u.zip_max_total_bytes,
        max_entry_bytes: u.zip_max_entry_bytes,
        max_ratio: u.zip_max_ratio,
        pdf: PdfLimits {
            max_decompressed_bytes: u.pdf_max_decompressed_bytes,
            max_memory_bytes: u.pdf_max_memory_bytes,
            timeout: std::time::Duration::from_secs(u.pdf_timeout_secs),
        },
        ..Limits::default()
    }
}

/// Counts and lists for progress and the result.
#[derive(Default)]
struct Tally {
    started: Option<Instant>,
    files_total: usize,
    files_done: usize,
    bytes_total: u64,
    bytes_done: u64,
    documents_seen: usize,
    documents_done: usize,
    report: IngestReport,
    skipped: Vec<SkippedDoc>,
    skipped_counts: std::collections::BTreeMap<&'static str, usize>,
    errors: Vec<Value>,
}

impl Tally {
    fn skip(&mut self, s: SkippedDoc) {
        *self.skipped_counts.entry(s.reason.as_str()).or_default() += 1;
        self.documents_done += 1;
        if self.skipped.len() < MAX_LISTED {
            self.skipped.push(s);
        }
    }

    fn json(&self, phase: &str) -> Value {
        let secs = self.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let rate = |n: usize| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let mut counts = serde_json::Map::new();
        for r in SkipReason::ALL {
            let n = self.skipped_counts.get(r.as_str()).copied().unwrap_or(0);
            counts.insert(r.as_str().into(), json!(n));
        }
        json!({
            "phase": phase,
            "files_total": self.files_total,
            "files_done": self.files_done,
            "bytes_total": self.bytes_total,
            "bytes_done": self.bytes_done,
            "documents_total": self.documents_seen,
            "documents_done": self.documents_done,
            "documents_added": self.report.added,
            "documents_updated": self.report.updated,
            "documents_unchanged": self.report.unchanged,
            "chunks_embedded": self.report.chunks_embedded,
            "chunks_kept": self.report.chunks_kept,
            "chunks_deleted": self.report.chunks_deleted,
            "skipped": counts,
            "errors": self.errors,
            "elapsed_secs": secs,
            "documents_per_sec": rate(self.documents_done),
            "chunks_per_sec": rate(self.report.chunks_embedded),
        })
    }
}

pub async fn run(ctx: &JobContext) -> Result<Value, JobError> {
    let app = &ctx.app;
    let payload: UploadPayload = serde_json::from_value(ctx.payload()?)
        .map_err(|e| JobError::Permanent(format!("unreadable upload payload: {e}")))?;
    let collection_id = ctx
        .job
        .collection_id
        .clone()
        .ok_or_else(|| JobError::Permanent("upload job without a collection".into()))?;
    let collection = collections::collection_by_id(&app.db, &collection_id)
        .await?
        .ok_or_else(|| JobError::Permanent("the collection was deleted".into()))?;
    let dir = upload_dir(app, &payload.upload_id);
    // The receiving node wrote the files before enqueueing, and they go only
    // when the job has finished; missing here, this worker does not see the
    // node's directory. Another worker may, so the job goes back to the queue.
    if !tokio::fs::try_exists(&dir).await.unwrap_or(false) {
        return Err(JobError::Retryable(format!(
            "upload directory {} is not on this worker: every API node and worker \
             must share uploads.dir",
            dir.display()
        )));
    }

    let mut t = Tally {
        started: Some(Instant::now()),
        files_total: payload.files.len(),
        bytes_total: payload.files.iter().map(|f| f.bytes).sum(),
        ..Tally::default()
    };
    ctx.progress(&t.json("screening")).await?;
    let mut screener = Screener::for_collection(&app.db, &collection.id, &app.settings.cleaning)
        .await
        .map_err(JobError::from)?;
    let limits = limits(&app.settings.uploads);

    for file in &payload.files {
        ctx.checkpoint()?;
        let Some(docs) = load_file(&dir, file, limits, &mut t).await? else {
            continue;
        };
        ctx.progress(&t.json("indexing")).await?;
        screener = ingest_documents(ctx, &collection, screener, docs, &mut t).await?;
        t.files_done += 1;
        t.bytes_done += file.bytes;
    }
    ctx.checkpoint()?;
    ctx.progress(&t.json("optimizing")).await?;
    pipeline::optimize_after(&app.indexer(), &t.report)
        .await
        .map_err(JobError::from)?;

    if t.errors.len() == payload.files.len() && t.report.documents == 0 {
        let first = t.errors.first().cloned().unwrap_or_default();
        return Err(JobError::Permanent(format!(
            "no file could be read; first error: {}",
            first["error"].as_str().unwrap_or("unknown")
        )));
    }
    let mut result = t.json("done");
    result["skipped_documents"] = json!(t.skipped);
    Ok(result)
}

/// The documents of one uploaded file, or None when it cannot be read (then
/// it is counted as done and reported, and the upload goes on).
async fn load_file(
    dir: &Path,
    file: &UploadedFile,
    limits: Limits,
    t: &mut Tally,
) -> Result<Option<Vec<RawDocument>>, JobError> {
    let path = dir.join(&file.file);
    if !path.is_file() {
        return Err(JobError::Permanent(format!(
            "uploaded file {} is gone from {}",
            file.name,
            dir.display()
        )));
    }
    let name = file.name.clone();
    let loaded = tokio::task::spawn_blocking(move || formats::load(&path, &name, &limits))
        .await
        .map_err(|e| JobError::Retryable(e.to_string()))?;
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            // One bad file does not sink the upload; it is reported.
            t.errors
                .push(json!({"source": file.name, "error": e.reason()}));
            t.skip(SkippedDoc {
                source: file.name.clone(),
                reason: SkipReason::Unreadable,
                detail: e.reason(),
                duplicate_of: None,
                similarity: None,
            });
            t.documents_seen += 1;
            t.files_done += 1;
            t.bytes_done += file.bytes;
            return Ok(None);
        }
    };
    t.documents_seen += loaded.documents.len() + loaded.skipped.len();
    for s in loaded.skipped {
        t.skip(SkippedDoc {
            source: s.source,
            reason: SkipReason::Unsupported,
            detail: s.reason,
            duplicate_of: None,
            similarity: None,
        });
    }
    Ok(Some(loaded.documents))
}

/// Screen and ingest `docs` in batches of [`BATCH`], with progress after
/// each and a checkpoint before the next; the screener back.
async fn ingest_documents(
    ctx: &JobContext,
    collection: &Collection,
    mut screener: Screener,
    mut docs: Vec<RawDocument>,
    t: &mut Tally,
) -> Result<Screener, JobError> {
    while !docs.is_empty() {
        ctx.checkpoint()?;
        let rest = docs.split_off(docs.len().min(BATCH));
        let batch = std::mem::replace(&mut docs, rest);
        let (screened, back) = tokio::task::spawn_blocking(move || {
            let s = screener.screen(batch);
            (s, screener)
        })
        .await
        .map_err(|e| JobError::Retryable(e.to_string()))?;
        screener = back;
        let n_accepted = screened.accepted.len();
        for s in screened.skipped {
            t.skip(s);
        }
        if n_accepted > 0 {
            let report =
                pipeline::ingest_batch(&ctx.app.indexer(), collection, screened.accepted, &|_| {})
                    .await?;
            // After the documents exist (the signatures reference them);
            // a crash in between is mended by the retry, which re-screens
            // the unchanged documents and stores their signatures then.
            documents::save_signatures(&ctx.app.db, screened.signatures).await?;
            t.report.absorb(&report);
        }
        t.documents_done += n_accepted;
        ctx.progress(&t.json("indexing")).await?;
    }
    Ok(screener)
}
