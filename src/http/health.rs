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

/// Readiness: the DB answers, both indexes can be read, the lexical index
/// follows the change log and the embedding model produces a vector. 503 with the failing check otherwise. Anyone
/// may ask (load balancers do, without credentials), so only an admin sees
/// what each check found; a failure's detail (a database error can name
/// hosts and files) goes to the log.
pub async fn ready(app: web::Data<App>, caller: Option<Caller>) -> HttpResponse {
    let db = app.db.ping().await.map_err(|e| e.to_string());
    let vectors = app.vectors.count().await.map_err(|e| e.to_string());
    let lex = match app.lexical() {
        Ok(index) => lexical::blocking(index, |l| l.count())
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let model = app
        .embedder
        .embed_query("readiness check")
        .await
        .map(|v| v.len())
        .map_err(|e| e.to_string());
    let log = lexical_log(&app).await;
    let ok = db.is_ok() && vectors.is_ok() && lex.is_ok() && model.is_ok() && log.is_ok();
    let checks = ReadyChecks {
        database: Check::from(db.map(|_| app.db.backend().to_string())),
        vector_index: Check::from(vectors.map(|n| format!("{n} points"))),
        lexical_index: Check::from(lex.map(|n| format!("{n} documents"))),
        lexical_log: Check::from(log),
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

/// How far this node's lexical index is behind the database's change log.
/// Being behind is reported, not failed: searches go on over what the index
/// has, and it catches up on its own. A follower whose last attempt failed
/// (it cannot apply the log) is not ready.
async fn lexical_log(app: &App) -> Result<String, String> {
    let follower = app.follower().map_err(|e| e.to_string())?;
    if let Some(e) = follower.last_error() {
        return Err(e);
    }
    let lag = follower.lag().await.map_err(|e| e.to_string())?;
    let seconds = lag
        .seconds
        .map_or_else(|| "pruned".to_string(), |s| format!("{s:.1} s"));
    Ok(format!(
        "position {} of {}: {} behind ({seconds})",
        lag.position, lag.head, lag.behind
    ))
}

/// `GET /metrics`: Prometheus text format. The lexical log lag is measured
/// now (two small reads); when the database cannot say, it is left out.
pub async fn metrics(app: web::Data<App>) -> HttpResponse {
    let mut body = app.metrics.prometheus();
    let lag = match app.follower() {
        Ok(f) => f.lag().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match lag {
        Ok(lag) => body.push_str(&crate::metrics::lag_gauges(lag.behind, lag.seconds)),
        Err(e) => tracing::warn!("metrics: lexical log lag: {e}"),
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body)
}
