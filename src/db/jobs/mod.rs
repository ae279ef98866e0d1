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

mod lease;
#[cfg(test)]
mod tests;

use std::time::Duration;

use chrono::{NaiveDateTime, SubsecRound, TimeDelta};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::schema::jobs;
pub use super::Cursor;
use super::{is_unique_violation, now, Db, DbError, DbResult};
use crate::db_run;
use crate::ids::{CollectionId, JobId, UserId};
pub use lease::{claim, complete, fail, finish_cancelled, release, renew, report_progress};

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
    pub collection_id: Option<CollectionId>,
    /// None for jobs the service schedules itself.
    pub created_by: Option<UserId>,
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
    pub collection_id: Option<CollectionId>,
}

crate::text_enum! {
    /// Where a job is in its life. Stored as its lower-case name (a `Text`
    /// column on both backends, guarded by a CHECK constraint).
    #[derive(
        Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
    )]
    #[serde(rename_all = "snake_case")]
    pub enum JobState ("job state") {
        Queued = "queued",
        Running = "running",
        Succeeded = "succeeded",
        /// Failed permanently (an error retrying cannot fix).
        Failed = "failed",
        Cancelled = "cancelled",
        /// Out of attempts.
        Dead = "dead",
    }
}

impl JobState {
    /// Finished jobs never change state again.
    pub fn is_finished(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

/// A stored job state no variant has.
pub type UnknownJobState = super::text_enum::UnknownName;

/// A unit of background work. JSON columns (`payload`, `result`, `progress`)
/// are text, as elsewhere in the schema.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq)]
#[diesel(table_name = super::schema::jobs)]
pub struct Job {
    pub id: JobId,
    /// What to do (`ingest_upload`, `crawl`, `optimize_index`, …).
    pub kind: String,
    pub collection_id: Option<CollectionId>,
    /// None for jobs the service schedules itself.
    pub created_by: Option<UserId>,
    pub state: JobState,
    pub payload: String,
    pub result: Option<String>,
    /// Written by the worker while it runs.
    pub progress: String,
    /// Attempts started so far, counting the running one.
    pub attempts: i32,
    pub max_attempts: i32,
    /// Not claimable before this (scheduling and retry backoff).
    pub run_after: NaiveDateTime,
    /// The worker holding the lease; set only while running.
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<NaiveDateTime>,
    pub last_error: Option<String>,
    pub cancel_requested: bool,
    pub dedupe_key: Option<String>,
    pub created_at: NaiveDateTime,
    /// Start of the latest attempt.
    pub started_at: Option<NaiveDateTime>,
    pub finished_at: Option<NaiveDateTime>,
    pub updated_at: NaiveDateTime,
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

/// Add a job. With a dedupe key that a live (queued or running) job already
/// has, nothing is added and that job is returned.
pub async fn enqueue(db: &Db, new: NewJob) -> DbResult<Job> {
    let t = now();
    let job = Job {
        id: JobId::random(),
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
