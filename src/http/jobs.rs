//! Jobs, for admins: list, show, cancel, and a WebSocket of progress events.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::documents::require_ingest;
use super::extract::{next_cursor, PageParams};
use super::views::{ErrorBody, JobFrame, JobStateName, JobView, Page};
use super::ws::{self, Admitted, Ended, WsParams};
use crate::app::App;
use crate::db::jobs::{self, Job, JobFilter, JobState};
use crate::error::{Error, ErrorCode};
use crate::jobs::worker;

/// How often the progress stream looks at the job. Workers may run in
/// another process, so the DB row is what there is to watch.
const POLL: Duration = Duration::from_millis(250);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/jobs", web::get().to(list))
        .route("/jobs/{id}", web::get().to(get))
        .route("/jobs/{id}/cancel", web::post().to(cancel))
        .route("/jobs/{id}/events", web::get().to(events));
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// queued, running, succeeded, failed, cancelled or dead.
    #[param(value_type = Option<JobStateName>)]
    state: Option<String>,
    /// ingest_upload, crawl or optimize_index.
    kind: Option<String>,
    collection_id: Option<String>,
    /// Items per page, 1 to 100 (20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `next_cursor` of the page before.
    cursor: Option<String>,
}

fn not_found() -> Error {
    Error::new(ErrorCode::JobNotFound, "no such job")
}

async fn job(app: &App, id: &str) -> Result<Job, Error> {
    jobs::get(&app.db, id).await?.ok_or_else(not_found)
}

/// `GET /jobs`, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/jobs",
    tag = "jobs",
    operation_id = "list_jobs",
    params(ListParams),
    responses(
        (status = 200, description = "One page of jobs", body = Page<JobView>),
        (status = 403, description = "`forbidden`: not an admin, or `insufficient_scope`: a key without `ingest` or `admin`", body = ErrorBody),
        (status = 422, description = "`invalid_field`: an unknown state, or `limit` out of range", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["ingest"]), ("api_key" = ["admin"])),
)]
pub async fn list(
    caller: crate::auth::Caller,
    app: web::Data<App>,
    params: web::Query<ListParams>,
) -> Result<HttpResponse, Error> {
    require_ingest(&caller)?;
    let p = params.into_inner();
    let state = p
        .state
        .as_deref()
        .map(|s| {
            s.parse::<JobState>().map_err(|_| {
                Error::field(
                    "state",
                    "must be one of queued, running, succeeded, failed, cancelled, dead",
                )
            })
        })
        .transpose()?;
    let (limit, cursor) = PageParams {
        limit: p.limit,
        cursor: p.cursor,
    }
    .parse()?;
    let filter = JobFilter {
        state,
        kind: p.kind,
        collection_id: p.collection_id.map(Into::into),
    };
    let items = jobs::list(&app.db, &filter, cursor, limit).await?;
    let next = next_cursor(&items, limit, |j| (j.created_at, j.id.as_str()));
    Ok(HttpResponse::Ok().json(Page {
        items: items.iter().map(JobView::from).collect(),
        next_cursor: next,
    }))
}

/// `GET /jobs/{id}`
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}",
    tag = "jobs",
    operation_id = "get_job",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 403, description = "`forbidden`: not an admin, or `insufficient_scope`: a key without `ingest` or `admin`", body = ErrorBody),
        (status = 404, description = "`job_not_found`", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["ingest"]), ("api_key" = ["admin"])),
)]
pub async fn get(
    caller: crate::auth::Caller,
    app: web::Data<App>,
    path: web::Path<String>,
) -> Result<HttpResponse, Error> {
    require_ingest(&caller)?;
    Ok(HttpResponse::Ok().json(JobView::from(&job(&app, &path).await?)))
}

/// `POST /jobs/{id}/cancel`: a queued job ends at once, a running one at its
/// worker's next checkpoint (the response then shows `cancel_requested`).
#[utoipa::path(
    post,
    path = "/api/v1/jobs/{id}/cancel",
    tag = "jobs",
    operation_id = "cancel_job",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 202, description = "Cancelled, or `cancel_requested` for a running job", body = JobView),
        (status = 403, description = "`forbidden`: not an admin, or `insufficient_scope`: a key without `ingest` or `admin`", body = ErrorBody),
        (status = 404, description = "`job_not_found`", body = ErrorBody),
        (status = 409, description = "`job_finished`", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["ingest"]), ("api_key" = ["admin"])),
)]
pub async fn cancel(
    caller: crate::auth::Caller,
    app: web::Data<App>,
    path: web::Path<String>,
) -> Result<HttpResponse, Error> {
    require_ingest(&caller)?;
    let before = job(&app, &path).await?;
    if before.state.is_finished() {
        return Err(Error::new(
            ErrorCode::JobFinished,
            format!("the job has already ended ({})", before.state.as_str()),
        ));
    }
    let after = jobs::request_cancel(&app.db, &before.id)
        .await?
        .ok_or_else(not_found)?;
    if after.state.is_finished() && !before.state.is_finished() {
        if after.state != JobState::Cancelled {
            // It ended on its own between the two reads.
            return Err(Error::new(
                ErrorCode::JobFinished,
                format!("the job has already ended ({})", after.state.as_str()),
            ));
        }
        worker::cleanup(&app, &after).await;
    }
    Ok(HttpResponse::Accepted().json(JobView::from(&after)))
}

