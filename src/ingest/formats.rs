//! Uploaded files → raw documents. Unlike [`super::load`], which trusts file
//! extensions because it reads the operator's own directories, this module
//! reads what strangers upload: the type is decided from the content, and
//! archives are opened under explicit size limits.
//!
//! Supported: plain text, Markdown, HTML, JSON Lines (BEIR `_id` or `id`
//! records), PDF (text layer only), DOCX, and ZIP archives of these.

mod archive;
pub mod beir;
mod docx;
#[cfg(test)]
mod fuzz;
mod jsonl;
mod pdf;
mod sniff;
#[cfg(test)]
mod testutil;

use std::io::{self, Read};
use std::path::Path;

use super::load::{html_to_text, markdown_title, text_title, RawDocument};

pub use pdf::{extract_pdf_child, extract_pdfs_in_child_processes};
pub use sniff::detect;

/// What a file is, judged from its content (see [`detect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Markdown,
    Html,
    Jsonl,
    Pdf,
    Docx,
    Zip,
}

impl Kind {
    /// The `format` recorded in a document's metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Markdown => "markdown",
            Kind::Html => "html",
            Kind::Jsonl => "jsonl",
            Kind::Pdf => "pdf",
            Kind::Docx => "docx",
            Kind::Zip => "zip",
        }
    }

    /// How error messages name the kind.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Text => "plain text",
            Kind::Markdown => "Markdown",
            Kind::Html => "HTML",
            Kind::Jsonl => "JSON Lines",
            Kind::Pdf => "a PDF",
            Kind::Docx => "a Word document (DOCX)",
            Kind::Zip => "a ZIP archive",
        }
    }
}

/// Bounds on what an archive (a ZIP upload, or the ZIP inside a DOCX) may
/// expand to. Declared sizes are checked before anything is decompressed, and
/// the bytes actually produced are counted as well, since declared sizes are
/// written by whoever made the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Entries in one ZIP archive, directories included.
    pub max_entries: usize,
    /// Uncompressed bytes of all the entries of one archive together.
    pub max_total_bytes: u64,
    /// Uncompressed bytes of one entry; also caps a DOCX's `word/document.xml`.
    pub max_entry_bytes: u64,
    /// Uncompressed size / compressed size of one entry.
    pub max_ratio: u64,
    /// Entries up to this uncompressed size are exempt from `max_ratio`: small
    /// repetitive files legitimately compress far better than 100:1, and
    /// cannot amplify into anything dangerous.
    pub ratio_min_bytes: u64,
    /// Bounds on extracting the text of one PDF.
    pub pdf: PdfLimits,
}

/// Bounds on extracting one PDF. A PDF's streams are compressed with no
/// ratio limit (and may be compressed twice over), so a small file can
/// inflate to gigabytes; its content can also make the parser loop or
/// recurse for a long time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PdfLimits {
    /// Bytes all of its streams may inflate to together; also caps the text
    /// extracted.
    pub max_decompressed_bytes: u64,
    /// Address space the extractor process may map beyond what it has at
    /// start (see [`extract_pdfs_in_child_processes`]).
    pub max_memory_bytes: u64,
    /// Wall-clock time of one extraction, and CPU time of the extractor process.
    pub timeout: std::time::Duration,
}

impl Default for PdfLimits {
    fn default() -> Self {
        PdfLimits {
            max_decompressed_bytes: 256 * MIB,
            max_memory_bytes: 1024 * MIB,
            timeout: std::time::Duration::from_secs(60),
        }
    }
}

const MIB: u64 = 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 10_000,
            max_total_bytes: 512 * MIB,
            max_entry_bytes: 64 * MIB,
            max_ratio: 100,
            ratio_min_bytes: MIB,
            pdf: PdfLimits::default(),
        }
    }
}

/// The documents of one upload, and the archive entries that were left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loaded {
    pub documents: Vec<RawDocument>,
    pub skipped: Vec<Skipped>,
}

/// An archive entry that produced no documents, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// `"{archive}/{entry path}"`.
    pub source: String,
    pub reason: String,
}

