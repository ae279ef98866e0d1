//! The one place that turns `Settings` into live backends.

use std::sync::Arc;

use crate::auth::Auth;
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
use crate::ingest::pipeline::Indexer;
use crate::llm::extractive::ExtractiveModel;
use crate::llm::openai::OpenAiModel;
use crate::llm::ChatModel;
use crate::metrics::Metrics;
use crate::ratelimit::{self, Connections, RateLimiter};

pub struct App {
    pub settings: Settings,
    pub db: Db,
    pub embedder: Arc<Embedder>,
    pub chunker: Arc<Chunker>,
    pub vectors: Arc<dyn VectorIndex>,
    /// Searched directly; written only by `follower`.
    pub lexical: Arc<LexicalIndex>,
    /// Keeps `lexical` in step with the database's chunk change log.
    pub follower: Arc<LexicalFollower>,
    pub auth: Auth,
    pub limiter: Arc<dyn RateLimiter>,
    /// Open WebSockets per user and per client address.
    pub connections: Arc<Connections>,
    pub chat_model: Arc<dyn ChatModel>,
    pub metrics: Metrics,
}

impl App {
    /// Load models, connect the DB (running migrations) and open both indexes.
    /// Models are checked first: without them nothing else is useful.
    pub async fn open(settings: Settings) -> Result<Arc<Self>> {
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
        let lexical_dir = settings.lexical_dir();
        let lexical = tokio::task::spawn_blocking(move || LexicalIndex::open(&lexical_dir))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(|e| in_use_hint(e.into(), &settings))?;
        let metrics = Metrics::default();
        let lexical = Arc::new(lexical);
        let follower = Arc::new(LexicalFollower::new(
            db.clone(),
            lexical.clone(),
            metrics.lexical.clone(),
        ));
        // `serve` has already refused a missing secret unless in dev mode; the
        // other commands never issue tokens, so a random one is harmless there.
        let secret = settings.jwt_secret(true)?;
        let auth = Auth::new(&secret, settings.auth.clone());
        let limiter = ratelimit::from_settings(&settings.rate_limit);
        let embedder = Arc::new(embedder);
        let chat_model = chat_model(&settings, &embedder).await?;
        let connections = Connections::new(
            settings.server.max_ws_per_user,
            settings.server.max_ws_per_ip,
        );
        Ok(Arc::new(Self {
            metrics,
            follower,
            connections,
            chat_model,
            auth,
            limiter,
            settings,
            db,
            embedder,
            chunker,
            vectors,
            lexical,
        }))
    }

    /// Bring the lexical index to the database's present state: apply what
    /// other processes logged while this one was away, or rebuild it. Every
    /// command that searches or writes does this at start; `check` looks at
    /// the index as it finds it.
    pub async fn catch_up(&self) -> Result<()> {
        let done = self.follower.catch_up().await?;
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
            lexical: self.follower.clone(),
            embedder: self.embedder.clone(),
            chunker: self.chunker.clone(),
        }
    }

    /// Make index writes durable; called on shutdown.
    pub async fn flush(&self) -> Result<()> {
        self.vectors.flush().await?;
        self.follower.flush().await?;
        Ok(())
    }
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
        .map_err(|e| in_use_hint(e.into(), settings))?;
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

/// Both index libraries lock their directories; say which process to stop.
fn in_use_hint(e: Error, settings: &Settings) -> Error {
    let msg = e.to_string();
    if msg.to_lowercase().contains("lock") {
        Error::Unavailable(format!(
            "{msg} (is another ragchat process using data directory {}? stop it first)",
            settings.data_dir.display()
        ))
    } else {
        e
    }
}
