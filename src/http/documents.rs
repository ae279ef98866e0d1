//! Documents of a collection, for admins: upload (a job), list, show, delete.
//! Ingesting is an admin's business; API keys need the `ingest` scope.

use actix_multipart::Multipart;
use actix_web::{web, HttpResponse};
use serde_json::Value;

use super::extract::{next_cursor, PageParams};
use super::views::{DocumentSummaryView, DocumentView, ErrorBody, JobAccepted, Page};
use crate::app::App;
use crate::auth::{Caller, Scope};
use crate::db::collections::{self, Collection};
use crate::db::documents;
use crate::db::documents::Document;
use crate::db::jobs::{self, NewJob};
use crate::error::{Error, ErrorCode};
use crate::ingest::formats;
use crate::ingest::{pipeline, upload};
use crate::jobs::crawl::CrawlRequest;
use crate::jobs::ingest::{upload_dir, UploadPayload, UploadedFile};
use crate::jobs::{KIND_CRAWL, KIND_INGEST_UPLOAD};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/collections/{id}/documents", web::post().to(upload))
        .route("/collections/{id}/documents", web::get().to(list))
        .route("/collections/{id}/documents/{doc}", web::get().to(get))
        .route(
            "/collections/{id}/documents/{doc}",
            web::delete().to(delete),
        )
        .route("/collections/{id}/crawl", web::post().to(crawl));
}

/// Admin role, and for keys the `ingest` (or `admin`) scope.
pub fn require_ingest(caller: &Caller) -> Result<(), Error> {
    if !caller.is_admin() {
        return Err(Error::new(
            ErrorCode::Forbidden,
            "this needs the admin role",
        ));
    }
    caller.require_any_scope(&[Scope::Ingest, Scope::Admin])
}

pub async fn collection(app: &App, id: &str) -> Result<Collection, Error> {
    collections::collection_by_id(&app.db, id)
        .await?
        .ok_or_else(|| Error::new(ErrorCode::CollectionNotFound, "no such collection"))
}

/// The form of an upload: any number of file parts, each with a file name.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Only its schema is used: the form is read as a stream.
pub struct UploadForm {
    /// The files (any field name will do); txt, md, html, pdf, docx, jsonl or zip.
    #[schema(value_type = Vec<String>, format = Binary)]
    files: Vec<Vec<u8>>,
}

/// `POST /collections/{id}/documents` (multipart): 202 with the job.
#[utoipa::path(
    post,
    path = "/api/v1/collections/{id}/documents",
    tag = "documents",
    operation_id = "upload_documents",
    params(("id" = String, Path, description = "The collection's id")),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 202, description = "Queued: the ingestion job (also at `Location`)", body = JobAccepted,
            headers(("Location" = String, description = "`/api/v1/jobs/{job id}`"))),
        (status = 400, description = "`invalid_multipart`, `no_files` or `unsafe_archive`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an admin, or `insufficient_scope`: a key without `ingest` or `admin`", body = ErrorBody),
        (status = 404, description = "`collection_not_found`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`, the message naming the limit", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`unreadable_file`", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["ingest"]), ("api_key" = ["admin"])),
)]
pub async fn upload(
    caller: Caller,
    app: web::Data<App>,
    path: web::Path<String>,
    form: Multipart,
) -> Result<HttpResponse, Error> {
    require_ingest(&caller)?;
    let collection = collection(&app, &path).await?;
    let upload_id = uuid::Uuid::new_v4().to_string();
    let dir = upload_dir(&app, &upload_id);
    match accept(&app, &caller, &collection, &upload_id, form).await {
        Ok(job) => Ok(accepted(&job)),
        Err(e) => {
            // A refused upload leaves nothing behind.
            let _ = tokio::fs::remove_dir_all(&dir).await;
            Err(e)
        }
    }
}

async fn accept(
    app: &App,
    caller: &Caller,
    collection: &Collection,
    upload_id: &str,
    form: Multipart,
) -> Result<jobs::Job, Error> {
    let dir = upload_dir(app, upload_id);
    let stored = upload::receive(form, &dir, &app.settings.uploads).await?;
    // Refuse what can never be ingested now, while the client is listening,
    // rather than as a failed job later.
    let limits = crate::jobs::ingest::limits(&app.settings.uploads);
    let check = stored.clone();
    tokio::task::spawn_blocking(move || {
        check
            .iter()
            .try_for_each(|f| formats::inspect(&f.path, &f.name, &limits).map(drop))
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))??;

    let files = stored
        .iter()
        .map(|f| UploadedFile {
            name: f.name.clone(),
            file: f
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            bytes: f.bytes,
        })
        .collect();
    let payload = UploadPayload {
        upload_id: upload_id.to_string(),
        files,
    };
    let payload = serde_json::to_value(&payload).map_err(|e| Error::Internal(e.to_string()))?;
    enqueue(app, caller, collection, KIND_INGEST_UPLOAD, payload, None).await
}

/// Queue a job of `kind` on `collection` for `caller`.
async fn enqueue(
    app: &App,
    caller: &Caller,
    collection: &Collection,
    kind: &str,
    payload: Value,
    dedupe_key: Option<String>,
) -> Result<jobs::Job, Error> {
    let mut job = NewJob::new(kind, payload);
    job.collection_id = Some(collection.id.clone());
    job.created_by = Some(caller.user.id.clone());
    job.max_attempts = app.settings.jobs.max_attempts as i32;
    job.dedupe_key = dedupe_key;
    Ok(jobs::enqueue(&app.db, job).await?)
}

