//! Fixtures built in the tests themselves: tiny PDFs with correct xref
//! offsets, DOCX and ZIP files written with the `zip` crate.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// A page content stream with one line of Helvetica text.
pub const HELLO_PDF: &str = "BT /F1 12 Tf 72 712 Td (Hello PDF world) Tj ET";
/// A page that only strokes a rectangle: no text layer.
pub const RECTANGLE_PDF: &str = "0 0 1 RG 2 w 100 100 200 150 re S";

pub const PNG_HEAD: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01";

/// Paragraphs of a DOCX body; read as
/// `"First paragraph\n\nName:\tAda\nLovelace\nR&D été"`.
pub const DOCX_BODY: &str = r#"
    <w:p><w:pPr><w:pStyle w:val="Title"/></w:pPr>
      <w:r><w:t xml:space="preserve">First </w:t></w:r><w:r><w:rPr><w:b/></w:rPr><w:t>paragraph</w:t></w:r></w:p>
    <w:p/>
    <w:p><w:r><w:t>Name:</w:t><w:tab/><w:t>Ada</w:t><w:br/><w:t>Lovelace</w:t></w:r></w:p>
    <w:p><w:r><w:t>R&amp;D &#xE9;t&#233;</w:t></w:r></w:p>
"#;

pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A one-page PDF whose page draws `content`, with an Info dictionary when
/// `title` is given.
pub fn make_pdf(content: &str, title: Option<&str>) -> Vec<u8> {
    make_pdf_with_stream("", content.as_bytes(), title)
}

/// [`make_pdf`] with raw content-stream bytes; `stream_keys` are added to
/// the stream's dictionary (`/Filter /FlateDecode`).
pub fn make_pdf_with_stream(stream_keys: &str, content: &[u8], title: Option<&str>) -> Vec<u8> {
    let mut stream = format!("<< /Length {}{stream_keys} >>\nstream\n", content.len()).into_bytes();
    stream.extend_from_slice(content);
    stream.extend_from_slice(b"\nendstream");
    let mut objects = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] \
         /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>"
            .to_vec(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_vec(),
        stream,
    ];
    let info = title.map(|title| {
        objects.push(format!("<< /Title ({title}) /Producer (ragchat tests) >>").into_bytes());
        objects.len()
    });
    pdf_of_objects(&objects, info)
}

/// A PDF of `objects` (numbered from 1, the first the catalog) with a
/// classic cross-reference table; `info` is the Info dictionary's number.
pub fn pdf_of_objects(objects: &[Vec<u8>], info: Option<usize>) -> Vec<u8> {
    let mut pdf = b"%PDF-1.5\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        pdf.extend_from_slice(object);
        pdf.extend_from_slice(b"\nendobj\n");
    }
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        pdf.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    let info = match info {
        Some(n) => format!(" /Info {n} 0 R"),
        None => String::new(),
    };
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R{info} >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

/// `len` zero bytes, deflated (zlib) as a PDF FlateDecode stream holds
/// them, without holding them in memory: the compressed size is about a
/// thousandth of `len`.
pub fn deflated_zeros(len: u64) -> Vec<u8> {
    use flate2::write::ZlibEncoder;
    let mut encoder = ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    let block = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        encoder.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    encoder.finish().unwrap()
}

/// A ZIP of `(name, content)` entries, deflated; names ending in `/` are
/// directories.
pub fn make_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    make_zip_with(entries, CompressionMethod::Deflated)
}

pub fn make_zip_with(entries: &[(&str, &[u8])], method: CompressionMethod) -> Vec<u8> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(method);
    for (name, content) in entries {
        if name.ends_with('/') {
            zip.add_directory(*name, options).unwrap();
        } else {
            zip.start_file(*name, options).unwrap();
            zip.write_all(content).unwrap();
        }
    }
    zip.finish().unwrap().into_inner()
}

/// A minimal DOCX whose body holds `body_xml` (`w:p` elements), with core
/// properties when `title` is given (inserted as XML, so `&amp;` stays an
/// entity).
pub fn make_docx(body_xml: &str, title: Option<&str>) -> Vec<u8> {
    let content_types = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
  <Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
  <Default Extension="xml" ContentType="application/xml"/>
  <Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>
  <Override PartName="/docProps/core.xml" ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>
</Types>"#;
    let rels = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
  <Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/>
</Relationships>"#;
    let document = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{body_xml}<w:sectPr/></w:body></w:document>"#
    );
    let mut entries: Vec<(&str, Vec<u8>)> = vec![
        ("[Content_Types].xml", content_types.as_bytes().to_vec()),
        ("_rels/.rels", rels.as_bytes().to_vec()),
        ("word/document.xml", document.into_bytes()),
    ];
    if let Some(title) = title {
        let core = format!(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>{title}</dc:title><dc:creator>Ada</dc:creator></cp:coreProperties>"#
        );
        entries.push(("docProps/core.xml", core.into_bytes()));
    }
    let borrowed: Vec<(&str, &[u8])> = entries.iter().map(|(n, c)| (*n, c.as_slice())).collect();
    make_zip(&borrowed)
}

/// Rewrites the uncompressed size that both the local header and the
/// central directory declare for `entry`, as a hand-crafted zip bomb would.
pub fn lie_about_size(zip: &[u8], entry: &str, declared: u32) -> Vec<u8> {
    let mut out = zip.to_vec();
    let name = entry.as_bytes();
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]) as usize;
    let mut patched = 0;
    for at in 0..out.len().saturating_sub(46) {
        let (size_at, name_len_at, name_at) = match &out[at..at + 4] {
            b"PK\x03\x04" => (at + 22, at + 26, at + 30),
            b"PK\x01\x02" => (at + 24, at + 28, at + 46),
            _ => continue,
        };
        let len = u16_at(&out, name_len_at);
        if out.get(name_at..name_at + len) == Some(name) {
            out[size_at..size_at + 4].copy_from_slice(&declared.to_le_bytes());
            patched += 1;
        }
    }
    assert_eq!(
        patched, 2,
        "local header and central directory entry of {entry}"
    );
    out
}
