//! PostgreSQL for the black-box suite. With `RAGCHAT_TEST_POSTGRES` set to an
//! admin URL, every `TestDir` owns a database of its own on that server
//! (`ragchat::db::testing::PgDatabase`, the unit tests' helper too), so tests
//! stay as isolated (and as parallel) as they are with one SQLite file per
//! data directory.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ragchat::db::testing::PgDatabase;
pub use ragchat::db::testing::{postgres_admin_url as admin_url, PG_ENV as ENV};

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
    dir: PathBuf,
    // Dropped after the registry entry is gone (fields drop after `drop`).
    _db: PgDatabase,
}

impl Database {
    pub fn create(admin: &str, dir: &Path) -> Self {
        let db = PgDatabase::create(admin, "ragchat_test");
        registry().push((dir.to_path_buf(), db.url().to_string()));
        Self {
            dir: dir.to_path_buf(),
            _db: db,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        registry().retain(|(dir, _)| dir != &self.dir);
    }
}
