//! Property tests: arbitrary bytes, and mutations of a small valid sample of
//! each format, through the upload loader (txt, md, html, jsonl, pdf, docx,
//! zip; the content decides which loader runs, the name only tips the
//! balance). Each input must come back as documents or an error: no panic,
//! no hang (a generous deadline detects one; it is not a speed test), and
//! output bounded by the input and the configured limits, which is what
//! bounds memory.
//!
//! The seed is fixed, so a failure reproduces; the case counts keep the run
//! to seconds in release mode.

use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

use super::testutil::*;
use super::{load, Limits, PdfLimits, MIB};

/// Small limits, so that a mutation that builds a bomb meets them quickly.
fn limits() -> Limits {
    Limits {
        max_entries: 64,
        max_total_bytes: MIB,
        max_entry_bytes: MIB,
        max_ratio: 100,
        ratio_min_bytes: 64 * 1024,
        pdf: PdfLimits {
            max_decompressed_bytes: MIB,
            ..PdfLimits::default()
        },
    }
}

/// Past this a loader is taken to hang.
const HANG: Duration = Duration::from_secs(60);

/// One valid sample per format, with the name it is uploaded under.
fn samples() -> Vec<(&'static str, Vec<u8>)> {
    let jsonl = concat!(
        r#"{"_id": "a", "title": "T", "text": "first record"}"#,
        "\n",
        r#"{"id": 7, "text": "second \u00e9 record", "lang": "fr"}"#,
        "\n"
    );
    vec![
        ("notes.txt", b"Plain words\nsecond line\tand a tab".to_vec()),
        (
            "guide.md",
            b"# Title\n\nSome *markdown* with [a link](http://x) and `code`.\n".to_vec(),
        ),
        (
            "page.html",
            b"<html><head><title>P</title><script>x()</script></head>\
              <body><p>Body &amp; text</p><nav>menu</nav></body></html>"
                .to_vec(),
        ),
        ("corpus.jsonl", jsonl.as_bytes().to_vec()),
        ("doc.pdf", make_pdf(HELLO_PDF, Some("Report"))),
        (
            "packed.pdf",
            make_pdf_with_stream(" /Filter /FlateDecode", &zlib(HELLO_PDF.as_bytes()), None),
        ),
        ("report.docx", make_docx(DOCX_BODY, Some("Doc"))),
        (
            "bundle.zip",
            make_zip(&[
                ("a.txt", b"alpha words"),
                ("dir/b.md", b"# B\n\nbeta"),
                ("c.pdf", &make_pdf(HELLO_PDF, None)),
            ]),
        ),
    ]
}

fn zlib(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the byte at (position mod length).
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    /// Copy a span to another place: repeats structure (objects, entries).
    Duplicate(usize, usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Set(at, b)),
        2 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        2 => (any::<usize>(), 1usize..64).prop_map(|(at, n)| Mutation::Remove(at, n)),
        1 => (any::<usize>(), 1usize..256, any::<usize>())
            .prop_map(|(from, n, to)| Mutation::Duplicate(from, n, to)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len().max(1);
        match m {
            Mutation::Set(at, b) => {
                if !bytes.is_empty() {
                    bytes[at % len] = *b;
                }
            }
            Mutation::Insert(at, new) => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, new.iter().copied());
            }
            Mutation::Remove(at, n) => {
                let at = at % len;
                let end = (at + n).min(bytes.len());
                if at < end {
                    bytes.drain(at..end);
                }
            }
            Mutation::Duplicate(from, n, to) => {
                let from = from % len;
                let end = (from + n).min(bytes.len());
                let span = bytes.get(from..end).unwrap_or_default().to_vec();
                let to = to % (bytes.len() + 1);
                bytes.splice(to..to, span);
            }
            Mutation::Truncate(at) => bytes.truncate(at % len),
        }
    }
    bytes
}