/// `GET /jobs/{id}/events`: a `job` frame now and at every change, until a
/// last one in a finished state; then the server closes the socket.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/events",
    tag = "jobs",
    operation_id = "job_events",
    summary = "A job's progress as a WebSocket",
    description = "A WebSocket upgrade, authenticated like the chat socket (header, `?ticket=` or `?token=`). \
The server sends a JSON text frame `{\"type\": \"job\", \"job\": Job}` at once and at every change of the job, \
the last one in a finished state, then closes the socket; clients send nothing. \
It is closed with 1008 when the credential stops working.",
    params(("id" = String, Path, description = "The job's id"), WsParams),
    responses(
        (status = 101, description = "Switching protocols: the socket is open"),
        (status = 400, description = "`not_a_websocket` (a plain GET), or `invalid_query_string`", body = ErrorBody),
        (status = 401, description = "No valid credential, or `invalid_ticket`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an admin, or `insufficient_scope`: a key without `ingest` or `admin`", body = ErrorBody),
        (status = 404, description = "`job_not_found`", body = ErrorBody),
        (status = 429, description = "`rate_limited` (upgrades) or `too_many_connections`", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["ingest"]), ("api_key" = ["admin"]), ("ticket" = [])),
)]
pub async fn events(
    req: HttpRequest,
    body: web::Payload,
    app: web::Data<App>,
    params: web::Query<WsParams>,
    path: web::Path<String>,
) -> Result<HttpResponse, Error> {
    let admitted = ws::admit(&req, &app, params.into_inner(), require_ingest).await?;
    let first = job(&app, &path).await?;
    let (response, session, stream) = actix_ws::handle(&req, body)
        .map_err(|e| Error::new(ErrorCode::NotAWebsocket, e.to_string()))?;
    actix_web::rt::spawn(watch(app.into_inner(), admitted, first, session, stream));
    Ok(response)
}

/// Polls between two re-checks of the caller (about 15 s).
const RECHECK_EVERY: u32 = 60;

async fn watch(
    app: Arc<App>,
    // Holds the connection's place until the socket ends.
    admitted: Admitted,
    mut last: Job,
    mut session: actix_ws::Session,
    // Held so the connection stays open; clients have nothing to say here.
    _incoming: actix_ws::MessageStream,
) {
    let frame = |j: &Job| serde_json::to_string(&JobFrame::from(j)).unwrap_or_default();
    if session.text(frame(&last)).await.is_err() {
        return;
    }
    let caller = &admitted.caller;
    let mut polls = 0u32;
    while !last.state.is_finished() {
        tokio::time::sleep(POLL).await;
        // The socket ends with its credential (expiry, logout, disabling).
        polls = polls.wrapping_add(1);
        if ws::time_left(caller) == Some(Duration::ZERO) {
            let _ = session.close(Some(ws::policy_close("token expired"))).await;
            return;
        }
        if polls.is_multiple_of(RECHECK_EVERY) {
            let reason = match ws::recheck(&app, caller).await {
                Err(Ended::Close(reason)) => Some(reason),
                // Demoted since the socket opened.
                Ok(now) if require_ingest(&now).is_err() => Some(ws::policy_close("forbidden")),
                _ => None,
            };
            if reason.is_some() {
                let _ = session.close(reason).await;
                return;
            }
        }
        let now = match jobs::get(&app.db, &last.id).await {
            Ok(Some(j)) => j,
            // Deleted with its collection.
            Ok(None) => break,
            Err(e) => {
                tracing::warn!("job events: {e}");
                continue;
            }
        };
        if now.updated_at != last.updated_at || now.state != last.state {
            if session.text(frame(&now)).await.is_err() {
                return;
            }
            last = now;
        }
    }
    let _ = session.close(None).await;
}
