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

mod results;

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

#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Weights {
    pub dense: f32,
    pub lexical: f32,
}

/// One signal's view of a result. `rank` starts at 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Signal {
    pub rank: usize,
    pub score: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fused {
    pub chunk_id: ChunkId,
    pub document_id: DocumentId,
    pub collection_id: CollectionId,
    pub score: f32,
    pub dense: Option<Signal>,
    pub lexical: Option<Signal>,
}

/// Weighted reciprocal rank fusion: `score = Σ weight / (k + rank)` over the
/// signals that returned the chunk. Ties go to the better single rank, then
/// to the chunk id, so results are deterministic.
pub fn rrf(dense: &[Hit], lexical: &[Hit], k: f32, weights: Weights) -> Vec<Fused> {
    let mut by_id: HashMap<ChunkId, Fused> = HashMap::new();
    let mut add = |hits: &[Hit], weight: f32, is_dense: bool| {
        for (i, h) in hits.iter().enumerate() {
            let rank = i + 1;
            let e = by_id.entry(h.chunk_id.clone()).or_insert_with(|| Fused {
                chunk_id: h.chunk_id.clone(),
                document_id: h.document_id.clone(),
                collection_id: h.collection_id.clone(),
                score: 0.0,
                dense: None,
                lexical: None,
            });
            let slot = if is_dense {
                &mut e.dense
            } else {
                &mut e.lexical
            };
            if slot.is_none() {
                *slot = Some(Signal {
                    rank,
                    score: h.score,
                });
                e.score += weight / (k + rank as f32);
            }
        }
    };
    add(dense, weights.dense, true);
    add(lexical, weights.lexical, false);
    let mut out: Vec<Fused> = by_id.into_values().collect();
    let best_rank = |f: &Fused| {
        f.dense
            .map(|s| s.rank)
            .into_iter()
            .chain(f.lexical.map(|s| s.rank))
            .min()
            .unwrap_or(usize::MAX)
    };
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| best_rank(a).cmp(&best_rank(b)))
            .then_with(|| a.chunk_id.cmp(&b.chunk_id))
    });
    out
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

/// Ranked chunks for `query` without touching the DB (the hot path of `eval`).
/// Each stage's time goes to `ragchat_query_stage_duration_seconds`.
pub async fn rank(
    app: &App,
    query: &str,
    collections: &[CollectionId],
    mode: Mode,
    candidates: usize,
    weights: Weights,
) -> Result<Vec<Fused>> {
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
    let (dense, lexical) = tokio::try_join!(
        dense.instrument(tracing::info_span!("dense search")),
        lexical.instrument(tracing::info_span!("lexical search"))
    )?;
    let t = Instant::now();
    let fused = rrf(&dense, &lexical, app.settings.retrieval.rrf_k, weights);
    m.observe_stage("fuse", t.elapsed());
    Ok(fused)
}

#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: String,
    pub collections: Option<Vec<String>>,
    pub top_k: Option<i64>,
    pub mode: Option<String>,
    pub dense_weight: Option<f32>,
    pub lexical_weight: Option<f32>,
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
    pub weights: Weights,
    pub collections: Vec<String>,
    pub results: Vec<SearchResult>,
    /// Whether the results came from the result cache.
    pub cached: bool,
    pub took_ms: f64,
}

/// Validate a request; every problem is a 400 naming the field.
pub fn validate(app: &App, req: &SearchRequest) -> Result<(Mode, usize, Weights)> {
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
    let weights = Weights {
        dense: req.dense_weight.unwrap_or(r.dense_weight),
        lexical: req.lexical_weight.unwrap_or(r.lexical_weight),
    };
    for (name, w) in [("dense", weights.dense), ("lexical", weights.lexical)] {
        if !(w.is_finite() && (0.0..=100.0).contains(&w)) {
            return Err(Error::new(
                ErrorCode::InvalidWeights,
                format!("`weights.{name}` must be a number between 0 and 100"),
            ));
        }
    }
    if mode == Mode::Hybrid && weights.dense == 0.0 && weights.lexical == 0.0 {
        return Err(Error::new(
            ErrorCode::InvalidWeights,
            "at least one weight must be positive",
        ));
    }
    if let Some(c) = &req.collections {
        if c.iter().any(|n| n.trim().is_empty()) {
            return Err(Error::new(
                ErrorCode::InvalidCollection,
                "collection names must not be empty",
            ));
        }
    }
    Ok((mode, top_k, weights))
}

