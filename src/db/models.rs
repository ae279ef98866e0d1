use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use super::schema::{chunks, collections, documents};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, PartialEq)]
#[diesel(table_name = collections)]
pub struct Collection {
    pub id: String,
    pub name: String,
    pub description: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset, PartialEq)]
#[diesel(table_name = documents)]
pub struct Document {
    pub id: String,
    pub collection_id: String,
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
    pub id: String,
    pub source: String,
    pub content_hash: String,
    pub indexed: bool,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq)]
#[diesel(table_name = chunks)]
pub struct Chunk {
    pub id: String,
    pub document_id: String,
    pub collection_id: String,
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
