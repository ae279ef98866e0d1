use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::app::App;
use crate::index::lexical;

/// Liveness: the process answers.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Readiness: the DB answers, both indexes can be read and the embedding
/// model produces a vector. 503 with the failing check otherwise.
pub async fn ready(app: web::Data<App>) -> HttpResponse {
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
    let show = |r: Result<String, String>| match r {
        Ok(s) => json!({ "ok": true, "detail": s }),
        Err(e) => json!({ "ok": false, "error": e }),
    };
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "checks": {
            "database": show(db.map(|_| app.db.backend().to_string())),
            "vector_index": show(vectors.map(|n| format!("{n} points"))),
            "lexical_index": show(lex.map(|n| format!("{n} documents"))),
            "embedding_model": show(model.map(|d| format!("{d} dimensions"))),
        }
    });
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(app: actix_web::web::Data<crate::app::App>) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(app.metrics.prometheus())
}
