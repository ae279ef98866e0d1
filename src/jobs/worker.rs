//! The worker loop: claim a job, keep its lease alive from a side task while
//! the job runs, record how the attempt ended, clean up after finished jobs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use super::{crawl, ingest, JobContext, JobError, JobKind, KIND_INGEST_UPLOAD};
use crate::app::App;
use crate::db::jobs::{self, Job, JobState, RetryPolicy};
use crate::metrics::{JobLabels, KindLabels};

/// Unique per worker and process, as the lease fence requires.
fn worker_id(index: usize) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let nonce: u32 = rand::random();
    format!("{host}-{}-{index}-{nonce:08x}", std::process::id())
}

/// Run `count` workers until `shutdown` turns true. A job in progress at
/// shutdown stops at its next checkpoint and goes back to the queue.
pub async fn run(app: Arc<App>, count: usize, shutdown: watch::Receiver<bool>) {
    register_metrics(&app);
    let handles: Vec<_> = (0..count)
        .map(|i| tokio::spawn(worker_loop(app.clone(), worker_id(i), shutdown.clone())))
        .collect();
    for h in handles {
        let _ = h.await;
    }
}

async fn worker_loop(app: Arc<App>, id: String, mut shutdown: watch::Receiver<bool>) {
    let settings = app.settings.jobs.clone();
    let lease = Duration::from_secs(settings.lease_secs);
    let idle = Duration::from_millis(settings.poll_interval_ms);
    tracing::info!(worker = %id, "job worker started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        let wait = match jobs::claim(&app.db, &id, lease, None).await {
            Ok(Some(job)) => {
                run_job(&app, &id, job, &shutdown).await;
                continue;
            }
            Ok(None) => idle,
            Err(e) => {
                tracing::warn!(worker = %id, "cannot claim jobs: {e}");
                idle * 10
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
    tracing::info!(worker = %id, "job worker stopped");
}

/// Every job series at zero before the first job ends: Prometheus's
/// `rate()` sees an increase only from a sample that was there before, so a
/// series born at 1 (the first job of its kind) would never show.
fn register_metrics(app: &App) {
    let m = &app.metrics;
    for kind in JobKind::ALL {
        let kind = kind.as_str().to_string();
        let _ = m
            .job_duration
            .get_or_create(&KindLabels { kind: kind.clone() });
        for outcome in [
            "succeeded",
            "failed",
            "retry",
            "cancelled",
            "dead",
            "lease_lost",
        ] {
            let _ = m.jobs_finished.get_or_create(&JobLabels {
                kind: kind.clone(),
                outcome,
            });
        }
    }
}

/// One attempt at `job`, from claim to a recorded end.
pub async fn run_job(app: &Arc<App>, worker: &str, job: Job, shutdown: &watch::Receiver<bool>) {
    let lease = Duration::from_secs(app.settings.jobs.lease_secs);
    let ctx = JobContext {
        app: app.clone(),
        job: job.clone(),
        worker_id: worker.to_string(),
        cancel: Arc::new(AtomicBool::new(job.cancel_requested)),
        lost: Arc::new(AtomicBool::new(false)),
        shutdown: Arc::new(AtomicBool::new(false)),
    };
    tracing::info!(job = %job.id, kind = %job.kind, attempt = job.attempts, "job started");

    // Renew a third of the way into each lease, and learn about cancels and
    // shutdown on the way; the job reads the flags at its checkpoints.
    let _keeper = {
        let (app, worker, id) = (app.clone(), worker.to_string(), job.id.clone());
        let (cancel, lost, stop) = (ctx.cancel.clone(), ctx.lost.clone(), ctx.shutdown.clone());
        let mut shutdown = shutdown.clone();
        AbortOnDrop(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(lease / 3) => {}
                    _ = shutdown.changed() => {}
                }
                if *shutdown.borrow() {
                    stop.store(true, Ordering::Relaxed);
                }
                match jobs::renew(&app.db, &id, &worker, lease).await {
                    Ok(true) => {}
                    Ok(false) => {
                        lost.store(true, Ordering::Relaxed);
                        break;
                    }
                    // A DB hiccup: the lease has two more thirds to go.
                    Err(e) => tracing::warn!(job = %id, "cannot renew lease: {e}"),
                }
                if let Ok(true) = jobs::is_cancel_requested(&app.db, &id).await {
                    cancel.store(true, Ordering::Relaxed);
                }
            }
        }))
    };

    let kind = job.kind.parse();
    let kind_label = match &kind {
        Ok(k) => JobKind::as_str(*k),
        Err(_) => "unknown",
    };
    let started = std::time::Instant::now();
    let outcome = isolated(async move {
        match kind {
            Ok(JobKind::IngestUpload) => ingest::run(&ctx).await,
            Ok(JobKind::Crawl) => crawl::run(&ctx).await,
            Ok(JobKind::Optimize) => optimize(&ctx).await,
            Err(_) => Err(JobError::Permanent(format!(
                "unknown job kind `{}`",
                ctx.job.kind
            ))),
        }
    })
    .await;
    let end = record(app, worker, &job, outcome).await;
    let m = &app.metrics;
    m.job_duration
        .get_or_create(&KindLabels {
            kind: kind_label.to_string(),
        })
        .observe(started.elapsed().as_secs_f64());
    let outcome = match end {
        Some(JobState::Queued) => "retry",
        Some(state) => state.as_str(),
        None => "lease_lost",
    };
    m.jobs_finished
        .get_or_create(&JobLabels {
            kind: kind_label.to_string(),
            outcome,
        })
        .inc();
    if let Some(state) = end {
        tracing::info!(job = %job.id, state = state.as_str(), "job attempt ended");
        if state.is_finished() {
            cleanup(app, &job).await;
        }
    }
}

