//! A node's lexical index following the database's chunk change log
//! (`db::lexical_log`). This is the only writer of the index: a lone process
//! and one of many API nodes apply changes the same way.
//!
//! - **In order, from the mark.** The index's commit carries the last log
//!   position applied ([`LogMark`]). `catch_up` reads the entries after it,
//!   page by page, applies each page (for each chunk its last operation:
//!   upsert = delete + add by chunk id, with the text read from the chunks
//!   table; delete = delete by id) and commits it with the page's last
//!   position. A crash before that commit re-applies the page, which changes
//!   nothing twice.
//! - **Rebuild when the log cannot help.** No mark (a new node or an index
//!   from before the log), another database's log, a mark past the head
//!   (the database went back), or the entry after the mark pruned: the index
//!   is rebuilt from the chunks table. The head is read before the chunks,
//!   so entries written meanwhile are applied again afterwards.
//! - **Never waits on others.** Searches read the last commit; a catch-up
//!   needs only the database. Writers in this process call `catch_up` after
//!   their transaction commits, so their change is searchable when they
//!   report it done; `serve` also polls (`lexical.poll_interval_ms`) for
//!   changes other processes wrote, and prunes old entries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{blocking, LexicalDoc, LexicalIndex, LogMark};
use crate::config::LexicalSettings;
use crate::db::documents;
use crate::db::lexical_log::{self, LogEntry, LogHead, LogOp};
use crate::db::{Db, DbError};
use crate::ids::ChunkId;
use crate::index::IndexError;
use crate::metrics::LexicalMetrics;

/// Log entries read and applied per index commit.
const PAGE: i64 = 4096;
/// Chunks read per query while rebuilding.
const REBUILD_PAGE: i64 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The log lost entries again right after a rebuild: it is pruned faster
    /// than this node can read it.
    #[error("lexical log: entries after position {0} were pruned while catching up; lower the pruning (lexical.log_retention_*)")]
    Outrun(i64),
}

/// What one `catch_up` did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CatchUp {
    /// Log entries applied.
    pub applied: usize,
    /// Chunks indexed by a rebuild, if there was one.
    pub rebuilt: Option<usize>,
    /// The position the index now stands at.
    pub position: i64,
}

/// How far behind the log the index is, as of the call.
#[derive(Debug, Clone, PartialEq)]
pub struct Lag {
    pub position: i64,
    pub head: i64,
    pub behind: i64,
    /// Age of the oldest change not applied (0 when none is); `None` when
    /// that change has been pruned (the next catch-up rebuilds).
    pub seconds: Option<f64>,
}

pub struct LexicalFollower {
    db: Db,
    index: Arc<LexicalIndex>,
    metrics: LexicalMetrics,
    /// One catch-up at a time, and nothing commits in the middle of one.
    gate: tokio::sync::Mutex<()>,
    /// Why the last catch-up failed, until one succeeds.
    last_error: Mutex<Option<String>>,
}

impl LexicalFollower {
    pub fn new(db: Db, index: Arc<LexicalIndex>, metrics: LexicalMetrics) -> Self {
        if let Some(m) = index.mark() {
            metrics.position.set(m.position);
        }
        Self {
            db,
            index,
            metrics,
            gate: tokio::sync::Mutex::new(()),
            last_error: Mutex::new(None),
        }
    }

    /// The last change-log position searches of this index see (0 before
    /// any): changes up to here are in every search that starts now.
    pub fn applied_position(&self) -> i64 {
        self.index.mark().map_or(0, |m| m.position)
    }

    /// The index this follower writes (searches read it directly).
    pub fn index(&self) -> &Arc<LexicalIndex> {
        &self.index
    }

    /// Apply every change committed before this call (and any committed
    /// while it runs), rebuilding first if the log cannot bring the index
    /// up to date.
    pub async fn catch_up(&self) -> Result<CatchUp, FollowError> {
        let _gate = self.gate.lock().await;
        let result = self.catch_up_locked().await;
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        match &result {
            Ok(_) => *last = None,
            Err(e) => {
                self.metrics.errors.inc();
                *last = Some(e.to_string());
            }
        }
        result
    }

