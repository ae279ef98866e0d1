//! PDF: the text layer, through `pdf-extract`. Scanned PDFs have none, and
//! OCR is out of scope, so they are refused with a message saying so.
//!
//! A PDF's streams are compressed with no ratio limit (and may be compressed
//! twice over), so a small file can inflate to gigabytes, and its content
//! can make the parser loop or recurse for a long time. Extraction is bounded
//! by [`PdfLimits`] twice over:
//! - in process ([`extract`]), every stream's decoded size is counted against
//!   `max_decompressed_bytes` before the parser inflates it (`budget`), and
//!   the text produced is capped at the same size;
//! - in the server and workers, that runs in a child process (`child`): the
//!   `ragchat` binary itself, re-executed as `ragchat extract-pdf`, under an
//!   address-space and CPU-time limit and a wall-clock timeout. That also
//!   bounds what the count cannot reach: lopdf inflates cross-reference
//!   streams (and an encrypted file's object streams) while it parses, before
//!   any hook runs, and a form that draws itself recurses until the stack
//!   overflows, which no `catch_unwind` survives.

mod budget;
mod child;

use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

use pdf_extract::{Document, Object, PlainTextOutput};
use serde::{Deserialize, Serialize};

pub use child::{extract_pdf_child, extract_pdfs_in_child_processes};

use super::{text_title, FormatError, Kind, Origin, PdfLimits, RawDocument};

pub(super) fn load(
    path: &Path,
    origin: &Origin,
    limits: &PdfLimits,
) -> Result<Vec<RawDocument>, FormatError> {
    let extracted = match child::extractor() {
        Some(exe) => child::extract_in_child(exe, path, limits).map_err(|e| origin.io(e))?,
        None => extract(&std::fs::read(path).map_err(|e| origin.io(e))?, limits),
    };
    let Extracted { title, text } = extracted.map_err(|f| f.into_error(origin))?;
    if text.trim().is_empty() {
        return Err(FormatError::NoText {
            file: origin.source.clone(),
            reason: "the PDF has no text layer (a scanned document?); run OCR on it and \
                     upload the result"
                .into(),
        });
    }
    let title = title
        .or_else(|| text_title(&text))
        .unwrap_or_else(|| origin.stem());
    Ok(vec![RawDocument {
        source: origin.source.clone(),
        title,
        text,
        markdown: false,
        metadata: origin.metadata(Kind::Pdf),
    }])
}

/// What one PDF yields: the Info dictionary's title, and the text of all
/// pages. Serialised: the child process sends it to its parent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Extracted {
    title: Option<String>,
    text: String,
}

/// Why a PDF yields no text. Serialised like [`Extracted`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Failure {
    Encrypted,
    Malformed(String),
    /// A [`PdfLimits`] bound was reached; says which.
    Limit(String),
}

impl Failure {
    fn into_error(self, origin: &Origin) -> FormatError {
        match self {
            Failure::Encrypted => FormatError::Unsupported {
                file: origin.source.clone(),
                detected: "a password-protected PDF".into(),
            },
            Failure::Malformed(reason) => origin.malformed(reason),
            Failure::Limit(detail) => FormatError::ExtractionLimit {
                file: origin.source.clone(),
                detail,
            },
        }
    }
}

/// Extract the text of the PDF `bytes` within `limits.max_decompressed_bytes`
/// (the other limits are the child process's).
fn extract(bytes: &[u8], limits: &PdfLimits) -> Result<Extracted, Failure> {
    // pdf-extract (and lopdf under it) panic on some malformed files; a bad
    // upload must cost an error, not the worker thread.
    panic::catch_unwind(AssertUnwindSafe(|| extract_unguarded(bytes, limits))).unwrap_or_else(
        |panic| {
            Err(Failure::Malformed(format!(
                "the PDF could not be parsed (the parser failed: {})",
                panic_message(panic.as_ref())
            )))
        },
    )
}

fn extract_unguarded(bytes: &[u8], limits: &PdfLimits) -> Result<Extracted, Failure> {
    let cap = limits.max_decompressed_bytes;
    let (mut doc, mut budget) = budget::load(bytes, cap)?;
    // Many PDFs are encrypted only to set permissions, with an empty user
    // password; those open. Others need a password we do not have.
    if doc.is_encrypted() && doc.decrypt("").is_err() {
        return Err(Failure::Encrypted);
    }
    budget.charge_document(&mut doc)?;
    let title = info_title(&doc);
    let mut text = budget::CappedWriter::new(cap);
    let written = pdf_extract::output_doc(
        &doc,
        &mut PlainTextOutput::new(&mut text as &mut dyn std::io::Write),
    );
    if text.exceeded() {
        return Err(budget::text_limit(cap));
    }
    written.map_err(|e| Failure::Malformed(format!("the PDF could not be parsed: {e}")))?;
    Ok(Extracted {
        title,
        text: String::from_utf8_lossy(&text.into_inner()).into_owned(),
    })
}

