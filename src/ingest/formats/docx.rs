//! DOCX: the paragraphs of `word/document.xml`, titled by the core
//! properties' `dc:title`. Elements are matched by local name, so documents
//! written with an unusual namespace prefix read the same.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::Path;

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesRef, Event};
use quick_xml::Reader;
use zip::ZipArchive;

use super::archive::undecompressable;
use super::{text_title, Capped, FormatError, Kind, Limits, Origin, RawDocument};

const DOCUMENT: &str = "word/document.xml";
const CORE: &str = "docProps/core.xml";

pub(super) fn load(
    path: &Path,
    origin: &Origin,
    limits: &Limits,
) -> Result<Vec<RawDocument>, FormatError> {
    let file = File::open(path).map_err(|e| origin.io(e))?;
    let mut zip = ZipArchive::new(BufReader::new(file))
        .map_err(|e| origin.malformed(format!("not a readable DOCX (ZIP) container: {e}")))?;
    let paragraphs = read_part(&mut zip, DOCUMENT, origin, limits, paragraphs)?
        .ok_or_else(|| origin.malformed(format!("{DOCUMENT} is missing")))?;
    // A broken core.xml costs the title, not the document; a bomb in it
    // still refuses the upload.
    let core_title = match read_part(&mut zip, CORE, origin, limits, core_title) {
        Ok(title) => title.flatten(),
        Err(e @ FormatError::LimitExceeded { .. }) => return Err(e),
        Err(_) => None,
    };
    let text = paragraphs.join("\n");
    if text.trim().is_empty() {
        return Err(FormatError::NoText {
            file: origin.source.clone(),
            reason: "the document has no text (only images, or empty)".into(),
        });
    }
    let title = core_title
        .or_else(|| text_title(&text))
        .unwrap_or_else(|| origin.stem());
    Ok(vec![RawDocument {
        source: origin.source.clone(),
        title,
        text,
        markdown: false,
        metadata: origin.metadata(Kind::Docx),
    }])
}

/// What part parsers read: type-erased so that one plain function serves
/// every archive reader.
type Xml<'a> = Reader<&'a mut dyn BufRead>;

