//! Logging: human-readable or JSON lines on stderr, filtered by `RUST_LOG` or
//! the configured level; and, with `telemetry.otlp_endpoint` set, the same
//! spans exported as OTLP traces (request → retrieval stages → model call).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, LogSettings, TelemetrySettings};

/// The trace exporter, if any; [`Telemetry::shutdown`] flushes it at exit.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Send what is still buffered and stop the exporter. The exporter's
    /// HTTP client blocks, so this runs off the async executor.
    pub fn shutdown(mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = std::thread::spawn(move || provider.shutdown()).join();
        }
    }
}

/// Install the log subscriber (and the trace exporter, when configured).
/// A second call (tests, embedding) keeps the first subscriber.
pub fn init(settings: &LogSettings, telemetry: &TelemetrySettings) -> Telemetry {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(quiet_dependencies(&settings.level)))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: a log file or collector gets plain text.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let fmt = if settings.format == LogFormat::Json {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    let (otel, provider) = match exporter(telemetry) {
        Ok(Some(provider)) => {
            let tracer = provider.tracer("ragchat");
            let layer = tracing_opentelemetry::layer().with_tracer(tracer).boxed();
            (Some(layer), Some(provider))
        }
        Ok(None) => (None, None),
        Err(e) => {
            eprintln!("warning: traces are not exported: {e}");
            (None, None)
        }
    };
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .try_init();
    if provider.is_some() {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        tracing::info!(endpoint = %telemetry.otlp_endpoint, "exporting traces over OTLP");
    }
    Telemetry { provider }
}

/// `level` with the embedded Qdrant held to errors unless it names it:
/// qdrant-edge warns on every start about process-wide flags an embedding
/// application cannot set ("Feature flags not initialized!"), which asks
/// nothing of an operator.
fn quiet_dependencies(level: &str) -> String {
    if level.contains("qdrant_edge") {
        level.to_string()
    } else {
        format!("{level},qdrant_edge=error")
    }
}

fn exporter(t: &TelemetrySettings) -> Result<Option<SdkTracerProvider>, String> {
    if !t.exports() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(t.otlp_endpoint.trim())
        .with_timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(t.service_name.clone())
        .build();
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                t.sample_ratio,
            ))))
            .with_resource(resource)
            .build(),
    ))
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

        #[test]
        fn qdrant_edge_is_quiet_unless_asked_for() {
            assert_eq!(
                super::super::quiet_dependencies("warn"),
                "warn,qdrant_edge=error"
            );
            assert_eq!(
                super::super::quiet_dependencies("info,qdrant_edge=debug"),
                "info,qdrant_edge=debug"
            );
        }

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