    async fn catch_up_locked(&self) -> Result<CatchUp, FollowError> {
        let head = lexical_log::head(&self.db).await?;
        let mut out = CatchUp::default();
        let mut at = match self.index.mark() {
            Some(m) if m.log_id == head.log_id && m.position <= head.pos => m.position,
            _ => {
                let (n, at) = self.rebuild_locked().await?;
                out.rebuilt = Some(n);
                at
            }
        };
        loop {
            let page = lexical_log::after(&self.db, at, PAGE).await?;
            // Positions are gapless (see `db::lexical_log`): a hole after the
            // mark, or nothing where the head says there is something, means
            // those entries were pruned.
            let pruned = match page.first() {
                Some(first) => first.pos != at + 1,
                None => at < head.pos,
            };
            if pruned {
                if out.rebuilt.is_some() {
                    return Err(FollowError::Outrun(at));
                }
                let (n, new_at) = self.rebuild_locked().await?;
                out.rebuilt = Some(n);
                at = new_at;
                continue;
            }
            let Some(last) = page.last() else { break };
            let mark = LogMark {
                log_id: head.log_id.clone(),
                position: last.pos,
            };
            self.apply(&page, mark).await?;
            at = last.pos;
            out.applied += page.len();
            self.metrics.applied.inc_by(page.len() as u64);
            self.metrics.position.set(at);
        }
        out.position = at;
        self.metrics.position.set(at);
        Ok(out)
    }

    /// Apply one page of entries and commit it with `mark`.
    async fn apply(&self, page: &[LogEntry], mark: LogMark) -> Result<(), FollowError> {
        // Only a chunk's last operation in the page matters.
        let mut last: HashMap<&ChunkId, LogOp> = HashMap::new();
        for e in page {
            last.insert(&e.chunk_id, e.op);
        }
        let upserts: Vec<ChunkId> = last
            .iter()
            .filter(|(_, op)| **op == LogOp::Upsert)
            .map(|(id, _)| (*id).clone())
            .collect();
        // The chunk as it is now; one deleted since is dropped here and its
        // own delete entry follows.
        let docs: Vec<LexicalDoc> = documents::chunks_by_ids(&self.db, &upserts)
            .await?
            .into_iter()
            .map(to_doc)
            .collect();
        let deletes: Vec<ChunkId> = last.into_keys().cloned().collect();
        blocking(&self.index, move |l| {
            let applied = l
                .delete(&deletes)
                .and_then(|()| l.upsert(&docs))
                .and_then(|()| l.commit_at(mark));
            if applied.is_err() {
                // Never leave half a page for a later commit to publish.
                let _ = l.rollback();
            }
            applied
        })
        .await?;
        Ok(())
    }

    /// Rebuild the index from the chunks table, whatever its mark.
    pub async fn rebuild(&self) -> Result<usize, FollowError> {
        let _gate = self.gate.lock().await;
        let (n, _) = self.rebuild_locked().await?;
        Ok(n)
    }

    /// Returns the chunks indexed and the position the index now stands at.
    async fn rebuild_locked(&self) -> Result<(usize, i64), FollowError> {
        // The head first: what changes while the chunks are read is applied
        // again from the log afterwards.
        let head: LogHead = lexical_log::head(&self.db).await?;
        let started = Instant::now();
        let result = self.refill(&head).await;
        if result.is_err() {
            let _ = blocking(&self.index, |l| l.rollback()).await;
        }
        let n = result?;
        self.metrics.rebuilds.inc();
        self.metrics.position.set(head.pos);
        tracing::info!(
            chunks = n,
            position = head.pos,
            seconds = started.elapsed().as_secs_f64(),
            "lexical index rebuilt from the database"
        );
        Ok((n, head.pos))
    }

