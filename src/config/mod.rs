//! Typed settings: built-in defaults < `ragchat.toml` < `RAGCHAT_*` environment
//! variables, validated once at start so a bad value stops the process with the
//! key named instead of failing later in some request.
//!
//! One file per `[section]` holds its struct, its defaults and its `check()`;
//! closed sets of strings are enums, so a bad one fails while deserializing,
//! with the key named like any other type error.

mod auth;
mod cache;
mod chat;
mod chunking;
mod cleaning;
mod crawl;
mod database;
mod embedding;
mod jobs;
mod lexical;
mod llm;
mod local_llm;
mod log;
mod rate_limit;
mod redis;
mod retrieval;
mod server;
mod telemetry;
mod uploads;
mod vector;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use self::redis::RedisSettings;
pub use auth::{AuthSettings, Registration, KNOWN_SECRETS};
pub use cache::CacheSettings;
pub use chat::{ChatBackend, ChatSettings};
pub use chunking::ChunkingSettings;
pub use cleaning::CleaningSettings;
pub use crawl::{CrawlSettings, MAX_CRAWL_DELAY_SECS};
pub use database::DatabaseSettings;
pub use embedding::EmbeddingSettings;
pub use jobs::JobSettings;
pub use lexical::LexicalSettings;
pub use llm::LlmSettings;
pub use local_llm::LocalLlmSettings;
pub use log::{LogFormat, LogSettings};
pub use rate_limit::{canonical, limiter_key, IpNet, RateLimitSettings};
pub use retrieval::{Fusion, Method, Normalization, RetrievalSettings, Weights};
pub use server::ServerSettings;
pub use telemetry::TelemetrySettings;
pub use uploads::UploadSettings;
pub use vector::VectorSettings;

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
    pub redis: RedisSettings,
    pub cache: CacheSettings,
    pub chat: ChatSettings,
    pub llm: LlmSettings,
    pub local_llm: LocalLlmSettings,
    pub uploads: UploadSettings,
    pub jobs: JobSettings,
    pub lexical: LexicalSettings,
    pub cleaning: CleaningSettings,
    pub crawl: CrawlSettings,
    pub log: LogSettings,
    pub telemetry: TelemetrySettings,
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
            redis: RedisSettings::default(),
            cache: CacheSettings::default(),
            chat: ChatSettings::default(),
            llm: LlmSettings::default(),
            local_llm: LocalLlmSettings::default(),
            uploads: UploadSettings::default(),
            jobs: JobSettings::default(),
            lexical: LexicalSettings::default(),
            cleaning: CleaningSettings::default(),
            crawl: CrawlSettings::default(),
            log: LogSettings::default(),
            telemetry: TelemetrySettings::default(),
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
    ("QDRANT_API_KEY", "vector.qdrant_api_key"),
    ("JWT_SECRET", "auth.jwt_secret"),
    ("REDIS_URL", "redis.url"),
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

    /// Checks that types alone cannot express, section by section; the
    /// first failure is reported.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        self.server.check()?;
        self.database.check()?;
        self.embedding.check()?;
        self.chunking.check(&self.embedding)?;
        self.retrieval.check()?;
        self.vector.check()?;
        self.auth.check()?;
        self.rate_limit.check()?;
        self.telemetry.check()?;
        self.redis.check()?;
        self.cache.check()?;
        self.chat.check()?;
        self.uploads.check()?;
        self.jobs.check()?;
        self.lexical.check()?;
        self.cleaning.check()?;
        self.crawl.check()?;
        self.local_llm.check()?;
        self.llm.check(self.chat.backend)?;
        Ok(())
    }

    /// The signing secret to use, or why the service must not start.
    /// `dev` allows a missing secret (replaced by a random one per process).
    pub fn jwt_secret(&self, dev: bool) -> Result<Vec<u8>, ConfigError> {
        self.auth.signing_secret(dev)
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

    pub fn uploads_dir(&self) -> PathBuf {
        if self.uploads.dir.as_os_str().is_empty() {
            self.data_dir.join("uploads")
        } else {
            self.uploads.dir.clone()
        }
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
        // Lists: comma-separated.
        toml::Value::Array(_) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        ),
        _ => toml::Value::String(raw.to_string()),
    };
    *slot = parsed;
    Ok(())
}

#[cfg(test)]
mod tests;