/// Every message starts with the file it is about, as the uploader named it
/// (`archive.zip/dir/entry.pdf` for an archive entry).
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(
        "{file}: unsupported content: {detected} (supported: plain text, Markdown, HTML, \
         JSON Lines, PDF, DOCX and ZIP archives of these)"
    )]
    Unsupported { file: String, detected: String },
    #[error("{file}: named like {claimed} but the content is {detected}")]
    Mismatch {
        file: String,
        claimed: String,
        detected: String,
    },
    /// The upload is too large once decompressed (HTTP 413).
    #[error("{file}: {what} exceeds the limit of {limit}")]
    LimitExceeded {
        file: String,
        what: String,
        limit: String,
    },
    #[error("{file}: archive entry {entry:?} {reason}; the archive was refused")]
    UnsafePath {
        file: String,
        entry: String,
        reason: String,
    },
    #[error("{file}: {reason}")]
    Malformed { file: String, reason: String },
    #[error("{file}: no text to index: {reason}")]
    NoText { file: String, reason: String },
    /// Extracting the file's text broke [`PdfLimits`]: the file is skipped,
    /// and the extraction cost no more than the limits.
    #[error("{file}: the PDF exceeds the extraction limits: {detail}")]
    ExtractionLimit { file: String, detail: String },
    #[error("{file}: cannot read the file: {source}")]
    Io {
        file: String,
        #[source]
        source: io::Error,
    },
}

impl FormatError {
    /// The file the error is about.
    pub fn file(&self) -> &str {
        match self {
            FormatError::Unsupported { file, .. }
            | FormatError::Mismatch { file, .. }
            | FormatError::LimitExceeded { file, .. }
            | FormatError::UnsafePath { file, .. }
            | FormatError::Malformed { file, .. }
            | FormatError::NoText { file, .. }
            | FormatError::ExtractionLimit { file, .. }
            | FormatError::Io { file, .. } => file,
        }
    }

    /// The message without the leading file name, for lists that already
    /// show the file next to it (see [`Skipped`]).
    pub fn reason(&self) -> String {
        let message = self.to_string();
        match message
            .strip_prefix(self.file())
            .and_then(|m| m.strip_prefix(": "))
        {
            Some(rest) => rest.to_string(),
            None => message,
        }
    }

    /// Whether the problem is the entry's alone, so that an archive can skip
    /// the entry and go on. The archive's limits, unsafe paths and I/O
    /// failures concern the whole upload (or the server) and stop it; a PDF
    /// too costly to extract was stopped within its own limits.
    fn is_entry_local(&self) -> bool {
        matches!(
            self,
            FormatError::Unsupported { .. }
                | FormatError::Mismatch { .. }
                | FormatError::Malformed { .. }
                | FormatError::NoText { .. }
                | FormatError::ExtractionLimit { .. }
        )
    }
}

/// Refuse now what `load` would refuse for the upload as a whole: content
/// of no supported type (or not what its name claims), and archives that
/// break a limit or hold unsafe paths. Cheap: reads the file's head and a
/// ZIP's central directory, decompresses nothing.
pub fn inspect(path: &Path, source_name: &str, limits: &Limits) -> Result<Kind, FormatError> {
    let kind = detect(path, source_name)?;
    if kind == Kind::Zip {
        archive::vet_zip(path, source_name, limits)?;
    }
    Ok(kind)
}

/// Load the upload stored at `path`. `source_name` is the name the uploader
/// gave it: it names the documents (and archive entries below it), gives the
/// extension that [`detect`] weighs, and the title of last resort.
pub fn load(path: &Path, source_name: &str, limits: &Limits) -> Result<Loaded, FormatError> {
    match detect(path, source_name)? {
        Kind::Zip => archive::load_zip(path, source_name, limits),
        kind => Ok(Loaded {
            documents: load_kind(kind, path, &Origin::file(source_name), limits)?,
            skipped: Vec::new(),
        }),
    }
}

/// Where the bytes being loaded came from.
struct Origin<'a> {
    /// The document's source name: the upload's name, or
    /// `"{archive}/{entry path}"` inside an archive.
    source: String,
    archive: Option<&'a str>,
}

