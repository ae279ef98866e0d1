//! Conversations: owner-only CRUD and the message list.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::{next_cursor, PageParams};
use super::views::{ConversationView, ErrorBody, MessageView, Page};
use crate::app::App;
use crate::auth::{Caller, Scope};
use crate::db::conversations as repo;
use crate::error::{Error, ErrorCode};

const DEFAULT_TITLE: &str = "New conversation";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/conversations", web::post().to(create))
        .route("/conversations", web::get().to(list))
        .route("/conversations/{id}", web::get().to(get))
        .route("/conversations/{id}", web::patch().to(rename))
        .route("/conversations/{id}", web::delete().to(delete))
        .route("/conversations/{id}/messages", web::get().to(messages));
}

fn not_found() -> Error {
    Error::new(ErrorCode::ConversationNotFound, "no such conversation")
}

fn check_title(title: &str) -> Result<String, Error> {
    let t = title.trim();
    if t.is_empty() || t.chars().count() > 200 {
        return Err(Error::field("title", "must be 1 to 200 characters"));
    }
    Ok(t.to_string())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateConversationBody)]
pub struct CreateBody {
    /// 1 to 200 characters; `New conversation` when absent.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    title: Option<String>,
}

/// Start a conversation.
#[utoipa::path(
    post,
    path = "/api/v1/conversations",
    tag = "conversations",
    operation_id = "create_conversation",
    request_body = CreateBody,
    responses(
        (status = 201, description = "The new conversation", body = ConversationView),
        (status = 403, description = "`insufficient_scope`: a key without `chat`", body = ErrorBody),
        (status = 422, description = "`invalid_field`: title", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["chat"])),
)]
pub async fn create(
    caller: Caller,
    app: web::Data<App>,
    body: web::Json<CreateBody>,
) -> Result<HttpResponse, Error> {
    caller.require_scope(Scope::Chat)?;
    let title = match &body.title {
        Some(t) => check_title(t)?,
        None => DEFAULT_TITLE.to_string(),
    };
    let c = repo::create(&app.db, &caller.user.id, &title).await?;
    Ok(HttpResponse::Created().json(ConversationView::from(&c)))
}

/// The caller's conversations, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/conversations",
    tag = "conversations",
    operation_id = "list_conversations",
    params(PageParams),
    responses(
        (status = 200, description = "One page", body = Page<ConversationView>),
        (status = 403, description = "`insufficient_scope`: a key without `chat`", body = ErrorBody),
        (status = 422, description = "`invalid_field`: `limit` out of range", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["chat"])),
)]
pub async fn list(
    caller: Caller,
    app: web::Data<App>,
    page: web::Query<PageParams>,
) -> Result<HttpResponse, Error> {
    caller.require_scope(Scope::Chat)?;
    let (limit, cursor) = page.parse()?;
    let rows = repo::list(&app.db, &caller.user.id, cursor, limit).await?;
    let next = next_cursor(&rows, limit, |c| (c.created_at, c.id.as_str()));
    Ok(HttpResponse::Ok().json(Page {
        items: rows.iter().map(ConversationView::from).collect(),
        next_cursor: next,
    }))
}

/// One of the caller's conversations.
#[utoipa::path(
    get,
    path = "/api/v1/conversations/{id}",
    tag = "conversations",
    operation_id = "get_conversation",
    params(("id" = String, Path, description = "The conversation's id")),
    responses(
        (status = 200, description = "The conversation", body = ConversationView),
        (status = 403, description = "`insufficient_scope`: a key without `chat`", body = ErrorBody),
        (status = 404, description = "`conversation_not_found`: unknown, or another user's", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["chat"])),
)]
pub async fn get(
    caller: Caller,
    app: web::Data<App>,
    path: web::Path<String>,
) -> Result<HttpResponse, Error> {
    caller.require_scope(Scope::Chat)?;
    let c = repo::get(&app.db, &caller.user.id, &path)
        .await?
        .ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(ConversationView::from(&c)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameBody {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    title: String,
}

/// Rename a conversation.
#[utoipa::path(
    patch,
    path = "/api/v1/conversations/{id}",
    tag = "conversations",
    operation_id = "rename_conversation",
    params(("id" = String, Path, description = "The conversation's id")),
    request_body = RenameBody,
    responses(
        (status = 200, description = "The conversation as renamed", body = ConversationView),
        (status = 403, description = "`insufficient_scope`: a key without `chat`", body = ErrorBody),
        (status = 404, description = "`conversation_not_found`: unknown, or another user's", body = ErrorBody),
        (status = 422, description = "`invalid_field`: title", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["chat"])),
)]
pub async fn rename(
    caller: Caller,
    app: web::Data<App>,
    path: web::Path<String>,
    body: web::Json<RenameBody>,
) -> Result<HttpResponse, Error> {
    caller.require_scope(Scope::Chat)?;
    let title = check_title(&body.title)?;
    if !repo::rename(&app.db, &caller.user.id, &path, &title).await? {
        return Err(not_found());
    }
    let c = repo::get(&app.db, &caller.user.id, &path)
        .await?
        .ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(ConversationView::from(&c)))
}

/// Delete a conversation and its messages.
#[utoipa::path(
    delete,
    path = "/api/v1/conversations/{id}",
    tag = "conversations",
    operation_id = "delete_conversation",
    params(("id" = String, Path, description = "The conversation's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`insufficient_scope`: a key without `chat`", body = ErrorBody),
        (status = 404, description = "`conversation_not_found`: unknown, or another user's", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["chat"])),
)]
pub async fn delete(
    caller: Caller,
    app: web::Data<App>,
    path: web::Path<String>,
) -> Result<HttpResponse, Error> {
    caller.require_scope(Scope::Chat)?;
    if !repo::delete(&app.db, &caller.user.id, &path).await? {
        return Err(not_found());
    }
    Ok(HttpResponse::NoContent().finish())
}

/// A conversation's messages, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/conversations/{id}/messages",
    tag = "conversations",
    operation_id = "list_messages",
    params(("id" = String, Path, description = "The conversation's id"), PageParams),
    responses(
        (status = 200, description = "One page of messages", body = Page<MessageView>),
        (status = 403, description = "`insufficient_scope`: a key without `chat`", body = ErrorBody),
        (status = 404, description = "`conversation_not_found`: unknown, or another user's", body = ErrorBody),
        (status = 422, description = "`invalid_field`: `limit` out of range", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["chat"])),
)]
pub async fn messages(
    caller: Caller,
    app: web::Data<App>,
    path: web::Path<String>,
    page: web::Query<PageParams>,
) -> Result<HttpResponse, Error> {
    caller.require_scope(Scope::Chat)?;
    let (limit, cursor) = page.parse()?;
    let c = repo::get(&app.db, &caller.user.id, &path)
        .await?
        .ok_or_else(not_found)?;
    let rows = repo::messages(&app.db, &c.id, cursor, limit).await?;
    let next = next_cursor(&rows, limit, |m| (m.created_at, m.id.as_str()));
    Ok(HttpResponse::Ok().json(Page {
        items: rows.iter().map(MessageView::from).collect(),
        next_cursor: next,
    }))
}
