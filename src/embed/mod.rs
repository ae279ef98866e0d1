//! Sentence embeddings with all-MiniLM-L6-v2 through fastembed, loaded from
//! local files only. ONNX Runtime is loaded by us (not by fastembed) so a
//! missing or broken library is an error message, not a panic.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use fastembed::{
    InitOptionsUserDefined, Pooling, QuantizationMode, TextEmbedding, TokenizerFiles,
    UserDefinedEmbeddingModel,
};
use ort::environment::Environment;
use tokio::sync::Semaphore;

use crate::cache::Cache;
use crate::config::EmbeddingSettings;
use crate::metrics::{CacheCounters, EmbedderMetrics};

pub const DIMENSION: usize = 384;
pub const SETUP_HINT: &str = "run `scripts/setup-models.sh` to install them";

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("model files missing: {missing}; {hint}", hint = SETUP_HINT)]
    Missing { missing: String },
    #[error("cannot load ONNX Runtime from {path}: {message}")]
    Runtime { path: String, message: String },
    #[error("cannot load the embedding model: {0}")]
    Load(String),
    #[error("embedding failed: {0}")]
    Inference(String),
}

/// Where the installed model files live inside the models directory.
#[derive(Debug, Clone)]
pub struct ModelPaths {
    pub onnx: PathBuf,
    pub tokenizer: PathBuf,
    pub config: PathBuf,
    pub special_tokens_map: PathBuf,
    pub tokenizer_config: PathBuf,
    pub runtime: PathBuf,
}