    async fn refill(&self, head: &LogHead) -> Result<usize, FollowError> {
        blocking(&self.index, |l| l.clear()).await?;
        let mut after: Option<ChunkId> = None;
        let mut total = 0usize;
        loop {
            let page = documents::chunks_page(&self.db, after.as_deref(), REBUILD_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.chunk.id.clone());
            total += page.len();
            let docs: Vec<LexicalDoc> = page.into_iter().map(to_doc).collect();
            blocking(&self.index, move |l| l.upsert(&docs)).await?;
        }
        let mark = LogMark {
            log_id: head.log_id.clone(),
            position: head.pos,
        };
        blocking(&self.index, move |l| l.commit_at(mark)).await?;
        Ok(total)
    }

    /// Commit whatever is pending, keeping the mark (at shutdown).
    pub async fn flush(&self) -> Result<(), FollowError> {
        let _gate = self.gate.lock().await;
        blocking(&self.index, |l| l.commit()).await?;
        Ok(())
    }

    /// How far behind the log the index is now. Reads the database; never
    /// waits for a catch-up in progress.
    pub async fn lag(&self) -> Result<Lag, FollowError> {
        let head = lexical_log::head(&self.db).await?;
        let position = self
            .index
            .mark()
            .filter(|m| m.log_id == head.log_id)
            .map_or(0, |m| m.position);
        let behind = head.pos.saturating_sub(position).max(0);
        let seconds = if behind == 0 {
            Some(0.0)
        } else {
            lexical_log::written_at(&self.db, position + 1)
                .await?
                .map(|t| {
                    (crate::db::now() - t)
                        .to_std()
                        .unwrap_or_default()
                        .as_secs_f64()
                })
        };
        Ok(Lag {
            position,
            head: head.pos,
            behind,
            seconds,
        })
    }

    /// Why the last catch-up failed, if it did (and none has succeeded since).
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Delete log entries past both retention bounds.
    pub async fn prune(&self, settings: &LexicalSettings) -> Result<usize, FollowError> {
        let keep = i64::try_from(settings.log_retention_positions).unwrap_or(i64::MAX);
        let age = chrono::TimeDelta::try_seconds(
            i64::try_from(settings.log_retention_secs).unwrap_or(i64::MAX),
        )
        .unwrap_or(chrono::TimeDelta::MAX);
        let before = crate::db::now()
            .checked_sub_signed(age)
            .unwrap_or(chrono::NaiveDateTime::MIN);
        Ok(lexical_log::prune(&self.db, keep, before).await?)
    }

    /// Follow the log until `shutdown`: catch up every poll interval, prune
    /// every prune interval. Failures are logged and retried at the next poll.
    pub async fn run(
        self: Arc<Self>,
        settings: LexicalSettings,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let poll = Duration::from_millis(settings.poll_interval_ms.max(1));
        let prune_every = Duration::from_secs(settings.prune_interval_secs);
        let mut last_prune = Instant::now();
        loop {
            if let Err(e) = self.catch_up().await {
                tracing::warn!("lexical index: catching up with the change log: {e}");
            }
            if !prune_every.is_zero() && last_prune.elapsed() >= prune_every {
                last_prune = Instant::now();
                match self.prune(&settings).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(entries = n, "lexical log pruned"),
                    Err(e) => tracing::warn!("lexical log: pruning: {e}"),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                changed = shutdown.changed() => {
                    // A dropped sender means nobody can stop us cleanly: stop.
                    if changed.is_err() {
                        break;
                    }
                }
            }
            if *shutdown.borrow() {
                break;
            }
        }
    }
}

fn to_doc(c: documents::ChunkWithTitle) -> LexicalDoc {
    LexicalDoc {
        chunk_id: c.chunk.id,
        document_id: c.chunk.document_id,
        collection_id: c.chunk.collection_id,
        title: c.title,
        text: c.chunk.text,
    }
}

#[cfg(test)]
mod tests;
