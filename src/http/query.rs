//! `/api/v1/query`: hybrid search over collections.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::rate_limit_caller;
use super::views::ErrorBody;
use crate::app::App;
use crate::auth::{Access, Caller, Scope};
use crate::error::{Error, ErrorCode};
use crate::ratelimit::Bucket;
use crate::retrieve::{self, Method, Mode, Normalization, SearchRequest, SearchResponse};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/query", web::post().to(post_query))
        .route("/query", web::get().to(get_query));
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryBody {
    /// 1 to 2000 characters after trimming; plain words.
    #[schema(min_length = 1, max_length = 2000, pattern = "\\S")]
    query: Option<String>,
    /// Collection names; all readable ones when absent.
    collections: Option<Vec<String>>,
    /// 1 to `retrieval.max_top_k` (100); 10 when absent.
    #[schema(minimum = 1, maximum = 100)]
    top_k: Option<i64>,
    /// `hybrid` (default), `dense` or `lexical`.
    #[schema(value_type = Option<Mode>)]
    mode: Option<String>,
    /// The RRF weight of each signal, 0 to 100 (1 each).
    weights: Option<WeightsBody>,
    /// `rrf` (reciprocal rank fusion) or `convex` (a convex combination of
    /// normalised scores); the collection's tuned or the configured one when
    /// absent.
    #[schema(value_type = Option<Method>)]
    fusion: Option<String>,
    /// Convex fusion: the dense signal's share, 0 to 1.
    #[schema(minimum = 0, maximum = 1)]
    alpha: Option<f32>,
    /// Convex fusion: `min_max` or `theoretical_min`.
    #[schema(value_type = Option<Normalization>)]
    normalization: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WeightsBody {
    #[schema(minimum = 0, maximum = 100)]
    dense: Option<f32>,
    #[schema(minimum = 0, maximum = 100)]
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

/// Hybrid search over the collections the caller may read.
#[utoipa::path(
    post,
    path = "/api/v1/query",
    tag = "query",
    operation_id = "query",
    request_body = QueryBody,
    responses(
        (status = 200, description = "The results, best first", body = SearchResponse),
        (status = 400, description = "`empty_query`, `query_too_long`, `invalid_top_k`, `unknown_mode`, `invalid_weights` or `invalid_fusion`", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`: a key without `query`", body = ErrorBody),
        (status = 404, description = "`collection_not_found`: a name that does not exist or the caller may not read", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["query"])),
)]
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
        fusion: body.fusion,
        alpha: body.alpha,
        normalization: body.normalization,
    };
    run(&caller, &req, app, search).await
}

/// `GET /api/v1/query?q=…&top_k=…&mode=…&collections=a,b`
#[utoipa::path(
    get,
    path = "/api/v1/query",
    tag = "query",
    operation_id = "query_get",
    params(
        ("q" = Option<String>, Query, description = "The query: 1 to 2000 characters after trimming",
            min_length = 1, max_length = 2000, pattern = "\\S"),
        ("top_k" = Option<i64>, Query, description = "1 to `retrieval.max_top_k` (100); 10 when absent",
            minimum = 1, maximum = 100),
        ("mode" = Option<Mode>, Query, description = "`hybrid` (default), `dense` or `lexical`"),
        ("collections" = Option<String>, Query, description = "Comma-separated collection names"),
        ("dense_weight" = Option<f32>, Query, description = "0 to 100 (1)", minimum = 0, maximum = 100),
        ("lexical_weight" = Option<f32>, Query, description = "0 to 100 (1)", minimum = 0, maximum = 100),
        ("fusion" = Option<Method>, Query, description = "`rrf` or `convex`"),
        ("alpha" = Option<f32>, Query, description = "Convex fusion: the dense share, 0 to 1", minimum = 0, maximum = 1),
        ("normalization" = Option<Normalization>, Query, description = "Convex fusion: `min_max` or `theoretical_min`"),
    ),
    responses(
        (status = 200, description = "The results, best first", body = SearchResponse),
        (status = 400, description = "`empty_query`, `query_too_long`, `invalid_top_k`, `unknown_mode`, `invalid_weights` or `invalid_fusion`", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`: a key without `query`", body = ErrorBody),
        (status = 404, description = "`collection_not_found`: a name that does not exist or the caller may not read", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["query"])),
)]
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
            "q" | "top_k"
                | "mode"
                | "collections"
                | "dense_weight"
                | "lexical_weight"
                | "fusion"
                | "alpha"
                | "normalization"
        ) {
            return Err(Error::new(
                ErrorCode::InvalidQueryString,
                format!("unknown parameter `{key}`"),
            ));
        }
    }
    let num = |key: &str, code: ErrorCode| -> Result<Option<f32>, Error> {
        p.get(key)
            .map(|v| {
                v.parse::<f32>()
                    .map_err(|_| Error::new(code, format!("`{key}` must be a number")))
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
        dense_weight: num("dense_weight", ErrorCode::InvalidWeights)?,
        lexical_weight: num("lexical_weight", ErrorCode::InvalidWeights)?,
        fusion: p.get("fusion").cloned(),
        alpha: num("alpha", ErrorCode::InvalidFusion)?,
        normalization: p.get("normalization").cloned(),
    };
    run(&caller, &req, app, search).await
}
