use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use super::schema::{
    api_keys, chunks, collections, conversations, document_signatures, documents, messages,
    refresh_tokens, sessions, users,
};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, PartialEq)]
#[diesel(table_name = collections)]
pub struct Collection {
    pub id: String,
    pub name: String,
    pub description: String,
    pub created_at: NaiveDateTime,
    pub public: bool,
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

#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq)]
#[diesel(table_name = users)]
pub struct User {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub password_hash: String,
    pub role: String,
    pub disabled: bool,
    pub token_version: i32,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq)]
#[diesel(table_name = sessions)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    pub created_at: NaiveDateTime,
    pub revoked_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq)]
#[diesel(table_name = refresh_tokens)]
pub struct RefreshToken {
    pub token_hash: String,
    pub session_id: String,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub used_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq)]
#[diesel(table_name = api_keys)]
pub struct ApiKey {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub prefix: String,
    pub key_hash: String,
    /// Comma-separated scope names.
    pub scopes: String,
    pub created_at: NaiveDateTime,
    pub expires_at: Option<NaiveDateTime>,
    pub last_used_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq)]
#[diesel(table_name = conversations)]
pub struct Conversation {
    pub id: String,
    pub user_id: String,
    pub title: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq)]
#[diesel(table_name = messages)]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    pub role: String,
    pub content: String,
    pub metadata: String,
    pub created_at: NaiveDateTime,
}

/// Fingerprints of a document's text for duplicate detection (see
/// `ingest::dedup`).
#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq)]
#[diesel(table_name = document_signatures)]
pub struct DocumentSignature {
    pub document_id: String,
    pub collection_id: String,
    pub source: String,
    pub text_hash: String,
    pub minhash: String,
}
