//! Typed settings: built-in defaults < `ragchat.toml` < `RAGCHAT_*` environment
//! variables, validated once at start so a bad value stops the process with the
//! key named instead of failing later in some request.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: String, message: String },
    #[error("invalid setting `{key}`: {message}")]
    Invalid { key: String, message: String },
    #[error("unknown environment variable `{var}`: no setting `{key}` exists")]
    UnknownEnv { var: String, key: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Every piece of local state (SQLite file, vector shard, Tantivy index) lives here.
    pub data_dir: PathBuf,
    pub models_dir: PathBuf,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub embedding: EmbeddingSettings,
    pub chunking: ChunkingSettings,
    pub retrieval: RetrievalSettings,
    pub vector: VectorSettings,
    pub auth: AuthSettings,
    pub rate_limit: RateLimitSettings,
    pub chat: ChatSettings,
    pub llm: LlmSettings,
    pub local_llm: LocalLlmSettings,
    pub uploads: UploadSettings,
    pub jobs: JobSettings,
    pub cleaning: CleaningSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub bind: String,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    pub shutdown_timeout_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// Empty means the embedded SQLite file `<data_dir>/ragchat.db`.
    pub url: String,
    pub pool_size: u32,
    pub connect_timeout_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddingSettings {
    pub batch_size: usize,
    /// Independent model sessions, so concurrent requests do not queue behind one.
    pub pool_size: usize,
    pub threads_per_session: usize,
    pub max_length: usize,
    pub query_cache_size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChunkingSettings {
    pub max_tokens: usize,
    pub overlap_tokens: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetrievalSettings {
    pub rrf_k: f32,
    /// Chunks each signal contributes before fusion.
    pub candidates: usize,
    pub default_top_k: usize,
    pub max_top_k: usize,
    pub dense_weight: f32,
    pub lexical_weight: f32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VectorSettings {
    /// Empty means the embedded qdrant-edge shard under `<data_dir>/qdrant`.
    pub qdrant_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// HS256 signing secret for access tokens, at least 32 bytes. Empty is
    /// refused at start unless `serve --dev` (which then uses a random one).
    pub jwt_secret: String,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    /// `open`: anyone may register; `admin_only`: only admins create users.
    pub registration: String,
    pub min_password_length: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChatSettings {
    /// `auto` or `extractive` (the extractive answerer, no model needed) or
    /// `openai` (an OpenAI-compatible endpoint, see `[llm]`).
    pub backend: String,
    /// Below this cosine similarity of the best source the question is
    /// refused without calling the model.
    pub refusal_threshold: f32,
    pub default_top_k: usize,
    pub max_top_k: usize,
    /// Tokens kept free for the answer in the model's context window.
    pub answer_reserve_tokens: usize,
    /// Recent messages considered as history (then fitted to the budget).
    pub history_messages: usize,
    pub max_question_chars: usize,
    /// Seconds between WebSocket pings; a client silent for three is dropped.
    pub ping_interval_secs: u64,
}

/// An OpenAI-compatible chat completions endpoint (OpenAI, vLLM, Ollama,
/// llama.cpp server), used when `chat.backend = "openai"`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LlmSettings {
    /// Such as `https://api.openai.com/v1` or `http://127.0.0.1:11434/v1`.
    pub base_url: String,
    pub model: String,
    /// Best given as `RAGCHAT_LLM_API_KEY`; empty sends no key.
    pub api_key: String,
    /// Whole answer, first byte to last.
    pub request_timeout_secs: u64,
    /// From sending the request to the first token; only before it are
    /// failures retried, so a client never sees an answer twice.
    pub first_token_timeout_secs: u64,
    pub max_retries: u32,
    /// The model's context window in tokens (prompt and answer).
    pub context_window: usize,
}

/// A GGUF model run in process by llama.cpp, used when `chat.backend =
/// "local"`, or by `auto` when the model file exists.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LocalLlmSettings {
    /// Empty means `<models_dir>/llm/SmolLM2-135M-Instruct.Q4_1.gguf`, which
    /// `scripts/setup-models.sh --with-llm` installs.
    pub model_path: PathBuf,
    /// Threads per generation; 0 means one per core. Size it to the cores
    /// left free: oversubscribed llama.cpp threads collapse throughput.
    pub threads: usize,
    /// Context window in tokens (prompt and answer), at most what the model
    /// was trained on.
    pub context_window: usize,
    /// Answers generated at once; more wait their turn.
    pub max_concurrent: usize,
    /// 0 is greedy decoding: deterministic, and what grounded answers want.
    pub temperature: f32,
    pub top_p: f32,
    /// 1.0 disables it; small models loop without a little.
    pub repeat_penalty: f32,
    pub seed: u32,
}

impl Default for LocalLlmSettings {
    fn default() -> Self {
        Self {
            model_path: PathBuf::new(),
            threads: 0,
            context_window: 4096,
            max_concurrent: 1,
            temperature: 0.0,
            top_p: 0.95,
            repeat_penalty: 1.1,
            seed: 42,
        }
    }
}

/// Limits on `POST /collections/{id}/documents`; crossing one is a 413 that
/// names it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UploadSettings {
    pub max_file_bytes: u64,
    pub max_files: usize,
    pub max_total_bytes: u64,
    /// Zip archives: entries, uncompressed bytes in all and per entry, and
    /// the compression ratio above which an entry is taken for a bomb.
    pub zip_max_entries: usize,
    pub zip_max_total_bytes: u64,
    pub zip_max_entry_bytes: u64,
    pub zip_max_ratio: u64,
}

impl Default for UploadSettings {
    fn default() -> Self {
        const MIB: u64 = 1024 * 1024;
        Self {
            max_file_bytes: 100 * MIB,
            max_files: 1000,
            max_total_bytes: 1024 * MIB,
            zip_max_entries: 10_000,
            zip_max_total_bytes: 512 * MIB,
            zip_max_entry_bytes: 64 * MIB,
            zip_max_ratio: 100,
        }
    }
}

/// The durable job queue and its workers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JobSettings {
    /// Workers `serve` runs in process; 0 leaves jobs to `ragchat worker`.
    pub workers: usize,
    /// A worker renews its lease every third of this; a job whose lease
    /// lapses (its worker died) is taken by another worker.
    pub lease_secs: u64,
    pub max_attempts: u32,
    /// Retry backoff: base × 2^(attempt-1), capped.
    pub retry_base_secs: u64,
    pub retry_max_secs: u64,
    /// How often an idle worker looks for work.
    pub poll_interval_ms: u64,
    /// Periodic vector index optimisation; 0 turns it off.
    pub optimize_interval_secs: u64,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            workers: 1,
            lease_secs: 30,
            max_attempts: 5,
            retry_base_secs: 5,
            retry_max_secs: 600,
            poll_interval_ms: 500,
            optimize_interval_secs: 3600,
        }
    }
}