/// `202` with the job, pointing at where to follow it.
fn accepted(job: &jobs::Job) -> HttpResponse {
    HttpResponse::Accepted()
        .insert_header(("Location", format!("/api/v1/jobs/{}", job.id)))
        .json(JobAccepted { job: job.into() })
}

/// `GET /collections/{id}/documents`, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/collections/{id}/documents",
    tag = "documents",
    operation_id = "list_documents",
    params(("id" = String, Path, description = "The collection's id"), PageParams),
    responses(
        (status = 200, description = "One page of documents", body = Page<DocumentSummaryView>),
        (status = 403, description = "`forbidden`: not an admin, or `insufficient_scope`: a key without `ingest` or `admin`", body = ErrorBody),
        (status = 404, description = "`collection_not_found`", body = ErrorBody),
        (status = 422, description = "`invalid_field`: `limit` out of range", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["ingest"]), ("api_key" = ["admin"])),
)]
pub async fn list(
    caller: Caller,
    app: web::Data<App>,
    path: web::Path<String>,
    page: web::Query<PageParams>,
) -> Result<HttpResponse, Error> {
    require_ingest(&caller)?;
    let collection = collection(&app, &path).await?;
    let (limit, cursor) = page.parse()?;
    let items = documents::list(&app.db, &collection.id, cursor, limit).await?;
    let next = next_cursor(&items, limit, |d| (d.created_at, d.id.as_str()));
    Ok(HttpResponse::Ok().json(Page {
        items: items.iter().map(DocumentSummaryView::from).collect(),
        next_cursor: next,
    }))
}

async fn document(app: &App, collection_id: &str, id: &str) -> Result<Document, Error> {
    let collection = collection(app, collection_id).await?;
    documents::get(&app.db, &collection.id, id)
        .await?
        .ok_or_else(|| Error::new(ErrorCode::DocumentNotFound, "no such document"))
}

/// `GET /collections/{id}/documents/{doc}`
#[utoipa::path(
    get,
    path = "/api/v1/collections/{id}/documents/{doc}",
    tag = "documents",
    operation_id = "get_document",
    params(("id" = String, Path, description = "The collection's id"), ("doc" = String, Path, description = "The document's id")),
    responses(
        (status = 200, description = "The document, with its quality report and metadata", body = DocumentView),
        (status = 403, description = "`forbidden`: not an admin, or `insufficient_scope`: a key without `ingest` or `admin`", body = ErrorBody),
        (status = 404, description = "`collection_not_found` or `document_not_found`", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["ingest"]), ("api_key" = ["admin"])),
)]
pub async fn get(
    caller: Caller,
    app: web::Data<App>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Error> {
    require_ingest(&caller)?;
    let (cid, id) = path.into_inner();
    let d = document(&app, &cid, &id).await?;
    Ok(HttpResponse::Ok().json(DocumentView::from(&d)))
}

/// `DELETE /collections/{id}/documents/{doc}`: from the DB and both indexes.
#[utoipa::path(
    delete,
    path = "/api/v1/collections/{id}/documents/{doc}",
    tag = "documents",
    operation_id = "delete_document",
    params(("id" = String, Path, description = "The collection's id"), ("doc" = String, Path, description = "The document's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`forbidden`: not an admin, or `insufficient_scope`: a key without `ingest` or `admin`", body = ErrorBody),
        (status = 404, description = "`collection_not_found` or `document_not_found`", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["ingest"]), ("api_key" = ["admin"])),
)]
pub async fn delete(
    caller: Caller,
    app: web::Data<App>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Error> {
    require_ingest(&caller)?;
    let (cid, id) = path.into_inner();
    let d = document(&app, &cid, &id).await?;
    pipeline::delete_document(&app.indexer(), &d.id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /collections/{id}/crawl`: 202 with the job. A crawl of the same
/// start URL already queued or running is returned instead of a second one.
#[utoipa::path(
    post,
    path = "/api/v1/collections/{id}/crawl",
    tag = "documents",
    operation_id = "crawl",
    params(("id" = String, Path, description = "The collection's id")),
    request_body = CrawlRequest,
    responses(
        (status = 202, description = "Queued: the crawl job (also at `Location`)", body = JobAccepted,
            headers(("Location" = String, description = "`/api/v1/jobs/{job id}`"))),
        (status = 400, description = "`invalid_crawl`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an admin, or `insufficient_scope`: a key without `ingest` or `admin`", body = ErrorBody),
        (status = 404, description = "`collection_not_found`", body = ErrorBody),
        (status = 422, description = "`invalid_field` naming the field", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["ingest"]), ("api_key" = ["admin"])),
)]
pub async fn crawl(
    caller: Caller,
    app: web::Data<App>,
    path: web::Path<String>,
    body: web::Json<CrawlRequest>,
) -> Result<HttpResponse, Error> {
    require_ingest(&caller)?;
    let collection = collection(&app, &path).await?;
    let req = body.into_inner();
    req.validate(&app.settings.crawl).map_err(|e| match e {
        crate::crawl::CrawlError::InvalidSpec { field, message } => {
            // The API speaks in seconds.
            let field = if field == "timeout" {
                "timeout_secs"
            } else {
                field
            };
            Error::field(field, message)
        }
        other => Error::new(ErrorCode::InvalidCrawl, other.to_string()),
    })?;
    let payload = serde_json::to_value(&req).map_err(|e| Error::Internal(e.to_string()))?;
    let key = req.dedupe_key(&collection.id);
    let job = enqueue(&app, &caller, &collection, KIND_CRAWL, payload, Some(key)).await?;
    Ok(accepted(&job))
}
