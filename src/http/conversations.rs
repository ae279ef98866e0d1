//! Conversations: owner-only CRUD and the message list.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{next_cursor, rfc3339, PageParams};
use crate::app::App;
use crate::auth::{Caller, Scope};
use crate::db::conversations as repo;
use crate::db::conversations::{Conversation, Message};
use crate::error::Error;

const DEFAULT_TITLE: &str = "New conversation";

fn conversation_json(c: &Conversation) -> Value {
    json!({
        "id": c.id,
        "title": c.title,
        "created_at": rfc3339(c.created_at),
        "updated_at": rfc3339(c.updated_at),
    })
}

fn message_json(m: &Message) -> Value {
    json!({
        "id": m.id,
        "role": m.role,
        "content": m.content,
        "metadata": serde_json::from_str::<Value>(&m.metadata).unwrap_or(Value::Null),
        "created_at": rfc3339(m.created_at),
    })
}

fn not_found() -> Error {
    Error::not_found("conversation_not_found", "no such conversation")
}

fn check_title(title: &str) -> Result<String, Error> {
    let t = title.trim();
    if t.is_empty() || t.chars().count() > 200 {
        return Err(Error::field("title", "must be 1 to 200 characters"));
    }
    Ok(t.to_string())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    title: Option<String>,
}

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
    Ok(HttpResponse::Created().json(conversation_json(&c)))
}

pub async fn list(
    caller: Caller,
    app: web::Data<App>,
    page: web::Query<PageParams>,
) -> Result<HttpResponse, Error> {
    caller.require_scope(Scope::Chat)?;
    let (limit, cursor) = page.parse()?;
    let rows = repo::list(&app.db, &caller.user.id, cursor, limit).await?;
    let next = next_cursor(&rows, limit, |c| (c.created_at, c.id.as_str()));
    let items: Vec<_> = rows.iter().map(conversation_json).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items, "next_cursor": next })))
}

pub async fn get(
    caller: Caller,
    app: web::Data<App>,
    path: web::Path<String>,
) -> Result<HttpResponse, Error> {
    caller.require_scope(Scope::Chat)?;
    let c = repo::get(&app.db, &caller.user.id, &path)
        .await?
        .ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(conversation_json(&c)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameBody {
    title: String,
}

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
    Ok(HttpResponse::Ok().json(conversation_json(&c)))
}

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
    let items: Vec<_> = rows.iter().map(message_json).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items, "next_cursor": next })))
}
