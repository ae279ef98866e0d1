//! The relational store, the source of truth for collections, documents and
//! chunks. One schema and one body of query code serve SQLite (embedded, via
//! `SyncConnectionWrapper`) and PostgreSQL: the `db_run!` macro expands each
//! query once per backend, so both are type-checked from the same source.

pub mod accounts;
pub mod collections;
pub mod conversations;
pub mod documents;
pub mod jobs;
pub mod lexical_log;
pub mod schema;
pub mod testing;
pub mod text_enum;

use chrono::NaiveDateTime;
use diesel::migration::MigrationSource;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::SqliteConnection;
use diesel_async::pooled_connection::bb8::Pool;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{
    AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, SimpleAsyncConnection,
};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::time::Duration;

use crate::config::Settings;

pub type SqliteConn = SyncConnectionWrapper<SqliteConnection>;

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database connection: {0}")]
    Connection(String),
    #[error("database query: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("database migration: {0}")]
    Migration(String),
}

pub type DbResult<T> = Result<T, DbError>;

/// A page position: rows strictly after (`created_at`, `id`) in the page order.
pub type Cursor = (NaiveDateTime, String);

/// Now, to the microsecond: PostgreSQL keeps microseconds, so values read back
/// compare equal on both backends (pagination cursors depend on it).
pub fn now() -> NaiveDateTime {
    use chrono::{SubsecRound, Utc};
    Utc::now().naive_utc().trunc_subsecs(6)
}

pub fn is_unique_violation(e: &DbError) -> bool {
    matches!(
        e,
        DbError::Query(DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            _
        ))
    )
}

/// Pool and connection failures, whatever their type, as one error kind
/// (used by `db_run!` and every place that takes a connection itself).
pub fn connection_err(e: impl std::fmt::Display) -> DbError {
    DbError::Connection(e.to_string())
}

#[derive(Clone)]
pub enum Db {
    Sqlite(Pool<SqliteConn>),
    Postgres(Pool<AsyncPgConnection>),
}

/// Run `$body` with `$conn` bound to a pooled connection of whichever backend
/// `$db` is. The body is compiled once per backend.
#[macro_export]
macro_rules! db_run {
    ($db:expr, $conn:ident => $body:block) => {
        match $db {
            $crate::db::Db::Sqlite(pool) => {
                let mut guard = pool.get().await.map_err($crate::db::connection_err)?;
                let $conn = &mut *guard;
                $body
            }
            $crate::db::Db::Postgres(pool) => {
                let mut guard = pool.get().await.map_err($crate::db::connection_err)?;
                let $conn = &mut *guard;
                $body
            }
        }
    };
}

impl Db {
    /// Connect to the configured database and bring its schema up to date.
    pub async fn connect(settings: &Settings) -> DbResult<Self> {
        let timeout = Duration::from_secs(settings.database.connect_timeout_secs);
        let db = if let Some(path) = settings.sqlite_path() {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    DbError::Connection(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
            let mut config = ManagerConfig::<SqliteConn>::default();
            config.custom_setup = Box::new(|url| {
                let url = url.to_string();
                Box::pin(async move {
                    let mut conn = SqliteConn::establish(&url).await?;
                    // WAL lets readers proceed during ingestion; busy_timeout makes
                    // concurrent writers wait instead of failing with SQLITE_BUSY.
                    conn.batch_execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                    )
                    .await
                    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                    Ok(conn)
                })
            });
            let manager = AsyncDieselConnectionManager::<SqliteConn>::new_with_config(
                path.to_string_lossy(),
                config,
            );
            let pool = Pool::builder()
                .max_size(settings.database.pool_size)
                .connection_timeout(timeout)
                .build(manager)
                .await
                .map_err(connection_err)?;
            Db::Sqlite(pool)
        } else {
            // A new PostgreSQL connection spawns its driver task on the
            // runtime that establishes it. The pool establishes on whichever
            // thread asks first: an HTTP worker's runtime, which actix stops
            // first at shutdown, cutting connections the shutdown itself
            // still uses ("connection closed"). Establishing on the runtime
            // that opened the database keeps every driver alive to the end.
            let runtime = tokio::runtime::Handle::current();
            let mut config = ManagerConfig::<AsyncPgConnection>::default();
            config.custom_setup = Box::new(move |url| {
                let url = url.to_string();
                let runtime = runtime.clone();
                Box::pin(async move {
                    runtime
                        .spawn(async move { AsyncPgConnection::establish(&url).await })
                        .await
                        .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?
                })
            });
            let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
                &settings.database.url,
                config,
            );
            let pool = Pool::builder()
                .max_size(settings.database.pool_size)
                .connection_timeout(timeout)
                .build(manager)
                .await
                .map_err(connection_err)?;
            Db::Postgres(pool)
        };
        db.migrate().await?;
        Ok(db)
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// Apply pending embedded migrations. The harness is synchronous, so it
    /// runs on the blocking pool with a dedicated connection.
    pub async fn migrate(&self) -> DbResult<()> {
        match self {
            Db::Sqlite(pool) => {
                let conn = pool.dedicated_connection().await.map_err(connection_err)?;
                run_migrations(conn, SQLITE_MIGRATIONS).await
            }
            Db::Postgres(pool) => {
                let conn = pool.dedicated_connection().await.map_err(connection_err)?;
                run_migrations(conn, POSTGRES_MIGRATIONS).await
            }
        }
    }

    /// A trivial round trip, for readiness checks.
    pub async fn ping(&self) -> DbResult<()> {
        db_run!(self, conn => {
            conn.batch_execute("SELECT 1").await?;
            Ok(())
        })
    }
}

/// Apply pending migrations on a dedicated connection. The harness is
/// synchronous (it blocks on the async connection), so it runs on the
/// blocking pool.
async fn run_migrations<C>(conn: C, migrations: EmbeddedMigrations) -> DbResult<()>
where
    C: AsyncConnection + Send + 'static,
    AsyncMigrationHarness<C>: MigrationHarness<C::Backend>,
    EmbeddedMigrations: MigrationSource<C::Backend>,
{
    tokio::task::spawn_blocking(move || {
        AsyncMigrationHarness::new(conn)
            .run_pending_migrations(migrations)
            .map(|_| ())
            .map_err(|e| DbError::Migration(e.to_string()))
    })
    .await
    .map_err(|e| DbError::Migration(e.to_string()))?
}