impl<'a> Origin<'a> {
    fn file(name: &str) -> Origin<'a> {
        Origin {
            source: name.to_string(),
            archive: None,
        }
    }

    fn metadata(&self, kind: Kind) -> serde_json::Value {
        let mut meta = serde_json::json!({ "file": self.source, "format": kind.as_str() });
        if let (Some(archive), Some(map)) = (self.archive, meta.as_object_mut()) {
            map.insert("archive".into(), archive.into());
        }
        meta
    }

    /// The title of last resort.
    fn stem(&self) -> String {
        Path::new(&self.source)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.source.clone())
    }

    fn io(&self, source: io::Error) -> FormatError {
        FormatError::Io {
            file: self.source.clone(),
            source,
        }
    }

    fn malformed(&self, reason: impl Into<String>) -> FormatError {
        FormatError::Malformed {
            file: self.source.clone(),
            reason: reason.into(),
        }
    }
}

fn load_kind(
    kind: Kind,
    path: &Path,
    origin: &Origin,
    limits: &Limits,
) -> Result<Vec<RawDocument>, FormatError> {
    match kind {
        Kind::Text | Kind::Markdown | Kind::Html => load_text(kind, path, origin),
        Kind::Jsonl => jsonl::load(path, origin),
        Kind::Pdf => pdf::load(path, origin, &limits.pdf),
        Kind::Docx => docx::load(path, origin, limits),
        // Archives are expanded only at the top level (see `archive`).
        Kind::Zip => Err(FormatError::Unsupported {
            file: origin.source.clone(),
            detected: "a ZIP archive inside an archive".into(),
        }),
    }
}

fn load_text(kind: Kind, path: &Path, origin: &Origin) -> Result<Vec<RawDocument>, FormatError> {
    let bytes = std::fs::read(path).map_err(|e| origin.io(e))?;
    // Lossy past the sniffed head: a stray invalid byte should cost one
    // character, not the document.
    let raw = String::from_utf8_lossy(&bytes);
    let raw = raw.strip_prefix('\u{feff}').unwrap_or(&raw);
    let (title, text, markdown) = match kind {
        Kind::Markdown => (markdown_title(raw), raw.to_string(), true),
        Kind::Html => {
            let (title, text) = html_to_text(raw);
            (title, text, false)
        }
        _ => (text_title(raw), raw.to_string(), false),
    };
    Ok(vec![RawDocument {
        source: origin.source.clone(),
        title: title.unwrap_or_else(|| origin.stem()),
        text,
        markdown,
        metadata: origin.metadata(kind),
    }])
}

/// `bytes` in binary units for limit messages, e.g. `64 MiB`.
/// A byte count as people write limits (`64 MiB`, `1.5 KiB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else if value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Which limit bounds the decompression of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    Entry,
    Total,
    Ratio,
}

/// How many bytes one archive entry may decompress to.
#[derive(Debug, Clone, Copy)]
struct Budget {
    cap: u64,
    bound: Bound,
}

impl Limits {
    /// Refuses an entry whose declared sizes break a limit; otherwise returns
    /// the budget to hold its actual decompression to. `remaining` is what the
    /// archive's total still allows.
    fn entry_budget(
        &self,
        file: &str,
        entry: &str,
        declared: u64,
        compressed: u64,
        remaining: u64,
    ) -> Result<Budget, FormatError> {
        if declared > self.max_entry_bytes {
            return Err(self.exceeded(file, entry, Bound::Entry, Some(declared), compressed));
        }
        if declared > self.ratio_min_bytes && declared > compressed.saturating_mul(self.max_ratio) {
            return Err(self.exceeded(file, entry, Bound::Ratio, Some(declared), compressed));
        }
        let ratio_cap = compressed
            .saturating_mul(self.max_ratio)
            .max(self.ratio_min_bytes);
        let mut budget = Budget {
            cap: self.max_entry_bytes,
            bound: Bound::Entry,
        };
        for (cap, bound) in [(remaining, Bound::Total), (ratio_cap, Bound::Ratio)] {
            if cap < budget.cap {
                budget = Budget { cap, bound };
            }
        }
        Ok(budget)
    }

