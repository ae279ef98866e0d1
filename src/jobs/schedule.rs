//! Periodic work, put on the same queue as everything else: index
//! optimisation, and the sweep of upload files nobody needs any more.
//! Re-crawls schedule themselves (see `crawl`).
//!
//! Every process with workers runs this loop; dedupe keys keep a periodic job
//! single however many schedulers enqueue it.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use tokio::sync::watch;

use super::ingest::UploadPayload;
use super::KIND_OPTIMIZE;
use crate::app::App;
use crate::db::jobs::{self, JobFilter, JobState, NewJob};
use crate::db::now;

const TICK: Duration = Duration::from_secs(60);
/// Upload directories younger than this are left alone: their job may be
/// being enqueued right now.
const UPLOAD_GRACE: Duration = Duration::from_secs(3600);

pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if let Err(e) = tick(&app).await {
            tracing::warn!("scheduler: {e}");
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
    }
}

async fn tick(app: &App) -> Result<(), crate::Error> {
    let every = app.settings.jobs.optimize_interval_secs;
    if every > 0 {
        let mut job = NewJob::new(KIND_OPTIMIZE, serde_json::json!({}));
        job.dedupe_key = Some(KIND_OPTIMIZE.into());
        // The setting is bounded when read; checked anyway, as a panic
        // here would stop the scheduler for good.
        job.run_after = i64::try_from(every)
            .ok()
            .and_then(TimeDelta::try_seconds)
            .and_then(|d| now().checked_add_signed(d));
        jobs::enqueue(&app.db, job).await?;
    }
    sweep_uploads(app).await
}

/// Remove upload directories that no live job refers to (the job finished
/// and its worker died before cleaning up, or the upload failed half way).
async fn sweep_uploads(app: &App) -> Result<(), crate::Error> {
    let root = app.settings.uploads_dir();
    let Ok(mut entries) = tokio::fs::read_dir(&root).await else {
        return Ok(());
    };
    let mut live = std::collections::HashSet::new();
    for state in [JobState::Queued, JobState::Running] {
        let filter = JobFilter {
            state: Some(state),
            kind: Some(super::KIND_INGEST_UPLOAD.into()),
            collection_id: None,
        };
        let mut cursor = None;
        loop {
            let page = jobs::list(&app.db, &filter, cursor, 500).await?;
            for j in &page {
                if let Ok(p) = serde_json::from_str::<UploadPayload>(&j.payload) {
                    live.insert(p.upload_id);
                }
            }
            match page.last() {
                Some(last) if page.len() == 500 => {
                    cursor = Some((last.created_at, last.id.to_string()))
                }
                _ => break,
            }
        }
    }
    while let Ok(Some(entry)) = entries.next_entry().await {
        let name = entry.file_name().to_string_lossy().into_owned();
        if live.contains(&name) || uuid::Uuid::parse_str(&name).is_err() {
            continue;
        }
        let old = entry
            .metadata()
            .await
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > UPLOAD_GRACE);
        if old {
            let _ = tokio::fs::remove_dir_all(entry.path()).await;
        }
    }
    Ok(())
}
