//! [`VectorIndex`] on an embedded qdrant-edge shard (one shard for all collections,
//! filtered by a `collection_id` payload field).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use qdrant_edge::{
    Condition, CountRequest, CreateIndex, Distance, EdgeConfig, EdgeShard, EdgeVectorParams,
    FieldCondition, FieldIndexOperations, Filter, JsonPath, Match, NamedQuery, Payload,
    PayloadFieldSchema, PayloadSchemaType, PointId, PointInsertOperations, PointOperations,
    PointStructPersisted, QueryEnum, QueryRequest, ScoredPoint, ScoringQuery, ScrollRequest,
    UpdateOperation, VectorInternal, VectorPersisted, VectorStructPersisted, WithPayloadInterface,
    WithVector,
};
use serde_json::Value;
use uuid::Uuid;

use crate::ids::{ChunkId, CollectionId};

use super::{Hit, IndexError, IndexResult, VectorIndex, VectorPoint};

/// Name of the single dense vector of every point.
pub const VECTOR_NAME: &str = "dense";
/// Payload field holding the chunk's collection UUID (string).
pub const COLLECTION_FIELD: &str = "collection_id";
/// Payload field holding the chunk's document UUID (string).
pub const DOCUMENT_FIELD: &str = "document_id";

/// Points per `update` call; also bounds the size of a single WAL record.
const UPSERT_BATCH: usize = 1000;
/// Ids per delete operation.
const DELETE_BATCH: usize = 1000;
/// Page size when scrolling ids.
const SCROLL_PAGE: usize = 1000;

/// Dense vector index stored in an embedded qdrant-edge shard.
///
/// Only one instance may have a given directory open at a time: the shard
/// holds an exclusive lock on its WAL directory until it is dropped.
#[derive(Debug)]
pub struct EdgeVectorIndex {
    shard: Arc<EdgeShard>,
    /// Serialises the mutating calls (update, optimize, flush). `EdgeShard::flush`
    /// takes the WAL lock with `try_lock` and the segment-holder lock with
    /// `try_read` and *panics* if either is taken, and `update`/`optimize` hold
    /// exactly those locks. Searches, counts and scrolls take neither, so they
    /// stay concurrent with everything.
    write_lock: Arc<Mutex<()>>,
    dim: usize,
    path: PathBuf,
}

impl EdgeVectorIndex {
    /// Opens the shard in `dir` (created if missing) for `dim`-dimensional
    /// cosine vectors. Fails if an existing shard was built for another dimension.
    pub fn open(dir: &Path, dim: usize) -> IndexResult<Self> {
        if dim == 0 {
            return Err(IndexError::Vector(
                "vector dimension must be greater than zero".to_owned(),
            ));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| IndexError::Vector(format!("cannot create {}: {e}", dir.display())))?;

        // `EdgeShard::new` persists the config before it creates any segment,
        // so a directory without a config file holds no shard data worth loading.
        let shard = match EdgeConfig::load(dir) {
            Some(Ok(config)) => {
                // Checked before loading so a dimension mismatch is reported as
                // such instead of as a generic segment-compatibility failure.
                check_config(&config, dim, dir)?;
                EdgeShard::load(dir, None).map_err(|e| {
                    IndexError::Vector(format!(
                        "cannot load vector index at {}: {e}",
                        dir.display()
                    ))
                })?
            }
            Some(Err(e)) => {
                return Err(IndexError::Vector(format!(
                    "cannot read vector index config in {}: {e}",
                    dir.display()
                )))
            }
            None => EdgeShard::new(dir, new_config(dim)).map_err(|e| {
                IndexError::Vector(format!(
                    "cannot create vector index at {}: {e}",
                    dir.display()
                ))
            })?,
        };

        // Issued on every open, not only on creation: edge 0.7.0 does not record
        // created indexes in the shard's payload-index schema, so an appendable
        // segment created later (e.g. after an optimization) starts without them.
        // Re-creating is a no-op for segments that already have the index.
        ensure_payload_indexes(&shard)?;

        Ok(Self {
            shard: Arc::new(shard),
            write_lock: Arc::new(Mutex::new(())),
            dim,
            path: dir.to_path_buf(),
        })
    }

