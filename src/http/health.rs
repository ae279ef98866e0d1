//! Liveness, readiness and metrics, outside `/api/v1`.

use actix_web::{web, HttpResponse};

use super::views::{Check, ReadyChecks, Status};
use crate::app::App;
use crate::auth::Caller;
use crate::index::lexical;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/metrics", web::get().to(metrics))
        .route("/ready", web::get().to(ready));
}

/// Liveness: the process answers.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(Status::<ReadyChecks> {
        status: "ok",
        checks: None,
    })
}

/// Readiness: the DB answers, both indexes can be read and the embedding
/// model produces a vector. 503 with the failing check otherwise. Anyone
/// may ask (load balancers do, without credentials), so only an admin sees
/// what each check found; a failure's detail (a database error can name
/// hosts and files) goes to the log.
pub async fn ready(app: web::Data<App>, caller: Option<Caller>) -> HttpResponse {
    let db = app.db.ping().await.map_err(|e| e.to_string());
    let vectors = app.vectors.count().await.map_err(|e| e.to_string());
    let lex = lexical::blocking(&app.lexical.clone(), |l| l.count())
        .await
        .map_err(|e| e.to_string());
    let model = app
        .embedder
        .embed_query("readiness check")
        .await
        .map(|v| v.len())
        .map_err(|e| e.to_string());
    let ok = db.is_ok() && vectors.is_ok() && lex.is_ok() && model.is_ok();
    let checks = ReadyChecks {
        database: Check::from(db.map(|_| app.db.backend().to_string())),
        vector_index: Check::from(vectors.map(|n| format!("{n} points"))),
        lexical_index: Check::from(lex.map(|n| format!("{n} documents"))),
        embedding_model: Check::from(model.map(|d| format!("{d} dimensions"))),
    };
    if !ok {
        tracing::warn!(checks = ?checks, "not ready");
    }
    let admin = caller.is_some_and(|c| c.require_admin().is_ok());
    let body = Status {
        status: if ok { "ready" } else { "not_ready" },
        checks: Some(if admin {
            checks
        } else {
            checks.without_detail()
        }),
    };
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(app: web::Data<App>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(app.metrics.prometheus())
}
