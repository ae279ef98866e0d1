//! `[cleaning]`: what ingestion skips before chunking.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

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

impl CleaningSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.near_duplicate_threshold) {
            return Err(invalid(
                "cleaning.near_duplicate_threshold",
                "must be between 0 and 1",
            ));
        }
        if !(0.0..=1.0).contains(&self.min_quality) {
            return Err(invalid("cleaning.min_quality", "must be between 0 and 1"));
        }
        Ok(())
    }
}