/// What ingestion skips before chunking.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CleaningSettings {
    /// Skip documents whose text repeats one already in the collection.
    pub skip_duplicates: bool,
    /// Estimated Jaccard similarity (MinHash) above which a document is a
    /// near-duplicate of one already in the collection; 1.0 turns it off.
    pub near_duplicate_threshold: f32,
    /// Documents scoring below this quality (0 to 1) are skipped; 0 turns it off.
    pub min_quality: f32,
}

impl Default for CleaningSettings {
    fn default() -> Self {
        Self {
            skip_duplicates: true,
            near_duplicate_threshold: 0.9,
            min_quality: 0.5,
        }
    }
}

/// Token buckets per client IP and per user, one pair per kind of request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    pub enabled: bool,
    pub login_per_minute: u32,
    pub login_burst: u32,
    pub query_per_minute: u32,
    pub query_burst: u32,
    pub chat_per_minute: u32,
    pub chat_burst: u32,
    /// Take the client IP from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// Per-IP buckets are this many times the per-user ones (users behind one NAT).
    pub ip_factor: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter such as `info` or `ragchat=debug,actix_web=info`.
    pub level: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            models_dir: PathBuf::from("./models"),
            server: ServerSettings::default(),
            database: DatabaseSettings::default(),
            embedding: EmbeddingSettings::default(),
            chunking: ChunkingSettings::default(),
            retrieval: RetrievalSettings::default(),
            vector: VectorSettings::default(),
            auth: AuthSettings::default(),
            rate_limit: RateLimitSettings::default(),
            chat: ChatSettings::default(),
            llm: LlmSettings::default(),
            local_llm: LocalLlmSettings::default(),
            uploads: UploadSettings::default(),
            jobs: JobSettings::default(),
            cleaning: CleaningSettings::default(),
            log: LogSettings::default(),
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            workers: 0,
            shutdown_timeout_secs: 10,
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            pool_size: 8,
            connect_timeout_secs: 10,
        }
    }
}

