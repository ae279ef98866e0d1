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
pub mod query;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, ErrorHandlerResponse, ErrorHandlers, Next};
use actix_web::{web, HttpResponse};
use tracing_actix_web::TracingLogger;

use crate::app::App;
use crate::error::Error;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health::health))
        .route("/metrics", web::get().to(health::metrics))
        .route(
            "/v1/chat/completions",
            web::post().to(completions::completions),
        )
        .route("/ready", web::get().to(health::ready))
        .service(
            web::scope("/api/v1")
                .route("/query", web::post().to(query::post_query))
                .route("/query", web::get().to(query::get_query))
                .route("/auth/register", web::post().to(accounts::register))
                .route("/auth/login", web::post().to(accounts::login))
                .route("/auth/refresh", web::post().to(accounts::refresh))
                .route("/auth/logout", web::post().to(accounts::logout))
                .route("/users/me", web::get().to(accounts::me))
                .route(
                    "/users/me/password",
                    web::post().to(accounts::change_password),
                )
                .route("/api-keys", web::post().to(keys::create))
                .route("/api-keys", web::get().to(keys::list))
                .route("/api-keys/{id}", web::delete().to(keys::revoke))
                .route("/admin/users", web::get().to(admin::list_users))
                .route("/admin/users", web::post().to(admin::create_user))
                .route("/admin/users/{id}", web::get().to(admin::get_user))
                .route("/admin/users/{id}", web::patch().to(admin::update_user))
                .route("/collections", web::get().to(collections::list))
                .route("/collections", web::post().to(collections::create))
                .route("/collections/{id}", web::get().to(collections::get))
                .route("/collections/{id}", web::patch().to(collections::update))
                .route("/collections/{id}", web::delete().to(collections::delete))
                .route(
                    "/collections/{id}/grants",
                    web::get().to(collections::list_grants),
                )
                .route(
                    "/collections/{id}/grants/{user_id}",
                    web::put().to(collections::put_grant),
                )
                .route(
                    "/collections/{id}/grants/{user_id}",
                    web::delete().to(collections::delete_grant),
                )
                .route("/conversations", web::post().to(conversations::create))
                .route("/conversations", web::get().to(conversations::list))
                .route("/conversations/{id}", web::get().to(conversations::get))
                .route(
                    "/conversations/{id}",
                    web::patch().to(conversations::rename),
                )
                .route(
                    "/conversations/{id}",
                    web::delete().to(conversations::delete),
                )
                .route(
                    "/conversations/{id}/messages",
                    web::get().to(conversations::messages),
                )
                .route(
                    "/conversations/{id}/messages",
                    web::post().to(chat::post_message),
                )
                .route("/chat/ws", web::get().to(chat::ws))
                .route(
                    "/collections/{id}/documents",
                    web::post().to(documents::upload),
                )
                .route(
                    "/collections/{id}/documents",
                    web::get().to(documents::list),
                )
                .route(
                    "/collections/{id}/documents/{doc}",
                    web::get().to(documents::get),
                )
                .route(
                    "/collections/{id}/documents/{doc}",
                    web::delete().to(documents::delete),
                )
                .route("/collections/{id}/crawl", web::post().to(documents::crawl))
                .route("/jobs", web::get().to(jobs::list))
                .route("/jobs/{id}", web::get().to(jobs::get))
                .route("/jobs/{id}/cancel", web::post().to(jobs::cancel))
                .route("/jobs/{id}/events", web::get().to(jobs::events)),
        );
}

async fn not_found() -> Result<HttpResponse, Error> {
    Err(Error::not_found("not_found", "no such route"))
}

/// Run each request in its own task. actix drops a request's future when the
/// client goes away, and dropping a SQLite query in flight panics the worker
/// (diesel-async's blocking wrapper); in a task the work finishes and only the
/// response is thrown away.
async fn run_to_completion(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> actix_web::Result<ServiceResponse<impl MessageBody>> {
    actix_web::rt::spawn(next.call(req))
        .await
        .map_err(actix_web::error::ErrorInternalServerError)?
}

/// actix answers a known path with the wrong method by an empty 405; give it
/// the same JSON error body as everything else.
fn method_not_allowed<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let (req, _) = res.into_parts();
    let body = serde_json::json!({
        "error": {"code": "method_not_allowed", "message": "this path does not accept that method"}
    });
    let res = HttpResponse::MethodNotAllowed().json(body);
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, res).map_into_right_body(),
    ))
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
            .wrap(from_fn(run_to_completion))
            .wrap(TracingLogger::default())
            .app_data(data.clone())
            .app_data(extract::json_config())
            .app_data(extract::query_config())
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
    Ok(server)
}
