//! The HTTP API (actix-web): routing, request spans, graceful shutdown.

pub mod accounts;
pub mod admin;
pub mod chat;
pub mod collections;
pub mod completions;
pub mod conversations;
pub mod documents;
pub mod error;
pub mod extract;
pub mod health;
pub mod jobs;
pub mod keys;
pub mod middleware;
pub mod openapi;
pub mod query;
mod span;
pub mod tickets;
pub mod views;
pub mod webapp;
pub mod ws;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, ErrorHandlerResponse, ErrorHandlers};
use actix_web::{web, HttpResponse};
use tracing_actix_web::TracingLogger;

use crate::app::App;
use crate::error::{Error, ErrorCode};
use views::ErrorBody;

/// Every route: each resource module registers its own.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.configure(health::configure)
        .configure(webapp::configure)
        .configure(completions::configure)
        .configure(openapi::configure)
        .service(
            web::scope("/api/v1")
                .configure(query::configure)
                .configure(accounts::configure)
                .configure(keys::configure)
                .configure(tickets::configure)
                .configure(admin::configure)
                .configure(collections::configure)
                .configure(conversations::configure)
                .configure(chat::configure)
                .configure(documents::configure)
                .configure(jobs::configure),
        );
}

async fn not_found(req: actix_web::HttpRequest) -> Result<HttpResponse, Error> {
    // Each `route()` is a resource of its own, guarded by its method, so a
    // known path asked with another method finds no resource and lands here
    // rather than in actix's 405: tell the two apart by the path alone.
    if req.resource_map().has_resource(req.path()) {
        return Err(Error::new(
            ErrorCode::MethodNotAllowed,
            "this path does not accept that method",
        ));
    }
    Err(Error::new(ErrorCode::NotFound, "no such route"))
}

/// actix answers a known path with the wrong method by an empty 405; give it
/// the same JSON error body as everything else.
fn method_not_allowed<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let (req, _) = res.into_parts();
    let res = HttpResponse::MethodNotAllowed().json(ErrorBody::new(
        ErrorCode::MethodNotAllowed,
        "this path does not accept that method",
    ));
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, res).map_into_right_body(),
    ))
}

/// The probes a job worker answers on `jobs.http_bind`: `/health`, `/ready`
/// and `/metrics`, nothing else. One HTTP thread is plenty.
pub fn start_probes(app: Arc<App>, bind: &str) -> Result<actix_web::dev::Server, Error> {
    let listener = TcpListener::bind(bind)
        .map_err(|e| Error::Unavailable(format!("cannot bind jobs.http_bind {bind}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Internal(e.to_string()))?;
    let data = web::Data::from(app);
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .wrap(from_fn(middleware::request_context))
            .wrap(TracingLogger::<span::PathOnly>::new())
            .app_data(data.clone())
            .configure(health::configure)
            .default_service(web::to(not_found))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .map_err(|e| Error::Unavailable(e.to_string()))?
    .run();
    println!("ragchat worker probes on http://{addr}");
    Ok(server)
}

/// Bind and start the server; awaiting it serves until SIGINT/SIGTERM. The
/// bound address is printed on stdout first, so a caller that asked for port
/// 0 learns the port. Job workers and the final flush are `startup`'s.
pub fn start(app: Arc<App>) -> Result<actix_web::dev::Server, Error> {
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
            .wrap(ErrorHandlers::new().handler(StatusCode::METHOD_NOT_ALLOWED, method_not_allowed))
            .wrap(from_fn(middleware::request_context))
            .wrap(TracingLogger::<span::PathOnly>::new())
            .app_data(data.clone())
            .app_data(extract::json_config())
            .app_data(extract::query_config())
            .configure(routes)
            .default_service(web::to(not_found))
    })
    .workers(workers)
    // A client that closes its socket is gone, not half-closed: the request
    // is dropped, and with it an answer it would never read (`ClientGone`).
    .h1_allow_half_closed(false)
    .shutdown_timeout(s.shutdown_timeout_secs)
    .listen(listener)
    .map_err(|e| Error::Unavailable(e.to_string()))?
    .run();
    println!("ragchat listening on http://{addr}");
    tracing::info!(%addr, "listening");
    Ok(server)
}