/// The `/query` operation: validate, retrieve, join with the DB, highlight.
/// The readable collections become the filter inside both indexes, so other
/// collections never reach fusion (no post-filtering, no leaked ranks).
pub async fn search(app: &Arc<App>, req: SearchRequest, access: &Access) -> Result<SearchResponse> {
    let started = Instant::now();
    let (mode, top_k, weights) = validate(app, &req)?;
    let t = Instant::now();
    let collections = resolve_collections(app, req.collections.as_deref(), access).await?;
    app.metrics.observe_stage("collections", t.elapsed());
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
            weights,
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
            weights,
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
    let results = compute(app, &query, mode, top_k, weights, &collections)
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
    weights: Weights,
    collections: &[Collection],
) -> Result<Vec<SearchResult>> {
    let ids: Vec<CollectionId> = collections.iter().map(|c| c.id.clone()).collect();
    let candidates = app.settings.retrieval.candidates.max(top_k);
    let fused = rank(app, query, &ids, mode, candidates, weights).await?;

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
    use uuid::Uuid;

    fn hit(n: u128, score: f32) -> Hit {
        Hit {
            chunk_id: Uuid::from_u128(n).into(),
            document_id: Uuid::from_u128(1000 + n).into(),
            collection_id: Uuid::from_u128(7).into(),
            score,
        }
    }

    #[test]
    fn rrf_arithmetic() {
        // dense: A(1) B(2) C(3); lexical: B(1) D(2) A(3); k = 60, equal weights.
        let dense = [hit(1, 0.9), hit(2, 0.8), hit(3, 0.7)];
        let lexical = [hit(2, 12.0), hit(4, 9.0), hit(1, 3.0)];
        let w = Weights {
            dense: 1.0,
            lexical: 1.0,
        };
        let f = rrf(&dense, &lexical, 60.0, w);
        let ids: Vec<u128> = f
            .iter()
            .map(|x| x.chunk_id.to_uuid().unwrap().as_u128())
            .collect();
        // B = 1/62 + 1/61 = 0.032522; A = 1/61 + 1/63 = 0.032266;
        // D = 1/62 = 0.016129; C = 1/63 = 0.015873.
        assert_eq!(ids, vec![2, 1, 4, 3]);
        assert!((f[0].score - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-7);
        assert!((f[1].score - (1.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-7);
        assert!((f[2].score - 1.0 / 62.0).abs() < 1e-7);
        assert_eq!(
            f[0].dense,
            Some(Signal {
                rank: 2,
                score: 0.8
            })
        );
        assert_eq!(
            f[0].lexical,
            Some(Signal {
                rank: 1,
                score: 12.0
            })
        );
        assert_eq!(f[2].dense, None);

        // Weighting dense twice as much: A = 2/61 + 1/63 beats B = 2/62 + 1/61,
        // and C = 2/63 beats D = 1/62.
        let f = rrf(
            &dense,
            &lexical,
            60.0,
            Weights {
                dense: 2.0,
                lexical: 1.0,
            },
        );
        let ids: Vec<u128> = f
            .iter()
            .map(|x| x.chunk_id.to_uuid().unwrap().as_u128())
            .collect();
        assert_eq!(ids, vec![1, 2, 3, 4]);

        // A zero weight keeps the signal's ranks visible but adds nothing.
        let f = rrf(
            &dense,
            &lexical,
            60.0,
            Weights {
                dense: 1.0,
                lexical: 0.0,
            },
        );
        let ids: Vec<u128> = f
            .iter()
            .map(|x| x.chunk_id.to_uuid().unwrap().as_u128())
            .collect();
        assert_eq!(ids, vec![1, 2, 3, 4]);
        assert_eq!(f[3].score, 0.0);
    }

    #[test]
    fn rrf_single_signal_and_ties() {
        let f = rrf(
            &[],
            &[hit(5, 1.0), hit(6, 0.5)],
            60.0,
            Weights {
                dense: 1.0,
                lexical: 1.0,
            },
        );
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].chunk_id.to_uuid().unwrap().as_u128(), 5);
        // Same rank in different signals: equal scores, tie broken by rank then id.
        let f = rrf(
            &[hit(9, 1.0)],
            &[hit(8, 1.0)],
            60.0,
            Weights {
                dense: 1.0,
                lexical: 1.0,
            },
        );
        assert_eq!(f[0].score, f[1].score);
        assert_eq!(f[0].chunk_id.to_uuid().unwrap().as_u128(), 8);
        // A duplicate within one signal counts once, at its best rank.
        let f = rrf(
            &[hit(1, 1.0), hit(1, 0.5)],
            &[],
            60.0,
            Weights {
                dense: 1.0,
                lexical: 1.0,
            },
        );
        assert_eq!(f.len(), 1);
        assert!((f[0].score - 1.0 / 61.0).abs() < 1e-7);
    }

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
