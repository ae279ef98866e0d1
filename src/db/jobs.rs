//! The durable job queue: background work (uploads to ingest, crawls, index
//! optimisation) that survives restarts and worker crashes.
//!
//! A worker `claim`s a job and holds it under a lease, which it extends with
//! `renew` while it works. Every later write by the worker is conditional on
//! still holding the lease (`lease_owner` is its id and the job is `running`):
//! once the lease has expired and another worker has reclaimed the job, the
//! old worker's writes change nothing and report `false` (or `None`), which is
//! its signal to stop. The worker id is that fence, so it must be unique per
//! job handler (host, pid and a random part, say), never shared by two
//! handlers that could hold jobs at the same time.
//!
//! Claiming takes the runnable job that has waited longest (`run_after`, then
//! `created_at`, then `id`):
//! - PostgreSQL: one transaction runs `SELECT … FOR UPDATE SKIP LOCKED LIMIT 1`
//!   and then the `UPDATE` that takes the row; concurrent claimers skip each
//!   other's rows instead of queueing behind them.
//! - SQLite: the same statements (without the row locks, which SQLite does not
//!   have) inside `BEGIN IMMEDIATE`. That takes the database's single write
//!   lock before the first read, so claimers run one after another, waiting
//!   through `busy_timeout`, and none can pick a row another has just taken. A
//!   plain (deferred) transaction would read first and could then fail to
//!   upgrade to a writer with `SQLITE_BUSY`, which `busy_timeout` does not
//!   retry.
//!
//! A running job whose lease has expired is claimable again, as a new attempt.
//! Before picking, each claim ends the expired jobs that must not run again:
//! with a cancel pending they become `cancelled`, out of attempts they become
//! `dead`, so a job that kills its worker every time stops instead of looping.
//! No separate sweeper is needed.

use std::time::Duration;

use chrono::{NaiveDateTime, SubsecRound, TimeDelta};
use diesel::prelude::*;
use diesel::sql_types::Bool;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::accounts::is_unique_violation;
pub use super::accounts::Cursor;
pub use super::models::{Job, JobState, UnknownJobState};
use super::repo::now;
use super::schema::jobs;
use super::{Db, DbError, DbResult};
use crate::db_run;

/// Attempts a job gets when the caller does not say.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 3;

/// `last_error` is one message for people to read; per-document errors
/// belong in `progress`. Longer messages are cut (at a character boundary).
pub const MAX_ERROR_BYTES: usize = 4096;

/// Written as `last_error` when a job's last attempt ended by its lease
/// running out (its worker died or hung) rather than by a reported failure.
pub const LEASE_EXPIRED_ERROR: &str = "lease expired: the worker stopped renewing it";

const LIVE: [JobState; 2] = [JobState::Queued, JobState::Running];

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub kind: String,
    pub collection_id: Option<String>,
    /// None for jobs the service schedules itself.
    pub created_by: Option<String>,
    pub payload: serde_json::Value,
    /// Raised to 1 if smaller: every job gets at least one attempt.
    pub max_attempts: i32,
    /// Not claimable before this; None means at once.
    pub run_after: Option<NaiveDateTime>,
    /// While a job with this key is queued or running, enqueueing another
    /// with the same key returns that job instead (periodic jobs use it to
    /// stay single).
    pub dedupe_key: Option<String>,
}

impl NewJob {
    /// A job runnable at once, with the default attempts and no owner,
    /// collection or dedupe key.
    pub fn new(kind: impl Into<String>, payload: serde_json::Value) -> Self {
        Self {
            kind: kind.into(),
            collection_id: None,
            created_by: None,
            payload,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            run_after: None,
            dedupe_key: None,
        }
    }
}

/// How long a failed job waits before its next attempt: `base` after the
/// first failure, doubling with each further one, never more than `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
    /// Spread each delay uniformly over `[delay / 2, delay]`, so jobs that
    /// failed together (a dependency was down) do not all retry at once.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(10),
            max: Duration::from_secs(3600),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// The wait after a job's `attempts`-th attempt failed.
    pub fn backoff(&self, attempts: i32) -> Duration {
        // 2^31 times any base already saturates; the clamp keeps the shift valid.
        let doublings = attempts.saturating_sub(1).clamp(0, 31) as u32;
        let delay = self.base.saturating_mul(1 << doublings).min(self.max);
        if self.jitter {
            let half = delay / 2;
            delay - half.mul_f64(rand::random_range(0.0..=1.0))
        } else {
            delay
        }
    }
}

/// What `list` returns; unset fields do not filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub kind: Option<String>,
    pub collection_id: Option<String>,
}

/// `t + d` to the microsecond (what PostgreSQL keeps). Durations beyond a
/// century are clamped: that long means "never" for a lease or a backoff, and
/// the clamp keeps the result a four-digit-year timestamp, whose text form
/// SQLite compares in time order.
fn later(t: NaiveDateTime, d: Duration) -> NaiveDateTime {
    const CENTURY: Duration = Duration::from_secs(100 * 366 * 24 * 3600);
    // Cannot fail below the clamp; zero is a harmless stand-in regardless.
    let d = TimeDelta::from_std(d.min(CENTURY)).unwrap_or_else(|_| TimeDelta::zero());
    (t + d).trunc_subsecs(6)
}

fn bounded_error(error: &str) -> String {
    if error.len() <= MAX_ERROR_BYTES {
        return error.to_string();
    }
    let mut end = MAX_ERROR_BYTES;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &error[..end])
}

fn connection_err(e: impl std::fmt::Display) -> DbError {
    DbError::Connection(e.to_string())
}

/// The job `$id` as long as the worker `$worker` holds its lease: the filter
/// every worker write goes through.
macro_rules! held {
    ($id:expr, $worker:expr) => {
        jobs::table
            .filter(jobs::id.eq($id))
            .filter(jobs::lease_owner.eq($worker))
            .filter(jobs::state.eq(JobState::Running))
    };
}

