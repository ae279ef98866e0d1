//! Derived search indexes: a dense vector index behind [`VectorIndex`]
//! (embedded qdrant-edge, or a Qdrant server through `qdrant-client`) and the
//! Tantivy lexical index. Both are rebuilt from the relational store by
//! `ragchat reindex`.

pub mod edge;
pub mod lexical;
pub mod server;
pub mod testing;

#[cfg(test)]
mod contract;

use crate::ids::{ChunkId, CollectionId, DocumentId};
use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("vector index: {0}")]
    Vector(String),
    #[error("lexical index: {0}")]
    Lexical(String),
    #[error("index task failed: {0}")]
    Join(String),
}

pub type IndexResult<T> = Result<T, IndexError>;

/// One chunk's embedding with the ids needed to filter and to map back to the DB.
#[derive(Debug, Clone)]
pub struct VectorPoint {
    pub chunk_id: ChunkId,
    pub document_id: DocumentId,
    pub collection_id: CollectionId,
    pub vector: Vec<f32>,
}

/// A search hit from either index. `score` is the signal's own score
/// (cosine similarity for dense, BM25 for lexical).
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub chunk_id: ChunkId,
    pub document_id: DocumentId,
    pub collection_id: CollectionId,
    pub score: f32,
}

impl Hit {
    /// A hit from a point's id and the two ids in its payload; None (with a
    /// warning) when the payload lacks them, so one damaged point costs one
    /// result rather than the search.
    pub(crate) fn from_point(
        chunk_id: uuid::Uuid,
        payload_ids: Option<(uuid::Uuid, uuid::Uuid)>,
        score: f32,
    ) -> Option<Self> {
        let Some((document_id, collection_id)) = payload_ids else {
            tracing::warn!(%chunk_id, "skipping vector hit without a valid document/collection payload");
            return None;
        };
        Some(Hit {
            chunk_id: ChunkId::from(chunk_id),
            document_id: DocumentId::from(document_id),
            collection_id: CollectionId::from(collection_id),
            score,
        })
    }
}

/// The seam between the embedded and the remote vector store. All methods are
/// async so a network client fits; the embedded one runs its work on the
/// blocking pool.
#[async_trait]
pub trait VectorIndex: Send + Sync {
    /// Insert or replace points (same chunk id = same point, so retries converge).
    async fn upsert(&self, points: Vec<VectorPoint>) -> IndexResult<()>;
    /// Delete points by chunk id; unknown ids are ignored.
    async fn delete(&self, chunk_ids: Vec<ChunkId>) -> IndexResult<()>;
    /// Delete every point of a collection.
    async fn delete_collection(&self, collection_id: CollectionId) -> IndexResult<()>;
    /// Top `limit` points by cosine similarity among the given collections
    /// (an empty slice matches nothing).
    async fn search(
        &self,
        vector: Vec<f32>,
        collections: Vec<CollectionId>,
        limit: usize,
    ) -> IndexResult<Vec<Hit>>;
    /// Number of points stored.
    async fn count(&self) -> IndexResult<u64>;
    /// Every stored chunk id (for consistency checks against the DB).
    async fn chunk_ids(&self) -> IndexResult<Vec<ChunkId>>;
    /// Build search structures (HNSW) after bulk loads.
    async fn optimize(&self) -> IndexResult<()>;
    /// Make writes durable.
    async fn flush(&self) -> IndexResult<()>;
    /// Remove every point (used before a full rebuild).
    async fn clear(&self) -> IndexResult<()>;
}