    /// Dimension of the stored vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Directory of the shard.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs a read-only shard call on the blocking pool (qdrant-edge is synchronous).
    async fn run_read<T, F>(&self, f: F) -> IndexResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&EdgeShard) -> IndexResult<T> + Send + 'static,
    {
        let shard = Arc::clone(&self.shard);
        tokio::task::spawn_blocking(move || f(&shard))
            .await
            .map_err(|e| IndexError::Join(e.to_string()))?
    }

    /// Like [`Self::run_read`], but exclusive with the other mutating calls.
    async fn run_write<T, F>(&self, f: F) -> IndexResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&EdgeShard) -> IndexResult<T> + Send + 'static,
    {
        let shard = Arc::clone(&self.shard);
        let write_lock = Arc::clone(&self.write_lock);
        tokio::task::spawn_blocking(move || {
            // The mutex guards no data, so a poisoned lock (a panic inside a
            // previous call) leaves nothing inconsistent behind it.
            let _guard = write_lock.lock().unwrap_or_else(PoisonError::into_inner);
            f(&shard)
        })
        .await
        .map_err(|e| IndexError::Join(e.to_string()))?
    }

    fn check_dim(&self, len: usize, what: &str) -> IndexResult<()> {
        if len == self.dim {
            Ok(())
        } else {
            Err(IndexError::Vector(format!(
                "{what} has {len} dimensions, the index expects {}",
                self.dim
            )))
        }
    }
}

#[async_trait]
impl VectorIndex for EdgeVectorIndex {
    async fn upsert(&self, points: Vec<VectorPoint>) -> IndexResult<()> {
        if points.is_empty() {
            return Ok(());
        }
        if let Some(bad) = points.iter().find(|p| p.vector.len() != self.dim) {
            self.check_dim(
                bad.vector.len(),
                &format!("vector of chunk {}", bad.chunk_id),
            )?;
        }
        let points = points
            .into_iter()
            .map(to_point)
            .collect::<IndexResult<Vec<_>>>()?;
        self.run_write(move |shard| {
            let mut points = points.into_iter().peekable();
            while points.peek().is_some() {
                let batch: Vec<PointStructPersisted> = points.by_ref().take(UPSERT_BATCH).collect();
                shard
                    .update(UpdateOperation::PointOperation(
                        PointOperations::UpsertPoints(PointInsertOperations::PointsList(batch)),
                    ))
                    .map_err(vector_err)?;
            }
            Ok(())
        })
        .await
    }

    async fn delete(&self, chunk_ids: Vec<ChunkId>) -> IndexResult<()> {
        // An id that is not a UUID was never stored: nothing to delete.
        let chunk_ids: Vec<Uuid> = chunk_ids.iter().filter_map(ChunkId::to_uuid).collect();
        if chunk_ids.is_empty() {
            return Ok(());
        }
        self.run_write(move |shard| {
            for batch in chunk_ids.chunks(DELETE_BATCH) {
                let ids = batch.iter().copied().map(PointId::Uuid).collect();
                delete_points(shard, ids)?;
            }
            Ok(())
        })
        .await
    }

    async fn delete_collection(&self, collection_id: CollectionId) -> IndexResult<()> {
        let filter = collections_filter(&[collection_id])?;
        self.run_write(move |shard| {
            shard
                .update(UpdateOperation::PointOperation(
                    PointOperations::DeletePointsByFilter(filter),
                ))
                .map_err(vector_err)
        })
        .await
    }

    async fn search(
        &self,
        vector: Vec<f32>,
        collections: Vec<CollectionId>,
        limit: usize,
    ) -> IndexResult<Vec<Hit>> {
        if collections.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        self.check_dim(vector.len(), "query vector")?;
        let request = QueryRequest {
            prefetches: Vec::new(),
            query: Some(ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery::new(
                VectorInternal::Dense(vector),
                VECTOR_NAME,
            )))),
            filter: Some(collections_filter(&collections)?),
            score_threshold: None,
            limit,
            offset: 0,
            params: None,
            with_vector: WithVector::Bool(false),
            with_payload: WithPayloadInterface::Bool(true),
        };
        let points = self
            .run_read(move |shard| shard.query(request).map_err(vector_err))
            .await?;
        Ok(points.into_iter().filter_map(to_hit).collect())
    }

    async fn count(&self) -> IndexResult<u64> {
        let count = self
            .run_read(|shard| {
                shard
                    .count(CountRequest {
                        filter: None,
                        exact: true,
                    })
                    .map_err(vector_err)
            })
            .await?;
        Ok(count as u64)
    }

    async fn chunk_ids(&self) -> IndexResult<Vec<ChunkId>> {
        self.run_read(|shard| {
            let mut chunk_ids = Vec::new();
            let mut offset = None;
            loop {
                let (ids, next) = scroll_ids(shard, offset, SCROLL_PAGE)?;
                chunk_ids.extend(ids.into_iter().filter_map(point_uuid).map(ChunkId::from));
                match next {
                    Some(next) => offset = Some(next),
                    None => return Ok(chunk_ids),
                }
            }
        })
        .await
    }

    async fn optimize(&self) -> IndexResult<()> {
        self.run_write(|shard| {
            let optimized = shard.optimize().map_err(vector_err)?;
            tracing::debug!(optimized, "vector index optimization finished");
            Ok(())
        })
        .await
    }

    async fn flush(&self) -> IndexResult<()> {
        // qdrant-edge 0.7.0 appends every update to its WAL but never replays it
        // when loading (nor truncates it): after a restart only what was flushed
        // into the segments is there, so un-flushed writes are lost on a crash.
        // (Dropping the shard flushes too, which covers a clean shutdown.)
        // `EdgeShard::flush` reports failure by panicking; on the blocking pool
        // that panic becomes a JoinError, i.e. `IndexError::Join`.
        self.run_write(|shard| {
            shard.flush();
            Ok(())
        })
        .await
    }

    async fn clear(&self) -> IndexResult<()> {
        self.run_write(|shard| {
            // Scrolling from the start and deleting each page, rather than a
            // match-everything filter delete, keeps every step a plain id delete.
            let mut previous_first: Option<PointId> = None;
            loop {
                let (ids, _) = scroll_ids(shard, None, DELETE_BATCH)?;
                let Some(&first) = ids.first() else {
                    return Ok(());
                };
                // A page that starts with the same id again means the delete was
                // not applied; stop instead of looping forever.
                if previous_first == Some(first) {
                    return Err(IndexError::Vector(format!(
                        "clear made no progress: point {first} survived deletion"
                    )));
                }
                previous_first = Some(first);
                delete_points(shard, ids)?;
            }
        })
        .await
    }
}

