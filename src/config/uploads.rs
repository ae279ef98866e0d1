//! `[uploads]`: limits on document uploads and zip archives.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

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

impl UploadSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("uploads.max_file_bytes", self.max_file_bytes),
            ("uploads.max_total_bytes", self.max_total_bytes),
            ("uploads.max_files", self.max_files as u64),
            ("uploads.zip_max_entries", self.zip_max_entries as u64),
            ("uploads.zip_max_total_bytes", self.zip_max_total_bytes),
            ("uploads.zip_max_entry_bytes", self.zip_max_entry_bytes),
            ("uploads.zip_max_ratio", self.zip_max_ratio),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        Ok(())
    }
}
