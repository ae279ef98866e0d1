//! Type detection from a file's first bytes. The uploader's file name only
//! breaks ties between text formats; for binary formats the content decides,
//! and a name that promises a binary format the content does not have is
//! refused rather than guessed around.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use zip::ZipArchive;

use super::{FormatError, Kind};

/// Enough to see magic numbers, a doctype, and a few JSON Lines records.
const SNIFF_LEN: usize = 8192;
/// JSON Lines is recognised from content when this many leading non-empty
/// lines (or all of them, if fewer) are JSON objects.
const JSONL_SNIFF_LINES: usize = 5;

/// What the file at `path` is. `declared_name` is the name the uploader gave
/// it; only its extension is used.
pub fn detect(path: &Path, declared_name: &str) -> Result<Kind, FormatError> {
    let (head, complete) = read_head(path, declared_name)?;
    let ext = extension(declared_name);
    let found = sniff(&head, complete, &ext, path, declared_name)?;
    if let Some((accepts, claimed)) = claimed_binary(&ext) {
        let matches = matches!(found, Found::Kind(k) if accepts.contains(&k));
        if !matches {
            return Err(FormatError::Mismatch {
                file: declared_name.to_string(),
                claimed: claimed.to_string(),
                detected: found.describe().to_string(),
            });
        }
    }
    match found {
        Found::Kind(kind) => Ok(kind),
        Found::Binary(what) => Err(FormatError::Unsupported {
            file: declared_name.to_string(),
            detected: what.to_string(),
        }),
    }
}

enum Found {
    Kind(Kind),
    /// Binary content we do not read, described for the error message.
    Binary(&'static str),
}

impl Found {
    fn describe(&self) -> &'static str {
        match self {
            Found::Kind(kind) => kind.describe(),
            Found::Binary(what) => what,
        }
    }
}

/// The first [`SNIFF_LEN`] bytes, and whether they are the whole file.
fn read_head(path: &Path, name: &str) -> Result<(Vec<u8>, bool), FormatError> {
    let io_err = |source| FormatError::Io {
        file: name.to_string(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let mut head = Vec::with_capacity(SNIFF_LEN);
    file.take(SNIFF_LEN as u64 + 1)
        .read_to_end(&mut head)
        .map_err(io_err)?;
    let complete = head.len() <= SNIFF_LEN;
    head.truncate(SNIFF_LEN);
    Ok((head, complete))
}

fn extension(name: &str) -> String {
    Path::new(name)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Extensions that promise a binary format: the kinds that keep the promise,
/// and how the promise reads in an error message. A DOCX is a ZIP archive, so
/// it keeps a `.zip` name's promise.
fn claimed_binary(ext: &str) -> Option<(&'static [Kind], &'static str)> {
    match ext {
        "pdf" => Some((&[Kind::Pdf], Kind::Pdf.describe())),
        "docx" => Some((&[Kind::Docx], Kind::Docx.describe())),
        "zip" => Some((&[Kind::Zip, Kind::Docx], Kind::Zip.describe())),
        _ => None,
    }
}

fn sniff(
    head: &[u8],
    complete: bool,
    ext: &str,
    path: &Path,
    name: &str,
) -> Result<Found, FormatError> {
    if head.starts_with(b"%PDF-") {
        return Ok(Found::Kind(Kind::Pdf));
    }
    // Local file header, or the end record of an empty archive.
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return zip_kind(path, name).map(Found::Kind);
    }
    let Some(text) = as_text(head, complete) else {
        return Ok(Found::Binary(describe_binary(head)));
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if starts_like_html(text) {
        return Ok(Found::Kind(Kind::Html));
    }
    let kind = match ext {
        "jsonl" | "ndjson" => Kind::Jsonl,
        "html" | "htm" if looks_like_markup(text) => Kind::Html,
        "md" | "markdown" => Kind::Markdown,
        "html" | "htm" => Kind::Text,
        _ if looks_like_jsonl(text, complete) => Kind::Jsonl,
        _ => Kind::Text,
    };
    Ok(Found::Kind(kind))
}

/// A ZIP container is a DOCX when it has the main document part.
fn zip_kind(path: &Path, name: &str) -> Result<Kind, FormatError> {
    let file = File::open(path).map_err(|source| FormatError::Io {
        file: name.to_string(),
        source,
    })?;
    let archive = ZipArchive::new(BufReader::new(file)).map_err(|e| FormatError::Malformed {
        file: name.to_string(),
        reason: format!("starts like a ZIP archive but cannot be opened as one: {e}"),
    })?;
    Ok(if archive.index_for_name("word/document.xml").is_some() {
        Kind::Docx
    } else {
        Kind::Zip
    })
}

/// The head as text, if it is text: UTF-8 without NUL bytes. A multi-byte
/// character cut off by the end of the window does not count against it.
fn as_text(head: &[u8], complete: bool) -> Option<&str> {
    if head.contains(&0) {
        return None;
    }
    match std::str::from_utf8(head) {
        Ok(text) => Some(text),
        Err(e) if !complete && e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).ok()
        }
        Err(_) => None,
    }
}

/// Names binary content for the "unsupported" message, so the uploader
/// learns what the server saw.
fn describe_binary(head: &[u8]) -> &'static str {
    const MAGIC: &[(&[u8], &str)] = &[
        (b"\x89PNG\r\n\x1a\n", "a PNG image"),
        (b"\xFF\xD8\xFF", "a JPEG image"),
        (b"GIF87a", "a GIF image"),
        (b"GIF89a", "a GIF image"),
        (b"II*\x00", "a TIFF image"),
        (b"MM\x00*", "a TIFF image"),
        (b"\x1F\x8B", "gzip-compressed data"),
        (b"BZh", "bzip2-compressed data"),
        (b"\xFD7zXZ\x00", "xz-compressed data"),
        (b"\x28\xB5\x2F\xFD", "zstd-compressed data"),
        (b"7z\xBC\xAF\x27\x1C", "a 7-Zip archive"),
        (b"Rar!\x1A\x07", "a RAR archive"),
        (
            b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1",
            "a legacy Office file (.doc, .xls, .ppt) or an encrypted Office document",
        ),
        (b"\x7FELF", "an ELF executable"),
        (b"MZ", "a Windows executable"),
        (b"SQLite format 3\x00", "an SQLite database"),
        (b"ID3", "an MP3 audio file"),
        (b"OggS", "an Ogg media file"),
        (b"fLaC", "a FLAC audio file"),
        (b"\xFF\xFE\x00\x00", "UTF-32 text (save it as UTF-8)"),
        (b"\xFF\xFE", "UTF-16 text (save it as UTF-8)"),
        (b"\xFE\xFF", "UTF-16 text (save it as UTF-8)"),
    ];
    if let Some(&(_, what)) = MAGIC.iter().find(|(magic, _)| head.starts_with(magic)) {
        return what;
    }
    if head.len() >= 12 && &head[..4] == b"RIFF" {
        return match &head[8..12] {
            b"WEBP" => "a WebP image",
            b"WAVE" => "a WAV audio file",
            b"AVI " => "an AVI video",
            _ => "a RIFF media file",
        };
    }
    if head.len() >= 8 && &head[4..8] == b"ftyp" {
        return "an MP4/QuickTime media file or HEIC image";
    }
    "binary data"
}

