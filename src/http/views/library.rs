//! Collections, their documents and grants, and jobs.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{parsed, time, Time};
use crate::db::collections::Collection;
use crate::db::documents::Document;
use crate::db::documents::DocumentSummary;
use crate::db::jobs::Job;

#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionView<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub description: &'a str,
    pub public: bool,
    pub documents: i64,
    pub chunks: i64,
    pub created_at: Time,
    /// Fusion parameters tuned for this collection (`ragchat eval --tune
    /// --store`); searches of it alone use them. Null: the configured ones.
    pub fusion: Option<crate::config::Fusion>,
}

impl<'a> CollectionView<'a> {
    pub fn new(c: &'a Collection, documents: i64, chunks: i64) -> Self {
        CollectionView {
            id: &c.id,
            name: &c.name,
            description: &c.description,
            public: c.public,
            documents,
            chunks,
            created_at: Time(c.created_at),
            fusion: c.tuned_fusion(),
        }
    }
}

/// A user's read grant on a collection.
#[derive(Debug, Serialize, ToSchema)]
pub struct GrantView {
    pub user_id: String,
    pub username: String,
    pub created_at: Time,
}

/// A document in a list: no text, and of its quality only the score.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentSummaryView<'a> {
    pub id: &'a str,
    pub collection_id: &'a str,
    pub source: &'a str,
    pub title: &'a str,
    pub chunks: i32,
    pub indexed: bool,
    pub quality_score: Value,
    pub created_at: Time,
    pub updated_at: Time,
}

impl<'a> From<&'a DocumentSummary> for DocumentSummaryView<'a> {
    fn from(d: &'a DocumentSummary) -> Self {
        DocumentSummaryView {
            id: &d.id,
            collection_id: &d.collection_id,
            source: &d.source,
            title: &d.title,
            chunks: d.chunk_count,
            indexed: d.indexed,
            quality_score: parsed(&d.metadata)["quality"]["score"].clone(),
            created_at: Time(d.created_at),
            updated_at: Time(d.updated_at),
        }
    }
}

/// One document: its quality report apart from the rest of its metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentView<'a> {
    pub id: &'a str,
    pub collection_id: &'a str,
    pub source: &'a str,
    pub title: &'a str,
    pub chunks: i32,
    pub indexed: bool,
    pub characters: usize,
    pub content_hash: &'a str,
    pub quality: Value,
    pub metadata: Value,
    pub created_at: Time,
    pub updated_at: Time,
}

impl<'a> From<&'a Document> for DocumentView<'a> {
    fn from(d: &'a Document) -> Self {
        let mut metadata = parsed(&d.metadata);
        let quality = metadata
            .as_object_mut()
            .and_then(|m| m.remove("quality"))
            .unwrap_or(Value::Null);
        DocumentView {
            id: &d.id,
            collection_id: &d.collection_id,
            source: &d.source,
            title: &d.title,
            chunks: d.chunk_count,
            indexed: d.indexed,
            characters: d.content.chars().count(),
            content_hash: &d.content_hash,
            quality,
            metadata,
            created_at: Time(d.created_at),
            updated_at: Time(d.updated_at),
        }
    }
}

/// A job as the API shows it: no payload, lease or dedupe key.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView<'a> {
    pub id: &'a str,
    #[schema(example = "ingest_upload")]
    pub kind: &'a str,
    #[schema(value_type = JobStateName)]
    pub state: &'static str,
    pub collection_id: Option<&'a str>,
    pub created_by: Option<&'a str>,
    pub attempts: i32,
    pub max_attempts: i32,
    pub cancel_requested: bool,
    pub progress: Value,
    pub result: Option<Value>,
    pub last_error: Option<&'a str>,
    pub run_after: Time,
    pub created_at: Time,
    pub started_at: Option<Time>,
    pub finished_at: Option<Time>,
    pub updated_at: Time,
}

impl<'a> From<&'a Job> for JobView<'a> {
    fn from(job: &'a Job) -> Self {
        JobView {
            id: &job.id,
            kind: &job.kind,
            state: job.state.as_str(),
            collection_id: job.collection_id.as_deref(),
            created_by: job.created_by.as_deref(),
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            cancel_requested: job.cancel_requested,
            progress: parsed(&job.progress),
            result: job.result.as_deref().map(parsed),
            last_error: job.last_error.as_deref(),
            run_after: Time(job.run_after),
            created_at: Time(job.created_at),
            started_at: time(job.started_at),
            finished_at: time(job.finished_at),
            updated_at: Time(job.updated_at),
        }
    }
}

/// A job's state.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = JobState)]
#[allow(dead_code)] // Only its schema is used: views hold states as strings.
pub enum JobStateName {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    Dead,
}

/// The `202` body of a request that queued a job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobAccepted<'a> {
    pub job: JobView<'a>,
}

/// A frame of the job progress WebSocket: `{"type": "job", "job"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobFrame<'a> {
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "job")]
    pub kind: &'static str,
    pub job: JobView<'a>,
}

impl<'a> From<&'a Job> for JobFrame<'a> {
    fn from(job: &'a Job) -> Self {
        JobFrame {
            kind: "job",
            job: job.into(),
        }
    }
}
