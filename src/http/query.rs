//! `/api/v1/query`: hybrid search over collections.

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use crate::app::App;
use crate::db::repo;
use crate::error::Error;
use crate::retrieve::{self, SearchRequest};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryBody {
    query: Option<String>,
    collections: Option<Vec<String>>,
    top_k: Option<i64>,
    mode: Option<String>,
    weights: Option<WeightsBody>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsBody {
    dense: Option<f32>,
    lexical: Option<f32>,
}

/// Malformed JSON is a 400 with our error body, like every other bad input.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(64 * 1024)
        .error_handler(|err, _req| {
            Error::invalid("invalid_body", format!("request body: {err}")).into()
        })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default()
        .error_handler(|err, _req| Error::invalid("invalid_query_string", err.to_string()).into())
}

pub async fn post_query(
    app: web::Data<App>,
    body: web::Json<QueryBody>,
) -> Result<HttpResponse, Error> {
    let body = body.into_inner();
    let weights = body.weights.unwrap_or(WeightsBody {
        dense: None,
        lexical: None,
    });
    let req = SearchRequest {
        query: body.query.unwrap_or_default(),
        collections: body.collections,
        top_k: body.top_k,
        mode: body.mode,
        dense_weight: weights.dense,
        lexical_weight: weights.lexical,
    };
    Ok(HttpResponse::Ok().json(retrieve::search(&app.into_inner(), req).await?))
}

/// `GET /api/v1/query?q=…&top_k=…&mode=…&collections=a,b`
pub async fn get_query(
    app: web::Data<App>,
    params: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, Error> {
    let p = params.into_inner();
    for key in p.keys() {
        if !matches!(
            key.as_str(),
            "q" | "top_k" | "mode" | "collections" | "dense_weight" | "lexical_weight"
        ) {
            return Err(Error::invalid(
                "invalid_query_string",
                format!("unknown parameter `{key}`"),
            ));
        }
    }
    let num = |key: &str| -> Result<Option<f32>, Error> {
        p.get(key)
            .map(|v| {
                v.parse::<f32>().map_err(|_| {
                    Error::invalid("invalid_weights", format!("`{key}` must be a number"))
                })
            })
            .transpose()
    };
    let top_k = p
        .get("top_k")
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                Error::invalid(
                    "invalid_top_k",
                    format!("`top_k` must be an integer, got `{v}`"),
                )
            })
        })
        .transpose()?;
    let req = SearchRequest {
        query: p.get("q").cloned().unwrap_or_default(),
        collections: p
            .get("collections")
            .map(|c| c.split(',').map(|s| s.trim().to_string()).collect()),
        top_k,
        mode: p.get("mode").cloned(),
        dense_weight: num("dense_weight")?,
        lexical_weight: num("lexical_weight")?,
    };
    Ok(HttpResponse::Ok().json(retrieve::search(&app.into_inner(), req).await?))
}

/// `GET /api/v1/collections`: names with document and chunk counts.
pub async fn list_collections(app: web::Data<App>) -> Result<HttpResponse, Error> {
    let mut items = Vec::new();
    for c in repo::list_collections(&app.db).await? {
        let documents = repo::count_documents(&app.db, Some(&c.id)).await?;
        let chunks = repo::count_chunks(&app.db, Some(&c.id)).await?;
        items.push(serde_json::json!({
            "id": c.id,
            "name": c.name,
            "documents": documents,
            "chunks": chunks,
            "created_at": chrono::DateTime::<chrono::Utc>::from_naive_utc_and_offset(c.created_at, chrono::Utc).to_rfc3339(),
        }));
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items, "next_cursor": null })))
}
