//! The worker's side of the queue: claiming a job under a lease, and every
//! write a worker makes while it holds one (see the module above for the
//! fencing rules).

use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::Bool;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::{bounded_error, later, Job, JobState, RetryPolicy, LEASE_EXPIRED_ERROR};
use crate::db::schema::jobs;
use crate::db::{connection_err, now, Db, DbError, DbResult};
use crate::db_run;

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

/// Finish the job as succeeded with `result`, which is also its last
/// progress (a finished job's progress says `done`, not the last step it
/// reported). False when the lease is lost (the result is then not recorded).
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
                jobs::progress.eq(result.as_str()),
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
