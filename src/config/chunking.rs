//! `[chunking]`: how documents are cut into chunks for the embedder.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError, EmbeddingSettings};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChunkingSettings {
    pub max_tokens: usize,
    pub overlap_tokens: usize,
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

impl ChunkingSettings {
    /// A chunk must fit the embedding model's window.
    pub(super) fn check(&self, embedding: &EmbeddingSettings) -> Result<(), ConfigError> {
        let max_length = embedding.max_length;
        // Two tokens of the model's window go to [CLS] and [SEP].
        if self.max_tokens < 16 || self.max_tokens + 2 > max_length {
            return Err(invalid(
                "chunking.max_tokens",
                format!(
                    "must be between 16 and embedding.max_length - 2 ({})",
                    max_length.saturating_sub(2)
                ),
            ));
        }
        if self.overlap_tokens >= self.max_tokens {
            return Err(invalid(
                "chunking.overlap_tokens",
                "must be smaller than chunking.max_tokens",
            ));
        }
        Ok(())
    }
}
