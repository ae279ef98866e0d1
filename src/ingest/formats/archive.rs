//! ZIP uploads: each entry is loaded like an upload of its own, named
//! `"{archive}/{entry path}"`.
//!
//! The whole archive is vetted before anything is decompressed: entry count,
//! every entry's path, and the sizes entries declare. Declared sizes are the
//! archive maker's word, so decompression is also counted against the same
//! limits. Entries are extracted one at a time to a temporary directory and
//! removed once loaded.

use std::fs::File;
use std::io::{self, BufReader, ErrorKind, Read, Seek};
use std::path::{Component, Path};

use zip::read::ZipFileEntry;
use zip::{ZipArchive, SUPPORTED_COMPRESSION_METHODS};

use super::{detect, load_kind, Bound, Capped, FormatError, Kind, Limits, Loaded, Origin, Skipped};

/// Everything `load_zip` checks before decompressing anything (entry count,
/// entry paths, declared sizes and ratios), so an upload can be refused while
/// its client is still waiting. Decompression is still counted by `load_zip`,
/// since declared sizes can lie.
pub(super) fn vet_zip(path: &Path, archive_name: &str, limits: &Limits) -> Result<(), FormatError> {
    let file = File::open(path).map_err(|source| FormatError::Io {
        file: archive_name.to_string(),
        source,
    })?;
    let zip = ZipArchive::new(BufReader::new(file)).map_err(|e| FormatError::Malformed {
        file: archive_name.to_string(),
        reason: format!("not a readable ZIP archive: {e}"),
    })?;
    if zip.len() > limits.max_entries {
        return Err(FormatError::LimitExceeded {
            file: archive_name.to_string(),
            what: format!("the number of archive entries ({})", zip.len()),
            limit: limits.max_entries.to_string(),
        });
    }
    plan(&zip, archive_name, limits).map(|_| ())
}

pub(super) fn load_zip(
    path: &Path,
    archive_name: &str,
    limits: &Limits,
) -> Result<Loaded, FormatError> {
    let io_err = |source| FormatError::Io {
        file: archive_name.to_string(),
        source,
    };
    let malformed = |reason: String| FormatError::Malformed {
        file: archive_name.to_string(),
        reason,
    };
    let file = File::open(path).map_err(io_err)?;
    let mut zip = ZipArchive::new(BufReader::new(file))
        .map_err(|e| malformed(format!("not a readable ZIP archive: {e}")))?;
    if zip.len() > limits.max_entries {
        return Err(FormatError::LimitExceeded {
            file: archive_name.to_string(),
            what: format!("the number of archive entries ({})", zip.len()),
            limit: limits.max_entries.to_string(),
        });
    }
    let plan = plan(&zip, archive_name, limits)?;

    let scratch = tempfile::tempdir().map_err(io_err)?;
    let mut loaded = Loaded::default();
    let mut remaining = limits.max_total_bytes;
    for entry in plan {
        let source = format!("{archive_name}/{}", entry.path);
        let read = match entry.action {
            Action::Skip(reason) => {
                loaded.skipped.push(Skipped { source, reason });
                continue;
            }
            Action::Read(read) => read,
        };
        let mut zipped = zip
            .by_index(entry.index)
            .map_err(|e| malformed(format!("cannot open entry {}: {e}", entry.path)))?;
        let budget = limits.entry_budget(
            archive_name,
            &entry.path,
            read.declared,
            read.compressed,
            remaining,
        )?;
        let mut extracted = tempfile::NamedTempFile::new_in(scratch.path()).map_err(io_err)?;
        let mut capped = Capped::new(&mut zipped, budget.cap);
        let written = match io::copy(&mut capped, extracted.as_file_mut()) {
            Ok(n) => n,
            Err(_) if capped.exceeded => {
                return Err(limits.exceeded(archive_name, &entry.path, budget.bound, None, 0));
            }
            // The zip reader stops an entry at its declared size and checks
            // its CRC; either failing means the archive is not what it says.
            Err(e) if matches!(e.kind(), ErrorKind::InvalidData | ErrorKind::UnexpectedEof) => {
                return Err(malformed(undecompressable(&entry.path, &e)));
            }
            Err(e) => return Err(io_err(e)),
        };
        drop(zipped);
        remaining = remaining.saturating_sub(written);

        let origin = Origin {
            source,
            archive: Some(archive_name),
        };
        let documents = match detect(extracted.path(), &origin.source) {
            Ok(Kind::Zip) => {
                loaded.skipped.push(Skipped {
                    source: origin.source,
                    reason: "nested ZIP archive, not expanded (upload it on its own)".into(),
                });
                continue;
            }
            Ok(kind) => load_kind(kind, extracted.path(), &origin, limits),
            Err(e) => Err(e),
        };
        match documents {
            Ok(docs) => loaded.documents.extend(docs),
            Err(e) if e.is_entry_local() => loaded.skipped.push(Skipped {
                source: origin.source,
                reason: e.reason(),
            }),
            Err(e) => return Err(e),
        }
    }
    Ok(loaded)
}

