//! `[vector]`: the vector index (embedded qdrant-edge, or a Qdrant server).

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VectorSettings {
    /// Empty means the embedded qdrant-edge shard under `<data_dir>/qdrant`;
    /// otherwise the gRPC address of a Qdrant server, such as
    /// `http://127.0.0.1:6334`.
    pub qdrant_url: String,
    /// Sent as the `api-key` header; empty sends none. Best given as
    /// `RAGCHAT_QDRANT_API_KEY`.
    pub qdrant_api_key: String,
    /// The server-side collection holding every ragchat collection's points.
    pub qdrant_collection: String,
    /// Whole request, sent to answered.
    pub qdrant_timeout_secs: u64,
    pub qdrant_connect_timeout_secs: u64,
    /// Retries of a request that failed transiently (server unavailable,
    /// deadline exceeded, overloaded); other failures are not retried.
    pub qdrant_max_retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub qdrant_retry_backoff_ms: u64,
}

impl Default for VectorSettings {
    fn default() -> Self {
        Self {
            qdrant_url: String::new(),
            qdrant_api_key: String::new(),
            qdrant_collection: "ragchat_chunks".to_owned(),
            qdrant_timeout_secs: 30,
            qdrant_connect_timeout_secs: 5,
            qdrant_max_retries: 3,
            qdrant_retry_backoff_ms: 200,
        }
    }
}

impl VectorSettings {
    /// Whether the vectors live on a Qdrant server rather than in the
    /// embedded shard.
    pub fn uses_server(&self) -> bool {
        !self.qdrant_url.is_empty()
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let url = &self.qdrant_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(
                "vector.qdrant_url",
                "must be the gRPC address of a Qdrant server such as http://127.0.0.1:6334 \
                 (or empty for the embedded index)",
            ));
        }
        let name = &self.qdrant_collection;
        // Qdrant's own rule, checked here so the key is named at start.
        let valid_name = !name.is_empty()
            && name.len() <= 255
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid_name {
            return Err(invalid(
                "vector.qdrant_collection",
                "must be 1 to 255 letters, digits, `_` or `-`",
            ));
        }
        if self.qdrant_timeout_secs == 0 || self.qdrant_connect_timeout_secs == 0 {
            return Err(invalid(
                "vector.qdrant_timeout_secs",
                "timeouts must be at least 1 second",
            ));
        }
        if self.qdrant_max_retries > 10 {
            return Err(invalid("vector.qdrant_max_retries", "must be at most 10"));
        }
        if self.qdrant_retry_backoff_ms > 60_000 {
            return Err(invalid(
                "vector.qdrant_retry_backoff_ms",
                "must be at most 60000 (one minute)",
            ));
        }
        Ok(())
    }
}
