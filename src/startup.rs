//! Starting and stopping the long-running commands: the HTTP server with its
//! job workers, scheduler and lexical log follower (`serve`), or job workers
//! alone (`worker`). The indexes are flushed here at shutdown, so `http`
//! only serves HTTP and `jobs` only runs jobs.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::app::App;
use crate::error::{Error, Result};
use crate::{http, jobs};

/// Serve HTTP, follow the chunk change log and run the configured job
/// workers until SIGINT or SIGTERM, then stop them and flush the indexes.
pub async fn serve(app: Arc<App>) -> Result<()> {
    let follower = app.follower()?.clone();
    let server = http::start(app.clone())?;
    let (stop, stopped) = watch::channel(false);
    // Changes other processes write reach this node's lexical index here.
    let follower = tokio::spawn(follower.run(app.settings.lexical.clone(), stopped.clone()));
    if app.settings.jobs.workers == 0 && !app.settings.vector.uses_server() {
        tracing::warn!(
            "jobs.workers is 0 and the vector index is embedded: uploads and crawls wait for a \
             `ragchat worker`, which cannot open this data directory while the server runs; \
             set jobs.workers, or move the vectors to a Qdrant server (docs/OPERATIONS.md)"
        );
    }
    let background = jobs::start(app.clone(), app.settings.jobs.workers, stopped);
    let result = server.await;
    // Jobs stop at their next checkpoint (one batch) and go back to the
    // queue; a job still busy after the grace period is left to its lease.
    tracing::info!("shutting down: stopping job workers");
    let _ = stop.send(true);
    let grace = Duration::from_secs(app.settings.server.shutdown_timeout_secs.max(1) * 3);
    if tokio::time::timeout(grace, background).await.is_err() {
        tracing::warn!("job workers did not stop in time; their leases will lapse");
    }
    let _ = follower.await;
    tracing::info!("shutting down: flushing indexes");
    app.flush().await?;
    result.map_err(|e| Error::Internal(e.to_string()))
}

/// Run job workers until SIGINT or SIGTERM; the job in progress goes back to
/// the queue at its next checkpoint.
pub async fn worker(app: Arc<App>, workers: Option<usize>) -> Result<()> {
    let n = workers.unwrap_or(app.settings.jobs.workers).max(1);
    let (stop, stopped) = watch::channel(false);
    let handle = jobs::start(app.clone(), n, stopped);
    println!("ragchat worker running {n} job worker(s)");
    let probes = match app.settings.jobs.http_bind.as_str() {
        "" => None,
        bind => {
            let server = http::start_probes(app.clone(), bind)?;
            let handle = server.handle();
            tokio::spawn(server);
            Some(handle)
        }
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::Internal(e.to_string()))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping job workers");
    let _ = stop.send(true);
    let _ = handle.await;
    if let Some(probes) = probes {
        probes.stop(true).await;
    }
    app.flush().await
}
