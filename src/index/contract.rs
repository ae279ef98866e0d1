//! The [`VectorIndex`] contract as tests every implementation runs (the
//! embedded shard's and the Qdrant server's): what a caller may rely on,
//! whichever backend is configured.
#![allow(clippy::unwrap_used)]

use super::{VectorIndex, VectorPoint};
use crate::ids::{ChunkId, CollectionId, DocumentId};

pub const DIM: usize = 4;

pub fn vp(
    collection_id: &CollectionId,
    document_id: &DocumentId,
    vector: [f32; DIM],
) -> VectorPoint {
    VectorPoint {
        chunk_id: ChunkId::random(),
        document_id: document_id.clone(),
        collection_id: collection_id.clone(),
        vector: vector.to_vec(),
    }
}

/// Two points in collection A (one document), one in collection B.
pub struct Seed {
    pub coll_a: CollectionId,
    pub coll_b: CollectionId,
    pub a1: VectorPoint,
    pub a2: VectorPoint,
    pub b1: VectorPoint,
}

impl Seed {
    pub fn new() -> Self {
        let coll_a = CollectionId::random();
        let coll_b = CollectionId::random();
        let doc_a = DocumentId::random();
        let doc_b = DocumentId::random();
        Self {
            a1: vp(&coll_a, &doc_a, [1.0, 0.0, 0.0, 0.0]),
            a2: vp(&coll_a, &doc_a, [0.8, 0.6, 0.0, 0.0]),
            b1: vp(&coll_b, &doc_b, [1.0, 0.0, 0.0, 0.0]),
            coll_a,
            coll_b,
        }
    }

    pub fn points(&self) -> Vec<VectorPoint> {
        vec![self.a1.clone(), self.a2.clone(), self.b1.clone()]
    }

    pub fn ids(&self) -> Vec<ChunkId> {
        sorted(self.points().into_iter().map(|p| p.chunk_id).collect())
    }
}

pub fn sorted(mut ids: Vec<ChunkId>) -> Vec<ChunkId> {
    ids.sort();
    ids
}

fn assert_close(actual: f32, expected: f32) {
    assert!(
        (actual - expected).abs() < 1e-4,
        "score {actual} != {expected}"
    );
}

pub async fn search_is_filtered_by_collection_and_ordered_by_similarity(index: &dyn VectorIndex) {
    let s = Seed::new();
    index.upsert(s.points()).await.unwrap();

    // b1 scores like a1 but lives in another collection.
    let hits = index
        .search(vec![0.8, 0.6, 0.0, 0.0], vec![s.coll_a.clone()], 10)
        .await
        .unwrap();
    let ids: Vec<ChunkId> = hits.iter().map(|h| h.chunk_id.clone()).collect();
    assert_eq!(ids, vec![s.a2.chunk_id.clone(), s.a1.chunk_id.clone()]);
    assert_close(hits[0].score, 1.0);
    assert_close(hits[1].score, 0.8);
    for hit in &hits {
        assert_eq!(hit.collection_id, s.coll_a);
        assert_eq!(hit.document_id, s.a1.document_id);
    }

    let top = index
        .search(vec![0.8, 0.6, 0.0, 0.0], vec![s.coll_a.clone()], 1)
        .await
        .unwrap();
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].chunk_id, s.a2.chunk_id);

    let both = index
        .search(
            vec![1.0, 0.0, 0.0, 0.0],
            vec![s.coll_a.clone(), s.coll_b.clone()],
            10,
        )
        .await
        .unwrap();
    assert_eq!(both.len(), 3);
    assert_eq!(
        sorted(vec![both[0].chunk_id.clone(), both[1].chunk_id.clone()]),
        sorted(vec![s.a1.chunk_id.clone(), s.b1.chunk_id.clone()])
    );
    assert_eq!(both[2].chunk_id, s.a2.chunk_id);
    let b_hit = both.iter().find(|h| h.chunk_id == s.b1.chunk_id).unwrap();
    assert_eq!(b_hit.collection_id, s.coll_b);
    assert_eq!(b_hit.document_id, s.b1.document_id);
    assert_close(b_hit.score, 1.0);

    assert!(index
        .search(vec![1.0, 0.0, 0.0, 0.0], vec![], 10)
        .await
        .unwrap()
        .is_empty());
    assert!(index
        .search(vec![1.0, 0.0, 0.0, 0.0], vec![CollectionId::random()], 10)
        .await
        .unwrap()
        .is_empty());
    assert!(index
        .search(vec![1.0, 0.0], vec![s.coll_a.clone()], 10)
        .await
        .is_err());
}

