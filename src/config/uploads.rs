//! `[uploads]`: limits on document uploads and zip archives.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// Limits on `POST /collections/{id}/documents`; crossing one is a 413 that
/// names it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UploadSettings {
    /// Where accepted uploads wait for their job; empty means
    /// `<data_dir>/uploads`. With API nodes and workers in separate
    /// processes, every one of them must see the same directory here (a
    /// shared volume), since any worker may take any node's upload.
    pub dir: PathBuf,
    pub max_file_bytes: u64,
    pub max_files: usize,
    pub max_total_bytes: u64,
    /// Zip archives: entries, uncompressed bytes in all and per entry, and
    /// the compression ratio above which an entry is taken for a bomb.
    pub zip_max_entries: usize,
    pub zip_max_total_bytes: u64,
    pub zip_max_entry_bytes: u64,
    pub zip_max_ratio: u64,
    /// PDFs: bytes all of one file's streams may decompress to (also caps
    /// its text); the address space the extractor process may add to what
    /// it has mapped at start; and the time one file may take (wall clock,
    /// and CPU time of the extractor).
    pub pdf_max_decompressed_bytes: u64,
    pub pdf_max_memory_bytes: u64,
    pub pdf_timeout_secs: u64,
}

/// Below this even a small PDF does not parse.
pub const PDF_MIN_MEMORY_BYTES: u64 = 64 * 1024 * 1024;

/// An hour: a PDF that takes longer is not worth a worker.
pub const PDF_MAX_TIMEOUT_SECS: u64 = 3600;

impl Default for UploadSettings {
    fn default() -> Self {
        const MIB: u64 = 1024 * 1024;
        Self {
            dir: PathBuf::new(),
            max_file_bytes: 100 * MIB,
            max_files: 1000,
            max_total_bytes: 1024 * MIB,
            zip_max_entries: 10_000,
            zip_max_total_bytes: 512 * MIB,
            zip_max_entry_bytes: 64 * MIB,
            zip_max_ratio: 100,
            pdf_max_decompressed_bytes: 256 * MIB,
            pdf_max_memory_bytes: 1024 * MIB,
            pdf_timeout_secs: 60,
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
            (
                "uploads.pdf_max_decompressed_bytes",
                self.pdf_max_decompressed_bytes,
            ),
            ("uploads.pdf_timeout_secs", self.pdf_timeout_secs),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if self.pdf_max_memory_bytes < PDF_MIN_MEMORY_BYTES {
            return Err(invalid(
                "uploads.pdf_max_memory_bytes",
                format!("must be at least {PDF_MIN_MEMORY_BYTES} (64 MiB)"),
            ));
        }
        // The streams and the text both live in the extractor's memory.
        if self.pdf_max_decompressed_bytes > self.pdf_max_memory_bytes / 2 {
            return Err(invalid(
                "uploads.pdf_max_decompressed_bytes",
                "must be at most half of uploads.pdf_max_memory_bytes",
            ));
        }
        if self.pdf_timeout_secs > PDF_MAX_TIMEOUT_SECS {
            return Err(invalid(
                "uploads.pdf_timeout_secs",
                format!("must be at most {PDF_MAX_TIMEOUT_SECS} (an hour)"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: impl FnOnce(&mut UploadSettings)) -> Result<(), String> {
        let mut u = UploadSettings::default();
        f(&mut u);
        u.check().map_err(|e| e.to_string())
    }

    #[test]
    fn pdf_limits_are_validated() {
        assert!(check(|_| {}).is_ok());
        type Change = fn(&mut UploadSettings);
        let cases: [(Change, &str); 5] = [
            (
                |u| u.pdf_max_decompressed_bytes = 0,
                "uploads.pdf_max_decompressed_bytes",
            ),
            (|u| u.pdf_timeout_secs = 0, "uploads.pdf_timeout_secs"),
            (|u| u.pdf_timeout_secs = 3601, "uploads.pdf_timeout_secs"),
            (
                |u| u.pdf_max_memory_bytes = 1 << 20,
                "uploads.pdf_max_memory_bytes",
            ),
            (
                |u| u.pdf_max_decompressed_bytes = u.pdf_max_memory_bytes,
                "uploads.pdf_max_decompressed_bytes",
            ),
        ];
        for (change, key) in cases {
            let err = check(change).unwrap_err();
            assert!(err.contains(key), "{err}");
        }
    }
}