/// Load `bytes` uploaded as `name` on another thread; the text bytes it
/// produced (documents' titles and texts), or a panic's message.
fn load_bytes(name: &str, bytes: &[u8]) -> Result<u64, TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let path = dir.path().join("upload");
    std::fs::write(&path, bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let (tx, rx) = mpsc::channel();
    let name_owned = name.to_string();
    let worker = std::thread::spawn(move || {
        let loaded = load(&path, &name_owned, &limits());
        let _ = tx.send(loaded.map(|l| {
            l.documents
                .iter()
                .map(|d| (d.text.len() + d.title.len() + d.source.len()) as u64)
                .sum::<u64>()
                + l.skipped
                    .iter()
                    .map(|s| (s.source.len() + s.reason.len()) as u64)
                    .sum::<u64>()
        }));
    });
    match rx.recv_timeout(HANG) {
        Ok(result) => {
            let _ = worker.join();
            // An error is an answer too; its message is short.
            Ok(result.unwrap_or(0))
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let panic = worker.join().err();
            let message = panic
                .as_ref()
                .and_then(|p| p.downcast_ref::<String>().cloned())
                .or_else(|| {
                    panic
                        .as_ref()
                        .and_then(|p| p.downcast_ref::<&str>().map(|s| s.to_string()))
                })
                .unwrap_or_default();
            Err(TestCaseError::fail(format!(
                "{name}: the loader panicked: {message}"
            )))
        }
        Err(mpsc::RecvTimeoutError::Timeout) => Err(TestCaseError::fail(format!(
            "{name}: the loader did not return within {HANG:?}"
        ))),
    }
}

/// What any input may produce at most: its own bytes (three times over, for
/// invalid UTF-8 turned into replacement characters) plus what the limits
/// let archives and PDFs decompress to.
fn output_bound(input: usize) -> u64 {
    let l = limits();
    3 * (input as u64 + l.max_total_bytes + l.pdf.max_decompressed_bytes) + 64 * 1024
}

fn check(name: &str, bytes: &[u8]) -> Result<(), TestCaseError> {
    let produced = load_bytes(name, bytes)?;
    prop_assert!(
        produced <= output_bound(bytes.len()),
        "{name}: {produced} bytes out of {} in",
        bytes.len()
    );
    Ok(())
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        rng_seed: RngSeed::Fixed(13),
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    })
}

#[test]
fn mutated_samples_of_every_format_load_or_fail_cleanly() {
    for (name, sample) in samples() {
        runner(48)
            .run(&prop::collection::vec(mutation(), 1..8), |mutations| {
                check(name, &apply(sample.clone(), &mutations))
            })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn arbitrary_bytes_under_every_name_load_or_fail_cleanly() {
    let names = [
        "a.txt", "a.md", "a.html", "a.jsonl", "a.pdf", "a.docx", "a.zip", "noext",
    ];
    for name in names {
        runner(32)
            .run(&prop::collection::vec(any::<u8>(), 0..2048), |bytes| {
                check(name, &bytes)
            })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // The same with a format's magic bytes in front, so that the bytes
        // reach the PDF and ZIP parsers rather than being sniffed as binary.
        for magic in [&b"%PDF-1.5\n"[..], b"PK\x03\x04"] {
            runner(16)
                .run(&prop::collection::vec(any::<u8>(), 0..2048), |bytes| {
                    let mut input = magic.to_vec();
                    input.extend_from_slice(&bytes);
                    check(name, &input)
                })
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

/// The output bound above means something: a bomb in every container
/// format is stopped by a limit rather than expanded.
#[test]
fn bombs_in_every_container_meet_a_limit() {
    let zeros = deflated_zeros(64 * MIB);
    let bombs = [
        (
            "bomb.pdf",
            make_pdf_with_stream(" /Filter /FlateDecode", &zeros, None),
        ),
        (
            "bomb.zip",
            make_zip(&[("zeros.txt", &vec![b'a'; 16 * MIB as usize])]),
        ),
        (
            "bomb.docx",
            make_zip(&[
                ("[Content_Types].xml", b"<Types/>".as_slice()),
                ("word/document.xml", &vec![b' '; 16 * MIB as usize]),
            ]),
        ),
    ];
    for (name, bytes) in bombs {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "upload", &bytes);
        let err = load(&path, name, &limits()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("exceeds the limit") || msg.contains("exceeds the extraction limits"),
            "{name}: {msg}"
        );
    }
}
