//! `[cache]`: what `/query` and query embeddings keep between requests. In
//! process by default; in Redis, shared by every node, when `redis.url` is
//! set.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// Keep `/query` results. An entry is only ever served for the same
    /// query, options and set of searched collections, and no longer once
    /// any of those collections changes.
    pub results: bool,
    /// In-process result cache size, bytes (Redis has its own limit).
    pub results_max_bytes: u64,
    /// How long a result entry lives at most, seconds.
    pub results_ttl_secs: u64,
    /// How long a query embedding lives in Redis, seconds (the in-process
    /// embedding cache is `embedding.query_cache_size` entries, no TTL:
    /// an embedding never goes stale).
    pub embeddings_ttl_secs: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            results: true,
            results_max_bytes: 64 * 1024 * 1024,
            results_ttl_secs: 600,
            embeddings_ttl_secs: 86_400,
        }
    }
}

impl CacheSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("cache.results_ttl_secs", self.results_ttl_secs),
            ("cache.embeddings_ttl_secs", self.embeddings_ttl_secs),
        ] {
            if !(1..=30 * 86_400).contains(&v) {
                return Err(invalid(key, "must be between 1 and 2592000 (30 days)"));
            }
        }
        if self.results_max_bytes < 1024 * 1024 {
            return Err(invalid(
                "cache.results_max_bytes",
                "must be at least 1048576 (1 MiB)",
            ));
        }
        Ok(())
    }
}
