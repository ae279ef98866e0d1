//! `[redis]`: the Redis server several nodes share rate limits and caches
//! through. Without a URL every node keeps its own, in process.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]` (or `rediss://` for TLS
    /// when the build has it); empty: no Redis.
    pub url: String,
    /// How long one Redis command may take before the request goes on
    /// without it (the in-process limiter, no shared cache).
    pub timeout_ms: u64,
    /// After a failure, how long to skip Redis before trying it again, so a
    /// dead server costs requests nothing.
    pub retry_after_ms: u64,
    /// Prefix of every key, so several deployments can share one server.
    pub key_prefix: String,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            timeout_ms: 250,
            retry_after_ms: 1000,
            key_prefix: "ragchat".into(),
        }
    }
}

impl RedisSettings {
    pub fn enabled(&self) -> bool {
        !self.url.trim().is_empty()
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.enabled() {
            let url = self.url.trim();
            if !(url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("unix://"))
            {
                return Err(invalid(
                    "redis.url",
                    "must start with redis://, rediss:// or unix://",
                ));
            }
        }
        if !(1..=60_000).contains(&self.timeout_ms) {
            return Err(invalid("redis.timeout_ms", "must be between 1 and 60000"));
        }
        if self.retry_after_ms > 600_000 {
            return Err(invalid(
                "redis.retry_after_ms",
                "must be at most 600000 (ten minutes)",
            ));
        }
        if self.key_prefix.is_empty()
            || self.key_prefix.len() > 64
            || !self
                .key_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(invalid(
                "redis.key_prefix",
                "must be 1 to 64 letters, digits, '-', '_' or '.'",
            ));
        }
        Ok(())
    }
}
