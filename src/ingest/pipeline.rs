//! The ingestion pipeline: clean → hash → chunk → diff against the DB → write
//! DB (and the chunk change log) → embed new chunks → upsert the vector index
//! → bring the lexical index up to the log → mark indexed.
//!
//! Convergence: chunk ids are derived from content, so a retried batch writes
//! the same ids. A document is stored with `indexed = false` until both indexes
//! hold its chunks; re-ingesting a document in that state re-indexes all of
//! its chunks even when its content is unchanged. Chunks that vanish from a
//! changed document are removed from the vector index (and that removal
//! flushed) before the DB forgets them, so no vector is ever left without a
//! DB row to find it by. The lexical index is never written here: every
//! chunk change is logged in its own DB transaction, and the node's follower
//! (`index::lexical::follow`) applies the log, here before a batch returns
//! and on every other node within its poll interval.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::chunk::{Chunker, Piece};
use super::clean::clean_text;
use super::load::RawDocument;
use crate::db::collections::{self, Collection};
use crate::db::documents::{self, Chunk, Document};
use crate::db::lexical_log::{self, LogOp};
use crate::db::Db;
use crate::embed::Embedder;
use crate::error::Error;
use crate::ids::{ChunkId, CollectionId, DocumentId};
use crate::index::lexical;
use crate::index::lexical::follow::LexicalFollower;
use crate::index::{VectorIndex, VectorPoint};
use prometheus_client::metrics::counter::Counter;

/// What the pipeline writes through: the database, the vector index, the
/// follower that brings this process's lexical index up to the database's
/// change log (none in a job worker, which keeps no lexical index), and the
/// models that cut documents into chunks and turn chunks into
/// vectors. Built by `App::indexer`; cloning it clones handles, not data.
#[derive(Clone)]
pub struct Indexer {
    pub db: Db,
    pub vectors: Arc<dyn VectorIndex>,
    pub lexical: Option<Arc<LexicalFollower>>,
    pub embedder: Arc<Embedder>,
    pub chunker: Arc<Chunker>,
    /// Documents and chunks written, for `/metrics`.
    pub counters: IngestCounters,
}

/// What ingestion counts as it writes.
#[derive(Clone, Default)]
pub struct IngestCounters {
    pub documents: Counter,
    pub chunks: Counter,
}

impl Indexer {
    /// Apply the change log to this process's lexical index, if it keeps one;
    /// the API nodes' followers apply it on their own.
    async fn catch_up_lexical(&self) -> Result<(), Error> {
        if let Some(follower) = &self.lexical {
            follower.catch_up().await?;
        }
        Ok(())
    }

    /// For what only a process with a lexical index does: rebuild, check, repair.
    fn follower(&self) -> Result<&Arc<LexicalFollower>, Error> {
        self.lexical.as_ref().ok_or_else(|| {
            Error::Internal("a job worker keeps no lexical index to rebuild or check".into())
        })
    }
}

/// Documents handled per DB transaction and index commit.
const GROUP: usize = 256;

#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct IngestReport {
    pub documents: usize,
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub skipped_empty: usize,
    pub duplicate_sources: usize,
    pub chunks_embedded: usize,
    pub chunks_deleted: usize,
    pub chunks_kept: usize,
    pub seconds: f64,
}

impl IngestReport {
    /// Fold in the report of a later batch of the same job.
    pub fn absorb(&mut self, other: &IngestReport) {
        self.documents += other.documents;
        self.added += other.added;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.skipped_empty += other.skipped_empty;
        self.duplicate_sources += other.duplicate_sources;
        self.chunks_embedded += other.chunks_embedded;
        self.chunks_deleted += other.chunks_deleted;
        self.chunks_kept += other.chunks_kept;
        self.seconds += other.seconds;
    }

    pub fn chunks_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.chunks_embedded as f64 / self.seconds
        } else {
            0.0
        }
    }
}

