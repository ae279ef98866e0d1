//! Hybrid retrieval: dense and lexical search run concurrently over the same
//! collections, then weighted reciprocal rank fusion. Each result keeps every
//! signal's rank and score so a caller can see why it ranked where it did.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::app::App;
use crate::auth::Access;
use crate::db::collections::{self, Collection};
use crate::db::documents;
use crate::error::{Error, ErrorCode, Result};
use crate::ids::{ChunkId, CollectionId, DocumentId};
use crate::index::lexical::{self, Highlight};
use crate::index::Hit;

pub mod fusion;
mod results;

pub use fusion::{Aggregation, Fused, Fusion, Method, Normalization, Signal, Weights};

pub const MAX_QUERY_CHARS: usize = 2000;
const SNIPPET_CHARS: usize = 240;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Hybrid,
    Dense,
    Lexical,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Hybrid => "hybrid",
            Mode::Dense => "dense",
            Mode::Lexical => "lexical",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "hybrid" => Ok(Mode::Hybrid),
            "dense" => Ok(Mode::Dense),
            "lexical" => Ok(Mode::Lexical),
            other => Err(Error::new(
                ErrorCode::UnknownMode,
                format!("unknown mode `{other}`: expected hybrid, dense or lexical"),
            )),
        }
    }
}

/// Map collection names to the collections `access` allows; `None` means all
/// of those. A name the caller may not read is reported exactly like one that
/// does not exist.
pub async fn resolve_collections(
    app: &App,
    names: Option<&[String]>,
    access: &Access,
) -> Result<Vec<Collection>> {
    let all: Vec<Collection> = collections::list_collections(&app.db)
        .await?
        .into_iter()
        .filter(|c| access.can_read(&c.id))
        .collect();
    let Some(names) = names else { return Ok(all) };
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        match all.iter().find(|c| &c.name == name) {
            Some(c) => {
                if !out.iter().any(|o: &Collection| o.id == c.id) {
                    out.push(c.clone());
                }
            }
            None => {
                return Err(Error::new(
                    ErrorCode::CollectionNotFound,
                    format!("no collection named `{name}`"),
                ))
            }
        }
    }
    Ok(out)
}

/// Each signal's ranking for `query` (best first), without touching the DB;
/// the one `mode` leaves out is empty. Each stage's time goes to
/// `ragchat_query_stage_duration_seconds`.
pub async fn signals(
    app: &App,
    query: &str,
    collections: &[CollectionId],
    mode: Mode,
    candidates: usize,
) -> Result<(Vec<Hit>, Vec<Hit>)> {
    let m = &app.metrics;
    let dense = async {
        if mode == Mode::Lexical {
            return Ok::<_, Error>(Vec::new());
        }
        let t = Instant::now();
        let v = app
            .embedder
            .embed_query(query)
            .instrument(tracing::info_span!("embed query"))
            .await?;
        m.observe_stage("embed", t.elapsed());
        let t = Instant::now();
        let hits = app
            .vectors
            .search(v.as_ref().clone(), collections.to_vec(), candidates)
            .await;
        if hits.is_err() {
            m.vector_errors
                .get_or_create(&crate::metrics::OpLabels { op: "search" })
                .inc();
        }
        m.observe_stage("dense", t.elapsed());
        Ok(hits?)
    };
    let lexical = async {
        if mode == Mode::Dense {
            return Ok::<_, Error>(Vec::new());
        }
        let t = Instant::now();
        let q = query.to_string();
        let cols = collections.to_vec();
        let hits =
            lexical::blocking(app.lexical()?, move |l| l.search(&q, &cols, candidates)).await?;
        m.observe_stage("lexical", t.elapsed());
        Ok(hits)
    };
    tokio::try_join!(
        dense.instrument(tracing::info_span!("dense search")),
        lexical.instrument(tracing::info_span!("lexical search"))
    )
}

