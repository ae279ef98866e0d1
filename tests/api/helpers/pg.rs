//! PostgreSQL for the black-box suite. With `RAGCHAT_TEST_POSTGRES` set to an
//! admin URL, every `TestDir` owns a database of its own on that server, so
//! tests stay as isolated (and as parallel) as they are with one SQLite file
//! per data directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

/// The variable naming the server's admin URL; unset or empty means SQLite.
pub const ENV: &str = "RAGCHAT_TEST_POSTGRES";

pub fn admin_url() -> Option<String> {
    std::env::var(ENV).ok().filter(|url| !url.trim().is_empty())
}

/// Live databases by the `TestDir` path they belong to. Commands are usually
/// run on a subdirectory (`<dir>/data`), so lookups match by ancestor.
static DATABASES: Mutex<Vec<(PathBuf, String)>> = Mutex::new(Vec::new());

fn registry() -> std::sync::MutexGuard<'static, Vec<(PathBuf, String)>> {
    // A test that panicked while holding the lock leaves the list intact.
    DATABASES.lock().unwrap_or_else(|e| e.into_inner())
}

/// The URL of the database owned by the `TestDir` that contains `data_dir`.
pub fn url_for(data_dir: &Path) -> Option<String> {
    registry()
        .iter()
        .find(|(dir, _)| data_dir.starts_with(dir))
        .map(|(_, url)| url.clone())
}

/// A database created for one `TestDir`, dropped (with its connections) on drop.
pub struct Database {
    admin: String,
    name: String,
    dir: PathBuf,
}

impl Database {
    pub fn create(admin: &str, dir: &Path) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        // The pid and counter keep names unique within a run; the random part
        // keeps them unique across runs that leave databases behind (a killed
        // run cannot drop its own) and across concurrent runs on one server.
        let name = format!(
            "ragchat_test_{}_{}_{:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let url = with_database(admin, &name);
        create_database(admin, &name);
        registry().push((dir.to_path_buf(), url));
        Self {
            admin: admin.to_string(),
            name,
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        registry().retain(|(dir, _)| dir != &self.dir);
        // FORCE: a server the test failed to stop may still hold connections.
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        if let Err(e) = execute(&self.admin, &sql) {
            // Panicking in drop would abort a test that is already unwinding
            // and hide its real failure.
            eprintln!("warning: test database {} left behind: {e}", self.name);
        }
    }
}

fn create_database(admin: &str, name: &str) {
    let sql = format!("CREATE DATABASE \"{name}\"");
    let mut attempt = 0;
    loop {
        match execute(admin, &sql) {
            Ok(()) => return,
            // CREATE DATABASE copies template1 and refuses while another
            // session is connected to it, which concurrent creates can hit.
            Err(e) if attempt < 20 && e.contains("being accessed by other users") => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!(
                "cannot create test database {name} on the server named by {ENV} ({admin}): {e}"
            ),
        }
    }
}

/// `admin` with its database replaced by `name`, keeping user, host and options.
fn with_database(admin: &str, name: &str) -> String {
    let mut url =
        reqwest::Url::parse(admin).unwrap_or_else(|e| panic!("{ENV}={admin} is not a URL: {e}"));
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// Run `sql` on the admin connection. The tests are synchronous, so each call
/// brings its own short-lived runtime rather than sharing one across threads.
fn execute(admin: &str, sql: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(async {
        let mut conn = AsyncPgConnection::establish(admin)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        conn.batch_execute(sql)
            .await
            .map_err(|e| format!("`{sql}`: {e}"))
    })
}
