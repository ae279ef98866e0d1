//! The HTTP API (actix-web): routing, request spans, graceful shutdown.

pub mod error;
pub mod health;
pub mod query;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{web, HttpResponse};
use tracing_actix_web::TracingLogger;

use crate::app::App;
use crate::error::Error;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health::health))
        .route("/ready", web::get().to(health::ready))
        .service(
            web::scope("/api/v1")
                .route("/query", web::post().to(query::post_query))
                .route("/query", web::get().to(query::get_query))
                .route("/collections", web::get().to(query::list_collections)),
        );
}

async fn not_found() -> Result<HttpResponse, Error> {
    Err(Error::not_found("not_found", "no such route"))
}

/// Serve until SIGINT/SIGTERM, then flush the indexes. The bound address is
/// printed on stdout first, so a caller that asked for port 0 learns the port.
pub async fn serve(app: Arc<App>) -> Result<(), Error> {
    let s = &app.settings.server;
    let listener = TcpListener::bind(&s.bind)
        .map_err(|e| Error::Unavailable(format!("cannot bind {}: {e}", s.bind)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Internal(e.to_string()))?;
    let workers = if s.workers == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        s.workers
    };
    let data = web::Data::from(app.clone());
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .wrap(TracingLogger::default())
            .app_data(data.clone())
            .app_data(query::json_config())
            .app_data(query::query_config())
            .configure(routes)
            .default_service(web::to(not_found))
    })
    .workers(workers)
    .shutdown_timeout(s.shutdown_timeout_secs)
    .listen(listener)
    .map_err(|e| Error::Unavailable(e.to_string()))?
    .run();
    println!("ragchat listening on http://{addr}");
    tracing::info!(%addr, "listening");
    let result = server.await;
    tracing::info!("shutting down: flushing indexes");
    app.flush().await?;
    result.map_err(|e| Error::Internal(e.to_string()))
}