/// Ranked chunks for `query` without touching the DB (the hot path of `eval`).
pub async fn rank(
    app: &App,
    query: &str,
    collections: &[CollectionId],
    mode: Mode,
    candidates: usize,
    fusion: &Fusion,
) -> Result<Vec<Fused>> {
    let (dense, lexical) = signals(app, query, collections, mode, candidates).await?;
    let t = Instant::now();
    let fused = fusion::fuse(&dense, &lexical, fusion);
    app.metrics.observe_stage("fuse", t.elapsed());
    Ok(fused)
}

#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    pub query: String,
    pub collections: Option<Vec<String>>,
    pub top_k: Option<i64>,
    pub mode: Option<String>,
    pub dense_weight: Option<f32>,
    pub lexical_weight: Option<f32>,
    /// `rrf` or `convex`.
    pub fusion: Option<String>,
    pub alpha: Option<f32>,
    /// `min_max` or `theoretical_min`.
    pub normalization: Option<String>,
}

/// What a request sets of the fusion; the rest comes from the searched
/// collections' tuned values or from the configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FusionOverrides {
    pub method: Option<Method>,
    pub alpha: Option<f32>,
    pub normalization: Option<Normalization>,
    pub dense_weight: Option<f32>,
    pub lexical_weight: Option<f32>,
}

