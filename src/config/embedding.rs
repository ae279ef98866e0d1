//! `[embedding]`: the ONNX embedding model sessions.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

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

impl EmbeddingSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.batch_size == 0 || self.batch_size > 1024 {
            return Err(invalid(
                "embedding.batch_size",
                "must be between 1 and 1024",
            ));
        }
        if self.pool_size == 0 || self.pool_size > 64 {
            return Err(invalid("embedding.pool_size", "must be between 1 and 64"));
        }
        if self.threads_per_session == 0 {
            return Err(invalid(
                "embedding.threads_per_session",
                "must be at least 1",
            ));
        }
        if !(16..=512).contains(&self.max_length) {
            return Err(invalid(
                "embedding.max_length",
                "must be between 16 and 512",
            ));
        }
        Ok(())
    }
}
