//! `[vector]`: the vector index.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VectorSettings {
    /// Empty means the embedded qdrant-edge shard under `<data_dir>/qdrant`.
    pub qdrant_url: String,
}

impl VectorSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if !self.qdrant_url.is_empty() {
            return Err(invalid(
                "vector.qdrant_url",
                "a remote Qdrant server is not supported by this build yet; leave it empty for the embedded index",
            ));
        }
        Ok(())
    }
}