fn vector_err(e: impl std::fmt::Display) -> IndexError {
    IndexError::Vector(e.to_string())
}

fn new_config(dim: usize) -> EdgeConfig {
    EdgeConfig::builder()
        .vector(
            VECTOR_NAME,
            EdgeVectorParams::builder(dim, Distance::Cosine).build(),
        )
        .build()
}

fn check_config(config: &EdgeConfig, dim: usize, dir: &Path) -> IndexResult<()> {
    let Some(params) = config.vectors.get(VECTOR_NAME) else {
        return Err(IndexError::Vector(format!(
            "vector index at {} has no dense vector named {VECTOR_NAME:?}",
            dir.display()
        )));
    };
    if params.size != dim {
        return Err(IndexError::Vector(format!(
            "vector index at {} has dimension {}, but dimension {dim} was requested \
             (embedding model changed?); remove the directory and reindex",
            dir.display(),
            params.size
        )));
    }
    if params.distance != Distance::Cosine {
        return Err(IndexError::Vector(format!(
            "vector index at {} uses {:?} distance, expected cosine",
            dir.display(),
            params.distance
        )));
    }
    Ok(())
}

fn field_path(field: &str) -> IndexResult<JsonPath> {
    field
        .parse()
        .map_err(|()| IndexError::Vector(format!("invalid payload field name {field:?}")))
}

fn ensure_payload_indexes(shard: &EdgeShard) -> IndexResult<()> {
    for field in [COLLECTION_FIELD, DOCUMENT_FIELD] {
        shard
            .update(UpdateOperation::FieldIndexOperation(
                FieldIndexOperations::CreateIndex(CreateIndex {
                    field_name: field_path(field)?,
                    field_schema: Some(PayloadFieldSchema::FieldType(PayloadSchemaType::Keyword)),
                }),
            ))
            .map_err(|e| IndexError::Vector(format!("cannot index payload field {field}: {e}")))?;
    }
    Ok(())
}

/// Points whose `collection_id` is any of `collections`.
fn collections_filter(collections: &[CollectionId]) -> IndexResult<Filter> {
    let values: Vec<String> = collections.iter().map(|c| c.to_string()).collect();
    Ok(Filter::new_must(Condition::Field(
        FieldCondition::new_match(field_path(COLLECTION_FIELD)?, Match::from(values)),
    )))
}

fn delete_points(shard: &EdgeShard, ids: Vec<PointId>) -> IndexResult<()> {
    shard
        .update(UpdateOperation::PointOperation(
            PointOperations::DeletePoints { ids },
        ))
        .map_err(vector_err)
}

/// One page of point ids in id order starting at `offset` (inclusive), plus
/// the offset of the next page.
fn scroll_ids(
    shard: &EdgeShard,
    offset: Option<PointId>,
    limit: usize,
) -> IndexResult<(Vec<PointId>, Option<PointId>)> {
    let (records, next) = shard
        .scroll(ScrollRequest {
            offset,
            limit: Some(limit),
            filter: None,
            with_payload: Some(WithPayloadInterface::Bool(false)),
            with_vector: WithVector::Bool(false),
            order_by: None,
        })
        .map_err(vector_err)?;
    Ok((records.into_iter().map(|record| record.id).collect(), next))
}