/// The reason for refusing an entry whose data does not decompress to what
/// the archive declares for it.
pub(super) fn undecompressable(entry: &str, error: &io::Error) -> String {
    format!(
        "entry {entry} cannot be decompressed ({error}); \
         the archive is corrupt or was tampered with"
    )
}

struct Planned {
    index: usize,
    /// The entry's path inside the archive, `/`-separated and vetted.
    path: String,
    action: Action,
}

enum Action {
    Read(Sizes),
    Skip(String),
}

struct Sizes {
    declared: u64,
    compressed: u64,
}

/// Vets every entry before any is decompressed, and decides which to read.
/// Directories are left out of the plan.
fn plan<R: Read + Seek>(
    zip: &ZipArchive<R>,
    archive_name: &str,
    limits: &Limits,
) -> Result<Vec<Planned>, FormatError> {
    let meta = zip.metadata();
    let mut plan = Vec::new();
    let mut declared_total: u64 = 0;
    for index in 0..meta.len() {
        let entry = meta.entry(index).map_err(|e| FormatError::Malformed {
            file: archive_name.to_string(),
            reason: format!("cannot read entry {index} of the central directory: {e}"),
        })?;
        let name = entry.name().map_err(|e| FormatError::Malformed {
            file: archive_name.to_string(),
            reason: format!("entry {index} has an unreadable name: {e}"),
        })?;
        let path = vetted_path(&name, &entry).map_err(|reason| FormatError::UnsafePath {
            file: archive_name.to_string(),
            entry: name.to_string(),
            reason: reason.to_string(),
        })?;
        if entry.is_dir() {
            continue;
        }
        let action = match skip_reason(&path, &entry) {
            Some(reason) => Action::Skip(reason),
            None => {
                let sizes = Sizes {
                    declared: entry.size(),
                    compressed: entry.compressed_size(),
                };
                // Refuses a declared bomb before any entry is decompressed.
                limits.entry_budget(
                    archive_name,
                    &path,
                    sizes.declared,
                    sizes.compressed,
                    limits.max_total_bytes,
                )?;
                declared_total = declared_total.saturating_add(sizes.declared);
                Action::Read(sizes)
            }
        };
        plan.push(Planned {
            index,
            path,
            action,
        });
    }
    if declared_total > limits.max_total_bytes {
        return Err(limits.exceeded(archive_name, "", Bound::Total, Some(declared_total), 0));
    }
    Ok(plan)
}

/// The entry's path, or why it is unsafe. Absolute paths, drive letters,
/// backslashes and `..` are refused outright, even where `enclosed_name`
/// would quietly strip them: an archive that contains them was made either
/// carelessly or to attack, and either way its layout is not what it seems.
fn vetted_path(name: &str, entry: &ZipFileEntry) -> Result<String, &'static str> {
    if name.contains('\0') {
        return Err("contains a NUL byte");
    }
    if name.contains('\\') {
        return Err("contains a backslash");
    }
    if name.starts_with('/') {
        return Err("is an absolute path");
    }
    let bytes = name.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return Err("starts with a drive letter");
    }
    if name.split('/').any(|c| c == "..") {
        return Err("refers to a parent directory (..)");
    }
    let enclosed = entry
        .enclosed_name()
        .ok_or("would be extracted outside the archive's directory")?;
    let mut parts = Vec::new();
    for component in enclosed.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => return Err("would be extracted outside the archive's directory"),
        }
    }
    if parts.is_empty() && !entry.is_dir() {
        return Err("has an empty name");
    }
    Ok(parts.join("/"))
}

