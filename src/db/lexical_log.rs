//! The chunk change log that each node's lexical index follows.
//!
//! Every transaction that inserts or deletes chunk rows also appends one row
//! per chunk here (`upsert` or `delete`), so the log can never disagree with
//! the chunks. A follower (`index::lexical::follow`) applies rows in position
//! order from the last one it applied.
//!
//! Positions must be in commit order: a follower that has read position `p`
//! must never later find a committed row below `p`, or it would skip it
//! forever. A PostgreSQL sequence does not give that (a transaction holding
//! value 10 can commit after one holding 11), so positions are taken from the
//! one row of `lexical_log_head`, bumped by the writing transaction as its
//! last statement before the rows are inserted. On PostgreSQL that update
//! holds the row's lock until commit, so a second log writer waits for the
//! first to end and then reads the first's committed value (READ COMMITTED
//! re-reads a row it waited for): positions are handed out in commit order
//! and, since an aborted transaction also rolls back its bump, without gaps.
//! SQLite has one writer at a time anyway. Taking the head last keeps the
//! lock short and adds no lock cycle: a transaction holding it wants nothing
//! else.
//!
//! Gaplessness is what lets a follower tell "pruned" from "not there": if the
//! row after its position is missing while the head is ahead, it was pruned,
//! and the follower rebuilds from the chunks instead.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::schema::{lexical_log, lexical_log_head};
use super::{Db, DbError, DbResult};
use crate::db_run;
use crate::ids::ChunkId;

/// The key of the head table's only row.
pub const HEAD: i32 = 1;

crate::text_enum! {
    /// What happened to a chunk: written (new or replaced), or removed.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum LogOp ("log operation") {
        Upsert = "upsert",
        Delete = "delete",
    }
}

/// One change, as followers read it.
#[derive(Debug, Clone, Queryable, Selectable, PartialEq)]
#[diesel(table_name = lexical_log)]
pub struct LogEntry {
    pub pos: i64,
    pub chunk_id: ChunkId,
    pub op: LogOp,
    pub created_at: NaiveDateTime,
}

/// The log's identity and its last position (0 before any change).
#[derive(Debug, Clone, Queryable, Selectable, PartialEq, Eq)]
#[diesel(table_name = lexical_log_head)]
pub struct LogHead {
    pub log_id: String,
    pub pos: i64,
}

/// Append `$changes` (`&[(ChunkId, LogOp)]`) to the log inside the
/// transaction open on `$conn`. Call it after the transaction's other writes
/// (see the module notes on why the head is taken last). Expands per backend,
/// like `db_run!` bodies; `?` needs the enclosing closure to return
/// `Result<_, DbError>`.
macro_rules! append_in_tx {
    ($conn:ident, $changes:expr) => {{
        let changes: &[($crate::ids::ChunkId, $crate::db::lexical_log::LogOp)] = $changes;
        if !changes.is_empty() {
            use $crate::db::schema::{lexical_log, lexical_log_head};
            let n = i64::try_from(changes.len()).unwrap_or(i64::MAX);
            let end: i64 =
                diesel::update(lexical_log_head::table.find($crate::db::lexical_log::HEAD))
                    .set(lexical_log_head::pos.eq(lexical_log_head::pos + n))
                    .returning(lexical_log_head::pos)
                    .get_result($conn)
                    .await?;
            let at = $crate::db::now();
            let mut pos = end - n;
            // Row by row, like the chunks themselves (SQLite through
            // diesel-async has no multi-row INSERT).
            for (id, op) in changes {
                pos += 1;
                diesel::insert_into(lexical_log::table)
                    .values((
                        lexical_log::pos.eq(pos),
                        lexical_log::chunk_id.eq(id),
                        lexical_log::op.eq(*op),
                        lexical_log::created_at.eq(at),
                    ))
                    .execute($conn)
                    .await?;
            }
        }
    }};
}
pub(crate) use append_in_tx;

/// Append changes in a transaction of their own: for writers whose chunk
/// change is already committed, or that change no chunk (`check --repair`
/// asking every follower to write or drop a chunk again).
pub async fn append(db: &Db, changes: Vec<(ChunkId, LogOp)>) -> DbResult<()> {
    if changes.is_empty() {
        return Ok(());
    }
    db_run!(db, conn => {
        conn.transaction::<_, DbError, _>(async move |conn| {
            append_in_tx!(conn, &changes);
            Ok(())
        })
        .await
    })
}

pub async fn head(db: &Db) -> DbResult<LogHead> {
    db_run!(db, conn => {
        Ok(lexical_log_head::table
            .find(HEAD)
            .select(LogHead::as_select())
            .first(conn)
            .await?)
    })
}

/// Up to `limit` entries after position `after`, in position order.
pub async fn after(db: &Db, after: i64, limit: i64) -> DbResult<Vec<LogEntry>> {
    db_run!(db, conn => {
        Ok(lexical_log::table
            .filter(lexical_log::pos.gt(after))
            .order(lexical_log::pos.asc())
            .limit(limit)
            .select(LogEntry::as_select())
            .load(conn)
            .await?)
    })
}

/// When the entry at `pos` was written, if it is still kept.
pub async fn written_at(db: &Db, pos: i64) -> DbResult<Option<NaiveDateTime>> {
    db_run!(db, conn => {
        Ok(lexical_log::table
            .find(pos)
            .select(lexical_log::created_at)
            .first(conn)
            .await
            .optional()?)
    })
}

