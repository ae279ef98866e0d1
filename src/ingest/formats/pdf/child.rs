//! PDF extraction in a child process with resource limits.
//!
//! The child is the `ragchat` binary itself, run as `ragchat extract-pdf`
//! (a hidden subcommand): it reads the PDF on stdin, limits its own address
//! space and CPU time before reading it, runs the same in-process extraction
//! ([`super::extract`]), and writes a one-line JSON header (the title, or why
//! there is no text) and then the text on stdout. The parent kills it at the
//! wall-clock timeout and stops reading past the text cap. Whatever the PDF
//! does to the child (exhaust its memory, spin, overflow its stack), the
//! parent sees a child that ended badly and reports the file as too costly.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::super::{human_bytes, PdfLimits};
use super::budget::read_capped;
use super::{extract, Extracted, Failure};

/// The hidden subcommand the child runs.
pub const SUBCOMMAND: &str = "extract-pdf";

/// Room for the header line on stdout, beyond the text cap.
const HEADER_MAX: u64 = 64 * 1024;

/// A title longer than this is cut (it is a title, and it travels in the
/// header).
const TITLE_MAX_CHARS: usize = 1000;

/// The child's stderr kept for the log (a panic message, an allocation
/// failure).
const STDERR_MAX: u64 = 4096;

static EXTRACTOR: OnceLock<PathBuf> = OnceLock::new();

/// From now on, extract every PDF of this process in a child process
/// started from `exe`, which must be the `ragchat` binary. The command line
/// calls this at start; other programs (the unit tests) extract in process,
/// under the decompressed-bytes budget only.
pub fn extract_pdfs_in_child_processes(exe: PathBuf) {
    let _ = EXTRACTOR.set(exe);
}

pub(super) fn extractor() -> Option<&'static Path> {
    EXTRACTOR.get().map(PathBuf::as_path)
}

/// The first line of the child's stdout; on `Ok` the text follows it.
#[derive(Debug, Serialize, Deserialize)]
enum Header {
    Ok { title: Option<String> },
    Err(Failure),
}

/// The command line that extracts under `limits`, for the child to parse.
fn arguments(limits: &PdfLimits) -> Vec<String> {
    vec![
        SUBCOMMAND.to_string(),
        "--max-decompressed-bytes".into(),
        limits.max_decompressed_bytes.to_string(),
        "--max-memory-bytes".into(),
        limits.max_memory_bytes.to_string(),
        "--timeout-secs".into(),
        limits.timeout.as_secs().max(1).to_string(),
    ]
}

/// Extract the PDF at `path` in a child process run from `exe`. An I/O
/// error is the server's (the child cannot be started); anything the child
/// does is the PDF's.
pub(super) fn extract_in_child(
    exe: &Path,
    path: &Path,
    limits: &PdfLimits,
) -> io::Result<Result<Extracted, Failure>> {
    let mut child = Command::new(exe)
        .args(arguments(limits))
        .stdin(File::open(path)?)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(io::Error::other("the PDF extractor's output is not piped"));
    };
    let out_cap = limits.max_decompressed_bytes.saturating_add(HEADER_MAX);
    let overflow = Arc::new(AtomicBool::new(false));
    let out = thread::spawn({
        let overflow = overflow.clone();
        move || {
            let read = read_capped(stdout, out_cap);
            if matches!(read, Ok((_, true))) {
                overflow.store(true, Ordering::Relaxed);
            }
            read
        }
    });
    let err = thread::spawn(move || {
        let mut stderr = stderr;
        let kept = read_capped(&mut stderr, STDERR_MAX);
        // Drained, so that a chatty child never blocks on a full pipe.
        let _ = io::copy(&mut stderr, &mut io::sink());
        kept
    });

    let deadline = Instant::now() + limits.timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        // Output past the cap: no need to wait for the rest of it.
        if overflow.load(Ordering::Relaxed) {
            let _ = child.kill();
            break child.wait()?;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait()?;
        }
        thread::sleep(Duration::from_millis(5));
    };
    let (bytes, more) = out
        .join()
        .map_err(|_| io::Error::other("the PDF extractor's reader failed"))??;
    let stderr = match err.join() {
        Ok(Ok((bytes, _))) => String::from_utf8_lossy(&bytes).trim().to_string(),
        _ => String::new(),
    };

    if timed_out {
        return Ok(Err(Failure::Limit(format!(
            "extracting its text takes longer than {} s",
            limits.timeout.as_secs_f64()
        ))));
    }
    if more {
        return Ok(Err(super::budget::text_limit(
            limits.max_decompressed_bytes,
        )));
    }
    if !status.success() {
        tracing::warn!(%status, stderr = %stderr, "the PDF extractor ended badly");
        return Ok(Err(ended_badly(status, limits)));
    }
    Ok(parse_output(&bytes))
}