    /// The error for `entry` breaking `bound`; `declared` is the size the
    /// archive claims, when that is what broke it.
    fn exceeded(
        &self,
        file: &str,
        entry: &str,
        bound: Bound,
        declared: Option<u64>,
        compressed: u64,
    ) -> FormatError {
        let declared_note = |d: Option<u64>| match d {
            Some(d) => format!(" (declared {})", human_bytes(d)),
            None => " (counted while decompressing)".to_string(),
        };
        let (what, limit) = match bound {
            Bound::Entry => (
                format!(
                    "the uncompressed size of {entry}{}",
                    declared_note(declared)
                ),
                human_bytes(self.max_entry_bytes),
            ),
            Bound::Total => (
                format!(
                    "the total uncompressed size of the archive{}",
                    declared_note(declared)
                ),
                human_bytes(self.max_total_bytes),
            ),
            Bound::Ratio => {
                let ratio = match declared {
                    Some(d) => format!(" ({}:1)", d / compressed.max(1)),
                    None => declared_note(None),
                };
                (
                    format!("the compression ratio of {entry}{ratio}"),
                    format!("{}:1", self.max_ratio),
                )
            }
        };
        FormatError::LimitExceeded {
            file: file.to_string(),
            what,
            limit,
        }
    }
}

/// Counts the bytes a decompressor actually produces and fails once they pass
/// `cap`, whatever the archive declared.
struct Capped<R> {
    inner: R,
    cap: u64,
    read: u64,
    exceeded: bool,
}

