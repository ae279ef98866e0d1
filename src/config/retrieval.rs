//! `[retrieval]`: hybrid search and its reciprocal rank fusion.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

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

impl RetrievalSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if !(self.rrf_k.is_finite() && self.rrf_k > 0.0) {
            return Err(invalid("retrieval.rrf_k", "must be a positive number"));
        }
        if self.max_top_k == 0 || self.max_top_k > 1000 {
            return Err(invalid("retrieval.max_top_k", "must be between 1 and 1000"));
        }
        if self.default_top_k == 0 || self.default_top_k > self.max_top_k {
            return Err(invalid(
                "retrieval.default_top_k",
                "must be between 1 and retrieval.max_top_k",
            ));
        }
        if self.candidates == 0 || self.candidates > 10_000 {
            return Err(invalid(
                "retrieval.candidates",
                "must be between 1 and 10000",
            ));
        }
        for (key, w) in [
            ("retrieval.dense_weight", self.dense_weight),
            ("retrieval.lexical_weight", self.lexical_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return Err(invalid(key, "must be a non-negative number"));
            }
        }
        Ok(())
    }
}