fn ended_badly(status: ExitStatus, limits: &PdfLimits) -> Failure {
    Failure::Limit(format!(
        "the extractor was stopped ({status}) with at most {} of memory and {} s of CPU time",
        human_bytes(limits.max_memory_bytes),
        limits.timeout.as_secs().max(1)
    ))
}

fn parse_output(bytes: &[u8]) -> Result<Extracted, Failure> {
    let unreadable = || Failure::Malformed("the PDF extractor's output is unreadable".into());
    let newline = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(unreadable)?;
    match serde_json::from_slice::<Header>(&bytes[..newline]).map_err(|_| unreadable())? {
        Header::Ok { title } => Ok(Extracted {
            title,
            text: String::from_utf8_lossy(&bytes[newline + 1..]).into_owned(),
        }),
        Header::Err(failure) => Err(failure),
    }
}

/// The child's side: `ragchat extract-pdf`. Limits itself, reads the PDF
/// from `input`, writes the header and text to `output`. The exit code is
/// 0 whenever a header was written, whatever it says.
pub fn extract_pdf_child(limits: &PdfLimits, input: impl Read, mut output: impl Write) -> i32 {
    if let Err(e) = limit_self(limits) {
        eprintln!("cannot set the extractor's resource limits: {e}");
        return 2;
    }
    let mut input = input;
    let mut bytes = Vec::new();
    if let Err(e) = input.read_to_end(&mut bytes) {
        eprintln!("cannot read the PDF: {e}");
        return 2;
    }
    let (header, text) = match extract(&bytes, limits) {
        Ok(Extracted { title, text }) => {
            let title = title.map(|t| t.chars().take(TITLE_MAX_CHARS).collect());
            (Header::Ok { title }, text)
        }
        Err(failure) => (Header::Err(failure), String::new()),
    };
    let written = serde_json::to_writer(&mut output, &header)
        .map_err(io::Error::from)
        .and_then(|()| output.write_all(b"\n"))
        .and_then(|()| output.write_all(text.as_bytes()))
        .and_then(|()| output.flush());
    match written {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("cannot write the text: {e}");
            2
        }
    }
}

/// Address space and CPU time, set on this process by itself: the parent
/// needs no `unsafe` hook between fork and exec, and the limits are in
/// force before the first byte of the PDF is read. The memory limit is on
/// top of what the process has mapped at this point (its executable, the
/// runtime), so that it means the same whatever the binary's size.
#[cfg(unix)]
fn limit_self(limits: &PdfLimits) -> io::Result<()> {
    use rustix::process::{setrlimit, Resource, Rlimit};
    let address_space = mapped_bytes().saturating_add(limits.max_memory_bytes);
    setrlimit(
        Resource::As,
        Rlimit {
            current: Some(address_space),
            maximum: Some(address_space),
        },
    )?;
    // SIGXCPU at the soft limit ends the process; the hard limit (SIGKILL)
    // is a second later, in case the signal is caught.
    let cpu = limits.timeout.as_secs().max(1);
    setrlimit(
        Resource::Cpu,
        Rlimit {
            current: Some(cpu),
            maximum: Some(cpu + 1),
        },
    )?;
    // An allocation past the limit aborts the process: no core file of up
    // to the whole limit left in the server's directory.
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )?;
    Ok(())
}