pub async fn delete_delete_collection_count_and_chunk_ids(index: &dyn VectorIndex) {
    let s = Seed::new();
    index.upsert(s.points()).await.unwrap();
    assert_eq!(index.count().await.unwrap(), 3);
    assert_eq!(sorted(index.chunk_ids().await.unwrap()), s.ids());

    // Same chunk id = same point, so a retried upsert converges.
    index.upsert(vec![s.a1.clone()]).await.unwrap();
    assert_eq!(index.count().await.unwrap(), 3);

    index
        .delete(vec![s.a2.chunk_id.clone(), ChunkId::random()])
        .await
        .unwrap();
    index.delete(Vec::new()).await.unwrap();
    index.upsert(Vec::new()).await.unwrap();
    assert_eq!(index.count().await.unwrap(), 2);
    assert_eq!(
        sorted(index.chunk_ids().await.unwrap()),
        sorted(vec![s.a1.chunk_id.clone(), s.b1.chunk_id.clone()])
    );
    let hits = index
        .search(vec![0.8, 0.6, 0.0, 0.0], vec![s.coll_a.clone()], 10)
        .await
        .unwrap();
    assert_eq!(
        hits.iter().map(|h| h.chunk_id.clone()).collect::<Vec<_>>(),
        vec![s.a1.chunk_id.clone()]
    );

    index.delete_collection(s.coll_b.clone()).await.unwrap();
    assert_eq!(index.count().await.unwrap(), 1);
    assert_eq!(
        index.chunk_ids().await.unwrap(),
        vec![s.a1.chunk_id.clone()]
    );
    assert!(index
        .search(vec![1.0, 0.0, 0.0, 0.0], vec![s.coll_b.clone()], 10)
        .await
        .unwrap()
        .is_empty());
    index.delete_collection(s.coll_b.clone()).await.unwrap();
    assert_eq!(index.count().await.unwrap(), 1);
}

pub async fn clear_empties_but_keeps_the_index_usable(index: &dyn VectorIndex) {
    let s = Seed::new();
    index.upsert(s.points()).await.unwrap();

    index.clear().await.unwrap();
    assert_eq!(index.count().await.unwrap(), 0);
    assert!(index.chunk_ids().await.unwrap().is_empty());
    assert!(index
        .search(
            vec![1.0, 0.0, 0.0, 0.0],
            vec![s.coll_a.clone(), s.coll_b.clone()],
            10
        )
        .await
        .unwrap()
        .is_empty());
    index.clear().await.unwrap();

    index.upsert(vec![s.a1.clone()]).await.unwrap();
    assert_eq!(index.count().await.unwrap(), 1);
}

/// More points than one upsert batch and one id page; returns the ids left.
pub async fn batched_upsert_paged_ids_and_optimize_after_deletes(
    index: &dyn VectorIndex,
) -> Vec<ChunkId> {
    let coll = CollectionId::random();
    let doc = DocumentId::random();
    let n = 2_500;
    let points: Vec<VectorPoint> = (0..n)
        .map(|i| vp(&coll, &doc, [1.0, i as f32 / n as f32, 0.5, 0.25]))
        .collect();
    index.upsert(points.clone()).await.unwrap();
    assert_eq!(index.count().await.unwrap(), n as u64);
    assert_eq!(
        sorted(index.chunk_ids().await.unwrap()),
        sorted(points.iter().map(|p| p.chunk_id.clone()).collect())
    );

    // 40% deleted: above the vacuum optimizer's default threshold.
    let (deleted, kept) = points.split_at(1_000);
    index
        .delete(deleted.iter().map(|p| p.chunk_id.clone()).collect())
        .await
        .unwrap();
    index.optimize().await.unwrap();

    let kept_ids = sorted(kept.iter().map(|p| p.chunk_id.clone()).collect());
    assert_eq!(index.count().await.unwrap(), kept.len() as u64);
    assert_eq!(sorted(index.chunk_ids().await.unwrap()), kept_ids);
    let hits = index
        .search(vec![1.0, 0.5, 0.5, 0.25], vec![coll.clone()], 5)
        .await
        .unwrap();
    assert_eq!(hits.len(), 5);
    assert!(hits
        .iter()
        .all(|h| kept_ids.binary_search(&h.chunk_id).is_ok()));
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    index.flush().await.unwrap();
    kept_ids
}
