//! PDF: the text layer, through `pdf-extract`. Scanned PDFs have none, and
//! OCR is out of scope, so they are refused with a message saying so.

use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

use pdf_extract::{Document, Object, OutputError, PlainTextOutput};

use super::{text_title, FormatError, Kind, Origin, RawDocument};

pub(super) fn load(path: &Path, origin: &Origin) -> Result<Vec<RawDocument>, FormatError> {
    // pdf-extract (and lopdf under it) panic on some malformed files; a bad
    // upload must cost an error, not the worker thread.
    let extracted = panic::catch_unwind(AssertUnwindSafe(|| extract(path))).map_err(|panic| {
        origin.malformed(format!(
            "the PDF could not be parsed (the parser failed: {})",
            panic_message(panic.as_ref())
        ))
    })?;
    let (meta_title, text) = extracted.map_err(|e| match e {
        Failure::Encrypted => FormatError::Unsupported {
            file: origin.source.clone(),
            detected: "a password-protected PDF".into(),
        },
        Failure::Output(OutputError::IoError(source))
        | Failure::Output(OutputError::PdfError(pdf_extract::Error::IO(source))) => {
            origin.io(source)
        }
        Failure::Output(e) => origin.malformed(format!("the PDF could not be parsed: {e}")),
    })?;
    if text.trim().is_empty() {
        return Err(FormatError::NoText {
            file: origin.source.clone(),
            reason: "the PDF has no text layer (a scanned document?); run OCR on it and \
                     upload the result"
                .into(),
        });
    }
    let title = meta_title
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

enum Failure {
    Encrypted,
    Output(OutputError),
}

/// The Info dictionary's title, and the text of all pages.
fn extract(path: &Path) -> Result<(Option<String>, String), Failure> {
    let mut doc = Document::load(path).map_err(|e| Failure::Output(e.into()))?;
    // Many PDFs are encrypted only to set permissions, with an empty user
    // password; those open. Others need a password we do not have.
    if doc.is_encrypted() && doc.decrypt("").is_err() {
        return Err(Failure::Encrypted);
    }
    let title = info_title(&doc);
    let mut text = String::new();
    pdf_extract::output_doc(&doc, &mut PlainTextOutput::new(&mut text)).map_err(Failure::Output)?;
    Ok((title, text))
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
}
