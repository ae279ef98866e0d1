//! Documents with their chunks and duplicate signatures: what ingestion
//! writes, what search maps hits back to, and what the admin API lists
//! (without the text, or one with its quality report).

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::lexical_log::{append_in_tx, LogOp};
use super::schema::{chunks, document_signatures, documents};
use super::{Cursor, Db, DbError, DbResult};
use crate::db_run;
use crate::ids::{ChunkId, CollectionId, DocumentId};

/// Rows per statement: well under SQLite's bound-variable limit for our widest row.
const BATCH: usize = 500;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset, PartialEq)]
#[diesel(table_name = documents)]
pub struct Document {
    pub id: DocumentId,
    pub collection_id: CollectionId,
    pub source: String,
    pub title: String,
    pub content: String,
    pub content_hash: String,
    pub metadata: String,
    pub chunk_count: i32,
    pub indexed: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// What ingestion needs to decide whether a document changed.
#[derive(Debug, Clone, Queryable, Selectable, PartialEq)]
#[diesel(table_name = documents)]
pub struct DocumentState {
    pub id: DocumentId,
    pub source: String,
    pub content_hash: String,
    pub indexed: bool,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq)]
#[diesel(table_name = chunks)]
pub struct Chunk {
    pub id: ChunkId,
    pub document_id: DocumentId,
    pub collection_id: CollectionId,
    pub position: i32,
    pub text: String,
    pub content_hash: String,
    pub char_start: i32,
    pub char_end: i32,
    pub token_count: i32,
}

/// A chunk with its document's title, as search results and reindexing need it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkWithTitle {
    pub chunk: Chunk,
    pub title: String,
    pub source: String,
}

/// Fingerprints of a document's text for duplicate detection (see
/// `ingest::dedup`).
#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq)]
#[diesel(table_name = document_signatures)]
pub struct DocumentSignature {
    pub document_id: DocumentId,
    pub collection_id: CollectionId,
    pub source: String,
    pub text_hash: String,
    pub minhash: String,
}