/// The fusion a search uses: the searched collections' tuned values when
/// they all have the same ones (`ragchat eval --tune --store`), else the
/// configured defaults; then whatever the request sets.
pub fn fusion_for(
    settings: &crate::config::RetrievalSettings,
    collections: &[Collection],
    overrides: &FusionOverrides,
) -> Fusion {
    let tuned: Vec<Option<Fusion>> = collections.iter().map(Collection::tuned_fusion).collect();
    let mut f = match tuned.first() {
        Some(Some(first)) if tuned.iter().all(|t| t.as_ref() == Some(first)) => *first,
        _ => settings.fusion(),
    };
    if let Some(m) = overrides.method {
        f.method = m;
    }
    if let Some(a) = overrides.alpha {
        f.alpha = a;
    }
    if let Some(n) = overrides.normalization {
        f.normalization = n;
    }
    if let Some(w) = overrides.dense_weight {
        f.weights.dense = w;
    }
    if let Some(w) = overrides.lexical_weight {
        f.weights.lexical = w;
    }
    f
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchResult {
    pub rank: usize,
    #[schema(value_type = String)]
    pub chunk_id: ChunkId,
    #[schema(value_type = String)]
    pub document_id: DocumentId,
    pub collection: String,
    pub title: String,
    pub source: String,
    pub position: i32,
    pub char_start: i32,
    pub char_end: i32,
    pub snippet: Highlight,
    pub score: f32,
    pub dense: Option<Signal>,
    pub lexical: Option<Signal>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SearchResponse {
    pub query: String,
    pub mode: Mode,
    pub top_k: usize,
    /// The RRF weights (also in `fusion`).
    pub weights: Weights,
    /// How the two signals were fused.
    pub fusion: Fusion,
    pub collections: Vec<String>,
    pub results: Vec<SearchResult>,
    /// Whether the results came from the result cache.
    pub cached: bool,
    pub took_ms: f64,
}

/// Validate a request; every problem is a 400 naming the field.
pub fn validate(app: &App, req: &SearchRequest) -> Result<(Mode, usize, FusionOverrides)> {
    let r = &app.settings.retrieval;
    let q = req.query.trim();
    if q.is_empty() {
        return Err(Error::new(
            ErrorCode::EmptyQuery,
            "`query` must not be empty",
        ));
    }
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(Error::new(
            ErrorCode::QueryTooLong,
            format!("`query` must be at most {MAX_QUERY_CHARS} characters"),
        ));
    }
    let top_k = match req.top_k {
        None => r.default_top_k,
        Some(k) if k >= 1 && k as u64 <= r.max_top_k as u64 => k as usize,
        Some(k) => {
            return Err(Error::new(
                ErrorCode::InvalidTopK,
                format!("`top_k` must be between 1 and {}, got {k}", r.max_top_k),
            ))
        }
    };
    let mode = match &req.mode {
        None => Mode::Hybrid,
        Some(m) => m.parse()?,
    };
    for (name, w) in [("dense", req.dense_weight), ("lexical", req.lexical_weight)] {
        if let Some(w) = w {
            if !(w.is_finite() && (0.0..=100.0).contains(&w)) {
                return Err(Error::new(
                    ErrorCode::InvalidWeights,
                    format!("`weights.{name}` must be a number between 0 and 100"),
                ));
            }
        }
    }
    if let Some(a) = req.alpha {
        if !(a.is_finite() && (0.0..=1.0).contains(&a)) {
            return Err(Error::new(
                ErrorCode::InvalidFusion,
                "`alpha` must be a number between 0 and 1",
            ));
        }
    }
    let overrides = FusionOverrides {
        method: req
            .fusion
            .as_deref()
            .map(fusion::parse_method)
            .transpose()?,
        alpha: req.alpha,
        normalization: req
            .normalization
            .as_deref()
            .map(fusion::parse_normalization)
            .transpose()?,
        dense_weight: req.dense_weight,
        lexical_weight: req.lexical_weight,
    };
    if let Some(c) = &req.collections {
        if c.iter().any(|n| n.trim().is_empty()) {
            return Err(Error::new(
                ErrorCode::InvalidCollection,
                "collection names must not be empty",
            ));
        }
    }
    Ok((mode, top_k, overrides))
}

/// The fusion checks that need the resolved values: RRF over both signals
/// needs a positive weight.
fn check_fusion(mode: Mode, fusion: &Fusion) -> Result<()> {
    fusion::check(fusion)?;
    if mode == Mode::Hybrid
        && fusion.method == Method::Rrf
        && fusion.weights.dense == 0.0
        && fusion.weights.lexical == 0.0
    {
        return Err(Error::new(
            ErrorCode::InvalidWeights,
            "at least one weight must be positive",
        ));
    }
    Ok(())
}

/// The `/query` operation: validate, retrieve, join with the DB, highlight.
/// The readable collections become the filter inside both indexes, so other
/// collections never reach fusion (no post-filtering, no leaked ranks).
pub async fn search(app: &Arc<App>, req: SearchRequest, access: &Access) -> Result<SearchResponse> {
    let started = Instant::now();
    let (mode, top_k, overrides) = validate(app, &req)?;
    let t = Instant::now();
    let collections = resolve_collections(app, req.collections.as_deref(), access).await?;
    app.metrics.observe_stage("collections", t.elapsed());
    let fusion = fusion_for(&app.settings.retrieval, &collections, &overrides);
    check_fusion(mode, &fusion)?;
    let query = req.query.trim().to_string();
    let respond = |results: Vec<SearchResult>, cached: bool, collections: Vec<Collection>| {
        app.metrics
            .query_duration
            .get_or_create(&crate::metrics::ModeLabels {
                mode: mode.as_str(),
            })
            .observe(started.elapsed().as_secs_f64());
        SearchResponse {
            query: query.clone(),
            mode,
            top_k,
            weights: fusion.weights,
            fusion,
            collections: collections.into_iter().map(|c| c.name).collect(),
            results,
            cached,
            took_ms: started.elapsed().as_secs_f64() * 1000.0,
        }
    };
    let cache = app.result_cache();
    let key = cache.map(|_| {
        results::key(
            &query,
            mode,
            top_k,
            &fusion,
            &app.settings.retrieval,
            &collections,
        )
    });
    if let (Some((cache, counters)), Some(key)) = (cache, &key) {
        let hit = cache.get(key).await.and_then(|b| results::decode(&b));
        counters.record(hit.is_some());
        if let Some(hit) = hit {
            return Ok(respond(hit.results, true, collections));
        }
    }
    // Read before searching: the search sees at least this much of the log.
    let position = app.follower().map_or(0, |f| f.applied_position());
    let results = compute(app, &query, mode, top_k, &fusion, &collections)
        .instrument(tracing::info_span!("search", mode = mode.as_str()))
        .await?;
    if let (Some((cache, _)), Some(key)) = (cache, key) {
        if results::may_store(mode, position, &collections) {
            let ttl = std::time::Duration::from_secs(app.settings.cache.results_ttl_secs);
            cache.put(&key, results::encode(&results), ttl).await;
        }
    }
    Ok(respond(results, false, collections))
}

/// Search, join with the DB and highlight: the uncached part of `/query`.
async fn compute(
    app: &Arc<App>,
    query: &str,
    mode: Mode,
    top_k: usize,
    fusion: &Fusion,
    collections: &[Collection],
) -> Result<Vec<SearchResult>> {
    let ids: Vec<CollectionId> = collections.iter().map(|c| c.id.clone()).collect();
    let candidates = app.settings.retrieval.candidates.max(top_k);
    let fused = rank(app, query, &ids, mode, candidates, fusion).await?;

    // The DB is the source of truth: a hit whose chunk is gone (deleted while
    // an index lagged) is dropped, so over-fetch a little to still fill top_k.
    let t = Instant::now();
    let wanted: Vec<Fused> = fused.into_iter().take(top_k + top_k / 2 + 2).collect();
    let chunk_ids: Vec<ChunkId> = wanted.iter().map(|f| f.chunk_id.clone()).collect();
    let rows: HashMap<ChunkId, _> = documents::chunks_by_ids(&app.db, &chunk_ids)
        .await?
        .into_iter()
        .map(|c| (c.chunk.id.clone(), c))
        .collect();
    app.metrics.observe_stage("db", t.elapsed());
    let kept: Vec<(Fused, crate::db::documents::ChunkWithTitle)> = wanted
        .into_iter()
        .filter_map(|f| rows.get(&f.chunk_id).cloned().map(|c| (f, c)))
        .take(top_k)
        .collect();
    let t = Instant::now();
    let texts: Vec<String> = kept.iter().map(|(_, c)| c.chunk.text.clone()).collect();
    let q = query.to_string();
    let snippets = lexical::blocking(app.lexical()?, move |l| {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        l.highlight(&q, &refs, SNIPPET_CHARS)
    })
    .await?;
    app.metrics.observe_stage("highlight", t.elapsed());
    let names: HashMap<&str, &str> = collections
        .iter()
        .map(|c| (c.id.as_str(), c.name.as_str()))
        .collect();
    Ok(kept
        .into_iter()
        .zip(snippets)
        .enumerate()
        .map(|(i, ((f, c), snippet))| SearchResult {
            rank: i + 1,
            chunk_id: f.chunk_id,
            document_id: f.document_id,
            collection: names
                .get(c.chunk.collection_id.as_str())
                .map(|s| s.to_string())
                .unwrap_or_default(),
            title: if c.title.is_empty() {
                c.source.clone()
            } else {
                c.title
            },
            source: c.source,
            position: c.chunk.position,
            char_start: c.chunk.char_start,
            char_end: c.chunk.char_end,
            snippet,
            score: f.score,
            dense: f.dense,
            lexical: f.lexical,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_parsing() {
        assert_eq!("Hybrid".parse::<Mode>().unwrap(), Mode::Hybrid);
        assert_eq!("dense".parse::<Mode>().unwrap(), Mode::Dense);
        let e = "fuzzy".parse::<Mode>().unwrap_err();
        assert!(matches!(
            e,
            Error::Rejected {
                code: ErrorCode::UnknownMode,
                ..
            }
        ));
    }
}