/// Add a job. With a dedupe key that a live (queued or running) job already
/// has, nothing is added and that job is returned.
pub async fn enqueue(db: &Db, new: NewJob) -> DbResult<Job> {
    let t = now();
    let job = Job {
        id: uuid::Uuid::new_v4().to_string(),
        kind: new.kind,
        collection_id: new.collection_id,
        created_by: new.created_by,
        state: JobState::Queued,
        payload: new.payload.to_string(),
        result: None,
        progress: "{}".to_string(),
        attempts: 0,
        max_attempts: new.max_attempts.max(1),
        run_after: new.run_after.map_or(t, |r| r.trunc_subsecs(6)),
        lease_owner: None,
        lease_expires_at: None,
        last_error: None,
        cancel_requested: false,
        dedupe_key: new.dedupe_key,
        created_at: t,
        started_at: None,
        finished_at: None,
        updated_at: t,
    };
    // The partial unique index decides between concurrent enqueuers. The
    // loser looks the winner up; if that job finished in between, the key is
    // free again and the insert is retried.
    let mut tries = 0;
    loop {
        let inserted = db_run!(db, conn => {
            diesel::insert_into(jobs::table)
                .values(&job)
                .execute(conn)
                .await
                .map_err(DbError::from)
        });
        match (inserted, &job.dedupe_key) {
            (Ok(_), _) => return Ok(job),
            (Err(e), Some(key)) if is_unique_violation(&e) => {
                if let Some(live) = live_by_dedupe_key(db, key).await? {
                    return Ok(live);
                }
                tries += 1;
                if tries == 3 {
                    return Err(e);
                }
            }
            (Err(e), _) => return Err(e),
        }
    }
}

