//! Logging: human-readable or JSON lines on stderr, filtered by `RUST_LOG` or
//! the configured level.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // try_init: a second call (tests, embedding) keeps the first subscriber.
    let _ = if settings.format == LogFormat::Json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// The id of the request being served, for error bodies and error frames.
/// The HTTP layer sets it around each request's handler (the same id is in
/// the request's log span and its `X-Request-Id` header); code that spawns
/// tasks for a request carries it along with [`in_request`].
pub mod request_id {
    use std::future::Future;
    use std::sync::Arc;

    use tracing::Instrument;

    tokio::task_local! {
        static REQUEST_ID: Arc<str>;
    }

    /// The current request's id, if this code runs for a request.
    pub fn current() -> Option<String> {
        REQUEST_ID.try_with(|id| id.to_string()).ok()
    }

    /// Run `fut` as part of the request `id`.
    pub fn scope<F: Future>(id: &str, fut: F) -> impl Future<Output = F::Output> {
        REQUEST_ID.scope(Arc::from(id), fut)
    }

    /// `fut` with the current request's id and log span, for a task spawned
    /// on the request's behalf (an answer, a WebSocket session): task-locals
    /// and the entered span do not cross into a new task by themselves.
    pub fn in_request<F: Future>(fut: F) -> impl Future<Output = F::Output> {
        let id: Option<Arc<str>> = REQUEST_ID.try_with(Arc::clone).ok();
        let span = tracing::Span::current();
        async move {
            match id {
                Some(id) => REQUEST_ID.scope(id, fut).await,
                None => fut.await,
            }
        }
        .instrument(span)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[tokio::test]
        async fn the_id_follows_the_request_into_spawned_tasks() {
            assert_eq!(current(), None);
            let seen = scope("req-1", async {
                let inside = current();
                let spawned = tokio::spawn(in_request(async { current() }));
                let bare = tokio::spawn(async { current() });
                (inside, spawned.await.unwrap(), bare.await.unwrap())
            })
            .await;
            assert_eq!(
                seen,
                (Some("req-1".into()), Some("req-1".into()), None),
                "a task spawned without in_request does not know the request"
            );
        }
    }
}