fn starts_like_html(text: &str) -> bool {
    let start = text.trim_start();
    // `get` rather than slicing: the cut may fall inside a character.
    let start = start.get(..14).unwrap_or(start).to_ascii_lowercase();
    ["<!doctype html", "<html", "<head", "<body"]
        .iter()
        .any(|p| start.starts_with(p))
}

/// A tag or comment somewhere: `<` followed by a letter, `/` or `!`.
fn looks_like_markup(text: &str) -> bool {
    text.as_bytes()
        .windows(2)
        .any(|w| w[0] == b'<' && (w[1].is_ascii_alphabetic() || w[1] == b'/' || w[1] == b'!'))
}

fn looks_like_jsonl(text: &str, complete: bool) -> bool {
    let mut lines: Vec<&str> = text.lines().collect();
    // The last line of a truncated head is cut off mid-record.
    if !complete {
        lines.pop();
    }
    let mut records = lines
        .into_iter()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(JSONL_SNIFF_LINES)
        .peekable();
    records.peek().is_some()
        && records.all(|l| {
            l.starts_with('{')
                && matches!(
                    serde_json::from_str::<serde_json::Value>(l),
                    Ok(serde_json::Value::Object(_))
                )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_prefixes_are_case_insensitive_after_whitespace() {
        assert!(starts_like_html("\n\t <!DocType html>"));
        assert!(starts_like_html("<BODY>"));
        assert!(!starts_like_html("<div>"));
        assert!(!starts_like_html("text <html>"));
        assert!(!starts_like_html("é"));
    }

    #[test]
    fn jsonl_from_content_needs_complete_object_lines() {
        assert!(looks_like_jsonl("{\"a\": 1}\n{\"b\": 2}", true));
        assert!(!looks_like_jsonl("", true));
        assert!(!looks_like_jsonl("{\"a\": 1}\n[1]", true));
        // The only line is cut off by the window: no evidence either way.
        assert!(!looks_like_jsonl("{\"a\": 1}", false));
        assert!(looks_like_jsonl("{\"a\": 1}\n{\"b\":", false));
    }
}