/// This process's address space now (Linux; elsewhere 0, and the limit is
/// the configured bytes alone).
#[cfg(unix)]
fn mapped_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    pages.saturating_mul(rustix::param::page_size() as u64)
}

#[cfg(not(unix))]
fn limit_self(_limits: &PdfLimits) -> io::Result<()> {
    // Only the parent's timeout bounds the child here.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_protocol_round_trips() {
        let limits = PdfLimits::default();
        let pdf = crate::ingest::formats::testutil::make_pdf(
            crate::ingest::formats::testutil::HELLO_PDF,
            Some("T"),
        );
        let mut out = Vec::new();
        // In the test process the limits would apply to the test runner:
        // exercise the protocol without them.
        let (header, text) = match extract(&pdf, &limits) {
            Ok(e) => (Header::Ok { title: e.title }, e.text),
            Err(f) => (Header::Err(f), String::new()),
        };
        serde_json::to_writer(&mut out, &header).unwrap();
        out.push(b'\n');
        out.extend_from_slice(text.as_bytes());
        let back = parse_output(&out).unwrap();
        assert_eq!(back.title.as_deref(), Some("T"));
        assert!(back.text.contains("Hello PDF world"));

        let mut out = Vec::new();
        serde_json::to_writer(&mut out, &Header::Err(Failure::Limit("x".into()))).unwrap();
        out.push(b'\n');
        assert_eq!(parse_output(&out), Err(Failure::Limit("x".into())));
        assert!(matches!(
            parse_output(b"garbage"),
            Err(Failure::Malformed(_))
        ));
    }

    #[test]
    fn arguments_carry_every_limit() {
        let limits = PdfLimits {
            max_decompressed_bytes: 5,
            max_memory_bytes: 6,
            timeout: Duration::from_millis(300),
        };
        assert_eq!(
            arguments(&limits),
            [
                SUBCOMMAND,
                "--max-decompressed-bytes",
                "5",
                "--max-memory-bytes",
                "6",
                "--timeout-secs",
                "1"
            ]
        );
    }

    /// A child that never answers is killed at the timeout, and one that
    /// dies is reported as stopped by the limits. `sh` stands in for the
    /// extractor: only the supervision is under test here.
    #[cfg(unix)]
    #[test]
    fn a_child_that_hangs_or_dies_is_a_limit_failure() {
        let dir = tempfile::tempdir().unwrap();
        let pdf = dir.path().join("in.pdf");
        std::fs::write(&pdf, b"%PDF-1.4").unwrap();
        let script = |body: &str| {
            let path = dir.path().join(format!("x{}", body.len()));
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path
        };
        let limits = PdfLimits {
            timeout: Duration::from_millis(300),
            ..PdfLimits::default()
        };
        // A script just written can be "busy" for a moment if another
        // test's child inherited it while it was open.
        let run = |exe: &Path, limits: &PdfLimits| loop {
            match extract_in_child(exe, &pdf, limits) {
                Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy => {
                    thread::sleep(Duration::from_millis(50))
                }
                other => break other.unwrap(),
            }
        };
        let hangs = script("exec sleep 30");
        let started = Instant::now();
        let got = run(&hangs, &limits);
        assert!(started.elapsed() < Duration::from_secs(20));
        let Err(Failure::Limit(detail)) = got else {
            panic!("{got:?}")
        };
        assert!(detail.contains("takes longer than 0.3 s"), "{detail}");

        let dies = script("kill -9 $$");
        let Err(Failure::Limit(detail)) = run(&dies, &limits) else {
            panic!("a killed child is a limit failure")
        };
        assert!(detail.contains("the extractor was stopped"), "{detail}");

        let floods = script("yes");
        let small = PdfLimits {
            max_decompressed_bytes: 1000,
            ..PdfLimits::default()
        };
        let Err(Failure::Limit(detail)) = run(&floods, &small) else {
            panic!("endless output is a limit failure")
        };
        assert!(detail.contains("text is longer than"), "{detail}");
    }
}
