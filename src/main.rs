//! The `ragchat` command line; everything is in `ragchat::cli`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ragchat::cli::main().await
}