/// Delete the entries that are both more than `keep_positions` behind the
/// head and written before `before`. Returns how many went. A follower whose
/// position falls behind what is left rebuilds from the chunks.
pub async fn prune(db: &Db, keep_positions: i64, before: NaiveDateTime) -> DbResult<usize> {
    let head = head(db).await?;
    let upto = head.pos.saturating_sub(keep_positions);
    if upto <= 0 {
        return Ok(0);
    }
    db_run!(db, conn => {
        Ok(diesel::delete(
            lexical_log::table
                .filter(lexical_log::pos.le(upto))
                .filter(lexical_log::created_at.lt(before)),
        )
        .execute(conn)
        .await?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::backends;

    fn changes(n: usize, op: LogOp) -> Vec<(ChunkId, LogOp)> {
        (0..n).map(|_| (ChunkId::random(), op)).collect()
    }

    #[tokio::test]
    async fn appends_number_entries_from_the_head_and_prunes_by_age_and_distance() {
        for test_db in backends().await {
            let db = &test_db.db;
            let start = head(db).await.unwrap();
            assert_eq!(start.pos, 0);
            assert!(!start.log_id.is_empty());
            let first = changes(3, LogOp::Upsert);
            append(db, first.clone()).await.unwrap();
            append(db, Vec::new()).await.unwrap();
            append(db, changes(2, LogOp::Delete)).await.unwrap();
            let h = head(db).await.unwrap();
            assert_eq!((h.log_id.as_str(), h.pos), (start.log_id.as_str(), 5));

            let all = after(db, 0, 100).await.unwrap();
            let pos: Vec<i64> = all.iter().map(|e| e.pos).collect();
            assert_eq!(pos, [1, 2, 3, 4, 5]);
            assert_eq!(all[0].chunk_id, first[0].0);
            assert_eq!(all[4].op, LogOp::Delete);
            assert_eq!(after(db, 3, 1).await.unwrap()[0].pos, 4);
            assert!(written_at(db, 2).await.unwrap().is_some());

            let future = crate::db::now() + chrono::TimeDelta::seconds(60);
            let past = crate::db::now() - chrono::TimeDelta::seconds(60);
            // Too recent: kept whatever the distance.
            assert_eq!(prune(db, 0, past).await.unwrap(), 0);
            // Old enough, but only what is more than 2 behind the head goes.
            assert_eq!(prune(db, 2, future).await.unwrap(), 3);
            let left: Vec<i64> = after(db, 0, 100)
                .await
                .unwrap()
                .iter()
                .map(|e| e.pos)
                .collect();
            assert_eq!(left, [4, 5]);
            assert!(written_at(db, 2).await.unwrap().is_none());
            // Positions go on from the head, not from what is left.
            append(db, changes(1, LogOp::Upsert)).await.unwrap();
            assert_eq!(head(db).await.unwrap().pos, 6);
        }
    }

    /// Two writers on PostgreSQL: while the first holds its transaction
    /// open, the second must not commit positions a reader could see ahead
    /// of the first's (as it would with a sequence), and the first's
    /// positions must come before the second's.
    #[tokio::test]
    async fn positions_follow_commit_order_on_postgres() {
        let Some(admin) = crate::db::testing::postgres_admin_url() else {
            return;
        };
        let test_db = crate::db::testing::postgres(&admin).await;
        let Db::Postgres(pool) = &test_db.db else {
            panic!("not a PostgreSQL database");
        };
        let (a_in, a_wait) = tokio::sync::oneshot::channel::<()>();
        let (a_go, a_release) = tokio::sync::oneshot::channel::<()>();
        let mut conn_a = pool.dedicated_connection().await.unwrap();
        let mut conn_b = pool.dedicated_connection().await.unwrap();
        let a_changes = changes(2, LogOp::Upsert);
        let b_changes = changes(3, LogOp::Delete);

        let first = tokio::spawn(async move {
            conn_a
                .transaction::<_, DbError, _>(async move |conn| {
                    append_in_tx!(conn, &a_changes);
                    let _ = a_in.send(());
                    let _ = a_release.await;
                    Ok(())
                })
                .await
        });
        a_wait.await.unwrap();
        let second = tokio::spawn(async move {
            conn_b
                .transaction::<_, DbError, _>(async move |conn| {
                    append_in_tx!(conn, &b_changes);
                    Ok(())
                })
                .await
        });
        // Give the second writer every chance to get ahead of the first.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let seen = after(&test_db.db, 0, 100).await.unwrap();
        assert!(
            seen.is_empty(),
            "a later writer's rows became visible before the earlier one committed: {seen:?}"
        );
        assert!(!second.is_finished(), "the second writer did not wait");
        a_go.send(()).unwrap();
        first.await.unwrap().unwrap();
        second.await.unwrap().unwrap();

        let all = after(&test_db.db, 0, 100).await.unwrap();
        let pos: Vec<i64> = all.iter().map(|e| e.pos).collect();
        assert_eq!(pos, [1, 2, 3, 4, 5]);
        let ops: Vec<LogOp> = all.iter().map(|e| e.op).collect();
        assert_eq!(
            ops,
            [
                LogOp::Upsert,
                LogOp::Upsert,
                LogOp::Delete,
                LogOp::Delete,
                LogOp::Delete
            ]
        );
    }
}