/// Why a file entry is not read, if it is not.
fn skip_reason(path: &str, entry: &ZipFileEntry) -> Option<String> {
    let reason = if path.split('/').next() == Some("__MACOSX") {
        "macOS resource data (__MACOSX), not a document".to_string()
    } else if path.split('/').any(|c| c.starts_with('.')) {
        "hidden file".to_string()
    } else if entry.is_symlink() {
        "symbolic link".to_string()
    } else if entry.encrypted() {
        "encrypted entry (password-protected archives are not supported)".to_string()
    } else if !SUPPORTED_COMPRESSION_METHODS.contains(&entry.compression()) {
        format!(
            "compression method {} is not supported (use deflate or store)",
            entry.compression()
        )
    } else {
        return None;
    };
    Some(reason)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{load, MIB};
    use super::*;
    use zip::CompressionMethod;

    fn load_zip_bytes(bytes: &[u8], limits: &Limits) -> Result<Loaded, FormatError> {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "upload", bytes);
        load(&path, "bundle.zip", limits)
    }

    #[test]
    fn zip_with_mixed_entries() {
        let pdf = make_pdf(HELLO_PDF, Some("PDF title"));
        let docx = make_docx(DOCX_BODY, Some("Letter"));
        let nested = make_zip(&[("inner.txt", b"inner")]);
        let exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff";
        let bytes = make_zip(&[
            ("docs/", b""),
            ("docs/guide.md", b"# Guide\n\nRead me."),
            (
                "docs/page.html",
                b"<html><head><title>Page</title></head><body><p>Hi</p></body></html>",
            ),
            ("report.pdf", &pdf),
            ("letter.docx", &docx),
            (
                "corpus.jsonl",
                b"{\"_id\": \"c1\", \"text\": \"line doc\"}\n",
            ),
            ("tool.exe", exe),
            ("inner.zip", &nested),
            ("__MACOSX/docs/._guide.md", b"\x00\x05\x16\x07"),
            ("docs/.DS_Store", b"\x00\x00\x00\x01Bud1"),
            ("fake.pdf", b"not a pdf"),
            ("scan.pdf", &make_pdf(RECTANGLE_PDF, None)),
        ]);
        let loaded = load_zip_bytes(&bytes, &Limits::default()).unwrap();

        let docs: Vec<(&str, &str, &str)> = loaded
            .documents
            .iter()
            .map(|d| {
                (
                    d.source.as_str(),
                    d.title.as_str(),
                    d.metadata["format"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            docs,
            [
                ("bundle.zip/docs/guide.md", "Guide", "markdown"),
                ("bundle.zip/docs/page.html", "Page", "html"),
                ("bundle.zip/report.pdf", "PDF title", "pdf"),
                ("bundle.zip/letter.docx", "Letter", "docx"),
                ("c1", "", "jsonl"),
            ]
        );
        assert_eq!(
            loaded.documents[0].metadata,
            serde_json::json!({
                "file": "bundle.zip/docs/guide.md",
                "format": "markdown",
                "archive": "bundle.zip"
            })
        );
        assert!(loaded.documents[0].markdown);
        assert!(loaded.documents[2].text.contains("Hello PDF world"));
        assert_eq!(
            loaded.documents[4].metadata["file"],
            "bundle.zip/corpus.jsonl"
        );
        assert_eq!(loaded.documents[4].metadata["archive"], "bundle.zip");

        let skipped: Vec<(&str, &str)> = loaded
            .skipped
            .iter()
            .map(|s| (s.source.as_str(), s.reason.as_str()))
            .collect();
        let expect: [(&str, &str); 6] = [
            (
                "bundle.zip/tool.exe",
                "unsupported content: a Windows executable",
            ),
            ("bundle.zip/inner.zip", "nested ZIP archive, not expanded"),
            ("bundle.zip/__MACOSX/docs/._guide.md", "__MACOSX"),
            ("bundle.zip/docs/.DS_Store", "hidden file"),
            (
                "bundle.zip/fake.pdf",
                "named like a PDF but the content is plain text",
            ),
            ("bundle.zip/scan.pdf", "no text layer"),
        ];
        assert_eq!(skipped.len(), expect.len(), "{skipped:?}");
        for ((source, reason), (want_source, want_reason)) in skipped.iter().zip(expect) {
            assert_eq!(*source, want_source);
            assert!(reason.contains(want_reason), "{source}: {reason}");
            // The reason does not repeat the file name.
            assert!(!reason.starts_with(want_source), "{reason}");
        }
    }

    #[test]
    fn stored_entries_and_dot_components_read_normally() {
        let bytes = make_zip_with(
            &[("./notes/a.txt", b"Alpha\nbody"), ("notes/b.txt", b"Beta")],
            CompressionMethod::Stored,
        );
        let loaded = load_zip_bytes(&bytes, &Limits::default()).unwrap();
        let sources: Vec<&str> = loaded.documents.iter().map(|d| d.source.as_str()).collect();
        assert_eq!(
            sources,
            ["bundle.zip/notes/a.txt", "bundle.zip/notes/b.txt"]
        );
        assert_eq!(loaded.documents[0].title, "Alpha");
    }

    #[test]
    fn zip_path_traversal_is_refused() {
        let cases = [
            ("../evil.txt", "parent directory"),
            ("docs/../../evil.txt", "parent directory"),
            ("docs/../fine-but-odd.txt", "parent directory"),
            ("/abs.txt", "absolute path"),
            ("C:/windows/evil.txt", "drive letter"),
            ("C:evil.txt", "drive letter"),
            ("..\\evil.txt", "backslash"),
            ("docs\\..\\..\\evil.txt", "backslash"),
        ];
        for (name, reason) in cases {
            let bytes = make_zip(&[("ok.txt", b"fine"), (name, b"gotcha")]);
            let err = load_zip_bytes(&bytes, &Limits::default()).unwrap_err();
            assert!(
                matches!(err, FormatError::UnsafePath { .. }),
                "{name}: {err:?}"
            );
            let msg = err.to_string();
            assert!(msg.starts_with("bundle.zip: archive entry"), "{msg}");
            assert!(msg.contains(reason), "{name}: {msg}");
            assert!(msg.contains("refused"), "{msg}");
        }
    }

    #[test]
    fn zip_bomb_refused_by_ratio() {
        let zeros = vec![0u8; 20 * MIB as usize];
        let bytes = make_zip(&[("readme.txt", b"hello"), ("zeros.txt", &zeros)]);
        assert!(
            bytes.len() < 100_000,
            "deflate should squeeze zeros: {}",
            bytes.len()
        );
        let err = load_zip_bytes(&bytes, &Limits::default()).unwrap_err();
        assert!(matches!(err, FormatError::LimitExceeded { .. }), "{err:?}");
        // Refused on the declared sizes, before decompressing anything.
        assert_eq!(
            err.to_string(),
            "bundle.zip: the compression ratio of zeros.txt (1028:1) exceeds the limit of 100:1"
        );
    }

    #[test]
    fn zip_bomb_refused_by_total_size() {
        let zeros = vec![0u8; 3 * MIB as usize];
        let bytes = make_zip(&[("a.txt", &zeros), ("b.txt", &zeros)]);
        let limits = Limits {
            max_total_bytes: 5 * MIB,
            max_ratio: 100_000,
            ..Limits::default()
        };
        let err = load_zip_bytes(&bytes, &limits).unwrap_err();
        assert!(matches!(err, FormatError::LimitExceeded { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "bundle.zip: the total uncompressed size of the archive (declared 6 MiB) \
             exceeds the limit of 5 MiB"
        );
        let limits = Limits {
            max_entry_bytes: 2 * MIB,
            max_ratio: 100_000,
            ..Limits::default()
        };
        let err = load_zip_bytes(&bytes, &limits).unwrap_err();
        assert!(
            err.to_string()
                .contains("uncompressed size of a.txt (declared 3 MiB)"),
            "{err}"
        );
    }

    #[test]
    fn zip_entry_lying_about_its_size_is_refused() {
        let zeros = vec![b'z'; 20 * MIB as usize];
        let honest = make_zip(&[("small.txt", &zeros)]);
        let bytes = lie_about_size(&honest, "small.txt", 1000);
        // Declared 1000 bytes: every declared-size check passes, so only
        // counting the bytes as they come out catches it (the zip reader
        // counts against the declared size, `Capped` against the limits).
        let err = load_zip_bytes(&bytes, &Limits::default()).unwrap_err();
        assert!(matches!(err, FormatError::Malformed { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "bundle.zip: entry small.txt cannot be decompressed (File is larger than its \
             declared uncompressed size); the archive is corrupt or was tampered with"
        );
    }

    #[test]
    fn zip_with_too_many_entries_is_refused() {
        let names: Vec<String> = (0..12).map(|i| format!("f{i}.txt")).collect();
        let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
        let bytes = make_zip(&entries);
        let limits = Limits {
            max_entries: 10,
            ..Limits::default()
        };
        let err = load_zip_bytes(&bytes, &limits).unwrap_err();
        assert!(matches!(err, FormatError::LimitExceeded { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "bundle.zip: the number of archive entries (12) exceeds the limit of 10"
        );
        let limits = Limits {
            max_entries: 12,
            ..Limits::default()
        };
        assert_eq!(load_zip_bytes(&bytes, &limits).unwrap().documents.len(), 12);
    }

    #[test]
    fn empty_and_corrupt_archives() {
        let loaded = load_zip_bytes(&make_zip(&[]), &Limits::default()).unwrap();
        assert_eq!(loaded, Loaded::default());
        let mut broken = make_zip(&[("a.txt", b"a")]);
        broken.truncate(broken.len() - 10);
        let err = load_zip_bytes(&broken, &Limits::default()).unwrap_err();
        assert!(matches!(err, FormatError::Malformed { .. }), "{err:?}");
        assert!(err.to_string().starts_with("bundle.zip: "), "{err}");
    }
}
