//! Receiving uploaded files: multipart parts are streamed to disk as they
//! arrive, counted against the limits on the way, so an upload never sits
//! whole in memory and an oversized one is refused as soon as it crosses a
//! limit rather than after it has been read.

use std::path::{Path, PathBuf};

use actix_multipart::Multipart;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::config::UploadSettings;
use crate::error::{Error, ErrorCode};
use crate::ingest::formats::human_bytes;

/// One received file, on disk under the upload's directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredFile {
    /// The client's file name, normalised into a relative path: the source
    /// name documents from it are known by (re-uploading it updates them).
    pub name: String,
    pub path: PathBuf,
    pub bytes: u64,
}

/// A client's file name as a safe relative path: `\` read as `/`, and empty,
/// `.` and `..` components dropped, so no name can point outside the upload.
pub fn source_name(raw: &str) -> Option<String> {
    let parts: Vec<&str> = raw
        .split(['/', '\\'])
        .map(str::trim)
        .filter(|p| !p.is_empty() && *p != "." && *p != "..")
        .collect();
    if parts.is_empty() {
        return None;
    }
    let name = parts.join("/");
    (name.chars().count() <= 1000 && !name.chars().any(char::is_control)).then_some(name)
}

/// Stream every file part of `form` into `dir` (created here). Parts without a
/// file name are refused: the API takes files only. The caller removes `dir`
/// when this fails.
pub async fn receive(
    mut form: Multipart,
    dir: &Path,
    limits: &UploadSettings,
) -> Result<Vec<StoredFile>, Error> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| Error::Internal(format!("cannot create {}: {e}", dir.display())))?;
    let mut files = Vec::new();
    let mut total: u64 = 0;
    while let Some(mut field) = form.try_next().await.map_err(|e| {
        Error::new(
            ErrorCode::InvalidMultipart,
            format!("malformed upload: {e}"),
        )
    })? {
        let raw_name = field
            .content_disposition()
            .and_then(|cd| cd.get_filename())
            .map(str::to_owned);
        let Some(raw_name) = raw_name else {
            let part = field.name().unwrap_or("").to_owned();
            return Err(Error::new(
                ErrorCode::InvalidMultipart,
                format!(
                    "part `{part}` is not a file; send files as multipart parts with a filename"
                ),
            ));
        };
        let name = source_name(&raw_name).ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidMultipart,
                format!("file name `{raw_name}` is empty or not usable"),
            )
        })?;
        if files.len() >= limits.max_files {
            return Err(Error::PayloadTooLarge(format!(
                "too many files: at most {} per upload (uploads.max_files)",
                limits.max_files
            )));
        }
        // The stored name is ours: the client's may hold anything.
        let path = dir.join(format!("{:05}.upload", files.len()));
        let mut out = tokio::fs::File::create(&path)
            .await
            .map_err(|e| Error::Internal(format!("cannot create {}: {e}", path.display())))?;
        let mut bytes: u64 = 0;
        while let Some(chunk) = field.try_next().await.map_err(|e| {
            Error::new(
                ErrorCode::InvalidMultipart,
                format!("malformed upload: {e}"),
            )
        })? {
            bytes += chunk.len() as u64;
            total += chunk.len() as u64;
            if bytes > limits.max_file_bytes {
                return Err(Error::PayloadTooLarge(format!(
                    "file `{name}` is larger than the limit of {} per file (uploads.max_file_bytes)",
                    human_bytes(limits.max_file_bytes)
                )));
            }
            if total > limits.max_total_bytes {
                return Err(Error::PayloadTooLarge(format!(
                    "upload is larger than the limit of {} in total (uploads.max_total_bytes)",
                    human_bytes(limits.max_total_bytes)
                )));
            }
            out.write_all(&chunk)
                .await
                .map_err(|e| Error::Internal(format!("cannot write {}: {e}", path.display())))?;
        }
        out.flush()
            .await
            .map_err(|e| Error::Internal(format!("cannot write {}: {e}", path.display())))?;
        files.push(StoredFile { name, path, bytes });
    }
    if files.is_empty() {
        return Err(Error::new(
            ErrorCode::NoFiles,
            "the upload holds no files; send them as multipart/form-data parts",
        ));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape_or_be_empty() {
        assert_eq!(source_name("a.md").as_deref(), Some("a.md"));
        assert_eq!(
            source_name("docs/guide/a.md").as_deref(),
            Some("docs/guide/a.md")
        );
        assert_eq!(
            source_name("../../etc/passwd").as_deref(),
            Some("etc/passwd")
        );
        assert_eq!(source_name("/abs/x.txt").as_deref(), Some("abs/x.txt"));
        assert_eq!(
            source_name("C:\\Users\\x.txt").as_deref(),
            Some("C:/Users/x.txt")
        );
        assert_eq!(source_name("./a/./b.txt").as_deref(), Some("a/b.txt"));
        assert_eq!(source_name(""), None);
        assert_eq!(source_name("../.."), None);
        assert_eq!(source_name("a\u{0}b"), None);
    }
}
