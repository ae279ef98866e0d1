//! Documents as the admin API shows them: listing without their text, one
//! with its quality report, and the per-collection duplicate signatures that
//! ingestion checks new documents against.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::accounts::Cursor;
use super::models::{Document, DocumentSignature};
use super::schema::{document_signatures, documents};
use super::{Db, DbError, DbResult};
use crate::db_run;

/// A document without its text.
#[derive(Debug, Clone, Queryable, PartialEq)]
pub struct DocumentSummary {
    pub id: String,
    pub collection_id: String,
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
) -> DbResult<Vec<(String, String)>> {
    let rows: Vec<(String, String, String)> = db_run!(db, conn => {
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