fn info_title(doc: &Document) -> Option<String> {
    let info = doc.trailer.get(b"Info").ok()?;
    let (_, info) = doc.dereference(info).ok()?;
    let title = info.as_dict().ok()?.get(b"Title").ok()?;
    let (_, title) = doc.dereference(title).ok()?;
    if !matches!(title, Object::String(..)) {
        return None;
    }
    let title = pdf_extract::decode_text_string(title).ok()?;
    let title = title.trim();
    (!title.is_empty()).then(|| title.to_string())
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("unknown error")
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{load as load_upload, Limits};
    use super::*;

    fn load_pdf(bytes: &[u8], name: &str) -> Result<Vec<RawDocument>, FormatError> {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "upload", bytes);
        load_upload(&path, name, &Limits::default()).map(|l| l.documents)
    }

    #[test]
    fn pdf_text_and_metadata_title() {
        let docs = load_pdf(&make_pdf(HELLO_PDF, Some("Quarterly report")), "q.pdf").unwrap();
        let [doc] = &docs[..] else { panic!("{docs:?}") };
        assert_eq!(doc.text.trim(), "Hello PDF world");
        assert_eq!(doc.title, "Quarterly report");
        assert_eq!(doc.source, "q.pdf");
        assert_eq!(
            doc.metadata,
            serde_json::json!({ "file": "q.pdf", "format": "pdf" })
        );
    }

    #[test]
    fn pdf_title_falls_back_to_first_line() {
        let docs = load_pdf(&make_pdf(HELLO_PDF, Some("   ")), "q.pdf").unwrap();
        assert_eq!(docs[0].title, "Hello PDF world");
        let docs = load_pdf(&make_pdf(HELLO_PDF, None), "q.pdf").unwrap();
        assert_eq!(docs[0].title, "Hello PDF world");
    }

    #[test]
    fn pdf_without_text_layer_is_no_text() {
        let err = load_pdf(&make_pdf(RECTANGLE_PDF, None), "scan.pdf").unwrap_err();
        assert!(matches!(err, FormatError::NoText { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.starts_with("scan.pdf: no text to index:"), "{msg}");
        assert!(msg.contains("OCR"), "{msg}");
    }

    #[test]
    fn broken_pdf_is_an_error_not_a_panic() {
        let mut truncated = make_pdf(HELLO_PDF, None);
        truncated.truncate(200);
        for bytes in [b"%PDF-1.4\nthis is not a PDF body".to_vec(), truncated] {
            let err = load_pdf(&bytes, "bad.pdf").unwrap_err();
            assert!(matches!(err, FormatError::Malformed { .. }), "{err:?}");
            assert!(err.to_string().starts_with("bad.pdf: "), "{err}");
        }
    }

    fn small_limits() -> Limits {
        Limits {
            pdf: PdfLimits {
                max_decompressed_bytes: 8 << 20,
                ..PdfLimits::default()
            },
            ..Limits::default()
        }
    }

    fn load_with(bytes: &[u8], limits: &Limits) -> Result<Vec<RawDocument>, FormatError> {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "upload", bytes);
        load_upload(&path, "bomb.pdf", limits).map(|l| l.documents)
    }

    fn assert_limit(result: Result<Vec<RawDocument>, FormatError>, what: &str) {
        let err = result.unwrap_err();
        assert!(
            matches!(err, FormatError::ExtractionLimit { .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with("bomb.pdf: the PDF exceeds the extraction limits: "),
            "{msg}"
        );
        assert!(msg.contains(what), "{msg}");
    }

    /// 64 MiB of zeros in a 64 KiB content stream: refused after 8 MiB of
    /// decoding, where pdf-extract would have inflated all of it.
    #[test]
    fn a_deflate_bomb_content_stream_is_refused_within_the_budget() {
        let bomb = deflated_zeros(64 << 20);
        assert!(bomb.len() < 1 << 20, "{}", bomb.len());
        let pdf = make_pdf_with_stream(" /Filter /FlateDecode", &bomb, None);
        assert_limit(
            load_with(&pdf, &small_limits()),
            "decompress to more than 8 MiB",
        );

        // The same page, compressed the ordinary way, reads.
        let content = budget_zlib(HELLO_PDF.as_bytes());
        let pdf = make_pdf_with_stream(" /Filter /FlateDecode", &content, Some("Z"));
        let docs = load_with(&pdf, &small_limits()).unwrap();
        assert_eq!(docs[0].text.trim(), "Hello PDF world");
    }

    /// Compressed twice: a few kilobytes inflate to 1 GiB through 1 MiB.
    #[test]
    fn a_double_deflate_bomb_is_refused() {
        let bomb = budget_zlib(&deflated_zeros(1 << 30));
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        let pdf = make_pdf_with_stream(" /Filter [/FlateDecode /FlateDecode]", &bomb, None);
        assert_limit(
            load_with(&pdf, &small_limits()),
            "decompress to more than 8 MiB",
        );
    }

    /// lopdf expands object streams while it loads the file, before any
    /// page is read.
    #[test]
    fn a_bomb_in_an_object_stream_is_refused_while_loading() {
        let bomb = deflated_zeros(64 << 20);
        let mut objstm = format!(
            "<< /Type /ObjStm /N 1 /First 4 /Filter /FlateDecode /Length {} >>\nstream\n",
            bomb.len()
        )
        .into_bytes();
        objstm.extend_from_slice(&bomb);
        objstm.extend_from_slice(b"\nendstream");
        let objects = vec![
            b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
            b"<< /Type /Pages /Kids [] /Count 0 >>".to_vec(),
            objstm,
        ];
        assert_limit(
            load_with(&pdf_of_objects(&objects, None), &small_limits()),
            "decompress to more than 8 MiB",
        );
    }

    /// lopdf inflates the cross-reference stream while it parses the file's
    /// structure, before any page or hook.
    #[test]
    fn a_bomb_in_the_cross_reference_stream_is_refused_before_parsing() {
        let bomb = deflated_zeros(64 << 20);
        let mut pdf = b"%PDF-1.5\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n\
                        2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n"
            .to_vec();
        let xref = pdf.len();
        pdf.extend_from_slice(
            format!(
                "3 0 obj\n<< /Type /XRef /Size 4 /W [1 4 2] /Root 1 0 R /Filter /FlateDecode \
                 /Length {} >>\nstream\n",
                bomb.len()
            )
            .as_bytes(),
        );
        pdf.extend_from_slice(&bomb);
        pdf.extend_from_slice(
            format!("\nendstream\nendobj\nstartxref\n{xref}\n%%EOF\n").as_bytes(),
        );
        assert_limit(
            load_with(&pdf, &small_limits()),
            "decompress to more than 8 MiB",
        );
    }

    #[test]
    fn images_are_not_inflated() {
        // An image XObject that would inflate past the budget: never text,
        // so it is emptied instead of charged.
        let bomb = deflated_zeros(64 << 20);
        let mut image = format!(
            "<< /Type /XObject /Subtype /Image /Width 8192 /Height 8192 /ColorSpace /DeviceGray \
             /BitsPerComponent 8 /Filter /FlateDecode /Length {} >>\nstream\n",
            bomb.len()
        )
        .into_bytes();
        image.extend_from_slice(&bomb);
        image.extend_from_slice(b"\nendstream");
        let content = format!("{HELLO_PDF} q 100 0 0 100 0 0 cm /Im1 Do Q");
        let page = format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        );
        let objects = vec![
            b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources \
              << /Font << /F1 4 0 R >> /XObject << /Im1 6 0 R >> >> /Contents 5 0 R >>"
                .to_vec(),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
                .to_vec(),
            page.into_bytes(),
            image,
        ];
        let docs = load_with(&pdf_of_objects(&objects, None), &small_limits()).unwrap();
        assert_eq!(docs[0].text.trim(), "Hello PDF world");
    }

    #[test]
    fn text_past_the_cap_is_refused() {
        let content = HELLO_PDF.repeat(2000);
        let pdf = make_pdf(&content, None);
        let limits = Limits {
            pdf: PdfLimits {
                max_decompressed_bytes: 10_000,
                ..PdfLimits::default()
            },
            ..Limits::default()
        };
        assert_limit(load_with(&pdf, &limits), "text is longer than");
        assert!(load_with(&pdf, &Limits::default()).is_ok());
    }

    #[test]
    fn a_pdf_bomb_inside_a_zip_skips_that_entry_only() {
        let bomb = make_pdf_with_stream(" /Filter /FlateDecode", &deflated_zeros(64 << 20), None);
        let zip = make_zip(&[("bomb.pdf", &bomb), ("ok.txt", b"plain words here")]);
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "upload", &zip);
        let loaded = load_upload(&path, "a.zip", &small_limits()).unwrap();
        assert_eq!(loaded.documents.len(), 1);
        assert_eq!(loaded.documents[0].source, "a.zip/ok.txt");
        let [skipped] = &loaded.skipped[..] else {
            panic!("{:?}", loaded.skipped)
        };
        assert_eq!(skipped.source, "a.zip/bomb.pdf");
        assert!(
            skipped
                .reason
                .starts_with("the PDF exceeds the extraction limits"),
            "{}",
            skipped.reason
        );
    }

    fn budget_zlib(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }
}
