//! The one place that turns `Settings` into live backends.

use std::sync::Arc;

use crate::auth::Auth;
use crate::cache::{Cache, InProcess, RedisCache};
use crate::config::Settings;
use crate::db::Db;
use crate::embed::{load_tokenizer, Embedder, ModelPaths};
use crate::error::{Error, Result};
use crate::index::edge::EdgeVectorIndex;
use crate::index::lexical::follow::LexicalFollower;
use crate::index::lexical::LexicalIndex;
use crate::index::server::ServerVectorIndex;
use crate::index::VectorIndex;
use crate::ingest::chunk::Chunker;
use crate::ingest::pipeline::{Indexer, IngestCounters};
use crate::llm::extractive::ExtractiveModel;
use crate::llm::openai::OpenAiModel;
use crate::llm::ChatModel;
use crate::metrics::{CacheCounters, Metrics};
use crate::ratelimit::{self, Connections, RateLimiter};
use crate::redis_conn::Redis;

/// What a process is for, which decides what it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Serves HTTP or searches from the command line: everything, with a
    /// lexical index of its own in the data directory.
    Node,
    /// `ragchat worker`: runs jobs only. It writes the database and the
    /// vector index; the API nodes' lexical indexes follow the database's
    /// change log, so a worker keeps none and loads no chat model.
    Worker,
}

pub struct App {
    pub settings: Settings,
    pub db: Db,
    pub embedder: Arc<Embedder>,
    pub chunker: Arc<Chunker>,
    pub vectors: Arc<dyn VectorIndex>,
    /// This process's lexical index; none in a worker.
    replica: Option<Replica>,
    pub auth: Auth,
    pub limiter: Arc<dyn RateLimiter>,
    /// Open WebSockets per user and per client address.
    pub connections: Arc<Connections>,
    pub chat_model: Arc<dyn ChatModel>,
    pub metrics: Metrics,
    /// `/query` results: in Redis when configured, else in process; none
    /// with `cache.results = false`.
    result_cache: Option<(Arc<dyn Cache>, CacheCounters)>,
    /// The Redis connection shared limits and caches use, if configured.
    pub redis: Option<Arc<Redis>>,
}

/// A lexical index and the follower that keeps it in step with the
/// database's chunk change log.
struct Replica {
    /// Searched directly; written only by `follower`.
    index: Arc<LexicalIndex>,
    follower: Arc<LexicalFollower>,
}

impl App {
    /// Load models, connect the DB (running migrations) and open the indexes
    /// `role` needs. Models are checked first: without them nothing else is
    /// useful.
    pub async fn open(settings: Settings, role: Role) -> Result<Arc<Self>> {
        let paths = ModelPaths::new(&settings.models_dir);
        paths.check()?;
        std::fs::create_dir_all(&settings.data_dir).map_err(|e| {
            Error::Unavailable(format!(
                "cannot create data directory {}: {e}",
                settings.data_dir.display()
            ))
        })?;
        let tokenizer = load_tokenizer(&paths)?;
        let chunker = Arc::new(Chunker::new(
            tokenizer,
            settings.chunking.max_tokens,
            settings.chunking.overlap_tokens,
        )?);
        let models_dir = settings.models_dir.clone();
        let embedding = settings.embedding.clone();
        let embedder = tokio::task::spawn_blocking(move || Embedder::load(&models_dir, &embedding))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        let db = Db::connect(&settings).await?;
        let vectors = open_vectors(&settings, embedder.dimension()).await?;
        let metrics = Metrics::new();
        let redis = open_redis(&settings, &metrics).await?;
        let shared_cache: Option<Arc<dyn Cache>> = redis
            .clone()
            .map(|r| Arc::new(RedisCache::new(r)) as Arc<dyn Cache>);
        let mut embedder =
            embedder.with_metrics(metrics.embedder.clone(), metrics.cache("query_embeddings"));
        if let Some(shared) = &shared_cache {
            embedder = embedder.with_shared_cache(
                shared.clone(),
                std::time::Duration::from_secs(settings.cache.embeddings_ttl_secs),
            );
        }
        let result_cache = settings.cache.results.then(|| {
            let cache = shared_cache.clone().unwrap_or_else(|| {
                Arc::new(InProcess::new(settings.cache.results_max_bytes)) as Arc<dyn Cache>
            });
            (cache, metrics.cache("query_results"))
        });
        let replica = match role {
            Role::Node => Some(open_replica(&settings, &db, &metrics).await?),
            Role::Worker => None,
        };
        // `serve` has already refused a missing secret unless in dev mode; the
        // other commands never issue tokens, so a random one is harmless there.
        let secret = settings.jwt_secret(true)?;
        let auth = Auth::new(&secret, settings.auth.clone());
        let limiter = ratelimit::from_settings(&settings.rate_limit, redis.clone());
        // At zero from the start, so the first refusal shows in `rate()`.
        for bucket in ratelimit::Bucket::ALL {
            let _ = metrics
                .rate_limited
                .get_or_create(&crate::metrics::BucketLabels {
                    bucket: bucket.name(),
                });
        }
        let embedder = Arc::new(embedder);
        let chat_model = match role {
            Role::Node => chat_model(&settings, &embedder).await?,
            // Workers never answer; the extractive model costs nothing to hold.
            Role::Worker => Arc::new(ExtractiveModel::new(embedder.clone())),
        };
        let connections = Connections::new(
            settings.server.max_ws_per_user,
            settings.server.max_ws_per_ip,
        );
        Ok(Arc::new(Self {
            metrics,
            result_cache,
            redis,
            replica,
            connections,
            chat_model,
            auth,
            limiter,
            settings,
            db,
            embedder,
            chunker,
            vectors,
        }))
    }