pub fn sha256_hex(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

/// A UUID determined by its inputs (RFC 9562 version 8 layout), so the same
/// document or chunk always gets the same id.
pub fn stable_id(parts: &[&str]) -> Uuid {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

pub fn document_id(collection_id: &str, source: &str) -> Uuid {
    stable_id(&["document", collection_id, source])
}

/// What the model and the lexical index see for a chunk: the title gives a
/// passage cut from the middle of a document its context.
pub fn embedding_text(title: &str, text: &str) -> String {
    if title.is_empty() {
        text.to_string()
    } else {
        format!("{title}. {text}")
    }
}

struct Prepared {
    doc: Document,
    markdown: bool,
    pieces: Vec<(Uuid, Piece, String)>,
}

/// Clean and hash a document; chunking waits until we know it changed, so
/// re-ingesting an unchanged corpus costs a hash per document, not a tokenizer pass.
fn prepare(chunker: &Chunker, collection_id: &str, raw: RawDocument) -> Option<Prepared> {
    let text = clean_text(&raw.text);
    if text.is_empty() {
        return None;
    }
    let title = clean_text(&raw.title).replace('\n', " ");
    let doc_id = DocumentId::from(document_id(collection_id, &raw.source));
    // The chunking settings are part of the hash: changing them re-chunks.
    let content_hash = sha256_hex(&[&title, &text, &chunker.signature()]);
    let now = crate::db::now();
    Some(Prepared {
        doc: Document {
            id: doc_id,
            collection_id: collection_id.into(),
            source: raw.source,
            title,
            content: text,
            content_hash,
            metadata: raw.metadata.to_string(),
            chunk_count: 0,
            indexed: false,
            created_at: now,
            updated_at: now,
        },
        markdown: raw.markdown,
        pieces: Vec::new(),
    })
}

fn chunk_document(chunker: &Chunker, p: &mut Prepared) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    p.pieces = chunker
        .chunk(&p.doc.content, p.markdown)
        .into_iter()
        .map(|piece| {
            let hash = sha256_hex(&[&piece.text]);
            // Repeated identical chunks in one document still get distinct ids.
            let n = seen.entry(hash.clone()).or_insert(0);
            let id = stable_id(&["chunk", &p.doc.id, &hash, &n.to_string()]);
            *n += 1;
            (id, piece, hash)
        })
        .collect();
    p.doc.chunk_count = p.pieces.len() as i32;
}

/// Ingest documents into `collection`. `progress` is called with the number of
/// documents processed so far.
pub async fn ingest(
    ix: &Indexer,
    collection: &Collection,
    docs: Vec<RawDocument>,
    progress: &(dyn Fn(usize) + Send + Sync),
) -> Result<IngestReport, Error> {
    let started = Instant::now();
    let mut report = ingest_batch(ix, collection, docs, progress).await?;
    optimize_after(ix, &report).await?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Rebuild the vector index's search structures if `report` changed it.
/// Costly (seconds to tens of seconds for large shards), so a job ingesting
/// in batches calls it once at the end rather than per batch.
pub async fn optimize_after(ix: &Indexer, report: &IngestReport) -> Result<(), Error> {
    if report.chunks_embedded > 0 || report.chunks_deleted > 0 {
        ix.vectors.optimize().await?;
        ix.vectors.flush().await?;
    }
    Ok(())
}

/// `ingest` without the final index optimisation: every write is durable in
/// the DB and both indexes, and searchable, when it returns.
pub async fn ingest_batch(
    ix: &Indexer,
    collection: &Collection,
    docs: Vec<RawDocument>,
    progress: &(dyn Fn(usize) + Send + Sync),
) -> Result<IngestReport, Error> {
    let started = Instant::now();
    let mut report = IngestReport {
        documents: docs.len(),
        ..Default::default()
    };
    // Last occurrence of a source wins, as if the files were ingested in order.
    let mut by_source: HashMap<String, usize> = HashMap::new();
    for (i, d) in docs.iter().enumerate() {
        if by_source.insert(d.source.clone(), i).is_some() {
            report.duplicate_sources += 1;
        }
    }
    let docs: Vec<RawDocument> = docs
        .into_iter()
        .enumerate()
        .filter(|(i, d)| by_source.get(&d.source) == Some(i))
        .map(|(_, d)| d)
        .collect();

    let mut done = report.duplicate_sources;
    let mut iter = docs.into_iter().peekable();
    while iter.peek().is_some() {
        let group: Vec<RawDocument> = iter.by_ref().take(GROUP).collect();
        let n = group.len();
        ingest_group(ix, collection, group, &mut report).await?;
        done += n;
        progress(done);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

async fn ingest_group(
    ix: &Indexer,
    collection: &Collection,
    group: Vec<RawDocument>,
    report: &mut IngestReport,
) -> Result<(), Error> {
    let (changed, fully_indexed) = changed_documents(ix, collection, group, report).await?;
    if changed.is_empty() {
        return Ok(());
    }
    let chunker = ix.chunker.clone();
    let changed: Vec<Prepared> = tokio::task::spawn_blocking(move || {
        let mut changed = changed;
        for p in changed.iter_mut() {
            chunk_document(&chunker, p);
        }
        changed
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))?;

    let doc_ids: Vec<DocumentId> = changed.iter().map(|p| p.doc.id.clone()).collect();
    let old: Vec<(ChunkId, DocumentId)> =
        documents::chunk_ids_of_documents(&ix.db, &doc_ids).await?;
    let new_ids: HashSet<ChunkId> = changed
        .iter()
        .flat_map(|p| p.pieces.iter().map(|(id, _, _)| ChunkId::from(*id)))
        .collect();
    // Chunks already in both indexes: those of fully indexed documents that survive.
    let present: HashSet<ChunkId> = old
        .iter()
        .filter(|(id, doc)| fully_indexed.contains(doc) && new_ids.contains(id))
        .map(|(id, _)| id.clone())
        .collect();
    let vanished: Vec<ChunkId> = old
        .iter()
        .filter(|(id, _)| !new_ids.contains(id))
        .map(|(id, _)| id.clone())
        .collect();
    // Whatever of the batch got written, results cached before it are
    // stale: the generation is bumped even when a step fails (a retry
    // bumps again once it is all written).
    let written = write_group(ix, collection, changed, &present, vanished, report).await;
    let bumped = collections::bump_generation(&ix.db, &collection.id).await;
    let written = written?;
    bumped?;
    report.chunks_embedded += new_ids.len() - present.len();
    ix.counters.documents.inc_by(written as u64);
    ix.counters
        .chunks
        .inc_by((new_ids.len() - present.len()) as u64);
    Ok(())
}

/// Write a group's changes everywhere: vanished chunks out of the vector
/// index, the rows into the DB, fresh chunks into the vector index, the
/// lexical index up to the log; then mark the documents indexed. Returns how
/// many documents were written.
async fn write_group(
    ix: &Indexer,
    collection: &Collection,
    changed: Vec<Prepared>,
    present: &HashSet<ChunkId>,
    vanished: Vec<ChunkId>,
    report: &mut IngestReport,
) -> Result<usize, Error> {
    let doc_ids: Vec<DocumentId> = changed.iter().map(|p| p.doc.id.clone()).collect();
    remove_vanished(ix, vanished, report).await?;
    let rows = rows_of(collection, changed, present, report)?;
    documents::replace_documents(&ix.db, rows.docs, rows.chunks).await?;
    index_chunks(ix, collection.id.clone(), rows.fresh).await?;
    ix.vectors.flush().await?;
    // The DB transaction logged every chunk change; apply them here, so the
    // batch is searchable in this process when it returns.
    ix.catch_up_lexical().await?;
    documents::mark_indexed(&ix.db, &doc_ids).await?;
    Ok(doc_ids.len())
}

/// Clean and hash `group`, and keep the documents that are new or changed
/// (or not yet in both indexes), counting the rest in `report`. Also returns
/// the ids of the kept documents whose previous chunks are fully indexed.
async fn changed_documents(
    ix: &Indexer,
    collection: &Collection,
    group: Vec<RawDocument>,
    report: &mut IngestReport,
) -> Result<(Vec<Prepared>, HashSet<DocumentId>), Error> {
    let chunker = ix.chunker.clone();
    let cid = collection.id.clone();
    let n = group.len();
    // Cleaning, hashing and tokenising are CPU work: keep them off the async executor.
    let prepared: Vec<Prepared> = tokio::task::spawn_blocking(move || {
        group
            .into_iter()
            .filter_map(|raw| prepare(&chunker, &cid, raw))
            .collect()
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))?;
    report.skipped_empty += n - prepared.len();

    let sources: Vec<String> = prepared.iter().map(|p| p.doc.source.clone()).collect();
    let states: HashMap<String, (String, bool)> =
        documents::document_states(&ix.db, &collection.id, &sources)
            .await?
            .into_iter()
            .map(|s| (s.source, (s.content_hash, s.indexed)))
            .collect();

    let mut changed: Vec<Prepared> = Vec::new();
    let mut fully_indexed: HashSet<DocumentId> = HashSet::new();
    for p in prepared {
        match states.get(&p.doc.source) {
            Some((hash, true)) if *hash == p.doc.content_hash => report.unchanged += 1,
            Some((_, indexed)) => {
                report.updated += 1;
                if *indexed {
                    fully_indexed.insert(p.doc.id.clone());
                }
                changed.push(p);
            }
            None => {
                report.added += 1;
                changed.push(p);
            }
        }
    }
    Ok((changed, fully_indexed))
}

/// Remove the chunks a changed document no longer has from the vector index,
/// durably, before the DB forgets them (the lexical index follows the DB's
/// log of that).
async fn remove_vanished(
    ix: &Indexer,
    vanished: Vec<ChunkId>,
    report: &mut IngestReport,
) -> Result<(), Error> {
    if vanished.is_empty() {
        return Ok(());
    }
    let n = vanished.len();
    ix.vectors.delete(vanished).await?;
    // qdrant-edge does not replay its WAL on load: only flushed writes survive a crash.
    ix.vectors.flush().await?;
    report.chunks_deleted += n;
    Ok(())
}

/// A chunk to embed and index: (chunk id, document id, title, text).
type FreshChunk = (ChunkId, DocumentId, String, String);

/// What a group writes: documents and chunk rows for the DB, and the chunks
/// not already in both indexes.
struct Rows {
    docs: Vec<Document>,
    chunks: Vec<Chunk>,
    fresh: Vec<FreshChunk>,
}

/// The rows to store for `changed`; chunks in `present` are counted as kept.
fn rows_of(
    collection: &Collection,
    changed: Vec<Prepared>,
    present: &HashSet<ChunkId>,
    report: &mut IngestReport,
) -> Result<Rows, Error> {
    let mut rows = Vec::new();
    let mut fresh: Vec<FreshChunk> = Vec::new();
    let mut docs = Vec::with_capacity(changed.len());
    for p in changed {
        for (id, piece, hash) in p.pieces {
            let id = ChunkId::from(id);
            if present.contains(&id) {
                report.chunks_kept += 1;
            } else {
                fresh.push((
                    id.clone(),
                    p.doc.id.clone(),
                    p.doc.title.clone(),
                    piece.text.clone(),
                ));
            }
            rows.push(Chunk {
                id,
                document_id: p.doc.id.clone(),
                collection_id: collection.id.clone(),
                position: piece.position as i32,
                text: piece.text,
                content_hash: hash,
                char_start: piece.char_start as i32,
                char_end: piece.char_end as i32,
                token_count: piece.token_count as i32,
            });
        }
        docs.push(p.doc);
    }
    Ok(Rows {
        docs,
        chunks: rows,
        fresh,
    })
}

/// Embed chunks `(chunk id, document id, title, text)` and write them to the
/// vector index. (The lexical index takes chunks from the DB's change log.)
pub async fn index_chunks(
    ix: &Indexer,
    collection_id: CollectionId,
    chunks: Vec<FreshChunk>,
) -> Result<(), Error> {
    if chunks.is_empty() {
        return Ok(());
    }
    let texts: Vec<String> = chunks
        .iter()
        .map(|(_, _, title, text)| embedding_text(title, text))
        .collect();
    let vectors = ix.embedder.embed(texts).await?;
    let points: Vec<VectorPoint> = chunks
        .iter()
        .zip(vectors)
        .map(|((id, doc, _, _), vector)| VectorPoint {
            chunk_id: id.clone(),
            document_id: doc.clone(),
            collection_id: collection_id.clone(),
            vector,
        })
        .collect();
    ix.vectors.upsert(points).await?;
    Ok(())
}

/// Delete a document from both indexes and the DB. Returns false if unknown.
///
/// The vector index first, the DB last: a crash in between leaves chunks the
/// vector index lacks (`check` reports them, `check --repair` or a second
/// delete finishes the job), never vectors whose chunk is gone. The DB
/// transaction logs the chunks' removal, which the lexical index applies
/// before this returns (and every other node at its next poll).
pub async fn delete_document(ix: &Indexer, document_id: &str) -> Result<bool, Error> {
    let before: Vec<ChunkId> =
        documents::chunk_ids_of_documents(&ix.db, &[DocumentId::from(document_id)])
            .await?
            .into_iter()
            .map(|(chunk, _)| chunk)
            .collect();
    let collection = documents::collection_of(&ix.db, document_id).await?;
    remove_from_vectors(ix, before.clone()).await?;
    let deleted = documents::delete_document(&ix.db, document_id).await?;
    ix.catch_up_lexical().await?;
    let Some(deleted) = deleted else {
        return Ok(false);
    };
    if let Some(collection) = collection {
        collections::bump_generation(&ix.db, &collection).await?;
    }
    // Chunks an ingest wrote in between were indexed after the first pass.
    let before: HashSet<ChunkId> = before.into_iter().collect();
    let late: Vec<ChunkId> = deleted
        .into_iter()
        .filter(|c| !before.contains(c))
        .collect();
    remove_from_vectors(ix, late).await?;
    Ok(true)
}

/// Delete a collection everywhere: the vector index first, the DB last (see
/// [`delete_document`]), then the vector index once more for anything an
/// ingest added to the collection meanwhile. The lexical index follows the
/// DB's log.
pub async fn delete_collection(ix: &Indexer, collection: &Collection) -> Result<(), Error> {
    remove_collection_from_vectors(ix, &collection.id).await?;
    collections::delete_collection(&ix.db, &collection.id).await?;
    ix.catch_up_lexical().await?;
    remove_collection_from_vectors(ix, &collection.id).await
}

async fn remove_collection_from_vectors(ix: &Indexer, id: &CollectionId) -> Result<(), Error> {
    ix.vectors.delete_collection(id.clone()).await?;
    ix.vectors.flush().await?;
    Ok(())
}

async fn remove_from_vectors(ix: &Indexer, ids: Vec<ChunkId>) -> Result<(), Error> {
    if ids.is_empty() {
        return Ok(());
    }
    ix.vectors.delete(ids).await?;
    ix.vectors.flush().await?;
    Ok(())
}

/// Rebuild both indexes from the DB. Returns the number of chunks indexed.
pub async fn reindex(
    ix: &Indexer,
    progress: &(dyn Fn(usize) + Send + Sync),
) -> Result<usize, Error> {
    ix.vectors.clear().await?;
    let mut after: Option<ChunkId> = None;
    let mut total = 0usize;
    loop {
        let page = documents::chunks_page(&ix.db, after.as_deref(), 1024).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.chunk.id.clone());
        // Group by collection: index_chunks writes one collection at a time.
        let mut by_collection: HashMap<CollectionId, Vec<(ChunkId, DocumentId, String, String)>> =
            HashMap::new();
        for c in page.iter() {
            // The vector index keys points by UUID; other ids cannot be indexed.
            if c.chunk.id.to_uuid().is_none() || c.chunk.document_id.to_uuid().is_none() {
                continue;
            }
            by_collection
                .entry(c.chunk.collection_id.clone())
                .or_default()
                .push((
                    c.chunk.id.clone(),
                    c.chunk.document_id.clone(),
                    c.title.clone(),
                    c.chunk.text.clone(),
                ));
        }
        for (collection, chunks) in by_collection {
            index_chunks(ix, collection, chunks).await?;
        }
        total += page.len();
        progress(total);
    }
    ix.vectors.optimize().await?;
    ix.vectors.flush().await?;
    // This node's lexical index only; the others keep following the log.
    ix.follower()?.rebuild().await?;
    bump_every_generation(ix).await?;
    Ok(total)
}

/// After a rebuild or repair, results may differ anywhere: no cached one
/// computed before may be served again.
async fn bump_every_generation(ix: &Indexer) -> Result<(), Error> {
    for c in collections::list_collections(&ix.db).await? {
        collections::bump_generation(&ix.db, &c.id).await?;
    }
    Ok(())
}

/// How the indexes differ from the DB.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct CheckReport {
    pub db_chunks: usize,
    pub vector_points: usize,
    pub lexical_docs: usize,
    pub missing_in_vector: Vec<String>,
    pub missing_in_lexical: Vec<String>,
    pub orphans_in_vector: Vec<String>,
    pub orphans_in_lexical: Vec<String>,
}

impl CheckReport {
    pub fn is_consistent(&self) -> bool {
        self.missing_in_vector.is_empty()
            && self.missing_in_lexical.is_empty()
            && self.orphans_in_vector.is_empty()
            && self.orphans_in_lexical.is_empty()
            && self.db_chunks == self.vector_points
            && self.db_chunks == self.lexical_docs
    }
}

/// What `repair` changed.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct RepairReport {
    pub removed_from_vector: usize,
    pub removed_from_lexical: usize,
    /// Chunks of the DB written again to both indexes.
    pub indexed: usize,
}

/// Make both indexes agree with the DB, which is the record: remove the
/// entries whose chunk the DB does not have (left by a crash in the middle
/// of a delete), and index the chunks an index lacks. The lexical side goes
/// through the change log, so every node's index is repaired alike.
pub async fn repair(ix: &Indexer, r: &CheckReport) -> Result<RepairReport, Error> {
    let ids = |v: &[String]| {
        v.iter()
            .map(|s| ChunkId::from(s.as_str()))
            .collect::<Vec<_>>()
    };
    let vector_orphans = ids(&r.orphans_in_vector);
    let lexical_orphans = ids(&r.orphans_in_lexical);
    let mut out = RepairReport {
        removed_from_vector: vector_orphans.len(),
        removed_from_lexical: lexical_orphans.len(),
        indexed: 0,
    };
    if !vector_orphans.is_empty() {
        ix.vectors.delete(vector_orphans).await?;
    }
    // The lexical index is repaired through the log like any other change
    // (every node's follower applies it): the DB's record of each chunk,
    // written again, or its removal.
    let mut relog: Vec<(ChunkId, LogOp)> = lexical_orphans
        .into_iter()
        .map(|id| (id, LogOp::Delete))
        .collect();
    relog.extend(
        ids(&r.missing_in_lexical)
            .into_iter()
            .map(|id| (id, LogOp::Upsert)),
    );
    lexical_log::append(&ix.db, relog).await?;
    ix.catch_up_lexical().await?;
    let mut missing = ids(&r.missing_in_vector);
    missing.extend(ids(&r.missing_in_lexical));
    missing.sort();
    missing.dedup();
    let mut by_collection: HashMap<CollectionId, Vec<FreshChunk>> = HashMap::new();
    for c in documents::chunks_by_ids(&ix.db, &missing).await? {
        by_collection
            .entry(c.chunk.collection_id.clone())
            .or_default()
            .push((c.chunk.id, c.chunk.document_id, c.title, c.chunk.text));
    }
    for (collection, chunks) in by_collection {
        out.indexed += chunks.len();
        index_chunks(ix, collection, chunks).await?;
    }
    ix.vectors.flush().await?;
    bump_every_generation(ix).await?;
    Ok(out)
}

pub async fn check(ix: &Indexer) -> Result<CheckReport, Error> {
    let db: HashSet<String> = documents::all_chunk_ids(&ix.db)
        .await?
        .into_iter()
        .map(String::from)
        .collect();
    let vec_ids: Vec<String> = ix
        .vectors
        .chunk_ids()
        .await?
        .into_iter()
        .map(|u| u.to_string())
        .collect();
    let lex_ids: Vec<String> = lexical::blocking(ix.follower()?.index(), |l| l.chunk_ids())
        .await?
        .into_iter()
        .map(|u| u.to_string())
        .collect();
    let vec_set: HashSet<&String> = vec_ids.iter().collect();
    let lex_set: HashSet<&String> = lex_ids.iter().collect();
    let mut r = CheckReport {
        db_chunks: db.len(),
        vector_points: vec_ids.len(),
        lexical_docs: lex_ids.len(),
        missing_in_vector: db
            .iter()
            .filter(|i| !vec_set.contains(i))
            .cloned()
            .collect(),
        missing_in_lexical: db
            .iter()
            .filter(|i| !lex_set.contains(i))
            .cloned()
            .collect(),
        orphans_in_vector: vec_ids
            .iter()
            .filter(|i| !db.contains(*i))
            .cloned()
            .collect(),
        orphans_in_lexical: lex_ids
            .iter()
            .filter(|i| !db.contains(*i))
            .cloned()
            .collect(),
    };
    r.missing_in_vector.sort();
    r.missing_in_lexical.sort();
    r.orphans_in_vector.sort();
    r.orphans_in_lexical.sort();
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_ids_are_deterministic_and_distinct() {
        let a = stable_id(&["chunk", "doc", "h", "0"]);
        assert_eq!(a, stable_id(&["chunk", "doc", "h", "0"]));
        assert_ne!(a, stable_id(&["chunk", "doc", "h", "1"]));
        // Part boundaries matter: ("ab","c") is not ("a","bc").
        assert_ne!(stable_id(&["ab", "c"]), stable_id(&["a", "bc"]));
        assert_eq!(a.get_version_num(), 8);
    }

    #[test]
    fn embedding_text_prefixes_title() {
        assert_eq!(embedding_text("T", "body"), "T. body");
        assert_eq!(embedding_text("", "body"), "body");
    }

    mod deletes {
        use async_trait::async_trait;

        use super::*;
        use crate::db::testing::{self, TestDb};
        use crate::index::edge::EdgeVectorIndex;
        use crate::index::lexical::LexicalIndex;
        use crate::index::{Hit, IndexError, IndexResult};

        /// A vector index whose deletes fail, as if the process died there.
        struct DeletesFail(Arc<dyn VectorIndex>);

        #[async_trait]
        impl VectorIndex for DeletesFail {
            async fn upsert(&self, points: Vec<VectorPoint>) -> IndexResult<()> {
                self.0.upsert(points).await
            }
            async fn delete(&self, _: Vec<ChunkId>) -> IndexResult<()> {
                Err(IndexError::Vector("planted failure".into()))
            }
            async fn delete_collection(&self, _: CollectionId) -> IndexResult<()> {
                Err(IndexError::Vector("planted failure".into()))
            }
            async fn search(
                &self,
                vector: Vec<f32>,
                collections: Vec<CollectionId>,
                limit: usize,
            ) -> IndexResult<Vec<Hit>> {
                self.0.search(vector, collections, limit).await
            }
            async fn count(&self) -> IndexResult<u64> {
                self.0.count().await
            }
            async fn chunk_ids(&self) -> IndexResult<Vec<ChunkId>> {
                self.0.chunk_ids().await
            }
            async fn optimize(&self) -> IndexResult<()> {
                self.0.optimize().await
            }
            async fn flush(&self) -> IndexResult<()> {
                self.0.flush().await
            }
            async fn clear(&self) -> IndexResult<()> {
                self.0.clear().await
            }
        }

        struct Fixture {
            ix: Indexer,
            _db: TestDb,
            _dir: tempfile::TempDir,
        }

        impl Fixture {
            async fn new() -> Self {
                let models = std::env::var("RAGCHAT_MODELS_DIR")
                    .map(std::path::PathBuf::from)
                    .unwrap_or_else(|_| {
                        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
                    });
                let settings = crate::config::EmbeddingSettings {
                    pool_size: 1,
                    ..Default::default()
                };
                let embedder = Embedder::load(&models, &settings)
                    .expect("model files missing: run scripts/setup-models.sh before the tests");
                let chunker =
                    Chunker::new(crate::ingest::chunk::tests::test_tokenizer(), 128, 16).unwrap();
                let dir = tempfile::tempdir().unwrap();
                let vectors =
                    EdgeVectorIndex::open(&dir.path().join("qdrant"), embedder.dimension())
                        .unwrap();
                let lexical = LexicalIndex::open(&dir.path().join("tantivy")).unwrap();
                let db = testing::sqlite().await;
                let lexical = LexicalFollower::new(
                    db.db.clone(),
                    Arc::new(lexical),
                    crate::metrics::LexicalMetrics::default(),
                );
                let ix = Indexer {
                    db: db.db.clone(),
                    vectors: Arc::new(vectors),
                    lexical: Some(Arc::new(lexical)),
                    embedder: Arc::new(embedder),
                    chunker: Arc::new(chunker),
                    counters: IngestCounters::default(),
                };
                Fixture {
                    ix,
                    _db: db,
                    _dir: dir,
                }
            }

            /// The same stores, with vector deletes failing.
            fn failing(&self) -> Indexer {
                Indexer {
                    db: self.ix.db.clone(),
                    vectors: Arc::new(DeletesFail(self.ix.vectors.clone())),
                    lexical: self.ix.lexical.clone(),
                    embedder: self.ix.embedder.clone(),
                    chunker: self.ix.chunker.clone(),
                    counters: IngestCounters::default(),
                }
            }

            async fn ingest(&self, collection: &str, sources: &[&str]) -> Collection {
                let c = collections::ensure_collection(&self.ix.db, collection)
                    .await
                    .unwrap();
                let docs = sources
                    .iter()
                    .map(|s| RawDocument {
                        source: s.to_string(),
                        title: format!("About {s}"),
                        text: format!(
                            "{s} is a document about shock waves and boundary layers. \
                             It has a few sentences so that it makes a chunk of its own."
                        ),
                        markdown: false,
                        metadata: serde_json::Value::Null,
                    })
                    .collect();
                ingest(&self.ix, &c, docs, &|_| {}).await.unwrap();
                c
            }

            async fn check(&self) -> CheckReport {
                check(&self.ix).await.unwrap()
            }
        }

        fn no_orphans(r: &CheckReport) -> bool {
            r.orphans_in_vector.is_empty() && r.orphans_in_lexical.is_empty()
        }

        #[tokio::test]
        async fn a_delete_cut_short_leaves_no_orphans_in_the_indexes() {
            let f = Fixture::new().await;
            let c = f.ingest("aero", &["a.txt", "b.txt"]).await;
            assert!(f.check().await.is_consistent());
            let doc = document_id(&c.id, "a.txt").to_string();

            assert!(delete_document(&f.failing(), &doc).await.is_err());
            let r = f.check().await;
            assert!(no_orphans(&r), "{r:?}");
            // The document is still in the DB, so deleting it again finishes the job.
            assert!(delete_document(&f.ix, &doc).await.unwrap());
            assert!(f.check().await.is_consistent());
            assert!(!delete_document(&f.ix, &doc).await.unwrap(), "gone now");

            assert!(delete_collection(&f.failing(), &c).await.is_err());
            let r = f.check().await;
            assert!(no_orphans(&r) && r.db_chunks > 0, "{r:?}");
            delete_collection(&f.ix, &c).await.unwrap();
            let r = f.check().await;
            assert!(r.is_consistent() && r.db_chunks == 0, "{r:?}");
        }

        #[tokio::test]
        async fn repair_removes_orphans_and_indexes_what_is_missing() {
            let f = Fixture::new().await;
            let c = f.ingest("aero", &["a.txt", "b.txt"]).await;
            let a = document_id(&c.id, "a.txt").to_string();
            let b = document_id(&c.id, "b.txt").to_string();
            // Orphans: a's rows leave the DB behind the indexes' back.
            let orphans = documents::delete_document(&f.ix.db, &a)
                .await
                .unwrap()
                .unwrap();
            // Missing: b's chunks leave both indexes.
            let missing: Vec<ChunkId> =
                documents::chunk_ids_of_documents(&f.ix.db, &[DocumentId::from(b.as_str())])
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect();
            remove_from_vectors(&f.ix, missing.clone()).await.unwrap();
            let gone = missing.clone();
            lexical::blocking(f.ix.follower().unwrap().index(), move |l| {
                l.delete(&gone)?;
                l.commit()
            })
            .await
            .unwrap();

            let r = f.check().await;
            assert_eq!(r.orphans_in_vector.len(), orphans.len(), "{r:?}");
            assert_eq!(r.orphans_in_lexical.len(), orphans.len(), "{r:?}");
            assert_eq!(r.missing_in_vector.len(), missing.len(), "{r:?}");
            let done = repair(&f.ix, &r).await.unwrap();
            assert_eq!(
                done,
                RepairReport {
                    removed_from_vector: orphans.len(),
                    removed_from_lexical: orphans.len(),
                    indexed: missing.len(),
                }
            );
            assert!(f.check().await.is_consistent());
        }
    }
}
