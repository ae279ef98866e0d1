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
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // The pid and counter keep names unique within a run; the random part
    // keeps them unique across runs that leave databases behind.
    let name = format!(
        "ragchat_unit_{}_{}_{:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    );
    create_database(admin, &name).await;
    let home = PgDatabase {
        admin: admin.to_string(),
        name: name.clone(),
    };
    let mut url = url::Url::parse(admin).unwrap_or_else(|e| panic!("{PG_ENV}={admin}: {e}"));
    url.set_path(&format!("/{name}"));
    let mut settings = Settings::default();
    settings.database.url = url.to_string();
    TestDb {
        db: Db::connect(&settings)
            .await
            .unwrap_or_else(|e| panic!("test database {name}: {e}")),
        _home: Home::Postgres(home),
    }
}

async fn create_database(admin: &str, name: &str) {
    let mut attempt = 0;
    loop {
        let mut conn = AsyncPgConnection::establish(admin)
            .await
            .unwrap_or_else(|e| panic!("{PG_ENV}={admin}: {e}"));
        match conn
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
        {
            Ok(()) => return,
            // CREATE DATABASE copies template1 and refuses while another
            // session (a concurrent create) is connected to it.
            Err(e) if attempt < 20 && e.to_string().contains("being accessed by other users") => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot create {name}: {e}"),
        }
    }
}

struct PgDatabase {
    admin: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        // FORCE: the test's pool may still hold connections.
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        // Drop runs inside the test's runtime, which cannot block on
        // another one: a thread of its own can.
        let dropped = std::thread::spawn(move || pg_execute(&admin, &sql)).join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: test database {} left behind", self.name);
        }
    }
}

fn pg_execute(admin: &str, sql: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let mut conn = AsyncPgConnection::establish(admin)
            .await
            .map_err(|e| e.to_string())?;
        conn.batch_execute(sql).await.map_err(|e| e.to_string())
    })
}