async fn live_by_dedupe_key(db: &Db, key: &str) -> DbResult<Option<Job>> {
    db_run!(db, conn => {
        Ok(jobs::table
            .filter(jobs::dedupe_key.eq(key))
            .filter(jobs::state.eq_any(LIVE))
            .select(Job::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// Inputs of one claim, moved into its transaction.
struct Claim {
    now: NaiveDateTime,
    expires: NaiveDateTime,
    worker: String,
    any_kind: bool,
    kinds: Vec<String>,
}

/// The claim transaction's body, written once for both backends. The trailing
/// idents are the row-locking calls appended to its selects (`for_update
/// skip_locked` on PostgreSQL; none on SQLite, whose IMMEDIATE transaction
/// already excludes every other writer).
macro_rules! claim_in_tx {
    ($conn:ident, $c:ident, $($lock:ident)*) => {{
        let t = $c.now;
        let stale: Vec<(String, bool)> = jobs::table
            .filter(jobs::state.eq(JobState::Running))
            .filter(jobs::lease_expires_at.assume_not_null().lt(t))
            .filter(jobs::cancel_requested.or(jobs::attempts.ge(jobs::max_attempts)))
            .select((jobs::id, jobs::cancel_requested))
            $(.$lock())*
            .load($conn)
            .await?;
        let (cancelled, dead): (Vec<_>, Vec<_>) =
            stale.into_iter().partition(|(_, cancel)| *cancel);
        if !cancelled.is_empty() {
            let ids: Vec<String> = cancelled.into_iter().map(|(id, _)| id).collect();
            diesel::update(jobs::table.filter(jobs::id.eq_any(&ids)))
                .set((
                    jobs::state.eq(JobState::Cancelled),
                    jobs::lease_owner.eq(None::<String>),
                    jobs::lease_expires_at.eq(None::<NaiveDateTime>),
                    jobs::finished_at.eq(Some(t)),
                    jobs::updated_at.eq(t),
                ))
                .execute($conn)
                .await?;
        }
        if !dead.is_empty() {
            let ids: Vec<String> = dead.into_iter().map(|(id, _)| id).collect();
            diesel::update(jobs::table.filter(jobs::id.eq_any(&ids)))
                .set((
                    jobs::state.eq(JobState::Dead),
                    jobs::lease_owner.eq(None::<String>),
                    jobs::lease_expires_at.eq(None::<NaiveDateTime>),
                    jobs::last_error.eq(LEASE_EXPIRED_ERROR),
                    jobs::finished_at.eq(Some(t)),
                    jobs::updated_at.eq(t),
                ))
                .execute($conn)
                .await?;
        }

        let runnable = jobs::state
            .eq(JobState::Queued)
            .and(jobs::run_after.le(t))
            .or(jobs::state
                .eq(JobState::Running)
                .and(jobs::lease_expires_at.assume_not_null().lt(t))
                .and(jobs::cancel_requested.eq(false))
                .and(jobs::attempts.lt(jobs::max_attempts)));
        // A bound flag rather than a boxed query: locked selects cannot be boxed.
        let kind_ok = jobs::kind.eq_any(&$c.kinds).or($c.any_kind.into_sql::<Bool>());
        let picked: Option<String> = jobs::table
            .filter(runnable)
            .filter(kind_ok)
            .order((jobs::run_after.asc(), jobs::created_at.asc(), jobs::id.asc()))
            .select(jobs::id)
            .limit(1)
            $(.$lock())*
            .get_result($conn)
            .await
            .optional()?;
        let Some(id) = picked else {
            return Ok(None);
        };
        let job = diesel::update(jobs::table.find(&id))
            .set((
                jobs::state.eq(JobState::Running),
                jobs::lease_owner.eq($c.worker.as_str()),
                jobs::lease_expires_at.eq(Some($c.expires)),
                jobs::attempts.eq(jobs::attempts + 1),
                jobs::started_at.eq(Some(t)),
                jobs::updated_at.eq(t),
            ))
            .returning(Job::as_returning())
            .get_result($conn)
            .await?;
        Ok::<_, DbError>(Some(job))
    }};
}

/// Take the runnable job that has waited longest (queued with `run_after`
/// passed, or running with an expired lease) for `worker_id`, leased for
/// `lease`; only the given kinds if `kinds` is set. None when nothing is
/// runnable.
pub async fn claim(
    db: &Db,
    worker_id: &str,
    lease: Duration,
    kinds: Option<&[&str]>,
) -> DbResult<Option<Job>> {
    let t = now();
    let c = Claim {
        now: t,
        expires: later(t, lease),
        worker: worker_id.to_string(),
        any_kind: kinds.is_none(),
        kinds: kinds
            .unwrap_or_default()
            .iter()
            .map(|k| k.to_string())
            .collect(),
    };
    match db {
        Db::Sqlite(pool) => {
            let mut guard = pool.get().await.map_err(connection_err)?;
            let conn = &mut *guard;
            conn.immediate_transaction(async move |conn| claim_in_tx!(conn, c,))
                .await
        }
        Db::Postgres(pool) => {
            let mut guard = pool.get().await.map_err(connection_err)?;
            let conn = &mut *guard;
            conn.transaction(async move |conn| claim_in_tx!(conn, c, for_update skip_locked))
                .await
        }
    }
}

/// Extend the lease to `lease` from now. False when the worker no longer
/// holds it (expired and reclaimed, finished, or deleted with its
/// collection): the worker must stop.
pub async fn renew(db: &Db, job_id: &str, worker_id: &str, lease: Duration) -> DbResult<bool> {
    let t = now();
    db_run!(db, conn => {
        let n = diesel::update(held!(job_id, worker_id))
            .set((
                jobs::lease_expires_at.eq(Some(later(t, lease))),
                jobs::updated_at.eq(t),
            ))
            .execute(conn)
            .await?;
        Ok(n > 0)
    })
}

/// Replace the job's progress document. It does not extend the lease: the
/// heartbeat (`renew`) runs on its own timer, because progress can stall for
/// longer than a lease on one large document. False when the lease is lost.
pub async fn report_progress(
    db: &Db,
    job_id: &str,
    worker_id: &str,
    progress: &serde_json::Value,
) -> DbResult<bool> {
    let progress = progress.to_string();
    db_run!(db, conn => {
        let n = diesel::update(held!(job_id, worker_id))
            .set((jobs::progress.eq(&progress), jobs::updated_at.eq(now())))
            .execute(conn)
            .await?;
        Ok(n > 0)
    })
}

/// Finish the job as succeeded with `result`. False when the lease is lost
/// (the result is then not recorded).
pub async fn complete(
    db: &Db,
    job_id: &str,
    worker_id: &str,
    result: &serde_json::Value,
) -> DbResult<bool> {
    let result = result.to_string();
    let t = now();
    db_run!(db, conn => {
        let n = diesel::update(held!(job_id, worker_id))
            .set((
                jobs::state.eq(JobState::Succeeded),
                jobs::result.eq(result.as_str()),
                jobs::lease_owner.eq(None::<String>),
                jobs::lease_expires_at.eq(None::<NaiveDateTime>),
                jobs::finished_at.eq(Some(t)),
                jobs::updated_at.eq(t),
            ))
            .execute(conn)
            .await?;
        Ok(n > 0)
    })
}

/// Record a failed attempt and return the state it leads to: `cancelled` if
/// a cancel is pending, `failed` if `permanent` (retrying cannot help, e.g. an
/// unsupported file), `dead` if no attempts are left, otherwise `queued` again
/// with `run_after` pushed back by `policy`. `error` is kept as `last_error`
/// in every case. None when the worker no longer holds the lease (nothing is
/// written).
pub async fn fail(
    db: &Db,
    job_id: &str,
    worker_id: &str,
    error: &str,
    permanent: bool,
    policy: &RetryPolicy,
) -> DbResult<Option<JobState>> {
    let job_id = job_id.to_string();
    let worker_id = worker_id.to_string();
    let error = bounded_error(error);
    let policy = *policy;
    db_run!(db, conn => {
        conn.transaction::<_, DbError, _>(async move |conn| {
            let t = now();
            // A write first: it locks the row on PostgreSQL and takes the
            // write lock on SQLite, so a concurrent cancel cannot slip in
            // between reading the counters and writing the outcome.
            let held = diesel::update(held!(&job_id, &worker_id))
                .set(jobs::updated_at.eq(t))
                .execute(conn)
                .await?;
            if held == 0 {
                return Ok(None);
            }
            let (attempts, max_attempts, cancel_requested): (i32, i32, bool) = jobs::table
                .find(&job_id)
                .select((jobs::attempts, jobs::max_attempts, jobs::cancel_requested))
                .first(conn)
                .await?;
            let next = if cancel_requested {
                JobState::Cancelled
            } else if permanent {
                JobState::Failed
            } else if attempts >= max_attempts {
                JobState::Dead
            } else {
                JobState::Queued
            };
            let target = jobs::table.find(&job_id);
            if next == JobState::Queued {
                diesel::update(target)
                    .set((
                        jobs::state.eq(next),
                        jobs::run_after.eq(later(t, policy.backoff(attempts))),
                        jobs::lease_owner.eq(None::<String>),
                        jobs::lease_expires_at.eq(None::<NaiveDateTime>),
                        jobs::last_error.eq(error.as_str()),
                    ))
                    .execute(conn)
                    .await?;
            } else {
                diesel::update(target)
                    .set((
                        jobs::state.eq(next),
                        jobs::lease_owner.eq(None::<String>),
                        jobs::lease_expires_at.eq(None::<NaiveDateTime>),
                        jobs::last_error.eq(error.as_str()),
                        jobs::finished_at.eq(Some(t)),
                    ))
                    .execute(conn)
                    .await?;
            }
            Ok(Some(next))
        })
        .await
    })
}

/// Ask for a job to stop. A queued job is cancelled at once; a running one
/// gets `cancel_requested` and its worker ends it with `finish_cancelled`; a
/// finished one is left as it is. Returns the job as it now is (the caller
/// tells "already finished" from its state), None when there is no such job.
pub async fn request_cancel(db: &Db, job_id: &str) -> DbResult<Option<Job>> {
    let job_id = job_id.to_string();
    db_run!(db, conn => {
        conn.transaction::<_, DbError, _>(async move |conn| {
            let t = now();
            // A no-op write first, to lock the row (see `fail`): a job
            // moving between queued and running meanwhile would otherwise
            // dodge both branches below.
            let found = diesel::update(jobs::table.find(&job_id))
                .set(jobs::updated_at.eq(jobs::updated_at))
                .execute(conn)
                .await?;
            if found == 0 {
                return Ok(None);
            }
            let state: JobState = jobs::table
                .find(&job_id)
                .select(jobs::state)
                .first(conn)
                .await?;
            match state {
                JobState::Queued => {
                    diesel::update(jobs::table.find(&job_id))
                        .set((
                            jobs::state.eq(JobState::Cancelled),
                            jobs::finished_at.eq(Some(t)),
                            jobs::updated_at.eq(t),
                        ))
                        .execute(conn)
                        .await?;
                }
                JobState::Running => {
                    diesel::update(jobs::table.find(&job_id))
                        .set((jobs::cancel_requested.eq(true), jobs::updated_at.eq(t)))
                        .execute(conn)
                        .await?;
                }
                _ => {}
            }
            Ok(Some(
                jobs::table
                    .find(&job_id)
                    .select(Job::as_select())
                    .first(conn)
                    .await?,
            ))
        })
        .await
    })
}

/// Whether someone asked the job to stop (false for a missing job).
pub async fn is_cancel_requested(db: &Db, job_id: &str) -> DbResult<bool> {
    db_run!(db, conn => {
        Ok(jobs::table
            .find(job_id)
            .select(jobs::cancel_requested)
            .first::<bool>(conn)
            .await
            .optional()?
            .unwrap_or(false))
    })
}

/// The worker's end of a cancel: the job becomes `cancelled`. False when the
/// lease is lost.
pub async fn finish_cancelled(db: &Db, job_id: &str, worker_id: &str) -> DbResult<bool> {
    let t = now();
    db_run!(db, conn => {
        let n = diesel::update(held!(job_id, worker_id))
            .set((
                jobs::state.eq(JobState::Cancelled),
                jobs::lease_owner.eq(None::<String>),
                jobs::lease_expires_at.eq(None::<NaiveDateTime>),
                jobs::finished_at.eq(Some(t)),
                jobs::updated_at.eq(t),
            ))
            .execute(conn)
            .await?;
        Ok(n > 0)
    })
}

/// Hand a job back untouched, as if this attempt had not started: a worker
/// that is shutting down does not spend one of the job's attempts. False
/// when the lease is lost.
pub async fn release(db: &Db, job_id: &str, worker_id: &str) -> DbResult<bool> {
    let t = now();
    db_run!(db, conn => {
        let n = diesel::update(held!(job_id, worker_id))
            .set((
                jobs::state.eq(JobState::Queued),
                jobs::attempts.eq(jobs::attempts - 1),
                jobs::run_after.eq(t),
                jobs::lease_owner.eq(None::<String>),
                jobs::lease_expires_at.eq(None::<NaiveDateTime>),
                jobs::updated_at.eq(t),
            ))
            .execute(conn)
            .await?;
        Ok(n > 0)
    })
}

pub async fn get(db: &Db, id: &str) -> DbResult<Option<Job>> {
    db_run!(db, conn => {
        Ok(jobs::table
            .find(id)
            .select(Job::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// Jobs newest first, `limit` after `after`.
pub async fn list(
    db: &Db,
    filter: &JobFilter,
    after: Option<Cursor>,
    limit: i64,
) -> DbResult<Vec<Job>> {
    db_run!(db, conn => {
        let mut q = jobs::table.select(Job::as_select()).into_boxed();
        if let Some(state) = filter.state {
            q = q.filter(jobs::state.eq(state));
        }
        if let Some(kind) = &filter.kind {
            q = q.filter(jobs::kind.eq(kind.clone()));
        }
        if let Some(collection_id) = &filter.collection_id {
            q = q.filter(jobs::collection_id.eq(collection_id.clone()));
        }
        if let Some((ts, id)) = &after {
            q = q.filter(
                jobs::created_at
                    .lt(*ts)
                    .or(jobs::created_at.eq(*ts).and(jobs::id.lt(id.clone()))),
            );
        }
        Ok(q.order((jobs::created_at.desc(), jobs::id.desc()))
            .limit(limit)
            .load(conn)
            .await?)
    })
}

/// How many jobs are in each state; every state is listed, in
/// `JobState::ALL` order, zeros included (what gauges want).
pub async fn count_by_state(db: &Db) -> DbResult<Vec<(JobState, i64)>> {
    let rows: Vec<(JobState, i64)> = db_run!(db, conn => {
        Ok::<_, DbError>(jobs::table
            .group_by(jobs::state)
            .select((jobs::state, diesel::dsl::count_star()))
            .load(conn)
            .await?)
    })?;
    Ok(JobState::ALL
        .into_iter()
        .map(|state| {
            let n = rows
                .iter()
                .find(|(s, _)| *s == state)
                .map_or(0, |(_, n)| *n);
            (state, n)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::db::repo;
    use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
    use serde_json::json;
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// The variable naming a PostgreSQL admin URL (as for the black-box
    /// suite); when set, every test also runs on a fresh database there.
    const PG_ENV: &str = "RAGCHAT_TEST_POSTGRES";

    /// A migrated database for one test, removed when dropped.
    struct TestDb {
        db: Db,
        _home: Home,
    }

    enum Home {
        Sqlite(#[allow(dead_code)] tempfile::TempDir),
        Postgres(#[allow(dead_code)] PgDatabase),
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

    async fn sqlite_db() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            data_dir: dir.path().to_path_buf(),
            ..Settings::default()
        };
        TestDb {
            db: Db::connect(&settings).await.unwrap(),
            _home: Home::Sqlite(dir),
        }
    }

    async fn postgres_db(admin: &str) -> TestDb {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "ragchat_unit_{}_{}_{:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let mut attempt = 0;
        loop {
            let mut conn = AsyncPgConnection::establish(admin)
                .await
                .unwrap_or_else(|e| panic!("{PG_ENV}={admin}: {e}"));
            match conn
                .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                .await
            {
                Ok(()) => break,
                // CREATE DATABASE copies template1 and refuses while another
                // session (a concurrent create) is connected to it.
                Err(e)
                    if attempt < 20 && e.to_string().contains("being accessed by other users") =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot create {name}: {e}"),
            }
        }
        let home = PgDatabase {
            admin: admin.to_string(),
            name: name.clone(),
        };
        let mut url = url::Url::parse(admin).unwrap();
        url.set_path(&format!("/{name}"));
        let mut settings = Settings::default();
        settings.database.url = url.to_string();
        TestDb {
            db: Db::connect(&settings).await.unwrap(),
            _home: Home::Postgres(home),
        }
    }

    /// SQLite always; PostgreSQL too when `RAGCHAT_TEST_POSTGRES` is set.
    async fn backends() -> Vec<TestDb> {
        let mut out = vec![sqlite_db().await];
        if let Some(admin) = std::env::var(PG_ENV).ok().filter(|u| !u.trim().is_empty()) {
            out.push(postgres_db(&admin).await);
        }
        out
    }

    const MINUTE: Duration = Duration::from_secs(60);

    fn no_jitter(base: u64, max: u64) -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_secs(base),
            max: Duration::from_secs(max),
            jitter: false,
        }
    }

    fn job(kind: &str) -> NewJob {
        NewJob::new(kind, json!({ "n": 1 }))
    }

    fn secs(n: i64) -> TimeDelta {
        TimeDelta::seconds(n)
    }

    async fn must_get(db: &Db, id: &str) -> Job {
        get(db, id).await.unwrap().expect("job exists")
    }

    /// Time travel for tests: make a job runnable (or not) without sleeping.
    async fn set_run_after(db: &Db, id: &str, t: NaiveDateTime) -> DbResult<()> {
        db_run!(db, conn => {
            diesel::update(jobs::table.find(id))
                .set(jobs::run_after.eq(t))
                .execute(conn)
                .await?;
            Ok(())
        })
    }

    async fn expire_lease(db: &Db, id: &str) -> DbResult<()> {
        db_run!(db, conn => {
            diesel::update(jobs::table.find(id))
                .set(jobs::lease_expires_at.eq(Some(now() - secs(1))))
                .execute(conn)
                .await?;
            Ok(())
        })
    }

    #[tokio::test]
    async fn enqueue_get_list_paging_filters_and_counts() {
        for t in backends().await {
            let db = &t.db;
            eprintln!("backend: {}", db.backend());
            let docs = repo::ensure_collection(db, "docs").await.unwrap();
            let mut made = Vec::new();
            for i in 0..5 {
                let mut new = job(if i % 2 == 0 { "crawl" } else { "ingest_upload" });
                if i < 3 {
                    new.collection_id = Some(docs.id.clone());
                }
                new.payload = json!({ "i": i });
                made.push(enqueue(db, new).await.unwrap());
            }
            let first = &made[0];
            assert_eq!(first.state, JobState::Queued);
            assert_eq!(first.attempts, 0);
            assert_eq!(first.max_attempts, DEFAULT_MAX_ATTEMPTS);
            assert_eq!(first.payload, r#"{"i":0}"#);
            assert_eq!(first.progress, "{}");
            assert_eq!(first.run_after, first.created_at);
            // Every column round-trips, timestamps included.
            for j in &made {
                assert_eq!(&must_get(db, &j.id).await, j);
            }
            assert!(get(db, "missing").await.unwrap().is_none());

            let mut expected = made.clone();
            expected.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
            let expected: Vec<_> = expected.into_iter().map(|j| j.id).collect();
            let mut seen = Vec::new();
            let mut cursor = None;
            loop {
                let page = list(db, &JobFilter::default(), cursor.clone(), 2)
                    .await
                    .unwrap();
                seen.extend(page.iter().map(|j| j.id.clone()));
                match page.last() {
                    Some(last) if page.len() == 2 => {
                        cursor = Some((last.created_at, last.id.clone()))
                    }
                    _ => break,
                }
            }
            assert_eq!(seen, expected);

            let crawls = JobFilter {
                kind: Some("crawl".into()),
                ..JobFilter::default()
            };
            let ids: HashSet<_> = list(db, &crawls, None, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|j| j.id)
                .collect();
            let want: HashSet<_> = [0, 2, 4].iter().map(|&i| made[i].id.clone()).collect();
            assert_eq!(ids, want);

            let in_docs = JobFilter {
                collection_id: Some(docs.id.clone()),
                ..JobFilter::default()
            };
            assert_eq!(list(db, &in_docs, None, 10).await.unwrap().len(), 3);
            let crawls_in_docs = JobFilter {
                kind: Some("crawl".into()),
                ..in_docs.clone()
            };
            assert_eq!(list(db, &crawls_in_docs, None, 10).await.unwrap().len(), 2);

            let taken = claim(db, "w1", MINUTE, None).await.unwrap().unwrap();
            let running = JobFilter {
                state: Some(JobState::Running),
                ..JobFilter::default()
            };
            let listed = list(db, &running, None, 10).await.unwrap();
            assert_eq!(listed, vec![taken]);

            let counts = count_by_state(db).await.unwrap();
            assert_eq!(
                counts,
                vec![
                    (JobState::Queued, 4),
                    (JobState::Running, 1),
                    (JobState::Succeeded, 0),
                    (JobState::Failed, 0),
                    (JobState::Cancelled, 0),
                    (JobState::Dead, 0),
                ]
            );
        }
    }

    #[tokio::test]
    async fn claim_takes_the_longest_waiting_runnable_job_of_the_given_kinds() {
        for t in backends().await {
            let db = &t.db;
            eprintln!("backend: {}", db.backend());
            let start = now();
            let at = |offset: i64| {
                let mut new = job("crawl");
                new.run_after = Some(start + secs(offset));
                new
            };
            // Enqueued out of order: claim order follows run_after.
            let b = enqueue(db, at(-1)).await.unwrap();
            let a = enqueue(db, at(-2)).await.unwrap();
            let future = enqueue(db, at(3600)).await.unwrap();
            let mut other = job("optimize_index");
            other.run_after = Some(start - secs(3));
            let other = enqueue(db, other).await.unwrap();

            let crawl = Some(&["crawl"][..]);
            let before = now();
            let got = claim(db, "w1", MINUTE, crawl).await.unwrap().unwrap();
            assert_eq!(got.id, a.id);
            assert_eq!(got.state, JobState::Running);
            assert_eq!(got.lease_owner.as_deref(), Some("w1"));
            assert_eq!(got.attempts, 1);
            let started = got.started_at.unwrap();
            assert!(started >= before && started <= now());
            assert_eq!(got.lease_expires_at, Some(started + secs(60)));
            assert_eq!(got, must_get(db, &a.id).await);

            assert_eq!(
                claim(db, "w1", MINUTE, crawl).await.unwrap().unwrap().id,
                b.id
            );
            // Only the future crawl is left: not runnable yet.
            assert!(claim(db, "w1", MINUTE, crawl).await.unwrap().is_none());
            let both = Some(&["crawl", "ingest_upload"][..]);
            assert!(claim(db, "w1", MINUTE, both).await.unwrap().is_none());
            assert!(claim(db, "w1", MINUTE, Some(&[][..]))
                .await
                .unwrap()
                .is_none());
            assert_eq!(
                claim(db, "w1", MINUTE, None).await.unwrap().unwrap().id,
                other.id
            );
            assert!(claim(db, "w1", MINUTE, None).await.unwrap().is_none());
            assert_eq!(must_get(db, &future.id).await.state, JobState::Queued);

            set_run_after(db, &future.id, now() - secs(1))
                .await
                .unwrap();
            assert_eq!(
                claim(db, "w1", MINUTE, crawl).await.unwrap().unwrap().id,
                future.id
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_claimers_take_disjoint_sets_covering_every_job() {
        const JOBS: usize = 40;
        const CLAIMERS: usize = 4;
        for t in backends().await {
            let db = &t.db;
            eprintln!("backend: {}", db.backend());
            let mut all = HashSet::new();
            for _ in 0..JOBS {
                all.insert(enqueue(db, job("crawl")).await.unwrap().id);
            }
            let mut tasks = Vec::new();
            for w in 0..CLAIMERS {
                let db = db.clone();
                tasks.push(tokio::spawn(async move {
                    let worker = format!("w{w}");
                    let mut got = Vec::new();
                    while let Some(j) = claim(&db, &worker, MINUTE, None).await.unwrap() {
                        assert_eq!(j.lease_owner.as_deref(), Some(worker.as_str()));
                        got.push(j.id);
                        tokio::task::yield_now().await;
                    }
                    (worker, got)
                }));
            }
            let mut taken = 0;
            let mut union = HashSet::new();
            for task in tasks {
                let (worker, got) = task.await.unwrap();
                eprintln!("{worker} claimed {}", got.len());
                taken += got.len();
                for id in got {
                    // Each claim stuck: the row still names its claimer, after one attempt.
                    let j = must_get(db, &id).await;
                    assert_eq!(j.lease_owner.as_deref(), Some(worker.as_str()));
                    assert_eq!(j.attempts, 1);
                    union.insert(id);
                }
            }
            assert_eq!(taken, JOBS, "a job was handed to two claimers");
            assert_eq!(union, all);
        }
    }

    #[tokio::test]
    async fn an_expired_lease_is_reclaimed_and_fences_the_old_worker() {
        for t in backends().await {
            let db = &t.db;
            eprintln!("backend: {}", db.backend());
            let j = enqueue(db, job("crawl")).await.unwrap();
            let a = claim(db, "a", Duration::from_secs(1), None)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(a.id, j.id);
            assert!(claim(db, "b", MINUTE, None).await.unwrap().is_none());
            assert!(
                report_progress(db, &j.id, "a", &json!({"documents_done": 1}))
                    .await
                    .unwrap()
            );
            assert!(!renew(db, &j.id, "b", MINUTE).await.unwrap());

            tokio::time::sleep(Duration::from_millis(1100)).await;
            let b = claim(db, "b", MINUTE, None).await.unwrap().unwrap();
            assert_eq!(b.id, j.id);
            assert_eq!(b.attempts, 2);
            assert_eq!(b.lease_owner.as_deref(), Some("b"));

            // The old worker can no longer write anything.
            assert!(!renew(db, &j.id, "a", MINUTE).await.unwrap());
            assert!(!report_progress(db, &j.id, "a", &json!({"x": 1}))
                .await
                .unwrap());
            assert!(!complete(db, &j.id, "a", &json!({"by": "a"})).await.unwrap());
            assert!(!finish_cancelled(db, &j.id, "a").await.unwrap());
            let policy = RetryPolicy::default();
            assert_eq!(
                fail(db, &j.id, "a", "x", false, &policy).await.unwrap(),
                None
            );
            assert_eq!(
                fail(db, &j.id, "a", "x", true, &policy).await.unwrap(),
                None
            );
            assert_eq!(must_get(db, &j.id).await, b);

            let before = must_get(db, &j.id).await.lease_expires_at.unwrap();
            assert!(renew(db, &j.id, "b", Duration::from_secs(600))
                .await
                .unwrap());
            let renewed = must_get(db, &j.id).await.lease_expires_at.unwrap();
            assert!(renewed > before + secs(500));
            let progress = json!({"documents_done": 2, "documents_total": 3});
            assert!(report_progress(db, &j.id, "b", &progress).await.unwrap());
            assert_eq!(must_get(db, &j.id).await.progress, progress.to_string());
            assert!(complete(db, &j.id, "b", &json!({"chunks": 7}))
                .await
                .unwrap());
            let done = must_get(db, &j.id).await;
            assert_eq!(done.state, JobState::Succeeded);
            assert_eq!(done.result.as_deref(), Some(r#"{"chunks":7}"#));
            assert!(done.finished_at.is_some());
            assert_eq!(done.lease_owner, None);
            assert_eq!(done.lease_expires_at, None);
            // Finished: not even the last owner can write any more.
            assert!(!complete(db, &j.id, "b", &json!({})).await.unwrap());
            assert!(!renew(db, &j.id, "b", MINUTE).await.unwrap());
            assert!(claim(db, "c", MINUTE, None).await.unwrap().is_none());
        }
    }

    #[tokio::test]
    async fn expired_jobs_out_of_attempts_die_and_pending_cancels_finish() {
        for t in backends().await {
            let db = &t.db;
            eprintln!("backend: {}", db.backend());
            let mut once = job("crawl");
            once.max_attempts = 1;
            let once = enqueue(db, once).await.unwrap();
            claim(db, "a", MINUTE, None).await.unwrap().unwrap();
            let cancelled = enqueue(db, job("crawl")).await.unwrap();
            claim(db, "a", MINUTE, None).await.unwrap().unwrap();
            request_cancel(db, &cancelled.id).await.unwrap().unwrap();

            expire_lease(db, &once.id).await.unwrap();
            expire_lease(db, &cancelled.id).await.unwrap();
            assert!(claim(db, "b", MINUTE, None).await.unwrap().is_none());
            let dead = must_get(db, &once.id).await;
            assert_eq!(dead.state, JobState::Dead);
            assert_eq!(dead.attempts, 1);
            assert_eq!(dead.last_error.as_deref(), Some(LEASE_EXPIRED_ERROR));
            assert!(dead.finished_at.is_some());
            assert_eq!(dead.lease_owner, None);
            let c = must_get(db, &cancelled.id).await;
            assert_eq!(c.state, JobState::Cancelled);
            assert!(c.finished_at.is_some());
            assert!(!complete(db, &once.id, "a", &json!({})).await.unwrap());
        }
    }

    #[tokio::test]
    async fn failures_retry_with_capped_exponential_backoff_then_die() {
        for t in backends().await {
            let db = &t.db;
            eprintln!("backend: {}", db.backend());
            let policy = no_jitter(60, 90);
            let j = enqueue(db, job("crawl")).await.unwrap();
            assert_eq!(j.max_attempts, 3);

            // Attempt 1 fails: retry after base (60 s).
            claim(db, "w", MINUTE, None).await.unwrap().unwrap();
            let before = now();
            let next = fail(db, &j.id, "w", "boom 1", false, &policy)
                .await
                .unwrap();
            assert_eq!(next, Some(JobState::Queued));
            let after = now();
            let q = must_get(db, &j.id).await;
            assert_eq!(q.state, JobState::Queued);
            assert_eq!(q.attempts, 1);
            assert_eq!(q.last_error.as_deref(), Some("boom 1"));
            assert_eq!((q.lease_owner.as_deref(), q.lease_expires_at), (None, None));
            assert_eq!(q.finished_at, None);
            assert!(q.run_after >= before + secs(60) && q.run_after <= after + secs(60));
            assert!(claim(db, "w", MINUTE, None).await.unwrap().is_none());

            // Attempt 2 fails: 120 s doubled, capped at 90 s.
            set_run_after(db, &j.id, now() - secs(1)).await.unwrap();
            let again = claim(db, "w", MINUTE, None).await.unwrap().unwrap();
            assert_eq!(again.attempts, 2);
            let before = now();
            let next = fail(db, &j.id, "w", "boom 2", false, &policy)
                .await
                .unwrap();
            assert_eq!(next, Some(JobState::Queued));
            let q = must_get(db, &j.id).await;
            assert!(q.run_after >= before + secs(90) && q.run_after <= now() + secs(90));
            assert_eq!(q.last_error.as_deref(), Some("boom 2"));

            // Attempt 3 is the last one: dead, with its error.
            set_run_after(db, &j.id, now() - secs(1)).await.unwrap();
            assert_eq!(
                claim(db, "w", MINUTE, None)
                    .await
                    .unwrap()
                    .unwrap()
                    .attempts,
                3
            );
            let next = fail(db, &j.id, "w", "boom 3", false, &policy)
                .await
                .unwrap();
            assert_eq!(next, Some(JobState::Dead));
            let d = must_get(db, &j.id).await;
            assert_eq!(d.state, JobState::Dead);
            assert_eq!(d.last_error.as_deref(), Some("boom 3"));
            assert!(d.finished_at.is_some());
            set_run_after(db, &j.id, now() - secs(1)).await.unwrap();
            assert!(claim(db, "w", MINUTE, None).await.unwrap().is_none());
        }
    }

    #[tokio::test]
    async fn permanent_failures_and_failures_under_cancel_do_not_retry() {
        for t in backends().await {
            let db = &t.db;
            eprintln!("backend: {}", db.backend());
            let policy = no_jitter(1, 1);
            let j = enqueue(db, job("ingest_upload")).await.unwrap();
            claim(db, "w", MINUTE, None).await.unwrap().unwrap();
            let next = fail(db, &j.id, "w", "unsupported file", true, &policy)
                .await
                .unwrap();
            assert_eq!(next, Some(JobState::Failed));
            let f = must_get(db, &j.id).await;
            assert_eq!(f.state, JobState::Failed);
            assert_eq!(f.attempts, 1);
            assert_eq!(f.last_error.as_deref(), Some("unsupported file"));
            assert!(f.finished_at.is_some());

            let j = enqueue(db, job("crawl")).await.unwrap();
            claim(db, "w", MINUTE, None).await.unwrap().unwrap();
            request_cancel(db, &j.id).await.unwrap().unwrap();
            let next = fail(db, &j.id, "w", "interrupted", false, &policy)
                .await
                .unwrap();
            assert_eq!(next, Some(JobState::Cancelled));
            assert_eq!(must_get(db, &j.id).await.state, JobState::Cancelled);

            // Long errors are cut at a character boundary.
            let j = enqueue(db, job("crawl")).await.unwrap();
            claim(db, "w", MINUTE, None).await.unwrap().unwrap();
            let long = "é".repeat(MAX_ERROR_BYTES);
            fail(db, &j.id, "w", &long, true, &policy).await.unwrap();
            let kept = must_get(db, &j.id).await.last_error.unwrap();
            assert!(kept.len() <= MAX_ERROR_BYTES + '…'.len_utf8());
            assert!(kept.starts_with("éé") && kept.ends_with('…'));
        }
    }

    #[tokio::test]
    async fn cancelling_queued_running_finished_and_missing_jobs() {
        for t in backends().await {
            let db = &t.db;
            eprintln!("backend: {}", db.backend());
            let queued = enqueue(db, job("crawl")).await.unwrap();
            assert!(!is_cancel_requested(db, &queued.id).await.unwrap());
            let c = request_cancel(db, &queued.id).await.unwrap().unwrap();
            assert_eq!(c.state, JobState::Cancelled);
            assert!(c.finished_at.is_some());
            assert!(claim(db, "w", MINUTE, None).await.unwrap().is_none());

            let running = enqueue(db, job("crawl")).await.unwrap();
            claim(db, "w", MINUTE, None).await.unwrap().unwrap();
            let r = request_cancel(db, &running.id).await.unwrap().unwrap();
            assert_eq!(r.state, JobState::Running);
            assert!(r.cancel_requested);
            assert!(is_cancel_requested(db, &running.id).await.unwrap());
            // Cancelling is not losing the lease: the worker keeps writing.
            assert!(renew(db, &running.id, "w", MINUTE).await.unwrap());
            assert!(!finish_cancelled(db, &running.id, "other").await.unwrap());
            assert!(finish_cancelled(db, &running.id, "w").await.unwrap());
            let done = must_get(db, &running.id).await;
            assert_eq!(done.state, JobState::Cancelled);
            assert!(done.finished_at.is_some());
            assert_eq!(done.lease_owner, None);

            // Finished jobs stay exactly as they are.
            let finished = enqueue(db, job("crawl")).await.unwrap();
            claim(db, "w", MINUTE, None).await.unwrap().unwrap();
            complete(db, &finished.id, "w", &json!({})).await.unwrap();
            let before = must_get(db, &finished.id).await;
            let after = request_cancel(db, &finished.id).await.unwrap().unwrap();
            assert_eq!(after, before);
            assert_eq!(after.state, JobState::Succeeded);
            assert_eq!(must_get(db, &finished.id).await, before);

            assert!(request_cancel(db, "missing").await.unwrap().is_none());
            assert!(!is_cancel_requested(db, "missing").await.unwrap());
        }
    }

    #[tokio::test]
    async fn a_dedupe_key_allows_one_live_job() {
        for t in backends().await {
            let db = &t.db;
            eprintln!("backend: {}", db.backend());
            let keyed = || {
                let mut new = job("optimize_index");
                new.dedupe_key = Some("optimize:docs".into());
                new
            };
            let first = enqueue(db, keyed()).await.unwrap();
            assert_eq!(enqueue(db, keyed()).await.unwrap(), first);
            let running = claim(db, "w", MINUTE, None).await.unwrap().unwrap();
            assert_eq!(enqueue(db, keyed()).await.unwrap(), running);
            assert_eq!(
                list(db, &JobFilter::default(), None, 10)
                    .await
                    .unwrap()
                    .len(),
                1
            );

            // Finished jobs free the key.
            complete(db, &first.id, "w", &json!({})).await.unwrap();
            let second = enqueue(db, keyed()).await.unwrap();
            assert_ne!(second.id, first.id);
            assert_eq!(second.state, JobState::Queued);

            // Concurrent enqueuers agree on one job.
            request_cancel(db, &second.id).await.unwrap();
            let racers = (0..4).map(|_| enqueue(db, keyed()));
            let ids: HashSet<_> = futures::future::join_all(racers)
                .await
                .into_iter()
                .map(|r| r.unwrap().id)
                .collect();
            assert_eq!(ids.len(), 1);

            // Jobs without a key never collide.
            let a = enqueue(db, job("crawl")).await.unwrap();
            let b = enqueue(db, job("crawl")).await.unwrap();
            assert_ne!(a.id, b.id);
        }
    }

    #[tokio::test]
    async fn deleting_a_collection_removes_its_jobs() {
        for t in backends().await {
            let db = &t.db;
            eprintln!("backend: {}", db.backend());
            let docs = repo::ensure_collection(db, "docs").await.unwrap();
            let mut new = job("crawl");
            new.collection_id = Some(docs.id.clone());
            let running = enqueue(db, new.clone()).await.unwrap();
            claim(db, "w", MINUTE, None).await.unwrap().unwrap();
            let queued = enqueue(db, new).await.unwrap();
            let unrelated = enqueue(db, job("optimize_index")).await.unwrap();

            repo::delete_collection(db, &docs.id).await.unwrap();
            assert!(get(db, &running.id).await.unwrap().is_none());
            assert!(get(db, &queued.id).await.unwrap().is_none());
            assert!(!renew(db, &running.id, "w", MINUTE).await.unwrap());
            assert!(get(db, &unrelated.id).await.unwrap().is_some());
            assert_eq!(
                claim(db, "w", MINUTE, None).await.unwrap().unwrap().id,
                unrelated.id
            );
        }
    }

    #[test]
    fn backoff_doubles_caps_and_jitters_within_half() {
        let p = no_jitter(1, 10);
        let waits: Vec<u64> = (1..=6).map(|a| p.backoff(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        assert_eq!(p.backoff(0), Duration::from_secs(1));
        assert_eq!(p.backoff(i32::MAX), Duration::from_secs(10));
        let huge = RetryPolicy {
            max: Duration::MAX,
            ..p
        };
        assert_eq!(huge.backoff(i32::MAX), Duration::from_secs(1 << 31));

        let jittered = RetryPolicy { jitter: true, ..p };
        let waits: Vec<Duration> = (0..200).map(|_| jittered.backoff(4)).collect();
        assert!(waits
            .iter()
            .all(|w| *w >= Duration::from_secs(4) && *w <= Duration::from_secs(8)));
        assert!(waits.iter().collect::<HashSet<_>>().len() > 1);
    }

    #[test]
    fn state_names_round_trip() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>().unwrap(), state);
            assert_eq!(serde_json::to_value(state).unwrap(), json!(state.as_str()));
        }
        assert!("paused".parse::<JobState>().is_err());
        let live: Vec<_> = JobState::ALL
            .into_iter()
            .filter(|s| !s.is_finished())
            .collect();
        assert_eq!(live, LIVE);
    }
}
