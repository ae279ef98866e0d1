//! Admin endpoints for users.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::extract::{next_cursor, rate_limit_caller, PageParams};
use super::views::{Page, UserView};
use crate::app::App;
use crate::auth::{self, Caller, Role};
use crate::db::accounts;
use crate::error::{Error, ErrorCode};
use crate::ratelimit::Bucket;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/users", web::get().to(list_users))
        .route("/admin/users", web::post().to(create_user))
        .route("/admin/users/{id}", web::get().to(get_user))
        .route("/admin/users/{id}", web::patch().to(update_user));
}

fn check_role(role: &str) -> Result<Role, Error> {
    role.parse()
        .map_err(|_| Error::field("role", "must be `admin` or `user`"))
}

fn user_not_found() -> Error {
    Error::new(ErrorCode::UserNotFound, "no such user")
}

pub async fn list_users(
    caller: Caller,
    app: web::Data<App>,
    page: web::Query<PageParams>,
) -> Result<HttpResponse, Error> {
    caller.require_admin()?;
    let (limit, cursor) = page.parse()?;
    let users = accounts::list_users(&app.db, cursor, limit).await?;
    let next = next_cursor(&users, limit, |u| (u.created_at, u.id.as_str()));
    Ok(HttpResponse::Ok().json(Page {
        items: users.iter().map(UserView::from).collect(),
        next_cursor: next,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUserBody {
    username: String,
    password: String,
    email: Option<String>,
    role: Option<String>,
}

pub async fn create_user(
    caller: Caller,
    req: HttpRequest,
    app: web::Data<App>,
    body: web::Json<CreateUserBody>,
) -> Result<HttpResponse, Error> {
    caller.require_admin()?;
    // An Argon2 hash per user: login's limits, so a leaked admin key cannot
    // flood the CPU either.
    rate_limit_caller(&req, &app, Bucket::Login, &caller).await?;
    let b = body.into_inner();
    let role = check_role(b.role.as_deref().unwrap_or(Role::User.as_str()))?;
    let user = auth::create_user(
        &app.db,
        &b.username,
        &b.password,
        b.email.as_deref(),
        role,
        app.settings.auth.min_password_length,
    )
    .await?;
    Ok(HttpResponse::Created().json(UserView::from(&user)))
}

pub async fn get_user(
    caller: Caller,
    app: web::Data<App>,
    path: web::Path<String>,
) -> Result<HttpResponse, Error> {
    caller.require_admin()?;
    let user = accounts::user_by_id(&app.db, &path)
        .await?
        .ok_or_else(user_not_found)?;
    Ok(HttpResponse::Ok().json(UserView::from(&user)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserBody {
    role: Option<String>,
    disabled: Option<bool>,
}

pub async fn update_user(
    caller: Caller,
    app: web::Data<App>,
    path: web::Path<String>,
    body: web::Json<UpdateUserBody>,
) -> Result<HttpResponse, Error> {
    caller.require_admin()?;
    let b = body.into_inner();
    let role = b.role.as_deref().map(check_role).transpose()?;
    let id = path.into_inner();
    // An admin locking themselves out could leave the service with none.
    if id == caller.user.id && (b.disabled == Some(true) || role.is_some_and(|r| r != Role::Admin))
    {
        return Err(Error::new(
            ErrorCode::CannotModifySelf,
            "admins cannot disable or demote themselves",
        ));
    }
    let user = accounts::update_user(&app.db, &id, role, b.disabled)
        .await?
        .ok_or_else(user_not_found)?;
    Ok(HttpResponse::Ok().json(UserView::from(&user)))
}
