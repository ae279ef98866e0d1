//! Liveness, readiness and metrics, outside `/api/v1`.

use actix_web::{web, HttpRequest, HttpResponse};

use super::views::{Check, ErrorBody, ReadyChecks, Status};
use crate::app::App;
use crate::auth::Caller;
use crate::error::{Error, ErrorCode};
use crate::index::lexical;
use crate::metrics::{IndexLabels, StateLabels};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/metrics", web::get().to(metrics))
        .route("/ready", web::get().to(ready));
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    operation_id = "health",
    responses((status = 200, description = "The process runs: `{\"status\": \"ok\"}`", body = Status<ReadyChecks>)),
)]
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
#[utoipa::path(
    get,
    path = "/ready",
    tag = "health",
    operation_id = "ready",
    responses(
        (status = 200, description = "Every check passed; with an admin's token each check says what it found", body = Status<ReadyChecks>),
        (status = 503, description = "A check failed", body = Status<ReadyChecks>),
    ),
    security((), ("jwt" = []), ("api_key" = [])),
)]
pub async fn ready(app: web::Data<App>, caller: Option<Caller>) -> HttpResponse {
    let db = app.db.ping().await.map_err(|e| e.to_string());
    let vectors = app.vectors.count().await.map_err(|e| e.to_string());
    let lex = match app.lexical() {
        Ok(index) => lexical::blocking(index, |l| l.count())
            .await
            .map(|n| format!("{n} documents"))
            .map_err(|e| e.to_string()),
        // A job worker keeps none: nothing to be ready.
        Err(_) => Ok("none in a job worker".to_string()),
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
        lexical_index: Check::from(lex),
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
    let Ok(follower) = app.follower() else {
        return Ok("no lexical index to follow it (job worker)".to_string());
    };
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

/// `GET /metrics`: OpenMetrics text. What only the database and the
/// indexes know is read now: jobs per state, index sizes, how far this
/// node's lexical index is behind the change log. A read that fails leaves
/// its gauge as it was and is logged; the rest is still reported. With
/// `server.metrics_token` set, the scraper must send it as a bearer token.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    operation_id = "metrics",
    responses(
        (status = 200, description = "OpenMetrics text exposition, every family listed in docs/OPERATIONS.md",
            body = String, content_type = "application/openmetrics-text"),
        (status = 401, description = "`server.metrics_token` is set and was not sent", body = ErrorBody),
    ),
    security((), ("metrics_token" = [])),
)]
pub async fn metrics(app: web::Data<App>, req: HttpRequest) -> Result<HttpResponse, Error> {
    let token = &app.settings.server.metrics_token;
    if !token.is_empty() && !bearer_matches(&req, token) {
        return Err(Error::new(
            ErrorCode::Unauthorized,
            "/metrics needs the metrics token (server.metrics_token) as a bearer token",
        ));
    }
    let m = &app.metrics;
    m.read_process_memory();
    let (jobs, chunks, points, lex, lag) = tokio::join!(
        crate::db::jobs::count_by_state(&app.db),
        crate::db::documents::count_chunks(&app.db, None),
        app.vectors.count(),
        async {
            match app.lexical() {
                Ok(index) => lexical::blocking(index, |l| l.count())
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        },
        async {
            match app.follower() {
                Ok(f) => f.lag().await.map(Some).map_err(|e| e.to_string()),
                // A worker has no lexical index to lag.
                Err(_) => Ok(None),
            }
        },
    );
    match jobs {
        Ok(counts) => {
            for (state, n) in counts {
                m.jobs
                    .get_or_create(&StateLabels {
                        state: state.as_str(),
                    })
                    .set(n);
            }
        }
        Err(e) => tracing::warn!("metrics: jobs per state: {e}"),
    }
    let entries = |index, n: Result<i64, String>| match n {
        Ok(n) => {
            m.index_entries.get_or_create(&IndexLabels { index }).set(n);
        }
        Err(e) => tracing::warn!("metrics: size of the {index} index: {e}"),
    };
    entries("database_chunks", chunks.map_err(|e| e.to_string()));
    entries(
        "vector",
        points.map(|n| n as i64).map_err(|e| e.to_string()),
    );
    if app.has_lexical() {
        entries("lexical", lex.map(|n| n as i64));
    }
    match lag {
        Ok(Some(lag)) => {
            m.lexical_behind.set(lag.behind);
            m.lexical_seconds_behind.set(lag.seconds.unwrap_or(0.0));
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("metrics: lexical log lag: {e}"),
    }
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(m.encode()))
}

/// Whether the request carries `Authorization: Bearer <token>`, compared
/// through hashes so the time taken says nothing about the token.
fn bearer_matches(req: &HttpRequest, token: &str) -> bool {
    use sha2::{Digest, Sha256};
    let given = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    Sha256::digest(given.as_bytes()) == Sha256::digest(token.as_bytes())
}
