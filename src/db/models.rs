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

/// Where a job is in its life. Stored as its lower-case name (a `Text`
/// column on both backends, guarded by a CHECK constraint).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    diesel::AsExpression,
    diesel::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    /// Failed permanently (an error retrying cannot fix).
    Failed,
    Cancelled,
    /// Out of attempts.
    Dead,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Dead => "dead",
        }
    }

    /// Finished jobs never change state again.
    pub fn is_finished(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job state `{0}`")]
pub struct UnknownJobState(pub String);

impl std::str::FromStr for JobState {
    type Err = UnknownJobState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownJobState(s.to_string()))
    }
}

impl<DB> diesel::serialize::ToSql<diesel::sql_types::Text, DB> for JobState
where
    DB: diesel::backend::Backend,
    str: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
{
    fn to_sql<'b>(
        &'b self,
        out: &mut diesel::serialize::Output<'b, '_, DB>,
    ) -> diesel::serialize::Result {
        <str as diesel::serialize::ToSql<diesel::sql_types::Text, DB>>::to_sql(self.as_str(), out)
    }
}

impl<DB> diesel::deserialize::FromSql<diesel::sql_types::Text, DB> for JobState
where
    DB: diesel::backend::Backend,
    String: diesel::deserialize::FromSql<diesel::sql_types::Text, DB>,
{
    fn from_sql(bytes: DB::RawValue<'_>) -> diesel::deserialize::Result<Self> {
        let text =
            <String as diesel::deserialize::FromSql<diesel::sql_types::Text, DB>>::from_sql(bytes)?;
        Ok(text.parse()?)
    }
}

/// A unit of background work. JSON columns (`payload`, `result`, `progress`)
/// are text, as elsewhere in the schema.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq)]
#[diesel(table_name = super::schema::jobs)]
pub struct Job {
    pub id: String,
    /// What to do (`ingest_upload`, `crawl`, `optimize_index`, …).
    pub kind: String,
    pub collection_id: Option<String>,
    /// None for jobs the service schedules itself.
    pub created_by: Option<String>,
    pub state: JobState,
    pub payload: String,
    pub result: Option<String>,
    /// Written by the worker while it runs.
    pub progress: String,
    /// Attempts started so far, counting the running one.
    pub attempts: i32,
    pub max_attempts: i32,
    /// Not claimable before this (scheduling and retry backoff).
    pub run_after: NaiveDateTime,
    /// The worker holding the lease; set only while running.
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<NaiveDateTime>,
    pub last_error: Option<String>,
    pub cancel_requested: bool,
    pub dedupe_key: Option<String>,
    pub created_at: NaiveDateTime,
    /// Start of the latest attempt.
    pub started_at: Option<NaiveDateTime>,
    pub finished_at: Option<NaiveDateTime>,
    pub updated_at: NaiveDateTime,
}
