//! Black-box tests of ingestion as a service: uploads of every format through
//! `POST /collections/{id}/documents`, the limits (413s and refusals that
//! change nothing), durable jobs (progress over the WebSocket, cancel),
//! cleaning (duplicates, near-duplicates, quality), re-upload diffs, document
//! listing and deletion everywhere; and ingestion from the CLI, idempotent, with
//! every change reaching the database and both indexes.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::helpers;
use crate::helpers::client::{expect, Api};
use crate::helpers::TestApp;
use crate::helpers::{check_consistent, fixtures, run, run_ok};
use reqwest::Method;
use serde_json::{json, Value};

const BOUNDARY: &str = "ragchat-test-boundary-7MA4YWxkTrZu0gW";

/// A multipart/form-data body of `(file name, bytes)` parts.
fn multipart(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, bytes) in files {
        write!(
            body,
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .unwrap();
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    write!(body, "--{BOUNDARY}--\r\n").unwrap();
    body
}

fn upload(s: &TestApp, token: &str, collection: &str, files: &[(&str, &[u8])]) -> (u16, Value) {
    upload_via(&s.api, token, collection, files)
}

/// Upload through the node `api` talks to.
pub(crate) fn upload_via(
    api: &Api,
    token: &str,
    collection: &str,
    files: &[(&str, &[u8])],
) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let ctype = format!("multipart/form-data; boundary={BOUNDARY}");
    let (status, body, _) = api.raw(
        Method::POST,
        &format!("/api/v1/collections/{collection}/documents"),
        &[("authorization", &auth), ("content-type", &ctype)],
        Some(multipart(files)),
    );
    (status, body)
}

pub(crate) fn create_collection(s: &TestApp, token: &str, name: &str) -> String {
    let c = expect(
        s.api.post(
            "/api/v1/collections",
            Some(token),
            Some(json!({"name": name, "public": true})),
        ),
        201,
        "create collection",
    );
    c["id"].as_str().unwrap().to_string()
}

/// Poll the job until it has finished; returns it.
fn wait_job(s: &TestApp, token: &str, id: &str) -> Value {
    wait_job_via(&s.api, token, id)
}