/// A document without its text.
#[derive(Debug, Clone, Queryable, PartialEq)]
pub struct DocumentSummary {
    pub id: DocumentId,
    pub collection_id: CollectionId,
    pub source: String,
    pub title: String,
    pub content_hash: String,
    pub metadata: String,
    pub chunk_count: i32,
    pub indexed: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// Documents of a collection, newest first, after `after`.
pub async fn list(
    db: &Db,
    collection_id: &str,
    after: Option<Cursor>,
    limit: i64,
) -> DbResult<Vec<DocumentSummary>> {
    db_run!(db, conn => {
        let mut q = documents::table
            .filter(documents::collection_id.eq(collection_id))
            .select((
                documents::id,
                documents::collection_id,
                documents::source,
                documents::title,
                documents::content_hash,
                documents::metadata,
                documents::chunk_count,
                documents::indexed,
                documents::created_at,
                documents::updated_at,
            ))
            .into_boxed();
        if let Some((ts, id)) = &after {
            q = q.filter(
                documents::created_at
                    .lt(*ts)
                    .or(documents::created_at.eq(*ts).and(documents::id.lt(id.clone()))),
            );
        }
        Ok(q.order((documents::created_at.desc(), documents::id.desc()))
            .limit(limit)
            .load(conn)
            .await?)
    })
}

pub async fn get(db: &Db, collection_id: &str, id: &str) -> DbResult<Option<Document>> {
    db_run!(db, conn => {
        Ok(documents::table
            .filter(documents::collection_id.eq(collection_id))
            .filter(documents::id.eq(id))
            .select(Document::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// Documents a crawl from `start_url` made (`metadata.crawl`), as
/// `(id, source)`: what a re-crawl compares with the pages it saw.
pub async fn crawled_by(
    db: &Db,
    collection_id: &str,
    start_url: &str,
) -> DbResult<Vec<(DocumentId, String)>> {
    let rows: Vec<(DocumentId, String, String)> = db_run!(db, conn => {
        Ok::<_, DbError>(documents::table
            .filter(documents::collection_id.eq(collection_id))
            .select((documents::id, documents::source, documents::metadata))
            .load(conn)
            .await?)
    })?;
    Ok(rows
        .into_iter()
        .filter(|(_, _, meta)| {
            serde_json::from_str::<serde_json::Value>(meta)
                .is_ok_and(|m| m["crawl"].as_str() == Some(start_url))
        })
        .map(|(id, source, _)| (id, source))
        .collect())
}

/// Every duplicate signature of a collection, to seed its deduplicator.
pub async fn signatures(db: &Db, collection_id: &str) -> DbResult<Vec<DocumentSignature>> {
    db_run!(db, conn => {
        Ok(document_signatures::table
            .filter(document_signatures::collection_id.eq(collection_id))
            .select(DocumentSignature::as_select())
            .load(conn)
            .await?)
    })
}

/// Insert or replace signatures (a re-uploaded document gets its new one).
pub async fn save_signatures(db: &Db, rows: Vec<DocumentSignature>) -> DbResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    db_run!(db, conn => {
        conn.transaction::<_, DbError, _>(async move |conn| {
            // Row by row (SQLite through diesel-async has no multi-row
            // INSERT); one transaction keeps it fast.
            for row in &rows {
                diesel::insert_into(document_signatures::table)
                    .values(row)
                    .on_conflict(document_signatures::document_id)
                    .do_update()
                    .set((
                        document_signatures::collection_id
                            .eq(excluded(document_signatures::collection_id)),
                        document_signatures::source.eq(excluded(document_signatures::source)),
                        document_signatures::text_hash
                            .eq(excluded(document_signatures::text_hash)),
                        document_signatures::minhash.eq(excluded(document_signatures::minhash)),
                    ))
                    .execute(conn)
                    .await?;
            }
            Ok(())
        })
        .await
    })
}

/// Current state of the given sources in a collection (missing ones are new).
pub async fn document_states(
    db: &Db,
    collection_id: &str,
    sources: &[String],
) -> DbResult<Vec<DocumentState>> {
    let mut out = Vec::with_capacity(sources.len());
    for batch in sources.chunks(BATCH) {
        let rows: Vec<DocumentState> = db_run!(db, conn => {
            Ok::<_, DbError>(documents::table
                .filter(documents::collection_id.eq(collection_id))
                .filter(documents::source.eq_any(batch))
                .select(DocumentState::as_select())
                .load(conn)
                .await?)
        })?;
        out.extend(rows);
    }
    Ok(out)
}

/// `(chunk id, document id)` of every chunk of the given documents.
pub async fn chunk_ids_of_documents(
    db: &Db,
    document_ids: &[DocumentId],
) -> DbResult<Vec<(ChunkId, DocumentId)>> {
    let mut out = Vec::new();
    for batch in document_ids.chunks(BATCH) {
        let rows: Vec<(ChunkId, DocumentId)> = db_run!(db, conn => {
            Ok::<_, DbError>(chunks::table
                .filter(chunks::document_id.eq_any(batch))
                .select((chunks::id, chunks::document_id))
                .load(conn)
                .await?)
        })?;
        out.extend(rows);
    }
    Ok(out)
}

/// The log entries for replacing chunk rows `old` by `new`: every new row is
/// written again (its document's title may have changed, and a retry after a
/// crash must re-index it), and what is gone is deleted.
fn replacement_log(old: Vec<ChunkId>, new: &[Chunk]) -> Vec<(ChunkId, LogOp)> {
    let kept: std::collections::HashSet<&ChunkId> = new.iter().map(|c| &c.id).collect();
    let mut out: Vec<(ChunkId, LogOp)> = old
        .into_iter()
        .filter(|id| !kept.contains(id))
        .map(|id| (id, LogOp::Delete))
        .collect();
    out.extend(new.iter().map(|c| (c.id.clone(), LogOp::Upsert)));
    out
}

/// Log entries deleting `ids`.
pub(crate) fn deletions(ids: &[ChunkId]) -> Vec<(ChunkId, LogOp)> {
    ids.iter().map(|id| (id.clone(), LogOp::Delete)).collect()
}

/// Write new or changed documents and replace their chunk rows, in one
/// transaction that also logs each chunk change for the lexical indexes.
/// Documents are written with `indexed = false`; the caller marks them
/// indexed once both indexes hold their chunks.
pub async fn replace_documents(db: &Db, docs: Vec<Document>, rows: Vec<Chunk>) -> DbResult<()> {
    db_run!(db, conn => {
        conn.transaction::<_, DbError, _>(async move |conn| {
                // Row by row: SQLite through diesel-async has no multi-row
                // INSERT (no DEFAULT keyword); inside one transaction this is fast.
                for doc in &docs {
                    diesel::insert_into(documents::table)
                        .values(doc)
                        .on_conflict(documents::id)
                        .do_update()
                        .set((
                            documents::title.eq(excluded(documents::title)),
                            documents::content.eq(excluded(documents::content)),
                            documents::content_hash.eq(excluded(documents::content_hash)),
                            documents::metadata.eq(excluded(documents::metadata)),
                            documents::chunk_count.eq(excluded(documents::chunk_count)),
                            documents::indexed.eq(false),
                            documents::updated_at.eq(excluded(documents::updated_at)),
                        ))
                        .execute(conn)
                        .await?;
                }
                let ids: Vec<&DocumentId> = docs.iter().map(|d| &d.id).collect();
                let mut old: Vec<ChunkId> = Vec::new();
                for batch in ids.chunks(BATCH) {
                    old.extend(
                        diesel::delete(chunks::table.filter(chunks::document_id.eq_any(batch)))
                            .returning(chunks::id)
                            .get_results::<ChunkId>(conn)
                            .await?,
                    );
                }
                for row in &rows {
                    diesel::insert_into(chunks::table)
                        .values(row)
                        .execute(conn)
                        .await?;
                }
                append_in_tx!(conn, &replacement_log(old, &rows));
                Ok(())
        })
        .await
    })
}

pub async fn mark_indexed(db: &Db, document_ids: &[DocumentId]) -> DbResult<()> {
    for batch in document_ids.chunks(BATCH) {
        db_run!(db, conn => {
            diesel::update(documents::table.filter(documents::id.eq_any(batch)))
                .set(documents::indexed.eq(true))
                .execute(conn)
                .await?;
            Ok::<(), DbError>(())
        })?;
    }
    Ok(())
}

/// The collection a document is in, if the document exists.
pub async fn collection_of(db: &Db, id: &str) -> DbResult<Option<CollectionId>> {
    db_run!(db, conn => {
        Ok(documents::table
            .find(id)
            .select(documents::collection_id)
            .first(conn)
            .await
            .optional()?)
    })
}

/// Delete one document and its chunks; returns the removed chunk ids, or
/// `None` when no such document exists.
pub async fn delete_document(db: &Db, id: &str) -> DbResult<Option<Vec<ChunkId>>> {
    let id = id.to_string();
    db_run!(db, conn => {
        Ok(conn
            .transaction::<_, DbError, _>(async move |conn| {
                    let ids: Vec<ChunkId> =
                        diesel::delete(chunks::table.filter(chunks::document_id.eq(&id)))
                            .returning(chunks::id)
                            .get_results(conn)
                            .await?;
                    let n = diesel::delete(documents::table.filter(documents::id.eq(&id)))
                        .execute(conn)
                        .await?;
                    append_in_tx!(conn, &deletions(&ids));
                    Ok(if n == 0 { None } else { Some(ids) })
            })
            .await?)
    })
}

fn with_titles(rows: Vec<(Chunk, String, String)>) -> Vec<ChunkWithTitle> {
    rows.into_iter()
        .map(|(chunk, title, source)| ChunkWithTitle {
            chunk,
            title,
            source,
        })
        .collect()
}

/// Chunks with their document titles, in no particular order.
pub async fn chunks_by_ids(db: &Db, ids: &[ChunkId]) -> DbResult<Vec<ChunkWithTitle>> {
    let mut out = Vec::with_capacity(ids.len());
    for batch in ids.chunks(BATCH) {
        let rows: Vec<(Chunk, String, String)> = db_run!(db, conn => {
            Ok::<_, DbError>(chunks::table
                .inner_join(documents::table)
                .filter(chunks::id.eq_any(batch))
                .select((Chunk::as_select(), documents::title, documents::source))
                .load(conn)
                .await?)
        })?;
        out.extend(with_titles(rows));
    }
    Ok(out)
}

/// One page of all chunks ordered by id, for rebuilding the indexes.
pub async fn chunks_page(
    db: &Db,
    after_id: Option<&str>,
    limit: i64,
) -> DbResult<Vec<ChunkWithTitle>> {
    let after = after_id.unwrap_or("").to_string();
    let rows: Vec<(Chunk, String, String)> = db_run!(db, conn => {
        Ok::<_, DbError>(chunks::table
            .inner_join(documents::table)
            .filter(chunks::id.gt(&after))
            .order(chunks::id.asc())
            .limit(limit)
            .select((Chunk::as_select(), documents::title, documents::source))
            .load(conn)
            .await?)
    })?;
    Ok(with_titles(rows))
}

pub async fn all_chunk_ids(db: &Db) -> DbResult<Vec<ChunkId>> {
    db_run!(db, conn => {
        Ok(chunks::table.select(chunks::id).load(conn).await?)
    })
}

pub async fn count_documents(db: &Db, collection_id: Option<&str>) -> DbResult<i64> {
    db_run!(db, conn => {
        let mut q = documents::table.into_boxed();
        if let Some(c) = collection_id {
            q = q.filter(documents::collection_id.eq(c.to_string()));
        }
        Ok(q.count().get_result(conn).await?)
    })
}

pub async fn count_chunks(db: &Db, collection_id: Option<&str>) -> DbResult<i64> {
    db_run!(db, conn => {
        let mut q = chunks::table.into_boxed();
        if let Some(c) = collection_id {
            q = q.filter(chunks::collection_id.eq(c.to_string()));
        }
        Ok(q.count().get_result(conn).await?)
    })
}

/// `(document id, source)` of every document in a collection.
pub async fn document_sources(db: &Db, collection_id: &str) -> DbResult<Vec<(DocumentId, String)>> {
    db_run!(db, conn => {
        Ok(documents::table
            .filter(documents::collection_id.eq(collection_id))
            .select((documents::id, documents::source))
            .load(conn)
            .await?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::collections::ensure_collection;
    use crate::db::now;
    use crate::db::testing::backends;

    fn doc(collection_id: &CollectionId, source: &str) -> Document {
        let t = now();
        Document {
            id: DocumentId::random(),
            collection_id: collection_id.clone(),
            source: source.into(),
            title: format!("title of {source}"),
            content: format!("text of {source}"),
            content_hash: format!("hash of {source}"),
            metadata: "{}".into(),
            chunk_count: 2,
            indexed: false,
            created_at: t,
            updated_at: t,
        }
    }

    fn chunks_of(d: &Document) -> Vec<Chunk> {
        (0..2)
            .map(|i| Chunk {
                id: ChunkId::random(),
                document_id: d.id.clone(),
                collection_id: d.collection_id.clone(),
                position: i,
                text: format!("{} part {i}", d.content),
                content_hash: format!("h{i}"),
                char_start: 0,
                char_end: 1,
                token_count: 1,
            })
            .collect()
    }

    #[tokio::test]
    async fn replace_find_page_and_delete() {
        for test_db in backends().await {
            let db = &test_db.db;
            let c = ensure_collection(db, "docs").await.unwrap();
            let docs: Vec<Document> = ["a", "b", "c"].iter().map(|s| doc(&c.id, s)).collect();
            let rows: Vec<Chunk> = docs.iter().flat_map(chunks_of).collect();
            replace_documents(db, docs.clone(), rows.clone())
                .await
                .unwrap();
            let ids: Vec<DocumentId> = docs.iter().map(|d| d.id.clone()).collect();
            mark_indexed(db, &ids[..2]).await.unwrap();

            let sources = vec!["a".to_string(), "c".into(), "new".into()];
            let mut states = document_states(db, &c.id, &sources).await.unwrap();
            states.sort_by(|x, y| x.source.cmp(&y.source));
            let seen: Vec<(&str, bool)> = states
                .iter()
                .map(|s| (s.source.as_str(), s.indexed))
                .collect();
            assert_eq!(seen, [("a", true), ("c", false)]);
            assert_eq!(count_documents(db, Some(&c.id)).await.unwrap(), 3);
            assert_eq!(count_chunks(db, Some(&c.id)).await.unwrap(), 6);
            assert_eq!(count_chunks(db, Some("other")).await.unwrap(), 0);

            let of_a = chunk_ids_of_documents(db, &ids[..1]).await.unwrap();
            assert_eq!(of_a.len(), 2);
            assert!(of_a.iter().all(|(_, d)| *d == ids[0]));
            let wanted = vec![rows[0].id.clone(), ChunkId::random()];
            let found = chunks_by_ids(db, &wanted).await.unwrap();
            assert_eq!(found.len(), 1);
            assert_eq!(found[0].chunk, rows[0]);
            assert_eq!(found[0].title, "title of a");

            // Paging by chunk id visits every chunk once, in id order.
            let mut paged = Vec::new();
            let mut after: Option<ChunkId> = None;
            loop {
                let page = chunks_page(db, after.as_deref(), 4).await.unwrap();
                let Some(last) = page.last() else { break };
                after = Some(last.chunk.id.clone());
                paged.extend(page.into_iter().map(|c| c.chunk.id));
            }
            let mut all = all_chunk_ids(db).await.unwrap();
            all.sort();
            assert_eq!(paged, all);

            let got = get(db, &c.id, &ids[1]).await.unwrap().unwrap();
            assert_eq!(got.content, "text of b");
            assert!(get(db, "other", &ids[1]).await.unwrap().is_none());
            let listed = list(db, &c.id, None, 10).await.unwrap();
            assert_eq!(listed.len(), 3);

            let removed = delete_document(db, &ids[0]).await.unwrap().unwrap();
            assert_eq!(removed.len(), 2);
            assert!(delete_document(db, &ids[0]).await.unwrap().is_none());
            let mut left: Vec<String> = document_sources(db, &c.id)
                .await
                .unwrap()
                .into_iter()
                .map(|(_, source)| source)
                .collect();
            left.sort();
            assert_eq!(left, ["b", "c"]);
        }
    }
}