impl Default for EmbeddingSettings {
    fn default() -> Self {
        Self {
            batch_size: 32,
            pool_size: 2,
            threads_per_session: 1,
            max_length: 256,
            query_cache_size: 4096,
        }
    }
}

impl Default for ChunkingSettings {
    fn default() -> Self {
        // Chosen with `ragchat eval` on Cranfield and SciFact; see docs/ARCHITECTURE.md.
        Self {
            max_tokens: 200,
            overlap_tokens: 32,
        }
    }
}

impl Default for RetrievalSettings {
    fn default() -> Self {
        Self {
            rrf_k: 60.0,
            candidates: 100,
            default_top_k: 10,
            max_top_k: 100,
            dense_weight: 1.0,
            lexical_weight: 1.0,
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: String::new(),
            access_ttl_secs: 15 * 60,
            refresh_ttl_secs: 30 * 24 * 3600,
            registration: "admin_only".into(),
            min_password_length: 10,
        }
    }
}

impl Default for LlmSettings {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            model: String::new(),
            api_key: String::new(),
            request_timeout_secs: 120,
            first_token_timeout_secs: 30,
            max_retries: 2,
            context_window: 8192,
        }
    }
}

impl Default for ChatSettings {
    fn default() -> Self {
        Self {
            backend: "auto".into(),
            refusal_threshold: 0.3,
            default_top_k: 5,
            max_top_k: 20,
            answer_reserve_tokens: 512,
            history_messages: 20,
            max_question_chars: 4000,
            ping_interval_secs: 15,
        }
    }
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            login_per_minute: 10,
            login_burst: 5,
            query_per_minute: 600,
            query_burst: 60,
            chat_per_minute: 60,
            chat_burst: 10,
            trust_forwarded_for: false,
            ip_factor: 4,
        }
    }
}

/// Secrets that appear in examples and must never sign real tokens.
pub const KNOWN_SECRETS: &[&str] = &["secret", "changeme", "change-me", "dev-secret-change-me"];

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info,qdrant_edge=error,llama-cpp-2=warn,llama_cpp_2=error".into(),
        }
    }
}

/// Short environment names kept for convenience and for the DESIGN conventions.
const ENV_ALIASES: &[(&str, &str)] = &[
    ("DATA_DIR", "data_dir"),
    ("MODELS_DIR", "models_dir"),
    ("BIND", "server.bind"),
    ("DATABASE_URL", "database.url"),
    ("QDRANT_URL", "vector.qdrant_url"),
    ("JWT_SECRET", "auth.jwt_secret"),
];

/// Variables with the prefix that are not settings (read elsewhere).
const ENV_IGNORED: &[&str] = &["CONFIG", "LOG"];