    /// This process's lexical index. Only a worker has none, and workers
    /// never search.
    pub fn lexical(&self) -> Result<&Arc<LexicalIndex>> {
        Ok(&self.replica()?.index)
    }

    /// The result cache and its hit and miss counters, if results are cached.
    pub fn result_cache(&self) -> Option<&(Arc<dyn Cache>, CacheCounters)> {
        self.result_cache.as_ref()
    }

    /// Whether this process keeps a lexical index (every role but a worker).
    pub fn has_lexical(&self) -> bool {
        self.replica.is_some()
    }

    /// The follower that keeps [`App::lexical`] in step with the database.
    pub fn follower(&self) -> Result<&Arc<LexicalFollower>> {
        Ok(&self.replica()?.follower)
    }

    fn replica(&self) -> Result<&Replica> {
        self.replica.as_ref().ok_or_else(|| {
            Error::Internal("a job worker keeps no lexical index to search or check".into())
        })
    }

    /// Bring the lexical index to the database's present state: apply what
    /// other processes logged while this one was away, or rebuild it. Every
    /// command that searches or writes does this at start; `check` looks at
    /// the index as it finds it.
    pub async fn catch_up(&self) -> Result<()> {
        let Some(replica) = &self.replica else {
            return Ok(());
        };
        let done = replica.follower.catch_up().await?;
        if done.applied > 0 {
            tracing::info!(
                entries = done.applied,
                position = done.position,
                "lexical index caught up with the change log"
            );
        }
        Ok(())
    }

    /// What the ingestion pipeline needs of the app, and nothing else.
    pub fn indexer(&self) -> Indexer {
        Indexer {
            db: self.db.clone(),
            vectors: self.vectors.clone(),
            lexical: self.replica.as_ref().map(|r| r.follower.clone()),
            embedder: self.embedder.clone(),
            chunker: self.chunker.clone(),
            counters: IngestCounters {
                documents: self.metrics.documents_ingested.clone(),
                chunks: self.metrics.chunks_ingested.clone(),
            },
        }
    }

    /// Make index writes durable; called on shutdown.
    pub async fn flush(&self) -> Result<()> {
        self.vectors.flush().await?;
        if let Some(replica) = &self.replica {
            replica.follower.flush().await?;
        }
        Ok(())
    }
}

async fn open_replica(settings: &Settings, db: &Db, metrics: &Metrics) -> Result<Replica> {
    let dir = settings.lexical_dir();
    let index = tokio::task::spawn_blocking(move || LexicalIndex::open(&dir))
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(|e| in_use_hint(e.into(), settings, "lexical index (Tantivy)"))?;
    let index = Arc::new(index);
    let follower = Arc::new(LexicalFollower::new(
        db.clone(),
        index.clone(),
        metrics.lexical.clone(),
    ));
    Ok(Replica { index, follower })
}