pub(crate) fn wait_job_via(api: &Api, token: &str, id: &str) -> Value {
    let started = Instant::now();
    loop {
        let job = expect(
            api.get(&format!("/api/v1/jobs/{id}"), Some(token)),
            200,
            "get job",
        );
        let state = job["state"].as_str().unwrap().to_string();
        if ["succeeded", "failed", "cancelled", "dead"].contains(&state.as_str()) {
            return job;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "job still {state} after 5 minutes: {job}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(crate) fn upload_and_wait(
    s: &TestApp,
    token: &str,
    collection: &str,
    files: &[(&str, &[u8])],
) -> Value {
    let (status, body) = upload(s, token, collection, files);
    assert_eq!(status, 202, "{body}");
    let job = wait_job(s, token, body["job"]["id"].as_str().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    // A finished job's progress is its result, not the last step it began.
    assert_eq!(job["progress"]["phase"], "done", "{job}");
    job
}

fn search(s: &TestApp, token: &str, collection_name: &str, q: &str, mode: &str) -> Vec<Value> {
    let body = expect(
        s.api.post(
            "/api/v1/query",
            Some(token),
            Some(json!({"query": q, "collections": [collection_name], "mode": mode, "top_k": 10})),
        ),
        200,
        "query",
    );
    body["results"].as_array().unwrap().clone()
}

fn sources(results: &[Value]) -> Vec<String> {
    results
        .iter()
        .map(|r| r["source"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn docx(paragraphs: &[&str], title: &str) -> Vec<u8> {
    let body: String = paragraphs
        .iter()
        .map(|p| format!("<w:p><w:r><w:t>{p}</w:t></w:r></w:p>"))
        .collect();
    let document = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>"#
    );
    let core = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>{title}</dc:title></cp:coreProperties>"#
    );
    let types = r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#;
    zip_of(&[
        ("[Content_Types].xml", types.as_bytes()),
        ("word/document.xml", document.as_bytes()),
        ("docProps/core.xml", core.as_bytes()),
    ])
}

/// A one-page PDF with a text layer.
fn pdf(text: &str) -> Vec<u8> {
    pdf_with_content(
        format!("BT /F1 12 Tf 72 712 Td ({text}) Tj ET").as_bytes(),
        "",
    )
}

/// A one-page PDF whose content stream is `content`, with `filter` keys
/// (`/Filter /FlateDecode`) in the stream's dictionary.
fn pdf_with_content(content: &[u8], filter: &str) -> Vec<u8> {
    let mut stream = format!("<< /Length {}{filter} >>\nstream\n", content.len()).into_bytes();
    stream.extend_from_slice(content);
    stream.extend_from_slice(b"\nendstream");
    let objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>".to_vec(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_vec(),
        stream,
    ];
    pdf_of(&objects)
}

/// A PDF of `objects` (numbered from 1, the first the catalog) with a
/// cross-reference table.
fn pdf_of(objects: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(o);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// Prose-like text long enough to be a real document and to have a
/// near-duplicate: words drawn from a vocabulary by a seeded generator, so
/// it does not repeat itself (the quality filter rejects text that does).
pub(crate) fn essay(topic: &str, n: usize) -> String {
    const WORDS: &[&str] = &[
        "measured",
        "turbine",
        "pressure",
        "careful",
        "season",
        "engineers",
        "model",
        "flow",
        "boundary",
        "sample",
        "velocity",
        "heat",
        "surface",
        "layer",
        "results",
        "compared",
        "early",
        "later",
        "station",
        "north",
        "river",
        "valley",
        "signal",
        "noise",
        "filter",
        "average",
        "peak",
        "winter",
        "summer",
        "coastal",
        "inland",
        "sensor",
        "array",
        "drift",
        "calibrated",
        "report",
        "draft",
        "review",
        "method",
        "error",
        "margin",
        "trend",
        "growth",
        "decline",
        "steady",
        "sharp",
        "gentle",
        "slope",
        "ridge",
        "basin",
        "storm",
        "calm",
        "wind",
        "current",
        "tide",
        "depth",
        "shallow",
        "narrow",
        "broad",
        "field",
        "team",
        "notes",
        "figure",
        "table",
        "estimate",
        "bound",
        "limit",
        "range",
        "scale",
    ];
    let mut state: u64 = topic.bytes().fold(1469598103934665603, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(1099511628211)
    });
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = String::new();
    for i in 0..n {
        out.push_str(&format!("Paragraph {i} on {topic}."));
        for _ in 0..4 {
            let words: Vec<&str> = (0..12)
                .map(|_| WORDS[(next() % WORDS.len() as u64) as usize])
                .collect();
            out.push(' ');
            out.push_str(&words.join(" "));
            out.push('.');
        }
        out.push_str("\n\n");
    }
    out
}

fn uploads_left(s: &TestApp) -> usize {
    std::fs::read_dir(s.data.join("uploads"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn stack(env: &[(&str, &str)]) -> (TestApp, String) {
    let s = TestApp::start(&[("admin", true), ("ann", false)], &[], env);
    let (admin, _) = s.login("admin");
    (s, admin)
}

#[test]
fn every_format_is_ingested_through_the_upload_api() {
    let (s, admin) = stack(&[]);
    let coll = create_collection(&s, &admin, "formats");
    let beir = concat!(
        r#"{"_id": "b1", "title": "Plasma", "text": "Tokamak plasma confinement uses strong magnetic fields shaped into a torus."}"#,
        "\n",
        r#"{"_id": "b2", "title": "Glaciers", "text": "Glacier retreat is measured with repeated satellite altimetry over many decades."}"#,
        "\n"
    );
    let plain = r#"{"id": "p1", "title": "Bees", "text": "Honeybee colonies regulate hive temperature by fanning their wings in summer.", "lang": "en"}"#;
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("notes.txt", b"Sourdough starters ferment flour with wild yeast and lactic acid bacteria over several days.".to_vec()),
        ("guide.md", b"# Orbital mechanics\n\nA Hohmann transfer moves a spacecraft between two circular orbits using two engine burns.".to_vec()),
        ("page.html", b"<html><head><title>Volcanoes</title></head><body><nav>Home | About</nav><main><p>Basaltic lava flows are fluid because their silica content is low.</p></main><footer>Copyright</footer></body></html>".to_vec()),
        ("corpus.jsonl", beir.as_bytes().to_vec()),
        ("plain.jsonl", plain.as_bytes().to_vec()),
        ("paper.pdf", pdf("Superconducting qubits lose coherence through coupling to two-level defects.")),
        ("report.docx", docx(&["Mangrove forests protect coastlines from storm surges.", "Their roots trap sediment."], "Mangroves")),
        ("bundle.zip", zip_of(&[
            ("inner/deep.md", b"# Typography\n\nKerning adjusts the space between individual letter pairs in proportional fonts.".as_slice()),
            ("inner/tool.exe", b"MZ\x90\x00\x03\x00\x00\x00binary".as_slice()),
            ("__MACOSX/._deep.md", b"junk".as_slice()),
        ])),
    ];
    let parts: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
    let job = upload_and_wait(&s, &admin, &coll, &parts);
    let result = &job["result"];
    // txt, md, html, two BEIR lines, one {id, title, text} line, pdf, docx,
    // and the one readable zip entry.
    assert_eq!(result["documents_added"], 9, "{result}");
    // The executable and the macOS resource file in the zip.
    assert_eq!(result["skipped"]["unsupported"], 2, "{result}");
    assert_eq!(result["files_done"], 8, "{result}");

    // Each format's text is searchable, by its own words, in both signals.
    for (q, source) in [
        ("wild yeast lactic acid", "notes.txt"),
        ("Hohmann transfer engine burns", "guide.md"),
        ("basaltic lava silica", "page.html"),
        ("tokamak magnetic torus", "b1"),
        ("honeybee hive temperature", "p1"),
        ("superconducting qubits coherence", "paper.pdf"),
        ("mangrove storm surges", "report.docx"),
        ("kerning letter pairs", "bundle.zip/inner/deep.md"),
    ] {
        for mode in ["lexical", "dense"] {
            let hits = search(&s, &admin, "formats", q, mode);
            assert_eq!(
                sources(&hits).first().map(String::as_str),
                Some(source),
                "{mode} {q}: {hits:?}"
            );
        }
    }
    // Navigation and footers are not indexed.
    assert!(search(&s, &admin, "formats", "Copyright", "lexical").is_empty());

    // Listing, one document with its quality report, and deletion.
    let list = expect(
        s.api.get(
            &format!("/api/v1/collections/{coll}/documents?limit=100"),
            Some(&admin),
        ),
        200,
        "list",
    );
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 9, "{list}");
    let pdf_doc = items.iter().find(|d| d["source"] == "paper.pdf").unwrap();
    let id = pdf_doc["id"].as_str().unwrap();
    let doc = expect(
        s.api.get(
            &format!("/api/v1/collections/{coll}/documents/{id}"),
            Some(&admin),
        ),
        200,
        "show",
    );
    assert!(doc["chunks"].as_u64().unwrap() >= 1, "{doc}");
    assert!(doc["quality"]["score"].as_f64().unwrap() > 0.5, "{doc}");
    assert_eq!(doc["metadata"]["format"], "pdf", "{doc}");
    let (status, _, _) = s.api.delete(
        &format!("/api/v1/collections/{coll}/documents/{id}"),
        Some(&admin),
    );
    assert_eq!(status, 204);
    for mode in ["lexical", "dense", "hybrid"] {
        let hits = search(
            &s,
            &admin,
            "formats",
            "superconducting qubits coherence",
            mode,
        );
        assert!(
            !sources(&hits).contains(&"paper.pdf".to_string()),
            "{mode}: {hits:?}"
        );
    }
    let (status, _, _) = s.api.get(
        &format!("/api/v1/collections/{coll}/documents/{id}"),
        Some(&admin),
    );
    assert_eq!(status, 404);
    assert_eq!(uploads_left(&s), 0, "finished uploads are removed");

    // Users are not admins: uploads and listings are refused.
    let (ann, _) = s.login("ann");
    let (status, body) = upload(&s, &ann, &coll, &[("x.txt", b"text")]);
    assert_eq!(status, 403, "{body}");
}

/// `len` zero bytes as a zlib (PDF FlateDecode) stream, about a thousandth
/// of `len`, compressed without holding the zeros in memory.
fn deflated_zeros(len: u64) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let block = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        z.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    z.finish().unwrap()
}

/// A one-page PDF whose page draws a form that draws itself.
fn pdf_with_self_drawing_form() -> Vec<u8> {
    let draw = "/X1 Do";
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] \
         /Resources << /XObject << /X1 5 0 R >> >> /Contents 4 0 R >>"
            .to_string(),
        format!("<< /Length {} >>\nstream\n{draw}\nendstream", draw.len()),
        format!(
            "<< /Type /XObject /Subtype /Form /BBox [0 0 10 10] \
             /Resources << /XObject << /X1 5 0 R >> >> /Length {} >>\nstream\n{draw}\nendstream",
            draw.len()
        ),
    ];
    pdf_of(&objects.map(String::into_bytes))
}

/// A PDF without pages whose cross-reference table is a stream holding
/// `xref_stream`, FlateDecode:
/// lopdf inflates it while it parses the file, before any page is read.
fn pdf_with_xref_stream(xref_stream: &[u8]) -> Vec<u8> {
    let mut out = b"%PDF-1.5\n".to_vec();
    out.extend_from_slice(b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n");
    out.extend_from_slice(b"2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n");
    let xref = out.len();
    out.extend_from_slice(
        format!(
            "3 0 obj\n<< /Type /XRef /Size 4 /W [1 4 2] /Root 1 0 R /Filter /FlateDecode \
             /Length {} >>\nstream\n",
            xref_stream.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(xref_stream);
    out.extend_from_slice(format!("\nendstream\nendobj\nstartxref\n{xref}\n%%EOF\n").as_bytes());
    out
}

/// PDFs built to exhaust the extractor, each about a megabyte uploaded: two
/// decompression bombs of 1 GiB (in a page's content stream, and in the
/// cross-reference stream that the parser inflates before reading any page),
/// which the decompression budget stops, and a form that draws itself, on
/// which the parser recurses until its stack overflows: no `catch_unwind`
/// survives that, so it would take the whole server down if the extraction
/// ran in it; the extractor's child process dies instead. All three are
/// reported as skipped, the other files of the upload are ingested, and the
/// server stays up.
#[test]
fn pdf_bombs_are_skipped_and_the_rest_of_the_upload_is_ingested() {
    let (s, admin) = stack(&[
        ("RAGCHAT_UPLOADS_PDF_MAX_DECOMPRESSED_BYTES", "67108864"),
        ("RAGCHAT_UPLOADS_PDF_MAX_MEMORY_BYTES", "268435456"),
    ]);
    let coll = create_collection(&s, &admin, "bombs");
    let zeros = deflated_zeros(1 << 30);
    assert!(zeros.len() < 4 << 20, "{}", zeros.len());
    let content_bomb = pdf_with_content(&zeros, " /Filter /FlateDecode");
    let xref_bomb = pdf_with_xref_stream(&zeros);
    let self_drawing = pdf_with_self_drawing_form();
    let paper = pdf("Superconducting qubits lose coherence through coupling to two-level defects.");
    let files: Vec<(&str, &[u8])> = vec![
        ("content-bomb.pdf", &content_bomb),
        ("notes.md", b"# Glaciology\n\nGlacier retreat is measured with repeated satellite altimetry over many decades."),
        ("xref-bomb.pdf", &xref_bomb),
        ("self-drawing.pdf", &self_drawing),
        ("paper.pdf", &paper),
    ];
    let job = upload_and_wait(&s, &admin, &coll, &files);
    let result = &job["result"];
    assert_eq!(result["documents_added"], 2, "{result}");
    assert_eq!(result["files_done"], 5, "{result}");
    let errors = result["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 3, "{result}");
    for (source, detail) in [
        (
            "content-bomb.pdf",
            "its streams decompress to more than 64 MiB",
        ),
        (
            "xref-bomb.pdf",
            "its streams decompress to more than 64 MiB",
        ),
        ("self-drawing.pdf", "the extractor was stopped"),
    ] {
        let e = errors
            .iter()
            .find(|e| e["source"] == source)
            .unwrap_or_else(|| panic!("{result}"));
        let msg = e["error"].as_str().unwrap();
        assert!(
            msg.starts_with("the PDF exceeds the extraction limits: "),
            "{msg}"
        );
        assert!(msg.contains(detail), "{msg}");
    }

    // The server is up and the other files are searchable.
    let (status, _, _) = s.api.get("/health", None);
    assert_eq!(status, 200);
    for (q, source) in [
        ("superconducting qubits coherence", "paper.pdf"),
        ("glacier satellite altimetry", "notes.md"),
    ] {
        let hits = search(&s, &admin, "bombs", q, "lexical");
        assert_eq!(
            sources(&hits).first().map(String::as_str),
            Some(source),
            "{hits:?}"
        );
    }
}

#[test]
fn limits_and_refusals_change_nothing() {
    let (s, admin) = stack(&[
        ("RAGCHAT_UPLOADS_MAX_FILE_BYTES", "2000"),
        ("RAGCHAT_UPLOADS_MAX_FILES", "3"),
        ("RAGCHAT_UPLOADS_MAX_TOTAL_BYTES", "5000"),
        ("RAGCHAT_UPLOADS_ZIP_MAX_RATIO", "50"),
        ("RAGCHAT_UPLOADS_ZIP_MAX_TOTAL_BYTES", "1000000"),
    ]);
    let coll = create_collection(&s, &admin, "limits");
    let big = vec![b'a'; 2500];
    let mid = vec![b'b'; 1900];
    let zeros = vec![0u8; 5_000_000];
    let bomb = zip_of(&[("zeros.txt", zeros.as_slice())]);
    let traversal = zip_of(&[("../evil.txt", b"escape".as_slice())]);
    // (what, files, status, error code, text the message must name)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a [u8])>, u16, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            "file size",
            vec![("big.txt", &big)],
            413,
            "payload_too_large",
            "uploads.max_file_bytes",
        ),
        (
            "file count",
            vec![
                ("1.txt", b"one".as_slice()),
                ("2.txt", b"two"),
                ("3.txt", b"three"),
                ("4.txt", b"four"),
            ],
            413,
            "payload_too_large",
            "uploads.max_files",
        ),
        (
            "total size",
            vec![("1.txt", &mid), ("2.txt", &mid), ("3.txt", &mid)],
            413,
            "payload_too_large",
            "uploads.max_total_bytes",
        ),
        (
            "binary",
            vec![(
                "blob.bin",
                b"\x7fELF\x00\x00\x01\x02\x00binary\x00data".as_slice(),
            )],
            415,
            "unsupported_media_type",
            "",
        ),
        (
            "lying name",
            vec![("paper.pdf", b"just some text, not a pdf".as_slice())],
            415,
            "unsupported_media_type",
            "",
        ),
        (
            "zip bomb",
            vec![("bomb.zip", &bomb)],
            413,
            "payload_too_large",
            "",
        ),
        (
            "zip traversal",
            vec![("evil.zip", &traversal)],
            400,
            "unsafe_archive",
            "",
        ),
    ];
    for (what, files, status, code, needle) in cases {
        let (got, body) = upload(&s, &admin, &coll, &files);
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(needle),
            "{what}: {body}"
        );
    }
    // Nothing was queued, stored or left on disk.
    let jobs = expect(
        s.api.get("/api/v1/jobs?kind=ingest_upload", Some(&admin)),
        200,
        "jobs",
    );
    assert_eq!(jobs["items"].as_array().unwrap().len(), 0, "{jobs}");
    let docs = expect(
        s.api.get(
            &format!("/api/v1/collections/{coll}/documents"),
            Some(&admin),
        ),
        200,
        "docs",
    );
    assert_eq!(docs["items"].as_array().unwrap().len(), 0);
    assert_eq!(uploads_left(&s), 0);
    // Not multipart at all.
    let (status, body, _) = s.api.post(
        &format!("/api/v1/collections/{coll}/documents"),
        Some(&admin),
        Some(json!({"files": []})),
    );
    assert_eq!(status, 400, "{body}");
    // An unknown collection.
    let (status, _) = upload(
        &s,
        &admin,
        "00000000-0000-4000-8000-000000000000",
        &[("a.txt", b"text here")],
    );
    assert_eq!(status, 404);
}

#[test]
fn duplicates_quality_and_re_upload_diffs() {
    let (s, admin) = stack(&[]);
    let coll = create_collection(&s, &admin, "clean");
    let original = essay("turbine blades", 12);
    let near = original.replacen("Paragraph 3 on", "Section 3 on", 1);
    let spam = "buy now ".repeat(400);
    let job = upload_and_wait(
        &s,
        &admin,
        &coll,
        &[
            ("original.md", original.as_bytes()),
            ("copy.md", original.as_bytes()),
            ("near.md", near.as_bytes()),
            ("spam.txt", spam.as_bytes()),
            ("empty.txt", b"   \n\n  "),
        ],
    );
    let r = &job["result"];
    assert_eq!(r["documents_added"], 1, "{r}");
    assert_eq!(r["skipped"]["duplicate"], 1, "{r}");
    assert_eq!(r["skipped"]["near_duplicate"], 1, "{r}");
    assert_eq!(r["skipped"]["low_quality"], 1, "{r}");
    assert_eq!(r["skipped"]["empty"], 1, "{r}");
    let skipped = r["skipped_documents"].as_array().unwrap();
    let find = |src: &str| skipped.iter().find(|d| d["source"] == src).unwrap().clone();
    assert_eq!(find("copy.md")["duplicate_of"], "original.md", "{r}");
    assert_eq!(find("near.md")["duplicate_of"], "original.md", "{r}");
    assert!(
        find("near.md")["similarity"].as_f64().unwrap() >= 0.9,
        "{r}"
    );
    assert!(
        find("spam.txt")["detail"]
            .as_str()
            .unwrap()
            .contains("repet"),
        "{r}"
    );
    let first_chunks = r["chunks_embedded"].as_u64().unwrap();
    assert!(first_chunks >= 3, "{r}");

    // The same document again in a later upload is a duplicate of the stored one.
    let job = upload_and_wait(&s, &admin, &coll, &[("again.md", original.as_bytes())]);
    assert_eq!(job["result"]["skipped"]["duplicate"], 1, "{job}");

    // Re-uploading original.md with its last paragraph changed embeds only
    // the chunks that changed and removes the one that vanished.
    let mut changed = original.clone();
    changed.push_str(
        "A closing paragraph about ceramic coatings that protect the turbine blades from heat.\n",
    );
    let job = upload_and_wait(&s, &admin, &coll, &[("original.md", changed.as_bytes())]);
    let r = &job["result"];
    assert_eq!(r["documents_updated"], 1, "{r}");
    let embedded = r["chunks_embedded"].as_u64().unwrap();
    assert!(
        embedded >= 1 && embedded < first_chunks,
        "only new chunks embedded: {r}"
    );
    assert!(r["chunks_kept"].as_u64().unwrap() >= 1, "{r}");
    let hits = search(&s, &admin, "clean", "ceramic coatings", "lexical");
    assert_eq!(
        sources(&hits).first().map(String::as_str),
        Some("original.md")
    );

    // Unchanged re-upload embeds nothing.
    let job = upload_and_wait(&s, &admin, &coll, &[("original.md", changed.as_bytes())]);
    assert_eq!(job["result"]["chunks_embedded"], 0, "{job}");
    assert_eq!(job["result"]["documents_unchanged"], 1, "{job}");
}

#[test]
fn queued_jobs_cancel_and_progress_streams_over_websocket() {
    // No workers: jobs wait in the queue.
    let (s, admin) = stack(&[("RAGCHAT_JOBS_WORKERS", "0")]);
    let coll = create_collection(&s, &admin, "queue");
    let (status, body) = upload(
        &s,
        &admin,
        &coll,
        &[("a.md", essay("rivers", 4).as_bytes())],
    );
    assert_eq!(status, 202, "{body}");
    let id = body["job"]["id"].as_str().unwrap().to_string();
    assert_eq!(body["job"]["state"], "queued");
    assert_eq!(uploads_left(&s), 1);
    let job = expect(
        s.api
            .post(&format!("/api/v1/jobs/{id}/cancel"), Some(&admin), None),
        202,
        "cancel",
    );
    assert_eq!(job["state"], "cancelled", "{job}");
    assert_eq!(
        uploads_left(&s),
        0,
        "a cancelled upload's files are removed"
    );
    let (status, body, _) = s
        .api
        .post(&format!("/api/v1/jobs/{id}/cancel"), Some(&admin), None);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("job_finished"))
    );
    let (status, _, _) = s.api.get(
        "/api/v1/jobs/00000000-0000-4000-8000-000000000000",
        Some(&admin),
    );
    assert_eq!(status, 404);
    let (status, _, _) = s.api.get("/api/v1/jobs?state=nope", Some(&admin));
    assert_eq!(status, 422);
    drop(s);

    // With a worker: progress frames until the job has finished.
    let (s, admin) = stack(&[]);
    let coll = create_collection(&s, &admin, "progress");
    let text = essay("glaciers", 30);
    let many: Vec<(String, String)> = (0..40)
        .map(|i| {
            (
                format!("doc{i}.md"),
                format!("# Doc {i}\n\n{}", essay(&format!("topic {i}"), 3)),
            )
        })
        .collect();
    let mut parts: Vec<(&str, &[u8])> = many
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_bytes()))
        .collect();
    parts.push(("long.md", text.as_bytes()));
    let (status, body) = upload(&s, &admin, &coll, &parts);
    assert_eq!(status, 202, "{body}");
    let id = body["job"]["id"].as_str().unwrap().to_string();
    let url = format!(
        "{}/api/v1/jobs/{id}/events?token={admin}",
        s.api.base.replace("http://", "ws://")
    );
    let (mut ws, _) = tungstenite::connect(url).expect("websocket");
    let mut frames = Vec::new();
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                let done = ["succeeded", "failed", "cancelled", "dead"]
                    .contains(&v["job"]["state"].as_str().unwrap_or(""));
                frames.push(v);
                if done {
                    break;
                }
            }
            Ok(tungstenite::Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let last = frames.last().expect("frames");
    assert_eq!(last["type"], "job");
    assert_eq!(last["job"]["state"], "succeeded", "{last}");
    let done: Vec<u64> = frames
        .iter()
        .filter_map(|f| f["job"]["progress"]["documents_done"].as_u64())
        .collect();
    assert!(
        done.windows(2).all(|w| w[0] <= w[1]),
        "progress never goes back: {done:?}"
    );
    assert_eq!(last["job"]["result"]["documents_added"], 41, "{last}");
}