/// The stored point; the chunk id must be a UUID (qdrant's point id).
fn to_point(point: VectorPoint) -> IndexResult<PointStructPersisted> {
    let id = point
        .chunk_id
        .to_uuid()
        .ok_or_else(|| IndexError::Vector(format!("chunk id {} is not a UUID", point.chunk_id)))?;
    let mut payload = Payload::default();
    payload.0.insert(
        COLLECTION_FIELD.to_owned(),
        Value::String(point.collection_id.to_string()),
    );
    payload.0.insert(
        DOCUMENT_FIELD.to_owned(),
        Value::String(point.document_id.to_string()),
    );
    Ok(PointStructPersisted {
        id: PointId::Uuid(id),
        vector: VectorStructPersisted::Named(HashMap::from([(
            VECTOR_NAME.to_owned(),
            VectorPersisted::Dense(point.vector),
        )])),
        payload: Some(payload),
    })
}

fn point_uuid(id: PointId) -> Option<Uuid> {
    match id {
        PointId::Uuid(uuid) => Some(uuid),
        PointId::NumId(num) => {
            tracing::warn!(point_id = num, "skipping vector point with a numeric id");
            None
        }
    }
}

fn payload_uuid(payload: &Payload, field: &str) -> Option<Uuid> {
    payload
        .0
        .get(field)
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
}

fn to_hit(point: ScoredPoint) -> Option<Hit> {
    let chunk_id = point_uuid(point.id)?;
    let ids = point.payload.as_ref().and_then(|payload| {
        Some((
            payload_uuid(payload, DOCUMENT_FIELD)?,
            payload_uuid(payload, COLLECTION_FIELD)?,
        ))
    });
    Hit::from_point(chunk_id, ids, point.score)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::contract::{self, sorted, Seed, DIM};

    fn open(dir: &Path) -> EdgeVectorIndex {
        match EdgeVectorIndex::open(dir, DIM) {
            Ok(index) => index,
            Err(e) => panic!("open failed: {e}"),
        }
    }

    #[test]
    fn is_usable_as_a_trait_object() {
        fn boxed(index: EdgeVectorIndex) -> Box<dyn VectorIndex> {
            Box::new(index)
        }
        let _ = boxed;
    }

    #[tokio::test]
    async fn search_is_filtered_by_collection_and_ordered_by_similarity() {
        let dir = tempfile::tempdir().unwrap();
        contract::search_is_filtered_by_collection_and_ordered_by_similarity(&open(dir.path()))
            .await;
    }

    #[tokio::test]
    async fn delete_delete_collection_count_and_chunk_ids() {
        let dir = tempfile::tempdir().unwrap();
        contract::delete_delete_collection_count_and_chunk_ids(&open(dir.path())).await;
    }

    #[tokio::test]
    async fn flushed_data_survives_reopen_and_dimension_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let s = Seed::new();
        {
            let index = open(dir.path());
            index.upsert(s.points()).await.unwrap();
            index.flush().await.unwrap();
        } // dropped here: the shard keeps its WAL directory locked while alive

        let index = open(dir.path());
        assert_eq!(index.count().await.unwrap(), 3);
        assert_eq!(sorted(index.chunk_ids().await.unwrap()), s.ids());
        let hits = index
            .search(vec![1.0, 0.0, 0.0, 0.0], vec![s.coll_b.clone()], 10)
            .await
            .unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].chunk_id, s.b1.chunk_id);
        assert_eq!(hits[0].document_id, s.b1.document_id);
        assert_eq!(hits[0].collection_id, s.coll_b);
        drop(index);

        match EdgeVectorIndex::open(dir.path(), DIM + 1) {
            Ok(_) => panic!("opening with another dimension must fail"),
            Err(e) => assert!(e.to_string().contains("dimension"), "{e}"),
        }

        // The failed open left the shard intact.
        let index = open(dir.path());
        assert_eq!(index.count().await.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_directory_cannot_be_opened_twice_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let index = open(dir.path());
        assert!(EdgeVectorIndex::open(dir.path(), DIM).is_err());
        drop(index);
        let _reopened = open(dir.path());
    }

    #[tokio::test]
    async fn clear_empties_but_keeps_the_index_usable() {
        let dir = tempfile::tempdir().unwrap();
        contract::clear_empties_but_keeps_the_index_usable(&open(dir.path())).await;
    }

    #[tokio::test]
    async fn batched_upsert_paged_ids_and_optimize_after_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let index = open(dir.path());
        let kept_ids = contract::batched_upsert_paged_ids_and_optimize_after_deletes(&index).await;
        drop(index);
        let index = open(dir.path());
        assert_eq!(index.count().await.unwrap(), kept_ids.len() as u64);
        assert_eq!(sorted(index.chunk_ids().await.unwrap()), kept_ids);
    }
}
