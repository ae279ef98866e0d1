//! Black-box helpers: run the real `ragchat` binary against a throwaway data
//! directory, and start the real server on a random port.

mod app;
pub mod client;
pub mod openai_mock;
mod pg;
pub mod qdrant;
pub mod webdriver;
pub mod ws;

pub use app::TestApp;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn models_dir() -> PathBuf {
    let dir = std::env::var("RAGCHAT_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("models"));
    assert!(
        dir.join("minilm/model.onnx").is_file(),
        "models missing in {}: run scripts/setup-models.sh before the tests",
        dir.display()
    );
    dir
}

/// Signing secret for test servers (tests that check the refusal of a missing
/// secret remove it).
pub const TEST_JWT_SECRET: &str = "0123456789abcdef0123456789abcdef-test-only";

/// A throwaway data directory. When `RAGCHAT_TEST_POSTGRES` names a PostgreSQL
/// server (an admin URL such as `postgres://postgres@127.0.0.1:5432/postgres`),
/// it also owns a fresh database on it, created here and dropped on drop, and
/// every `ragchat` command for this directory uses that database. Likewise
/// with `RAGCHAT_TEST_QDRANT_URL` (a Qdrant server's gRPC URL): a collection
/// of its own there holds the directory's vectors.
pub struct TestDir {
    // Held for their drop, which drops the database and the collection.
    _db: Option<pg::Database>,
    _vectors: Option<qdrant::Collection>,
    dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = pg::admin_url().map(|admin| pg::Database::create(&admin, dir.path()));
        let vectors = qdrant::server_url().map(|url| qdrant::Collection::create(&url, dir.path()));
        Self {
            _db: db,
            _vectors: vectors,
            dir,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// The database URL `ragchat` commands for `data_dir` should use, if not the
/// embedded SQLite file.
pub fn database_url(data_dir: &Path) -> Option<String> {
    pg::admin_url()?;
    let url = pg::url_for(data_dir);
    // Falling back to SQLite here would let a PostgreSQL run pass without
    // touching PostgreSQL.
    assert!(
        url.is_some(),
        "{} is set but {} is not inside a live common::TestDir: create data dirs with TestDir::new()",
        pg::ENV,
        data_dir.display()
    );
    url
}

/// The Qdrant server and collection `ragchat` commands for `data_dir` should
/// use, if not the embedded shard.
pub fn qdrant_collection(data_dir: &Path) -> Option<(String, String)> {
    qdrant::server_url()?;
    let found = qdrant::collection_for(data_dir);
    // Falling back to the embedded index would let a Qdrant run pass without
    // touching the server.
    assert!(
        found.is_some(),
        "{} is set but {} is not inside a live common::TestDir: create data dirs with TestDir::new()",
        qdrant::ENV,
        data_dir.display()
    );
    found
}

pub fn fixtures() -> PathBuf {
    repo_root().join("tests/fixtures")
}

/// A `ragchat` command with a clean environment: only the given data dir and
/// the installed models, so settings on the developer's machine cannot leak in.
pub fn cmd(data_dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ragchat"));
    for (k, _) in std::env::vars() {
        if k.starts_with("RAGCHAT_") {
            c.env_remove(k);
        }
    }
    c.env("RAGCHAT_DATA_DIR", data_dir)
        .env("RAGCHAT_MODELS_DIR", models_dir())
        .env("RAGCHAT_LOG_LEVEL", "warn")
        .env("RAGCHAT_EMBEDDING_POOL_SIZE", "1")
        .env("RAGCHAT_AUTH_JWT_SECRET", TEST_JWT_SECRET)
        // Rate limits are off unless a test turns them on.
        .env("RAGCHAT_RATE_LIMIT_ENABLED", "false")
        // Deterministic answers unless a test picks a model: `auto` would
        // take the local LLM whenever it is installed.
        .env("RAGCHAT_CHAT_BACKEND", "extractive")
        .current_dir(data_dir.parent().unwrap_or(data_dir));
    if let Some(url) = database_url(data_dir) {
        c.env("RAGCHAT_DATABASE_URL", url);
    }
    if let Some((url, collection)) = qdrant_collection(data_dir) {
        c.env("RAGCHAT_QDRANT_URL", url)
            .env("RAGCHAT_VECTOR_QDRANT_COLLECTION", collection);
    }
    c
}

pub fn run(data_dir: &Path, args: &[&str]) -> Output {
    let out = cmd(data_dir)
        .args(args)
        .output()
        .expect("cannot run the ragchat binary");
    out
}

/// Run and require success; returns stdout.
pub fn run_ok(data_dir: &Path, args: &[&str]) -> String {
    let out = run(data_dir, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ragchat {args:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Run `ragchat check` and require a consistent data directory; returns its report.
pub fn check_consistent(data: &Path) -> String {
    let out = run_ok(data, &["check"]);
    assert!(out.contains("consistent"), "{out}");
    out
}

pub struct Server {
    child: Child,
    pub base: String,
    /// What the server wrote to stderr (its log), when started with
    /// [`Server::start_logged`].
    log: Option<Arc<Mutex<String>>>,
}

impl Server {
    /// Start `ragchat serve` on a random port and wait for it to report its address.
    pub fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, &[])
    }

    /// Start with extra environment (later values override the test defaults).
    pub fn start_with(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::spawn(data_dir, env, false)
    }

    /// [`Server::start_with`], keeping the server's log (stderr) for
    /// [`Server::log`]; it is still passed on to the test's stderr.
    pub fn start_logged(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::spawn(data_dir, env, true)
    }

    fn spawn(data_dir: &Path, env: &[(&str, &str)], keep_log: bool) -> Self {
        let mut command = cmd(data_dir);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .args(["serve", "--bind", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(if keep_log {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .spawn()
            .expect("cannot start ragchat serve");
        let log = child.stderr.take().map(|stderr| {
            let log = Arc::new(Mutex::new(String::new()));
            let sink = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("{line}");
                    let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                    log.push_str(&line);
                    log.push('\n');
                }
            });
            log
        });
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("ragchat listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("server did not report its address");
        let server = Self { child, base, log };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = reqwest::blocking::Client::new();
        while Instant::now() < deadline {
            if let Ok(r) = client.get(format!("{}/ready", self.base)).send() {
                if r.status().is_success() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("server at {} never became ready", self.base);
    }

    /// The log so far (started with [`Server::start_logged`]).
    pub fn log(&self) -> String {
        let log = self
            .log
            .as_ref()
            .expect("server started without start_logged");
        log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The sum of the `/metrics` series whose lines start with `prefix`
    /// (one series when it is a full name and label set); 0 when none.
    pub fn metric(&self, prefix: &str) -> f64 {
        let text = reqwest::blocking::get(self.url("/metrics"))
            .and_then(|r| r.text())
            .expect("GET /metrics");
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum()
    }

    /// SIGTERM and wait: the server flushes its indexes on the way out.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.terminate()
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return self.child.wait().expect("wait for killed server");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}