/// A tiny site on a local port whose pages the test can change between
/// crawls: path → (content type, body).
struct Site {
    base: String,
    pages: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>,
    /// Requests received.
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Site {
    fn start() -> Self {
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let pages: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, String>>> =
            Default::default();
        let shared = pages.clone();
        let hits: std::sync::Arc<std::sync::atomic::AtomicUsize> = Default::default();
        let counter = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let pages = shared.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                    }
                    let page = pages.lock().unwrap().get(&path).cloned();
                    let (status, ctype, body) = match page {
                        Some(b) if path == "/robots.txt" => ("200 OK", "text/plain", b),
                        Some(b) => ("200 OK", "text/html", b),
                        None => ("404 Not Found", "text/plain", "not found".to_string()),
                    };
                    let mut out = stream;
                    let _ = write!(
                        out,
                        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        Self { base, pages, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn set(&self, path: &str, body: &str) {
        self.pages.lock().unwrap().insert(path.into(), body.into());
    }

    fn remove(&self, path: &str) {
        self.pages.lock().unwrap().remove(path);
    }
}

fn page(title: &str, body: &str, links: &[&str]) -> String {
    let links: String = links
        .iter()
        .map(|l| format!("<a href=\"{l}\">{l}</a> "))
        .collect();
    format!("<html><head><title>{title}</title></head><body><nav>{links}</nav><main><p>{body}</p></main></body></html>")
}

#[test]
fn crawl_jobs_ingest_a_site_and_a_re_crawl_removes_vanished_pages() {
    let site = Site::start();
    site.set("/robots.txt", "User-agent: *\nDisallow: /private/\n");
    site.set(
        "/",
        &page(
            "Home",
            &essay("lighthouses", 2),
            &["/a", "/b", "/private/x"],
        ),
    );
    site.set(
        "/a",
        &page("Alpha", &essay("lighthouse lenses", 2), &["/b", "/"]),
    );
    site.set("/b", &page("Bravo", &essay("fog signals", 2), &["/a"]));
    site.set(
        "/private/x",
        &page("Secret", &essay("keepers wages", 2), &[]),
    );

    // The site is on 127.0.0.1, which crawls only reach when allowed.
    let (s, admin) = stack(&[("RAGCHAT_CRAWL_ALLOW_PRIVATE_NETWORKS", "true")]);
    let coll = create_collection(&s, &admin, "site");
    let crawl = |s: &TestApp| {
        let body = expect(
            s.api.post(
                &format!("/api/v1/collections/{coll}/crawl"),
                Some(&admin),
                Some(json!({"start_url": format!("{}/", site.base), "requests_per_second": 50})),
            ),
            202,
            "crawl",
        );
        let job = wait_job(s, &admin, body["job"]["id"].as_str().unwrap());
        assert_eq!(job["state"], "succeeded", "{job}");
        job
    };
    let job = crawl(&s);
    let r = &job["result"];
    assert_eq!(r["documents_added"], 3, "{r}");
    assert_eq!(r["complete"], true, "{r}");
    let list = |s: &TestApp| -> Vec<String> {
        let docs = expect(
            s.api.get(
                &format!("/api/v1/collections/{coll}/documents"),
                Some(&admin),
            ),
            200,
            "list",
        );
        let mut v: Vec<String> = docs["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["source"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let b = format!("{}/", site.base);
    assert_eq!(list(&s), vec![b.clone(), format!("{b}a"), format!("{b}b")]);

    // Page b vanishes and a changes: the re-crawl updates a, removes b.
    site.remove("/b");
    site.set("/a", &page("Alpha", &essay("rotating beacons", 2), &["/"]));
    let job = crawl(&s);
    let r = &job["result"];
    assert_eq!(r["documents_removed"], 1, "{r}");
    assert_eq!(r["documents_updated"], 1, "{r}");
    assert_eq!(list(&s), vec![b.clone(), format!("{b}a")]);

    // Bad requests are refused with the field named.
    let (status, body, _) = s.api.post(
        &format!("/api/v1/collections/{coll}/crawl"),
        Some(&admin),
        Some(json!({"start_url": "ftp://example.org/"})),
    );
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("start_url")),
        "{body}"
    );
    // A re-crawl interval whose next date cannot be computed is refused up
    // front (it used to be accepted, and the job panicked when scheduling
    // the next crawl, leaving it `running` under a renewed lease).
    let (status, body, _) = s.api.post(
        &format!("/api/v1/collections/{coll}/crawl"),
        Some(&admin),
        Some(json!({
            "start_url": format!("{}/", site.base),
            "recrawl_interval_secs": u64::MAX,
        })),
    );
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("recrawl_interval_secs")),
        "{body}"
    );
}

#[test]
fn crawls_of_private_addresses_are_refused_by_default() {
    let site = Site::start();
    site.set(
        "/",
        &page("Admin console", &essay("internal dashboards", 2), &[]),
    );
    let (s, admin) = stack(&[]);
    let coll = create_collection(&s, &admin, "site");
    let crawl_url = format!("/api/v1/collections/{coll}/crawl");

    // An IP literal is refused up front.
    let literal = format!("{}/", site.base);
    assert!(literal.starts_with("http://127.0.0.1:"), "{literal}");
    let (status, body, _) = s.api.post(
        &crawl_url,
        Some(&admin),
        Some(json!({"start_url": literal})),
    );
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("start_url")),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("address not allowed"), "{message}");

    // A name that resolves to 127.0.0.1 is refused when it resolves: the
    // job reports the uniform reason and the site sees nothing.
    let by_name = literal.replace("127.0.0.1", "localhost");
    let body = expect(
        s.api.post(
            &crawl_url,
            Some(&admin),
            Some(json!({"start_url": by_name})),
        ),
        202,
        "crawl by name",
    );
    let job = wait_job(&s, &admin, body["job"]["id"].as_str().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    let r = &job["result"];
    assert_eq!(
        r["failed_urls"],
        json!([{"url": by_name, "error": "address not allowed: crawls reach public addresses only"}]),
        "{r}"
    );
    assert_eq!(r["url_failures"], json!({"address_not_allowed": 1}), "{r}");
    assert_eq!(
        (r["pages"].as_u64(), r["requests"].as_u64()),
        (Some(0), Some(0)),
        "{r}"
    );

    // The request cannot switch the guard off.
    let (status, body, _) = s.api.post(
        &crawl_url,
        Some(&admin),
        Some(json!({"start_url": literal, "allow_private_networks": true})),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(site.hits(), 0, "the site was contacted");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn ingest_is_idempotent_and_changes_reach_db_and_both_indexes() {
    let dir = helpers::TestDir::new();
    let data = dir.path().join("data");
    let kb = dir.path().join("kb");
    copy_dir(&fixtures().join("kb"), &kb);
    let kb_s = kb.to_str().unwrap();

    let first = run_ok(&data, &["ingest", kb_s, "--collection", "aero"]);
    assert!(
        first.contains("3 documents") && first.contains("3 new"),
        "{first}"
    );
    check_consistent(&data);

    // Unchanged: nothing is embedded again.
    let second = run_ok(&data, &["ingest", kb_s, "--collection", "aero"]);
    assert!(
        second.contains("3 unchanged") && second.contains(" 0 chunks embedded"),
        "{second}"
    );

    // HTML chrome is not indexed; content is.
    let q = |text: &str| -> Value {
        serde_json::from_str(&run_ok(
            &data,
            &[
                "query",
                text,
                "--collection",
                "aero",
                "--mode",
                "lexical",
                "--json",
            ],
        ))
        .unwrap()
    };
    assert_eq!(
        q("zebrafish giraffe walrus")["results"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        q("ablative heat shields")["results"][0]["title"],
        "Heat transfer at hypersonic speeds"
    );

    // Change one document: the old text disappears from the lexical index and
    // the new one is found; the DB and both indexes still agree.
    std::fs::write(
        kb.join("shock-waves.txt"),
        "Shock waves\n\nA bow shock stands ahead of a blunt body in a supersonic stream; \
         behind it a subsonic pocket forms near the stagnation point.",
    )
    .unwrap();
    let third = run_ok(&data, &["ingest", kb_s, "--collection", "aero"]);
    assert!(
        third.contains("1 updated") && third.contains("2 unchanged"),
        "{third}"
    );
    assert!(q("oblique")["results"].as_array().unwrap().is_empty());
    assert_eq!(
        q("bow shock blunt body")["results"][0]["source"],
        "shock-waves.txt"
    );
    check_consistent(&data);

    // Deleting the collection removes it from the DB and both indexes.
    run_ok(&data, &["delete-collection", "aero"]);
    let out = check_consistent(&data);
    assert!(
        out.contains("database 0 chunks, vector index 0 points, lexical index 0 documents"),
        "{out}"
    );

    // And reindex rebuilds from the DB.
    run_ok(&data, &["ingest", kb_s, "--collection", "aero"]);
    run_ok(&data, &["reindex"]);
    check_consistent(&data);

    // A planted inconsistency: the full-text index loses its files. `check`
    // reports every chunk missing there and fails; `reindex` repairs it.
    std::fs::remove_dir_all(data.join("tantivy")).unwrap();
    let out = run(&data, &["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("missing in lexical index"), "{stdout}");
    assert!(stdout.contains("lexical index 0 documents"), "{stdout}");
    run_ok(&data, &["reindex"]);
    check_consistent(&data);
}