impl Settings {
    /// Load from an optional TOML file and the given environment. The file must
    /// exist when `explicit_file` is true; `./ragchat.toml` is optional.
    pub fn load(
        file: Option<&Path>,
        explicit_file: bool,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut tree =
            toml::Table::try_from(Settings::default()).map_err(|e| ConfigError::File {
                path: "<defaults>".into(),
                message: e.to_string(),
            })?;
        if let Some(path) = file {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    let file_tree: toml::Table =
                        toml::from_str(&text).map_err(|e| ConfigError::File {
                            path: path.display().to_string(),
                            message: e.to_string(),
                        })?;
                    merge(&mut tree, file_tree, "")?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit_file => {}
                Err(e) => {
                    return Err(ConfigError::File {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    })
                }
            }
        }
        let env: BTreeMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("RAGCHAT_"))
            .collect();
        for (var, value) in env {
            let name = &var["RAGCHAT_".len()..];
            if ENV_IGNORED.contains(&name) {
                continue;
            }
            let key = env_key(&tree, name).ok_or_else(|| ConfigError::UnknownEnv {
                var: var.clone(),
                key: name.to_ascii_lowercase(),
            })?;
            set_from_env(&mut tree, &key, &value)?;
        }
        let settings: Settings = serde_path_to_error::deserialize(toml::Value::Table(tree))
            .map_err(|e| invalid(&e.path().to_string(), e.inner().to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        self.server
            .bind
            .parse::<SocketAddr>()
            .map_err(|e| invalid("server.bind", format!("`{}`: {e}", self.server.bind)))?;
        let url = &self.database.url;
        let known = ["sqlite://", "postgres://", "postgresql://"];
        if !(url.is_empty() || known.iter().any(|p| url.starts_with(p))) {
            return Err(invalid(
                "database.url",
                "must start with sqlite:// or postgres:// (or be empty for the embedded SQLite file)",
            ));
        }
        if self.database.pool_size == 0 {
            return Err(invalid("database.pool_size", "must be at least 1"));
        }
        let e = &self.embedding;
        if e.batch_size == 0 || e.batch_size > 1024 {
            return Err(invalid(
                "embedding.batch_size",
                "must be between 1 and 1024",
            ));
        }
        if e.pool_size == 0 || e.pool_size > 64 {
            return Err(invalid("embedding.pool_size", "must be between 1 and 64"));
        }
        if e.threads_per_session == 0 {
            return Err(invalid(
                "embedding.threads_per_session",
                "must be at least 1",
            ));
        }
        if !(16..=512).contains(&e.max_length) {
            return Err(invalid(
                "embedding.max_length",
                "must be between 16 and 512",
            ));
        }
        let c = &self.chunking;
        // Two tokens of the model's window go to [CLS] and [SEP].
        if c.max_tokens < 16 || c.max_tokens + 2 > e.max_length {
            return Err(invalid(
                "chunking.max_tokens",
                format!(
                    "must be between 16 and embedding.max_length - 2 ({})",
                    e.max_length.saturating_sub(2)
                ),
            ));
        }
        if c.overlap_tokens >= c.max_tokens {
            return Err(invalid(
                "chunking.overlap_tokens",
                "must be smaller than chunking.max_tokens",
            ));
        }
        let r = &self.retrieval;
        if !(r.rrf_k.is_finite() && r.rrf_k > 0.0) {
            return Err(invalid("retrieval.rrf_k", "must be a positive number"));
        }
        if r.max_top_k == 0 || r.max_top_k > 1000 {
            return Err(invalid("retrieval.max_top_k", "must be between 1 and 1000"));
        }
        if r.default_top_k == 0 || r.default_top_k > r.max_top_k {
            return Err(invalid(
                "retrieval.default_top_k",
                "must be between 1 and retrieval.max_top_k",
            ));
        }
        if r.candidates == 0 || r.candidates > 10_000 {
            return Err(invalid(
                "retrieval.candidates",
                "must be between 1 and 10000",
            ));
        }
        for (key, w) in [
            ("retrieval.dense_weight", r.dense_weight),
            ("retrieval.lexical_weight", r.lexical_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return Err(invalid(key, "must be a non-negative number"));
            }
        }
        if !self.vector.qdrant_url.is_empty() {
            return Err(invalid(
                "vector.qdrant_url",
                "a remote Qdrant server is not supported by this build yet; leave it empty for the embedded index",
            ));
        }
        let a = &self.auth;
        if !a.jwt_secret.is_empty() && a.jwt_secret.len() < 32 {
            return Err(invalid("auth.jwt_secret", "must be at least 32 bytes"));
        }
        if a.access_ttl_secs == 0 || a.access_ttl_secs > 24 * 3600 {
            return Err(invalid(
                "auth.access_ttl_secs",
                "must be between 1 and 86400",
            ));
        }
        if a.refresh_ttl_secs < a.access_ttl_secs {
            return Err(invalid(
                "auth.refresh_ttl_secs",
                "must be at least auth.access_ttl_secs",
            ));
        }
        if !matches!(a.registration.as_str(), "open" | "admin_only") {
            return Err(invalid(
                "auth.registration",
                "must be `open` or `admin_only`",
            ));
        }
        if !(8..=128).contains(&a.min_password_length) {
            return Err(invalid(
                "auth.min_password_length",
                "must be between 8 and 128",
            ));
        }
        let rl = &self.rate_limit;
        for (key, v) in [
            ("rate_limit.login_per_minute", rl.login_per_minute),
            ("rate_limit.login_burst", rl.login_burst),
            ("rate_limit.query_per_minute", rl.query_per_minute),
            ("rate_limit.query_burst", rl.query_burst),
            ("rate_limit.chat_per_minute", rl.chat_per_minute),
            ("rate_limit.chat_burst", rl.chat_burst),
            ("rate_limit.ip_factor", rl.ip_factor),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        let c = &self.chat;
        if !matches!(
            c.backend.as_str(),
            "auto" | "extractive" | "openai" | "local"
        ) {
            return Err(invalid(
                "chat.backend",
                "must be `auto`, `extractive`, `openai` or `local`",
            ));
        }
        if c.backend == "local" && !cfg!(feature = "local-llm") {
            return Err(invalid(
                "chat.backend",
                "`local` needs a build with the `local-llm` feature (the default)",
            ));
        }
        let u = &self.uploads;
        for (key, v) in [
            ("uploads.max_file_bytes", u.max_file_bytes),
            ("uploads.max_total_bytes", u.max_total_bytes),
            ("uploads.max_files", u.max_files as u64),
            ("uploads.zip_max_entries", u.zip_max_entries as u64),
            ("uploads.zip_max_total_bytes", u.zip_max_total_bytes),
            ("uploads.zip_max_entry_bytes", u.zip_max_entry_bytes),
            ("uploads.zip_max_ratio", u.zip_max_ratio),
            ("jobs.lease_secs", self.jobs.lease_secs),
            ("jobs.max_attempts", self.jobs.max_attempts as u64),
            ("jobs.retry_base_secs", self.jobs.retry_base_secs),
            ("jobs.poll_interval_ms", self.jobs.poll_interval_ms),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if self.jobs.retry_max_secs < self.jobs.retry_base_secs {
            return Err(invalid(
                "jobs.retry_max_secs",
                "must be at least jobs.retry_base_secs",
            ));
        }
        let cl = &self.cleaning;
        if !(0.0..=1.0).contains(&cl.near_duplicate_threshold) {
            return Err(invalid(
                "cleaning.near_duplicate_threshold",
                "must be between 0 and 1",
            ));
        }
        if !(0.0..=1.0).contains(&cl.min_quality) {
            return Err(invalid("cleaning.min_quality", "must be between 0 and 1"));
        }
        let ll = &self.local_llm;
        if ll.context_window < 256 {
            return Err(invalid(
                "local_llm.context_window",
                "must be at least 256 tokens",
            ));
        }
        if ll.max_concurrent == 0 {
            return Err(invalid("local_llm.max_concurrent", "must be at least 1"));
        }
        if !(ll.temperature.is_finite() && (0.0..=2.0).contains(&ll.temperature)) {
            return Err(invalid("local_llm.temperature", "must be between 0 and 2"));
        }
        if !(ll.top_p > 0.0 && ll.top_p <= 1.0) {
            return Err(invalid("local_llm.top_p", "must be in (0, 1]"));
        }
        if !(ll.repeat_penalty.is_finite() && ll.repeat_penalty > 0.0) {
            return Err(invalid("local_llm.repeat_penalty", "must be above 0"));
        }
        let l = &self.llm;
        if c.backend == "openai" {
            if !(l.base_url.starts_with("http://") || l.base_url.starts_with("https://")) {
                return Err(invalid(
                    "llm.base_url",
                    "chat.backend = \"openai\" needs an http(s) URL such as http://127.0.0.1:11434/v1",
                ));
            }
            if l.model.trim().is_empty() {
                return Err(invalid(
                    "llm.model",
                    "chat.backend = \"openai\" needs a model name",
                ));
            }
        }
        if l.request_timeout_secs == 0 || l.first_token_timeout_secs == 0 {
            return Err(invalid(
                "llm.request_timeout_secs",
                "timeouts must be at least 1 second",
            ));
        }
        if l.max_retries > 10 {
            return Err(invalid("llm.max_retries", "must be at most 10"));
        }
        if l.context_window < 256 {
            return Err(invalid("llm.context_window", "must be at least 256 tokens"));
        }
        if !(c.refusal_threshold.is_finite() && (-1.0..=1.0).contains(&c.refusal_threshold)) {
            return Err(invalid(
                "chat.refusal_threshold",
                "must be a cosine similarity between -1 and 1",
            ));
        }
        if c.max_top_k == 0 || c.max_top_k > 100 {
            return Err(invalid("chat.max_top_k", "must be between 1 and 100"));
        }
        if c.default_top_k == 0 || c.default_top_k > c.max_top_k {
            return Err(invalid(
                "chat.default_top_k",
                "must be between 1 and chat.max_top_k",
            ));
        }
        if c.answer_reserve_tokens < 16 {
            return Err(invalid("chat.answer_reserve_tokens", "must be at least 16"));
        }
        if c.max_question_chars == 0 || c.max_question_chars > 100_000 {
            return Err(invalid(
                "chat.max_question_chars",
                "must be between 1 and 100000",
            ));
        }
        if c.ping_interval_secs == 0 {
            return Err(invalid("chat.ping_interval_secs", "must be at least 1"));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(invalid("log.format", "must be `text` or `json`"));
        }
        Ok(())
    }

    /// The signing secret to use, or why the service must not start.
    /// `dev` allows a missing secret (replaced by a random one per process).
    pub fn jwt_secret(&self, dev: bool) -> Result<Vec<u8>, ConfigError> {
        let s = &self.auth.jwt_secret;
        if KNOWN_SECRETS.contains(&s.as_str()) && !s.is_empty() {
            return Err(invalid(
                "auth.jwt_secret",
                "is a published example value; generate one with `openssl rand -hex 32`",
            ));
        }
        if s.is_empty() {
            if !dev {
                return Err(invalid(
                    "auth.jwt_secret",
                    "is not set: set RAGCHAT_AUTH_JWT_SECRET (at least 32 bytes, e.g. `openssl rand -hex 32`) or run `ragchat serve --dev`",
                ));
            }
            let bytes: [u8; 32] = rand::random();
            return Ok(bytes.to_vec());
        }
        Ok(s.as_bytes().to_vec())
    }

    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let url = &self.database.url;
        if url.is_empty() {
            Some(self.data_dir.join("ragchat.db"))
        } else {
            url.strip_prefix("sqlite://").map(PathBuf::from)
        }
    }

    pub fn vector_dir(&self) -> PathBuf {
        self.data_dir.join("qdrant")
    }

    pub fn lexical_dir(&self) -> PathBuf {
        self.data_dir.join("tantivy")
    }
}

/// Overlay `from` onto `into`, refusing keys the defaults do not have so a typo
/// in the file is reported instead of silently ignored.
fn merge(into: &mut toml::Table, from: toml::Table, prefix: &str) -> Result<(), ConfigError> {
    for (k, v) in from {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(dst)), toml::Value::Table(src)) => merge(dst, src, &path)?,
            (Some(toml::Value::Table(_)), _) => return Err(invalid(&path, "must be a table")),
            (Some(slot), v) => *slot = v,
            (None, _) => return Err(invalid(&path, "unknown setting")),
        }
    }
    Ok(())
}