/// Parses part `name` with `parse`, decompressing no more than the limits
/// allow; `None` when the part is absent.
fn read_part<R: Read + Seek, T>(
    zip: &mut ZipArchive<R>,
    name: &str,
    origin: &Origin,
    limits: &Limits,
    parse: fn(&mut Xml<'_>) -> Result<T, quick_xml::Error>,
) -> Result<Option<T>, FormatError> {
    let Some(index) = zip.index_for_name(name) else {
        return Ok(None);
    };
    let part = zip
        .by_index(index)
        .map_err(|e| origin.malformed(format!("cannot open {name}: {e}")))?;
    let budget = limits.entry_budget(
        &origin.source,
        name,
        part.size(),
        part.compressed_size(),
        limits.max_total_bytes,
    )?;
    let mut input = BufReader::new(Capped::new(part, budget.cap));
    let parsed = parse(&mut Reader::from_reader(&mut input as &mut dyn BufRead));
    match parsed {
        Ok(value) => Ok(Some(value)),
        Err(_) if input.get_ref().exceeded => {
            Err(limits.exceeded(&origin.source, name, budget.bound, None, 0))
        }
        // Decompression failures surface as I/O errors of the XML reader.
        Err(quick_xml::Error::Io(e)) => Err(origin.malformed(undecompressable(name, &e))),
        Err(e) => Err(origin.malformed(format!("{name} is not well-formed XML: {e}"))),
    }
}

/// One string per `w:p`: the run texts (`w:t`) joined, `w:tab` as a tab,
/// `w:br` and `w:cr` as line breaks.
fn paragraphs(xml: &mut Xml<'_>) -> Result<Vec<String>, quick_xml::Error> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut buf = Vec::new();
    // Tabs and breaks count only inside runs: `w:tab` also defines tab stops
    // in paragraph properties, which are layout, not text.
    let mut run_depth = 0usize;
    let mut in_text = false;
    loop {
        match xml.read_event_into(&mut buf)? {
            Event::Start(e) => match e.local_name().as_ref() {
                "r" => run_depth += 1,
                "t" => in_text = run_depth > 0,
                name => push_inline(name, run_depth, &mut current),
            },
            Event::Empty(e) => match e.local_name().as_ref() {
                "p" => out.push(String::new()),
                name => push_inline(name, run_depth, &mut current),
            },
            Event::End(e) => match e.local_name().as_ref() {
                "r" => run_depth = run_depth.saturating_sub(1),
                "t" => in_text = false,
                "p" => out.push(std::mem::take(&mut current)),
                _ => {}
            },
            Event::Text(t) if in_text => current.push_str(&t.xml10_content()),
            Event::CData(t) if in_text => current.push_str(&t.xml10_content()),
            Event::GeneralRef(r) if in_text => push_reference(&r, &mut current)?,
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    // Text after the last paragraph (not valid DOCX, but seen in generated files).
    if !current.is_empty() {
        out.push(current);
    }
    Ok(out)
}

fn push_inline(name: &str, run_depth: usize, out: &mut String) {
    if run_depth == 0 {
        return;
    }
    match name {
        "tab" => out.push('\t'),
        "br" | "cr" => out.push('\n'),
        "noBreakHyphen" => out.push('-'),
        _ => {}
    }
}

/// Text of `&amp;`-style and `&#…;` references; the reader reports them
/// apart from the text around them.
fn push_reference(r: &BytesRef, out: &mut String) -> Result<(), quick_xml::Error> {
    if let Some(c) = r.resolve_char_ref()? {
        out.push(c);
    } else if let Some(s) = resolve_predefined_entity(&r.xml10_content()) {
        out.push_str(s);
    }
    Ok(())
}

/// The text of the first `dc:title`, if it has any.
fn core_title(xml: &mut Xml<'_>) -> Result<Option<String>, quick_xml::Error> {
    let mut buf = Vec::new();
    let mut title: Option<String> = None;
    loop {
        match xml.read_event_into(&mut buf)? {
            Event::Start(e) if e.local_name().as_ref() == "title" => title = Some(String::new()),
            Event::End(e) if e.local_name().as_ref() == "title" => break,
            Event::Text(t) => {
                if let Some(title) = title.as_mut() {
                    title.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                if let Some(title) = title.as_mut() {
                    push_reference(&r, title)?;
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok(title
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{load as load_upload, MIB};
    use super::*;

    fn load_docx(bytes: &[u8], limits: &Limits) -> Result<Vec<RawDocument>, FormatError> {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "upload", bytes);
        load_upload(&path, "letter.docx", limits).map(|l| l.documents)
    }

    #[test]
    fn docx_paragraphs_tabs_breaks_and_core_title() {
        let docs = load_docx(
            &make_docx(DOCX_BODY, Some("The &amp; title")),
            &Limits::default(),
        )
        .unwrap();
        let [doc] = &docs[..] else { panic!("{docs:?}") };
        assert_eq!(doc.title, "The & title");
        assert_eq!(
            doc.text,
            "First paragraph\n\nName:\tAda\nLovelace\nR&D \u{e9}t\u{e9}"
        );
        assert_eq!(
            doc.metadata,
            serde_json::json!({ "file": "letter.docx", "format": "docx" })
        );
    }

    #[test]
    fn docx_title_falls_back_to_first_paragraph_then_stem() {
        let docs = load_docx(&make_docx(DOCX_BODY, None), &Limits::default()).unwrap();
        assert_eq!(docs[0].title, "First paragraph");
        let docs = load_docx(&make_docx(DOCX_BODY, Some("  ")), &Limits::default()).unwrap();
        assert_eq!(docs[0].title, "First paragraph");
        let long = format!("<w:p><w:r><w:t>{}</w:t></w:r></w:p>", "word ".repeat(40));
        let docs = load_docx(&make_docx(&long, None), &Limits::default()).unwrap();
        assert_eq!(docs[0].title, "letter");
    }

    #[test]
    fn docx_tab_stops_and_deleted_text_are_not_text() {
        let body = r#"<w:p><w:pPr><w:tabs><w:tab w:val="left" w:pos="720"/></w:tabs></w:pPr>
            <w:r><w:t xml:space="preserve">kept </w:t></w:r>
            <w:del><w:r><w:delText>gone</w:delText></w:r></w:del>
            <w:r><w:instrText>PAGE</w:instrText><w:t>end</w:t></w:r></w:p>"#;
        let docs = load_docx(&make_docx(body, None), &Limits::default()).unwrap();
        assert_eq!(docs[0].text, "kept end");
    }

    #[test]
    fn docx_without_text_is_no_text() {
        let err = load_docx(&make_docx("<w:p/><w:p></w:p>", None), &Limits::default()).unwrap_err();
        assert!(matches!(err, FormatError::NoText { .. }), "{err:?}");
    }

    #[test]
    fn docx_with_broken_xml_is_malformed() {
        let err = load_docx(
            &make_docx("<w:p><w:r><w:t>x</w:r></w:p>", None),
            &Limits::default(),
        )
        .unwrap_err();
        assert!(matches!(err, FormatError::Malformed { .. }), "{err:?}");
        assert!(err.to_string().contains("word/document.xml"), "{err}");
    }

    #[test]
    fn docx_document_xml_over_the_cap_is_refused() {
        let big = "<w:p><w:r><w:t>lorem ipsum dolor</w:t></w:r></w:p>".repeat(40_000);
        let bytes = make_docx(&big, None);
        let limits = Limits {
            max_entry_bytes: MIB,
            max_ratio: 10_000,
            ..Limits::default()
        };
        let err = load_docx(&bytes, &limits).unwrap_err();
        assert!(matches!(err, FormatError::LimitExceeded { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("uncompressed size of word/document.xml"),
            "{err}"
        );
        // The same document with room enough loads. (Its synthetic repetition
        // compresses far beyond the default ratio, hence the raised one.)
        let roomy = Limits {
            max_ratio: 10_000,
            ..Limits::default()
        };
        let docs = load_docx(&bytes, &roomy).unwrap();
        assert_eq!(docs[0].text.lines().count(), 40_000);
        let err = load_docx(&bytes, &Limits::default()).unwrap_err();
        assert!(
            err.to_string()
                .contains("compression ratio of word/document.xml"),
            "{err}"
        );
    }

    #[test]
    fn docx_part_lying_about_its_size_is_stopped_by_counting() {
        let big = "<w:p><w:r><w:t>lorem ipsum dolor</w:t></w:r></w:p>".repeat(40_000);
        let bytes = lie_about_size(&make_docx(&big, None), DOCUMENT, 1000);
        let err = load_docx(&bytes, &Limits::default()).unwrap_err();
        assert!(matches!(err, FormatError::Malformed { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with(
                "letter.docx: entry word/document.xml cannot be decompressed (File is larger"
            ),
            "{err}"
        );
    }
}