/// The Redis connection, when `redis.url` is set. A node starts without
/// Redis answering (it serves on the fallbacks and says so); a URL that
/// cannot be a Redis URL stops it.
async fn open_redis(settings: &Settings, metrics: &Metrics) -> Result<Option<Arc<Redis>>> {
    if !settings.redis.enabled() {
        return Ok(None);
    }
    let redis = Redis::open(&settings.redis, metrics.redis.clone())
        .map_err(|e| Error::Unavailable(e.to_string()))?;
    match redis.ping().await {
        Ok(()) => tracing::info!("Redis answers: rate limits and caches are shared"),
        Err(e) => {
            metrics.redis.up.set(0);
            tracing::warn!(
                error = %e,
                "Redis does not answer yet: rate limits are per node and shared caches \
                 are skipped until it does"
            );
        }
    }
    Ok(Some(redis))
}

/// The configured vector index: a Qdrant server when `vector.qdrant_url` is
/// set, else the embedded shard in the data directory.
async fn open_vectors(settings: &Settings, dim: usize) -> Result<Arc<dyn VectorIndex>> {
    if settings.vector.uses_server() {
        let index = ServerVectorIndex::open(&settings.vector, dim).await?;
        return Ok(Arc::new(index));
    }
    let vector_dir = settings.vector_dir();
    let index = tokio::task::spawn_blocking(move || EdgeVectorIndex::open(&vector_dir, dim))
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(|e| in_use_hint(e.into(), settings, "embedded vector index (qdrant-edge)"))?;
    Ok(Arc::new(index))
}

/// The configured answer writer. `auto` prefers the local GGUF model when its
/// file is installed and falls back to the extractive answerer, which needs
/// nothing beyond the embedder.
async fn chat_model(settings: &Settings, embedder: &Arc<Embedder>) -> Result<Arc<dyn ChatModel>> {
    use crate::config::ChatBackend;
    let extractive = || -> Arc<dyn ChatModel> { Arc::new(ExtractiveModel::new(embedder.clone())) };
    match settings.chat.backend {
        ChatBackend::OpenAi => Ok(Arc::new(
            OpenAiModel::new(&settings.llm).map_err(|e| Error::Unavailable(e.to_string()))?,
        )),
        ChatBackend::Extractive => Ok(extractive()),
        #[cfg(feature = "local-llm")]
        backend @ (ChatBackend::Auto | ChatBackend::Local) => {
            let path = crate::llm::local::model_path(&settings.local_llm, &settings.models_dir);
            if backend == ChatBackend::Auto && !path.is_file() {
                return Ok(extractive());
            }
            let local = settings.local_llm.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                crate::llm::local::LocalModel::load(&path, &local)
            })
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
            match loaded {
                Ok(model) => Ok(Arc::new(model)),
                Err(e) if backend == ChatBackend::Auto => {
                    tracing::warn!(
                        "local model unusable, answering extractively instead: {e} \
                         (set chat.backend to silence this)"
                    );
                    Ok(extractive())
                }
                Err(e) => Err(Error::Unavailable(e.to_string())),
            }
        }
        // Settings validation refuses `local` in a build without it.
        #[cfg(not(feature = "local-llm"))]
        ChatBackend::Auto | ChatBackend::Local => Ok(extractive()),
    }
}

/// Both index libraries lock their directories, so one data directory
/// belongs to one process: say so, and what to do instead.
fn in_use_hint(e: Error, settings: &Settings, what: &str) -> Error {
    let msg = e.to_string();
    if !msg.to_lowercase().contains("lock") {
        return e;
    }
    let dir = settings.data_dir.display();
    let instead = if settings.vector.uses_server() {
        "give each API node a data directory of its own".to_string()
    } else {
        "to run API nodes and workers as separate processes, use PostgreSQL \
         (database.url) and a Qdrant server (vector.qdrant_url), and give each \
         API node a data directory of its own"
            .to_string()
    };
    Error::Unavailable(format!(
        "the {what} in data directory {dir} is held by another ragchat process ({msg}); \
         an embedded index can be open in one process only: stop that process, or {instead}"
    ))
}