impl<R: Read> Capped<R> {
    fn new(inner: R, cap: u64) -> Self {
        Capped {
            inner,
            cap,
            read: 0,
            exceeded: false,
        }
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let too_large =
            || io::Error::new(io::ErrorKind::FileTooLarge, "decompression limit reached");
        if self.exceeded {
            return Err(too_large());
        }
        // One byte past the cap is enough to know it was crossed; reading a
        // whole buffer past it would decompress more than the cap allows.
        let allowed = (self.cap - self.read).saturating_add(1);
        let len = buf
            .len()
            .min(usize::try_from(allowed).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..len])?;
        self.read += n as u64;
        if self.read > self.cap {
            self.exceeded = true;
            return Err(too_large());
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn detects_every_kind_from_content() {
        let dir = tempfile::tempdir().unwrap();
        let cases: Vec<(&str, Vec<u8>, Kind)> = vec![
            ("notes.txt", b"just some words\n".to_vec(), Kind::Text),
            ("notes", b"no extension at all".to_vec(), Kind::Text),
            ("readme.md", b"# Title\n\nbody".to_vec(), Kind::Markdown),
            ("readme.markdown", b"body".to_vec(), Kind::Markdown),
            (
                "page.txt",
                b"\xEF\xBB\xBF  \n<!DOCTYPE HTML><html><p>x</p></html>".to_vec(),
                Kind::Html,
            ),
            (
                "page",
                b"<HEAD><title>t</title></HEAD>".to_vec(),
                Kind::Html,
            ),
            ("frag.htm", b"<p>a fragment</p>".to_vec(), Kind::Html),
            ("c.jsonl", b"not even json".to_vec(), Kind::Jsonl),
            (
                "c.ndjson",
                b"{\"id\": 1, \"text\": \"x\"}".to_vec(),
                Kind::Jsonl,
            ),
            (
                "corpus.txt",
                b"{\"_id\": \"a\", \"text\": \"x\"}\n\n{\"_id\": \"b\", \"text\": \"y\"}\n"
                    .to_vec(),
                Kind::Jsonl,
            ),
            (
                "mixed.txt",
                b"{\"_id\": \"a\", \"text\": \"x\"}\nplain line\n".to_vec(),
                Kind::Text,
            ),
            ("array.txt", b"[1, 2, 3]\n".to_vec(), Kind::Text),
            ("doc.pdf", make_pdf(HELLO_PDF, None), Kind::Pdf),
            ("doc.docx", make_docx(DOCX_BODY, Some("T")), Kind::Docx),
            ("bundle.zip", make_zip(&[("a.txt", b"a")]), Kind::Zip),
            ("empty.txt", Vec::new(), Kind::Text),
        ];
        for (name, bytes, want) in cases {
            let path = write_file(dir.path(), "upload", &bytes);
            let got = detect(&path, name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn content_wins_over_a_text_extension() {
        let dir = tempfile::tempdir().unwrap();
        let pdf = write_file(dir.path(), "u", &make_pdf(HELLO_PDF, None));
        assert_eq!(detect(&pdf, "notes.txt").unwrap(), Kind::Pdf);
        let loaded = load(&pdf, "notes.txt", &Limits::default()).unwrap();
        assert_eq!(loaded.documents.len(), 1);
        assert!(loaded.documents[0].text.contains("Hello PDF world"));
        assert_eq!(loaded.documents[0].metadata["format"], "pdf");

        let docx = write_file(dir.path(), "d", &make_docx(DOCX_BODY, None));
        assert_eq!(detect(&docx, "report.md").unwrap(), Kind::Docx);
        assert_eq!(detect(&docx, "bundle.zip").unwrap(), Kind::Docx);
    }

    #[test]
    fn binary_names_must_match_their_content() {
        let dir = tempfile::tempdir().unwrap();
        let text = write_file(dir.path(), "t", b"plain words");
        let err = detect(&text, "report.pdf").unwrap_err();
        assert!(matches!(err, FormatError::Mismatch { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "report.pdf: named like a PDF but the content is plain text"
        );
        assert!(load(&text, "report.pdf", &Limits::default()).is_err());

        let zip = write_file(dir.path(), "z", &make_zip(&[("a.txt", b"a")]));
        let err = detect(&zip, "letter.docx").unwrap_err();
        assert_eq!(
            err.to_string(),
            "letter.docx: named like a Word document (DOCX) but the content is a ZIP archive"
        );

        let png = write_file(dir.path(), "p", PNG_HEAD);
        let err = detect(&png, "scan.pdf").unwrap_err();
        assert!(matches!(err, FormatError::Mismatch { .. }), "{err:?}");
        assert!(err.to_string().contains("a PNG image"), "{err}");

        let err = detect(&text, "bundle.zip").unwrap_err();
        assert!(matches!(err, FormatError::Mismatch { .. }), "{err:?}");
    }

    #[test]
    fn binary_content_is_unsupported_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&[u8], &str); 5] = [
            (PNG_HEAD, "a PNG image"),
            (b"MZ\x90\x00\x03\x00\x00\x00", "a Windows executable"),
            (b"\x00\x01\x02\x03 some bytes", "binary data"),
            (b"caf\xe9 au lait", "binary data"),
            (b"\xFF\xFEh\x00i\x00", "UTF-16 text"),
        ];
        for (bytes, detected) in cases {
            let path = write_file(dir.path(), "u", bytes);
            let err = detect(&path, "upload.txt").unwrap_err();
            assert!(matches!(err, FormatError::Unsupported { .. }), "{err:?}");
            let msg = err.to_string();
            assert!(
                msg.starts_with("upload.txt: unsupported content: "),
                "{msg}"
            );
            assert!(msg.contains(detected), "{msg}");
        }
    }

    #[test]
    fn a_multibyte_character_cut_by_the_sniff_window_is_still_text() {
        let dir = tempfile::tempdir().unwrap();
        // 'é' is two bytes; an odd prefix puts one of them at the window's edge.
        let mut text = b"x".to_vec();
        text.extend("é".repeat(10_000).as_bytes());
        let path = write_file(dir.path(), "u", &text);
        assert_eq!(detect(&path, "accents.txt").unwrap(), Kind::Text);
    }

    #[test]
    fn html_extension_without_markup_is_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "u", b"a < b and c > d, nothing else");
        assert_eq!(detect(&path, "page.html").unwrap(), Kind::Text);
    }

    #[test]
    fn loads_text_markdown_and_html_with_titles() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits::default();
        let cases: [(&str, &[u8], &str, &str, bool); 4] = [
            (
                "guide.md",
                b"intro\n# Install guide\nsteps",
                "Install guide",
                "intro\n# Install guide\nsteps",
                true,
            ),
            (
                "notes.txt",
                b"\xEF\xBB\xBF\n  First line  \nsecond",
                "First line",
                "\n  First line  \nsecond",
                false,
            ),
            (
                "page.html",
                b"<html><head><title>Page</title></head><body><p>Body text</p></body></html>",
                "Page",
                "Body text",
                false,
            ),
            (
                "untitled.md",
                b"no heading here",
                "untitled",
                "no heading here",
                true,
            ),
        ];
        for (name, bytes, title, text, markdown) in cases {
            let path = write_file(dir.path(), "upload", bytes);
            let loaded = load(&path, name, &limits).unwrap();
            assert!(loaded.skipped.is_empty());
            let [doc] = &loaded.documents[..] else {
                panic!("{name}: {:?}", loaded.documents)
            };
            assert_eq!(doc.source, name);
            assert_eq!(doc.title, title, "{name}");
            assert_eq!(doc.text.trim(), text.trim(), "{name}");
            assert_eq!(doc.markdown, markdown, "{name}");
            assert_eq!(doc.metadata["file"], name);
            assert!(doc.metadata.get("archive").is_none());
        }
    }

