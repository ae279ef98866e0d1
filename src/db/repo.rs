//! Queries on collections, documents and chunks. Each function is written once
//! and compiled for both backends through `db_run!`.

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::models::{Chunk, ChunkWithTitle, Collection, Document, DocumentState};
use super::schema::{chunks, collections, documents};
use super::{Db, DbError, DbResult};
use crate::db_run;

/// Rows per statement: well under SQLite's bound-variable limit for our widest row.
const BATCH: usize = 500;

/// Now, to the microsecond: PostgreSQL keeps microseconds, so values read back
/// compare equal on both backends (pagination cursors depend on it).
pub fn now() -> chrono::NaiveDateTime {
    use chrono::{SubsecRound, Utc};
    Utc::now().naive_utc().trunc_subsecs(6)
}

pub async fn collection_by_name(db: &Db, name: &str) -> DbResult<Option<Collection>> {
    db_run!(db, conn => {
        Ok(collections::table
            .filter(collections::name.eq(name))
            .select(Collection::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

pub async fn list_collections(db: &Db) -> DbResult<Vec<Collection>> {
    db_run!(db, conn => {
        Ok(collections::table
            .order(collections::name.asc())
            .select(Collection::as_select())
            .load(conn)
            .await?)
    })
}

/// Return the collection named `name`, creating it if needed. Safe under
/// concurrent callers: the unique name decides the winner.
pub async fn ensure_collection(db: &Db, name: &str) -> DbResult<Collection> {
    if let Some(c) = collection_by_name(db, name).await? {
        return Ok(c);
    }
    let new = Collection {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_string(),
        description: String::new(),
        created_at: now(),
        public: false,
    };
    db_run!(db, conn => {
        diesel::insert_into(collections::table)
            .values(&new)
            .on_conflict(collections::name)
            .do_nothing()
            .execute(conn)
            .await?;
        Ok::<(), DbError>(())
    })?;
    collection_by_name(db, name)
        .await?
        .ok_or_else(|| DbError::Query(diesel::result::Error::NotFound))
}

/// Delete a collection with its documents and chunks; returns the chunk ids
/// removed so the caller can remove them from the indexes too.
pub async fn delete_collection(db: &Db, id: &str) -> DbResult<Vec<String>> {
    let id = id.to_string();
    db_run!(db, conn => {
        Ok(conn
            .transaction::<_, DbError, _>(async move |conn| {
                    let ids: Vec<String> = chunks::table
                        .filter(chunks::collection_id.eq(&id))
                        .select(chunks::id)
                        .load(conn)
                        .await?;
                    diesel::delete(chunks::table.filter(chunks::collection_id.eq(&id)))
                        .execute(conn)
                        .await?;
                    diesel::delete(documents::table.filter(documents::collection_id.eq(&id)))
                        .execute(conn)
                        .await?;
                    diesel::delete(collections::table.filter(collections::id.eq(&id)))
                        .execute(conn)
                        .await?;
                    Ok(ids)
            })
            .await?)
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
    document_ids: &[String],
) -> DbResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    for batch in document_ids.chunks(BATCH) {
        let rows: Vec<(String, String)> = db_run!(db, conn => {
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

/// Write new or changed documents and replace their chunk rows, in one
/// transaction. Documents are written with `indexed = false`; the caller marks
/// them indexed once both indexes hold their chunks.
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
                let ids: Vec<&String> = docs.iter().map(|d| &d.id).collect();
                for batch in ids.chunks(BATCH) {
                    diesel::delete(chunks::table.filter(chunks::document_id.eq_any(batch)))
                        .execute(conn)
                        .await?;
                }
                for row in &rows {
                    diesel::insert_into(chunks::table)
                        .values(row)
                        .execute(conn)
                        .await?;
                }
                Ok(())
        })
        .await
    })
}

pub async fn mark_indexed(db: &Db, document_ids: &[String]) -> DbResult<()> {
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

/// Delete one document and its chunks; returns the removed chunk ids, or
/// `None` when no such document exists.
pub async fn delete_document(db: &Db, id: &str) -> DbResult<Option<Vec<String>>> {
    let id = id.to_string();
    db_run!(db, conn => {
        Ok(conn
            .transaction::<_, DbError, _>(async move |conn| {
                    let ids: Vec<String> = chunks::table
                        .filter(chunks::document_id.eq(&id))
                        .select(chunks::id)
                        .load(conn)
                        .await?;
                    diesel::delete(chunks::table.filter(chunks::document_id.eq(&id)))
                        .execute(conn)
                        .await?;
                    let n = diesel::delete(documents::table.filter(documents::id.eq(&id)))
                        .execute(conn)
                        .await?;
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
pub async fn chunks_by_ids(db: &Db, ids: &[String]) -> DbResult<Vec<ChunkWithTitle>> {
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

pub async fn all_chunk_ids(db: &Db) -> DbResult<Vec<String>> {
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

pub async fn set_collection_description(db: &Db, id: &str, description: &str) -> DbResult<()> {
    db_run!(db, conn => {
        diesel::update(collections::table.filter(collections::id.eq(id)))
            .set(collections::description.eq(description))
            .execute(conn)
            .await?;
        Ok(())
    })
}

/// `(document id, source)` of every document in a collection.
pub async fn document_sources(db: &Db, collection_id: &str) -> DbResult<Vec<(String, String)>> {
    db_run!(db, conn => {
        Ok(documents::table
            .filter(documents::collection_id.eq(collection_id))
            .select((documents::id, documents::source))
            .load(conn)
            .await?)
    })
}
