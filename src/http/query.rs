//! `/api/v1/query`: hybrid search over collections.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::extract::rate_limit_caller;
use crate::app::App;
use crate::auth::{Access, Caller, Scope};
use crate::error::{Error, ErrorCode};
use crate::ratelimit::Bucket;
use crate::retrieve::{self, SearchRequest};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/query", web::post().to(post_query))
        .route("/query", web::get().to(get_query));
}

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

/// Authorise and rate-limit a search, then run it over what the caller may read.
async fn run(
    caller: &Caller,
    req: &HttpRequest,
    app: web::Data<App>,
    search: SearchRequest,
) -> Result<HttpResponse, Error> {
    caller.require_scope(Scope::Query)?;
    rate_limit_caller(req, &app, Bucket::Query, caller).await?;
    let access = Access::of(&app.db, caller).await?;
    Ok(HttpResponse::Ok().json(retrieve::search(&app.into_inner(), search, &access).await?))
}

pub async fn post_query(
    caller: Caller,
    req: HttpRequest,
    app: web::Data<App>,
    body: web::Json<QueryBody>,
) -> Result<HttpResponse, Error> {
    let body = body.into_inner();
    let weights = body.weights.unwrap_or(WeightsBody {
        dense: None,
        lexical: None,
    });
    let search = SearchRequest {
        query: body.query.unwrap_or_default(),
        collections: body.collections,
        top_k: body.top_k,
        mode: body.mode,
        dense_weight: weights.dense,
        lexical_weight: weights.lexical,
    };
    run(&caller, &req, app, search).await
}

/// `GET /api/v1/query?q=…&top_k=…&mode=…&collections=a,b`
pub async fn get_query(
    caller: Caller,
    req: HttpRequest,
    app: web::Data<App>,
    params: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, Error> {
    let p = params.into_inner();
    for key in p.keys() {
        if !matches!(
            key.as_str(),
            "q" | "top_k" | "mode" | "collections" | "dense_weight" | "lexical_weight"
        ) {
            return Err(Error::new(
                ErrorCode::InvalidQueryString,
                format!("unknown parameter `{key}`"),
            ));
        }
    }
    let num = |key: &str| -> Result<Option<f32>, Error> {
        p.get(key)
            .map(|v| {
                v.parse::<f32>().map_err(|_| {
                    Error::new(
                        ErrorCode::InvalidWeights,
                        format!("`{key}` must be a number"),
                    )
                })
            })
            .transpose()
    };
    let top_k = p
        .get("top_k")
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                Error::new(
                    ErrorCode::InvalidTopK,
                    format!("`top_k` must be an integer, got `{v}`"),
                )
            })
        })
        .transpose()?;
    let search = SearchRequest {
        query: p.get("q").cloned().unwrap_or_default(),
        collections: p
            .get("collections")
            .map(|c| c.split(',').map(|s| s.trim().to_string()).collect()),
        top_k,
        mode: p.get("mode").cloned(),
        dense_weight: num("dense_weight")?,
        lexical_weight: num("lexical_weight")?,
    };
    run(&caller, &req, app, search).await
}