/// Map `SECTION_KEY` (after the prefix) to a dotted key that exists in `tree`.
fn env_key(tree: &toml::Table, name: &str) -> Option<String> {
    if let Some((_, key)) = ENV_ALIASES.iter().find(|(alias, _)| *alias == name) {
        return Some((*key).to_string());
    }
    let lower = name.to_ascii_lowercase();
    for (section, value) in tree {
        match value {
            toml::Value::Table(t) => {
                if let Some(rest) = lower.strip_prefix(&format!("{section}_")) {
                    if t.contains_key(rest) {
                        return Some(format!("{section}.{rest}"));
                    }
                }
            }
            _ if *section == lower => return Some(lower),
            _ => {}
        }
    }
    None
}

/// Parse an environment string with the type of the default at `key`.
fn set_from_env(tree: &mut toml::Table, key: &str, raw: &str) -> Result<(), ConfigError> {
    let (table, leaf) = match key.split_once('.') {
        Some((section, leaf)) => match tree.get_mut(section) {
            Some(toml::Value::Table(t)) => (t, leaf),
            _ => return Err(invalid(key, "unknown setting")),
        },
        None => (tree, key),
    };
    let slot = table
        .get_mut(leaf)
        .ok_or_else(|| invalid(key, "unknown setting"))?;
    let parsed = match slot {
        toml::Value::Integer(_) => raw
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| invalid(key, format!("`{raw}` is not an integer")))?,
        toml::Value::Float(_) => raw
            .trim()
            .parse::<f64>()
            .map(toml::Value::Float)
            .map_err(|_| invalid(key, format!("`{raw}` is not a number")))?,
        toml::Value::Boolean(_) => match raw.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => toml::Value::Boolean(true),
            "0" | "false" | "no" | "off" => toml::Value::Boolean(false),
            _ => return Err(invalid(key, format!("`{raw}` is not a boolean"))),
        },
        _ => toml::Value::String(raw.to_string()),
    };
    *slot = parsed;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        let s = Settings::load(None, false, env(&[])).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.sqlite_path().unwrap(), PathBuf::from("./data/ragchat.db"));
    }

    #[test]
    fn env_overrides_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ragchat.toml");
        std::fs::write(
            &file,
            "data_dir = \"/srv/x\"\n[retrieval]\nrrf_k = 30.0\ncandidates = 50\n",
        )
        .unwrap();
        let s = Settings::load(
            Some(&file),
            true,
            env(&[
                ("RAGCHAT_RETRIEVAL_CANDIDATES", "70"),
                ("RAGCHAT_BIND", "0.0.0.0:9000"),
                ("RAGCHAT_CHUNKING_OVERLAP_TOKENS", "10"),
                ("UNRELATED", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/srv/x"));
        assert_eq!(s.retrieval.rrf_k, 30.0);
        assert_eq!(s.retrieval.candidates, 70);
        assert_eq!(s.server.bind, "0.0.0.0:9000");
        assert_eq!(s.chunking.overlap_tokens, 10);
    }

    #[test]
    fn errors_name_the_key() {
        let cases: Vec<(Vec<(String, String)>, &str)> = vec![
            (
                env(&[("RAGCHAT_RETRIEVAL_CANDIDATES", "many")]),
                "retrieval.candidates",
            ),
            (env(&[("RAGCHAT_BIND", "nowhere")]), "server.bind"),
            (
                env(&[("RAGCHAT_CHUNKING_OVERLAP_TOKENS", "500")]),
                "chunking",
            ),
            (
                env(&[("RAGCHAT_DATABASE_URL", "mysql://x")]),
                "database.url",
            ),
            (env(&[("RAGCHAT_LOG_FORMAT", "xml")]), "log.format"),
            (env(&[("RAGCHAT_RETRIEVAL_RRF_K", "-1")]), "retrieval.rrf_k"),
            (
                env(&[("RAGCHAT_EMBEDDING_BATCH_SIZE", "0")]),
                "embedding.batch_size",
            ),
            (
                env(&[("RAGCHAT_RETRIEVAL_NOPE", "1")]),
                "RAGCHAT_RETRIEVAL_NOPE",
            ),
        ];
        for (vars, key) in cases {
            let err = Settings::load(None, false, vars.clone()).unwrap_err();
            assert!(
                err.to_string().contains(key),
                "{vars:?}: error `{err}` should name `{key}`"
            );
        }
    }

    #[test]
    fn file_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ragchat.toml");
        std::fs::write(&file, "[retrieval]\ncandidatez = 3\n").unwrap();
        let err = Settings::load(Some(&file), true, env(&[])).unwrap_err();
        assert!(err.to_string().contains("retrieval.candidatez"), "{err}");

        std::fs::write(&file, "[retrieval]\ncandidates = \"x\"\n").unwrap();
        let err = Settings::load(Some(&file), true, env(&[])).unwrap_err();
        assert!(err.to_string().contains("retrieval.candidates"), "{err}");

        std::fs::write(&file, "not toml [").unwrap();
        let err = Settings::load(Some(&file), true, env(&[])).unwrap_err();
        assert!(matches!(err, ConfigError::File { .. }), "{err}");
    }

    #[test]
    fn missing_file_is_an_error_only_when_named() {
        let missing = Path::new("/nonexistent/ragchat.toml");
        assert!(Settings::load(Some(missing), false, env(&[])).is_ok());
        assert!(Settings::load(Some(missing), true, env(&[])).is_err());
    }
}
