//! Background work on the durable queue in `db::jobs`: workers that claim
//! jobs, keep their lease alive while they work, and record how each attempt
//! ended; the job kinds themselves; and the scheduler of periodic jobs.
//!
//! A job's steps are idempotent (ingestion diffs against the DB, ids are
//! derived from content), so an attempt that dies half way and is retried
//! converges on the state one clean attempt would have left.

pub mod crawl;
pub mod ingest;
pub mod schedule;
pub mod worker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::Value;

use crate::app::App;
use crate::db::jobs::{self, Job};
use crate::error::Error;

crate::text_enum! {
    /// The work this service knows how to do. The queue itself stores a
    /// job's kind as plain text and runs any kind a worker asks for, so a
    /// kind it does not know fails its job instead of the whole listing.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum JobKind ("job kind") {
        /// Ingest files uploaded through the API.
        IngestUpload = "ingest_upload",
        /// Crawl a site into a collection.
        Crawl = "crawl",
        /// Rebuild the vector index's search structures.
        Optimize = "optimize_index",
    }
}

pub const KIND_INGEST_UPLOAD: &str = JobKind::IngestUpload.as_str();
pub const KIND_CRAWL: &str = JobKind::Crawl.as_str();
pub const KIND_OPTIMIZE: &str = JobKind::Optimize.as_str();

/// How an attempt ended other than with a result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt (the DB or an index was unavailable, a page
    /// timed out).
    #[error("{0}")]
    Retryable(String),
    /// Retrying cannot help (the collection is gone, the payload is invalid).
    #[error("{0}")]
    Permanent(String),
    #[error("cancelled")]
    Cancelled,
    /// Another worker holds the job now; this one must write nothing more.
    #[error("lease lost")]
    LeaseLost,
    /// The process is stopping; the job goes back to the queue as it was.
    #[error("worker shutting down")]
    Shutdown,
}

impl From<Error> for JobError {
    fn from(e: Error) -> Self {
        match e {
            // Bad input and missing things stay so; refusals of other kinds
            // (auth, conflicts) may clear up.
            Error::Rejected { code, .. } if matches!(code.status(), 400 | 404) => {
                JobError::Permanent(e.to_string())
            }
            Error::InvalidField { .. }
            | Error::PayloadTooLarge(_)
            | Error::Load(_)
            | Error::Format(_)
            | Error::Config(_) => JobError::Permanent(e.to_string()),
            _ => JobError::Retryable(e.to_string()),
        }
    }
}

impl From<crate::db::DbError> for JobError {
    fn from(e: crate::db::DbError) -> Self {
        JobError::Retryable(e.to_string())
    }
}

/// What a running job can see and report through.
pub struct JobContext {
    pub app: Arc<App>,
    pub job: Job,
    worker_id: String,
    cancel: Arc<AtomicBool>,
    lost: Arc<AtomicBool>,
    shutdown: Arc<AtomicBool>,
}

impl JobContext {
    /// Err when the job should stop now: cancelled, lease lost or shutdown.
    /// Jobs call it between steps; each step is small enough (one batch of
    /// documents, one page) that stopping is prompt.
    pub fn checkpoint(&self) -> Result<(), JobError> {
        if self.lost.load(Ordering::Relaxed) {
            Err(JobError::LeaseLost)
        } else if self.cancel.load(Ordering::Relaxed) {
            Err(JobError::Cancelled)
        } else if self.shutdown.load(Ordering::Relaxed) {
            Err(JobError::Shutdown)
        } else {
            Ok(())
        }
    }

    /// Store progress for `GET /jobs/{id}` and the progress stream.
    pub async fn progress(&self, value: &Value) -> Result<(), JobError> {
        if jobs::report_progress(&self.app.db, &self.job.id, &self.worker_id, value).await? {
            Ok(())
        } else {
            self.lost.store(true, Ordering::Relaxed);
            Err(JobError::LeaseLost)
        }
    }

    pub fn payload(&self) -> Result<Value, JobError> {
        serde_json::from_str(&self.job.payload)
            .map_err(|e| JobError::Permanent(format!("unreadable job payload: {e}")))
    }
}

/// Start `workers` job workers and the scheduler of periodic jobs. The handle
/// completes once they have all stopped after `shutdown` turned true.
pub fn start(
    app: Arc<App>,
    workers: usize,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if workers == 0 {
            return;
        }
        let scheduler = tokio::spawn(schedule::run(app.clone(), shutdown.clone()));
        worker::run(app, workers, shutdown).await;
        let _ = scheduler.await;
    })
}