    #[test]
    fn missing_file_is_an_io_error_naming_the_upload() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(&dir.path().join("gone"), "gone.txt", &Limits::default()).unwrap_err();
        assert!(matches!(err, FormatError::Io { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("gone.txt: cannot read the file"),
            "{err}"
        );
    }

    #[test]
    fn error_reason_drops_the_file_prefix() {
        let err = FormatError::NoText {
            file: "a.zip/b.pdf".into(),
            reason: "scanned".into(),
        };
        assert_eq!(err.to_string(), "a.zip/b.pdf: no text to index: scanned");
        assert_eq!(err.reason(), "no text to index: scanned");
    }

    #[test]
    fn human_bytes_reads_well() {
        assert_eq!(human_bytes(10), "10 bytes");
        assert_eq!(human_bytes(64 * MIB), "64 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(512 * MIB), "512 MiB");
    }

    #[test]
    fn capped_reader_counts_actual_bytes() {
        let mut out = Vec::new();
        let mut capped = Capped::new(io::repeat(0).take(10_000), 1000);
        let err = io::copy(&mut capped, &mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert!(capped.exceeded);
        // It stopped one byte past the cap instead of draining the source.
        assert_eq!(capped.read, 1001);

        let mut exact = Capped::new(io::repeat(0).take(1000), 1000);
        assert_eq!(io::copy(&mut exact, &mut out).unwrap(), 1000);
        assert!(!exact.exceeded);
    }

    #[test]
    fn entry_budget_checks_declared_sizes_and_picks_the_tightest_limit() {
        let limits = Limits {
            max_entries: 10,
            max_total_bytes: 10 * MIB,
            max_entry_bytes: 4 * MIB,
            max_ratio: 100,
            ratio_min_bytes: MIB,
            pdf: PdfLimits::default(),
        };
        let err = limits
            .entry_budget("a.zip", "big", 5 * MIB, 5 * MIB, 10 * MIB)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "a.zip: the uncompressed size of big (declared 5 MiB) exceeds the limit of 4 MiB"
        );
        let err = limits
            .entry_budget("a.zip", "zeros", 3 * MIB, 3000, 10 * MIB)
            .unwrap_err();
        assert!(
            err.to_string().contains("compression ratio of zeros"),
            "{err}"
        );
        assert!(err.to_string().ends_with("limit of 100:1"), "{err}");
        // Small entries may compress as well as they like.
        assert!(limits
            .entry_budget("a.zip", "tiny", 500_000, 100, 10 * MIB)
            .is_ok());

        let b = limits.entry_budget("a.zip", "x", 10, 10, 10 * MIB).unwrap();
        assert_eq!((b.cap, b.bound), (MIB, Bound::Ratio));
        let b = limits.entry_budget("a.zip", "x", 10, 10, 1000).unwrap();
        assert_eq!((b.cap, b.bound), (1000, Bound::Total));
        let b = limits
            .entry_budget("a.zip", "x", 10, MIB, 10 * MIB)
            .unwrap();
        assert_eq!((b.cap, b.bound), (4 * MIB, Bound::Entry));
    }
}