impl ModelPaths {
    pub fn new(models_dir: &Path) -> Self {
        let m = models_dir.join("minilm");
        // An explicit ORT_DYLIB_PATH wins, as ort itself would honour it.
        let runtime = std::env::var_os("ORT_DYLIB_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| models_dir.join("onnxruntime").join("libonnxruntime.so"));
        Self {
            onnx: m.join("model.onnx"),
            tokenizer: m.join("tokenizer.json"),
            config: m.join("config.json"),
            special_tokens_map: m.join("special_tokens_map.json"),
            tokenizer_config: m.join("tokenizer_config.json"),
            runtime,
        }
    }

    /// Fail with every missing file named, before anything is loaded.
    pub fn check(&self) -> Result<(), EmbedError> {
        let missing: Vec<String> = [
            &self.onnx,
            &self.tokenizer,
            &self.config,
            &self.special_tokens_map,
            &self.tokenizer_config,
            &self.runtime,
        ]
        .iter()
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(EmbedError::Missing {
                missing: missing.join(", "),
            })
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, EmbedError> {
    std::fs::read(path).map_err(|e| EmbedError::Load(format!("{}: {e}", path.display())))
}

/// ONNX Runtime allows one environment per process; every embedder shares it.
static ORT_ENV: OnceLock<Result<Environment, String>> = OnceLock::new();

fn ort_environment(runtime: &Path) -> Result<Environment, EmbedError> {
    ORT_ENV
        .get_or_init(|| {
            ort::init_from(runtime)
                .map_err(|e| e.to_string())?
                .with_name("ragchat")
                .build()
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|message| EmbedError::Runtime {
            path: runtime.display().to_string(),
            message,
        })
}

/// A tokenizer matching the model's, without the fixed padding and truncation
/// the shipped `tokenizer.json` carries, so token counts are real lengths.
pub fn load_tokenizer(paths: &ModelPaths) -> Result<tokenizers::Tokenizer, EmbedError> {
    let mut tok = tokenizers::Tokenizer::from_file(&paths.tokenizer)
        .map_err(|e| EmbedError::Load(format!("{}: {e}", paths.tokenizer.display())))?;
    tok.with_padding(None);
    tok.with_truncation(None)
        .map_err(|e| EmbedError::Load(e.to_string()))?;
    Ok(tok)
}

/// A small pool of model sessions. Each `TextEmbedding` needs `&mut self`, so
/// one session serves one batch at a time; several sessions let concurrent
/// queries and ingestion batches run side by side on the blocking pool.
pub struct Embedder {
    idle: Arc<Mutex<Vec<TextEmbedding>>>,
    permits: Arc<Semaphore>,
    batch_size: usize,
    cache: moka::sync::Cache<String, Arc<Vec<f32>>>,
    /// Query embeddings shared with other nodes (Redis), behind `cache`.
    shared: Option<SharedEmbeddings>,
    texts_embedded: AtomicU64,
    metrics: EmbedderMetrics,
    cache_counters: Option<CacheCounters>,
}

struct SharedEmbeddings {
    cache: Arc<dyn Cache>,
    ttl: std::time::Duration,
}

impl Embedder {
    pub fn load(models_dir: &Path, settings: &EmbeddingSettings) -> Result<Self, EmbedError> {
        let paths = ModelPaths::new(models_dir);
        paths.check()?;
        let env = ort_environment(&paths.runtime)?;
        let onnx = read(&paths.onnx)?;
        let files = TokenizerFiles {
            tokenizer_file: read(&paths.tokenizer)?,
            config_file: read(&paths.config)?,
            special_tokens_map_file: read(&paths.special_tokens_map)?,
            tokenizer_config_file: read(&paths.tokenizer_config)?,
        };
        let mut sessions = Vec::with_capacity(settings.pool_size);
        for _ in 0..settings.pool_size {
            // Weight-only int8: compute stays fp32, so batching does not change results.
            let model = UserDefinedEmbeddingModel::new(onnx.clone(), files.clone())
                .with_pooling(Pooling::Mean)
                .with_quantization(QuantizationMode::None);
            let options = InitOptionsUserDefined::new()
                .with_environment(env.clone())
                .with_max_length(settings.max_length)
                .with_intra_threads(settings.threads_per_session);
            let session = TextEmbedding::try_new_from_user_defined(model, options)
                .map_err(|e| EmbedError::Load(e.to_string()))?;
            sessions.push(session);
        }
        Ok(Self {
            permits: Arc::new(Semaphore::new(sessions.len())),
            idle: Arc::new(Mutex::new(sessions)),
            batch_size: settings.batch_size,
            cache: moka::sync::Cache::builder()
                .max_capacity(settings.query_cache_size)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .build(),
            texts_embedded: AtomicU64::new(0),
            shared: None,
            metrics: EmbedderMetrics::default(),
            cache_counters: None,
        })
    }

    /// Record queue waits, batch sizes and cache hits in these metrics.
    pub fn with_metrics(mut self, metrics: EmbedderMetrics, cache: CacheCounters) -> Self {
        self.metrics = metrics;
        self.cache_counters = Some(cache);
        self
    }

    /// Look query embeddings up in `cache` (shared by every node) when this
    /// process has not got them, and keep new ones there for `ttl`.
    pub fn with_shared_cache(mut self, cache: Arc<dyn Cache>, ttl: std::time::Duration) -> Self {
        self.shared = Some(SharedEmbeddings { cache, ttl });
        self
    }

    pub fn dimension(&self) -> usize {
        DIMENSION
    }

    /// Texts run through the model so far (cache hits excluded).
    pub fn texts_embedded(&self) -> u64 {
        self.texts_embedded.load(Ordering::Relaxed)
    }

    /// Embed one batch on one session, off the async executor. The blocking
    /// task owns the session and the permit and gives both back itself: a
    /// caller that goes away meanwhile (a client disconnects, a timeout
    /// fires) drops only its wait, so the pool never loses a session.
    async fn embed_batch(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let waiting = std::time::Instant::now();
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| EmbedError::Inference(e.to_string()))?;
        let session = self
            .idle
            .lock()
            .map_err(|_| EmbedError::Inference("session pool poisoned".into()))?
            .pop()
            .ok_or_else(|| EmbedError::Inference("no idle session".into()))?;
        self.metrics
            .queue_wait
            .observe(waiting.elapsed().as_secs_f64());
        let n = texts.len();
        self.metrics.batch_size.observe(n as f64);
        let batch = self.batch_size;
        let idle = self.idle.clone();
        let result = tokio::task::spawn_blocking(move || {
            // Declared first, so released last: after the session is back.
            let _permit = permit;
            let mut session = session;
            let result = session.embed(&texts, Some(batch));
            // Back before looking at the result, so an error does not
            // shrink the pool either.
            if let Ok(mut idle) = idle.lock() {
                idle.push(session);
            }
            result
        })
        .await
        .map_err(|e| EmbedError::Inference(e.to_string()))?;
        let vectors = result.map_err(|e| EmbedError::Inference(e.to_string()))?;
        self.texts_embedded.fetch_add(n as u64, Ordering::Relaxed);
        self.metrics.texts.inc_by(n as u64);
        Ok(vectors)
    }

    /// Embed many texts, spreading batches over the session pool. Output order
    /// matches input order.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        // A batch is padded to its longest text, so batching texts of similar
        // length wastes far less compute than batching them in input order.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let sorted: Vec<String> = order.iter().map(|&i| texts[i].clone()).collect();
        let batches: Vec<Vec<String>> =
            sorted.chunks(self.batch_size).map(|c| c.to_vec()).collect();
        let results =
            futures::future::join_all(batches.into_iter().map(|b| self.embed_batch(b))).await;
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        let mut slots = order.into_iter();
        for r in results {
            for v in r? {
                let slot = slots
                    .next()
                    .ok_or_else(|| EmbedError::Inference("model returned extra vectors".into()))?;
                out[slot] = v;
            }
        }
        if slots.next().is_some() {
            return Err(EmbedError::Inference(
                "model returned too few vectors".into(),
            ));
        }
        Ok(out)
    }

    /// Embed a search query, remembering recent ones: in process, then in
    /// the shared cache when there is one.
    pub async fn embed_query(&self, query: &str) -> Result<Arc<Vec<f32>>, EmbedError> {
        let hit = |hit: bool| {
            if let Some(c) = &self.cache_counters {
                c.record(hit);
            }
        };
        if let Some(v) = self.cache.get(query) {
            hit(true);
            return Ok(v);
        }
        let shared_key = self.shared.as_ref().map(|_| shared_key(query));
        if let (Some(shared), Some(key)) = (&self.shared, &shared_key) {
            if let Some(v) = shared.cache.get(key).await.and_then(|b| from_bytes(&b)) {
                hit(true);
                let v = Arc::new(v);
                self.cache.insert(query.to_string(), v.clone());
                return Ok(v);
            }
        }
        hit(false);
        let v = self
            .embed_batch(vec![query.to_string()])
            .await?
            .pop()
            .ok_or_else(|| EmbedError::Inference("model returned no vector".into()))?;
        let v = Arc::new(v);
        self.cache.insert(query.to_string(), v.clone());
        if let (Some(shared), Some(key)) = (&self.shared, &shared_key) {
            shared.cache.put(key, to_bytes(&v), shared.ttl).await;
        }
        Ok(v)
    }
}

/// The shared cache's key for a query's embedding: the model and the exact
/// text (hashed, so any query makes a short key).
fn shared_key(query: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(query.as_bytes());
    format!("emb:{MODEL_TAG}:{}", hex::encode(digest))
}

/// Which model made a vector; part of the shared key, so a node with
/// another model never reads this one's vectors.
const MODEL_TAG: &str = "minilm-l6-v2-int8";

fn to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `None` unless `b` is exactly one vector of this model's dimension.
fn from_bytes(b: &[u8]) -> Option<Vec<f32>> {
    if b.len() != DIMENSION * 4 {
        return None;
    }
    Some(
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real_embedder(pool_size: usize) -> Embedder {
        let dir = std::env::var("RAGCHAT_MODELS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
        let settings = EmbeddingSettings {
            pool_size,
            query_cache_size: 0,
            ..Default::default()
        };
        Embedder::load(&dir, &settings)
            .expect("model files missing: run scripts/setup-models.sh before the tests")
    }

    /// A caller that stops waiting (its client went away) must not take a
    /// session with it: with a pool of one, the next query would otherwise
    /// fail with "no idle session" for the rest of the process's life.
    #[tokio::test]
    async fn an_abandoned_embedding_gives_its_session_back() {
        let embedder = real_embedder(1);
        let long = "boundary layer separation on a swept wing ".repeat(40);
        for _ in 0..3 {
            // Dropped while the model runs on the blocking pool.
            let abandoned = tokio::time::timeout(
                std::time::Duration::from_micros(50),
                embedder.embed(vec![long.clone()]),
            )
            .await;
            assert!(abandoned.is_err(), "the model finished within 50 µs");
            let v = embedder
                .embed_query("normal shock wave")
                .await
                .expect("the pool still has its session");
            assert_eq!(v.len(), DIMENSION);
        }
    }

    #[test]
    fn shared_vectors_round_trip_and_refuse_another_size() {
        let v: Vec<f32> = (0..DIMENSION).map(|i| i as f32 / 7.0).collect();
        assert_eq!(from_bytes(&to_bytes(&v)), Some(v));
        assert_eq!(from_bytes(&[0u8; 12]), None);
        assert_ne!(shared_key("a"), shared_key("a "));
    }

    #[test]
    fn missing_files_name_the_setup_script() {
        let dir = tempfile::tempdir().unwrap();
        let err = ModelPaths::new(dir.path()).check().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("setup-models.sh"), "{msg}");
        assert!(msg.contains("model.onnx"), "{msg}");
    }
}
