//! Fresh, migrated databases for tests: a SQLite file in a temporary
//! directory always, and with `RAGCHAT_TEST_POSTGRES` set to an admin URL
//! (as for the black-box suite, see `scripts/test.sh`) a database of its own
//! on that PostgreSQL server too. Each is removed when its [`TestDb`] drops.
//!
//! Helpers for tests only: they panic on failure, which fails the test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

use super::Db;
use crate::config::Settings;

/// The variable naming a PostgreSQL admin URL; unset or empty means SQLite
/// only.
pub const PG_ENV: &str = "RAGCHAT_TEST_POSTGRES";

/// The PostgreSQL admin URL from [`PG_ENV`], if set.
pub fn postgres_admin_url() -> Option<String> {
    std::env::var(PG_ENV)
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// A migrated database for one test, removed when dropped.
pub struct TestDb {
    pub db: Db,
    _home: Home,
}

impl std::ops::Deref for TestDb {
    type Target = Db;

    fn deref(&self) -> &Db {
        &self.db
    }
}

enum Home {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres(#[allow(dead_code)] PgDatabase),
}

/// SQLite always; PostgreSQL too when [`PG_ENV`] is set. Tests loop over
/// these, so every query is checked on each backend the run has.
pub async fn backends() -> Vec<TestDb> {
    let mut out = vec![sqlite().await];
    if let Some(admin) = postgres_admin_url() {
        out.push(postgres(&admin).await);
    }
    out
}

/// A database in a fresh temporary directory.
pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("temporary directory");
    let settings = Settings {
        data_dir: dir.path().to_path_buf(),
        ..Settings::default()
    };
    TestDb {
        db: Db::connect(&settings).await.expect("SQLite test database"),
        _home: Home::Sqlite(dir),
    }
}

/// A database of its own on the server behind `admin`.
pub async fn postgres(admin: &str) -> TestDb {
    let home = PgDatabase::create(admin, "ragchat_unit");
    let mut settings = Settings::default();
    settings.database.url = home.url().to_string();
    TestDb {
        db: Db::connect(&settings)
            .await
            .unwrap_or_else(|e| panic!("test database {}: {e}", home.name)),
        _home: Home::Postgres(home),
    }
}

/// A PostgreSQL database of its own, dropped (with its connections) when
/// this drops. The unit tests and the black-box suite both use it.
pub struct PgDatabase {
    admin: String,
    name: String,
    url: String,
}

impl PgDatabase {
    /// Create a database named `<prefix>_<unique>` on the server behind
    /// `admin`. Blocking, so synchronous tests can use it too.
    pub fn create(admin: &str, prefix: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        // The pid and counter keep names unique within a run; the random part
        // keeps them unique across runs that leave databases behind (a killed
        // run cannot drop its own) and across concurrent runs on one server.
        let name = format!(
            "{prefix}_{}_{}_{:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let mut url =
            url::Url::parse(admin).unwrap_or_else(|e| panic!("{PG_ENV}={admin} is not a URL: {e}"));
        url.set_path(&format!("/{name}"));
        create_database(admin, &name);
        Self {
            admin: admin.to_string(),
            name,
            url: url.to_string(),
        }
    }

    /// The database's own URL: the admin URL with the database replaced.
    pub fn url(&self) -> &str {
        &self.url
    }
}

fn create_database(admin: &str, name: &str) {
    let sql = format!("CREATE DATABASE \"{name}\"");
    let mut attempt = 0;
    loop {
        match pg_execute(admin, &sql) {
            Ok(()) => return,
            // CREATE DATABASE copies template1 and refuses while another
            // session (a concurrent create) is connected to it.
            Err(e) if attempt < 20 && e.contains("being accessed by other users") => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!(
                "cannot create test database {name} on the server named by {PG_ENV} ({admin}): {e}"
            ),
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // FORCE: a pool or a server the test failed to stop may still hold
        // connections.
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        if let Err(e) = pg_execute(&self.admin, &sql) {
            // Panicking in drop would abort a test that is already unwinding
            // and hide its real failure.
            eprintln!("warning: test database {} left behind: {e}", self.name);
        }
    }
}

/// Run `sql` on a connection of its own. The caller may be inside a test's
/// runtime, which cannot block on another one: a thread of its own can.
fn pg_execute(admin: &str, sql: &str) -> Result<(), String> {
    let (admin, sql) = (admin.to_string(), sql.to_string());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        runtime.block_on(async {
            let mut conn = AsyncPgConnection::establish(&admin)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            conn.batch_execute(&sql)
                .await
                .map_err(|e| format!("`{sql}`: {e}"))
        })
    })
    .join()
    .map_err(|_| "the database thread panicked".to_string())?
}
