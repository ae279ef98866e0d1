//! `ragchat extract-pdf` (hidden): the child process that extracts one PDF
//! for the server, under resource limits (see `ingest::formats::pdf`).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::ingest::formats::{extract_pdf_child, PdfLimits};

#[derive(Args)]
pub struct ExtractPdfArgs {
    #[arg(long)]
    max_decompressed_bytes: u64,
    #[arg(long)]
    max_memory_bytes: u64,
    #[arg(long)]
    timeout_secs: u64,
}

/// Reads the PDF on stdin, writes the result on stdout. Needs no settings,
/// database or models: it runs before any of them are loaded.
pub fn run(args: &ExtractPdfArgs) -> ExitCode {
    let limits = PdfLimits {
        max_decompressed_bytes: args.max_decompressed_bytes,
        max_memory_bytes: args.max_memory_bytes,
        timeout: Duration::from_secs(args.timeout_secs),
    };
    let code = extract_pdf_child(&limits, std::io::stdin().lock(), std::io::stdout().lock());
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// The executable the server re-runs as `ragchat extract-pdf`: this very
/// binary. On Linux `/proc/self/exe` stays this process's image even if the
/// file on disk is replaced (an upgrade) while it runs.
pub fn this_executable() -> Option<std::path::PathBuf> {
    let proc_self = std::path::Path::new("/proc/self/exe");
    if proc_self.exists() {
        return Some(proc_self.to_path_buf());
    }
    std::env::current_exe().ok()
}
