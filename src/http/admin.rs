//! Admin endpoints for users.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::{next_cursor, rate_limit_caller, PageParams};
use super::views::{ErrorBody, RoleName};
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

/// Every user, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/admin/users",
    tag = "admin",
    operation_id = "list_users",
    params(PageParams),
    responses(
        (status = 200, description = "One page of users", body = Page<UserView>),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 422, description = "`invalid_field`: `limit` out of range", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["admin"])),
)]
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserBody {
    /// 3 to 64 characters of `a-z 0-9 . _ -` (stored lower-case).
    #[schema(min_length = 3, max_length = 64)]
    username: String,
    /// `auth.min_password_length` (10) to 256 characters.
    #[schema(min_length = 10, max_length = 256)]
    password: String,
    email: Option<String>,
    #[schema(value_type = Option<RoleName>)]
    role: Option<String>,
}

/// Create a user.
#[utoipa::path(
    post,
    path = "/api/v1/admin/users",
    tag = "admin",
    operation_id = "create_user",
    request_body = CreateUserBody,
    responses(
        (status = 201, description = "The new user", body = UserView),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 409, description = "`username_taken` or `email_taken`", body = ErrorBody),
        (status = 422, description = "`invalid_field`", body = ErrorBody),
        (status = 429, description = "`rate_limited` (login's buckets)", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["admin"])),
)]
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

/// One user.
#[utoipa::path(
    get,
    path = "/api/v1/admin/users/{id}",
    tag = "admin",
    operation_id = "get_user",
    params(("id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["admin"])),
)]
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserBody {
    #[schema(value_type = Option<RoleName>)]
    role: Option<String>,
    disabled: Option<bool>,
}

/// Change a user's role or disable them.
#[utoipa::path(
    patch,
    path = "/api/v1/admin/users/{id}",
    tag = "admin",
    operation_id = "update_user",
    params(("id" = String, Path, description = "The user's id")),
    request_body = UpdateUserBody,
    responses(
        (status = 200, description = "The user as changed", body = UserView),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 409, description = "`cannot_modify_self`: an admin disabling or demoting themselves", body = ErrorBody),
        (status = 422, description = "`invalid_field`: an unknown role", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["admin"])),
)]
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