/// Stops the lease keeper however the attempt ends: a keeper left running
/// would hold the job `running` forever.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Run a job in a task of its own, so that a panic in it fails that job,
/// with the panic's message, instead of taking the worker down with it.
async fn isolated<F>(job: F) -> Result<Value, JobError>
where
    F: std::future::Future<Output = Result<Value, JobError>> + Send + 'static,
{
    match tokio::spawn(job).await {
        Ok(outcome) => outcome,
        Err(e) if e.is_panic() => {
            let panic = e.into_panic();
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(JobError::Permanent(format!("the job panicked: {message}")))
        }
        // Aborted: only when the runtime shuts down under it.
        Err(e) => Err(JobError::Retryable(format!("the job's task ended: {e}"))),
    }
}

/// Write how the attempt ended; the resulting state, or None if the lease
/// was lost (another worker owns the job and its record).
async fn record(
    app: &App,
    worker: &str,
    job: &Job,
    outcome: Result<Value, JobError>,
) -> Option<JobState> {
    let s = &app.settings.jobs;
    let policy = RetryPolicy {
        base: Duration::from_secs(s.retry_base_secs),
        max: Duration::from_secs(s.retry_max_secs),
        jitter: true,
    };
    let db = &app.db;
    let written = match outcome {
        Ok(result) => jobs::complete(db, &job.id, worker, &result)
            .await
            .map(|ok| ok.then_some(JobState::Succeeded)),
        Err(JobError::Cancelled) => jobs::finish_cancelled(db, &job.id, worker)
            .await
            .map(|ok| ok.then_some(JobState::Cancelled)),
        Err(JobError::LeaseLost) => Ok(None),
        Err(JobError::Shutdown) => jobs::release(db, &job.id, worker)
            .await
            .map(|ok| ok.then_some(JobState::Queued)),
        Err(JobError::Permanent(msg)) => {
            tracing::warn!(job = %job.id, "job failed: {msg}");
            jobs::fail(db, &job.id, worker, &msg, true, &policy).await
        }
        Err(JobError::Retryable(msg)) => {
            tracing::warn!(job = %job.id, attempt = job.attempts, "job attempt failed: {msg}");
            jobs::fail(db, &job.id, worker, &msg, false, &policy).await
        }
    };
    match written {
        Ok(state) => state,
        Err(e) => {
            // The lease will lapse and the job be retried: safe, if slower.
            tracing::error!(job = %job.id, "cannot record the job's end: {e}");
            None
        }
    }
}

/// Files a finished job no longer needs.
pub async fn cleanup(app: &App, job: &Job) {
    if job.kind == KIND_INGEST_UPLOAD {
        ingest::remove_upload(app, job).await;
    }
}

async fn optimize(ctx: &JobContext) -> Result<Value, JobError> {
    let started = std::time::Instant::now();
    ctx.app
        .vectors
        .optimize()
        .await
        .map_err(|e| JobError::Retryable(e.to_string()))?;
    ctx.app
        .vectors
        .flush()
        .await
        .map_err(|e| JobError::Retryable(e.to_string()))?;
    Ok(serde_json::json!({ "seconds": started.elapsed().as_secs_f64() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_job_fails_with_its_message_and_the_worker_goes_on() {
        let outcome = isolated(async {
            let v: Vec<u8> = Vec::new();
            // A real panic, as an out-of-range date or index would raise.
            let _ = v[usize::from(v.is_empty())];
            Ok(Value::Null)
        })
        .await;
        match outcome {
            Err(JobError::Permanent(m)) => {
                assert!(
                    m.starts_with("the job panicked: index out of bounds"),
                    "{m}"
                )
            }
            other => panic!("expected a permanent failure, got {other:?}"),
        }
        let fine = isolated(async { Ok(serde_json::json!({"ok": true})) }).await;
        assert!(matches!(fine, Ok(v) if v["ok"] == true));
    }

    #[tokio::test]
    async fn the_lease_keeper_stops_when_its_guard_drops() {
        let keeper = tokio::spawn(std::future::pending::<()>());
        let abort = keeper.abort_handle();
        drop(AbortOnDrop(keeper));
        tokio::task::yield_now().await;
        assert!(abort.is_finished());
    }
}
