//! Registration, login, token refresh, logout and the caller's own account.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::{client_ip, rate_limit, rate_limit_caller};
use super::views::{ErrorBody, SessionView, UserView};
use crate::app::App;
use crate::auth::{self, password, Caller, Role, TokenPair};
use crate::db::accounts;
use crate::db::accounts::User;
use crate::error::{Error, ErrorCode};
use crate::ratelimit::Bucket;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/register", web::post().to(register))
        .route("/auth/login", web::post().to(login))
        .route("/auth/refresh", web::post().to(refresh))
        .route("/auth/logout", web::post().to(logout))
        .route("/users/me", web::get().to(me))
        .route("/users/me/password", web::post().to(change_password));
}

/// The longest login name worth looking up: an email address (RFC 5321)
/// is at most 254 bytes, a username 64 characters.
const MAX_LOGIN_NAME_BYTES: usize = 254;

fn session(user: &User, tokens: TokenPair) -> SessionView<'_> {
    SessionView {
        tokens,
        user: user.into(),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// 3 to 64 characters of `a-z 0-9 . _ -` (stored lower-case).
    #[schema(min_length = 3, max_length = 64)]
    username: String,
    /// `auth.min_password_length` (10) to 256 characters.
    #[schema(min_length = 10, max_length = 256)]
    password: String,
    email: Option<String>,
}

/// Create an account (when `auth.registration = "open"`).
#[utoipa::path(
    post,
    path = "/api/v1/auth/register",
    tag = "auth",
    operation_id = "register",
    request_body = RegisterBody,
    responses(
        (status = 201, description = "The new user", body = UserView),
        (status = 403, description = "`registration_closed`", body = ErrorBody),
        (status = 409, description = "`username_taken` or `email_taken`", body = ErrorBody),
        (status = 422, description = "`invalid_field`: a bad username, password or email", body = ErrorBody),
        (status = 429, description = "`rate_limited` (login's buckets)", body = ErrorBody),
    ),
    security(()),
)]
pub async fn register(
    req: HttpRequest,
    app: web::Data<App>,
    body: web::Json<RegisterBody>,
) -> Result<HttpResponse, Error> {
    if app.settings.auth.registration != crate::config::Registration::Open {
        return Err(Error::new(
            ErrorCode::RegistrationClosed,
            "registration is closed; ask an admin for an account",
        ));
    }
    let b = body.into_inner();
    // Each registration costs an Argon2 hash, as a login does, so it spends
    // the same tokens: per IP and per name (checked first, so an arbitrary
    // string never becomes a limiter key).
    let name = auth::normalize_username(&b.username)?;
    rate_limit(&app, Bucket::Login, &client_ip(&req, &app), Some(&name)).await?;
    let user = auth::create_user(
        &app.db,
        &b.username,
        &b.password,
        b.email.as_deref(),
        Role::User,
        app.settings.auth.min_password_length,
    )
    .await?;
    Ok(HttpResponse::Created().json(UserView::from(&user)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    username: Option<String>,
    email: Option<String>,
    password: String,
}

/// Sign in with a username or an email: an access token and a refresh token.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "auth",
    operation_id = "login",
    request_body = LoginBody,
    responses(
        (status = 200, description = "Signed in", body = SessionView),
        (status = 401, description = "`invalid_credentials`", body = ErrorBody),
        (status = 422, description = "`invalid_field`: neither or both of `username` and `email`, or one too long", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ),
    security(()),
)]
pub async fn login(
    req: HttpRequest,
    app: web::Data<App>,
    body: web::Json<LoginBody>,
) -> Result<HttpResponse, Error> {
    let b = body.into_inner();
    // Limited per IP and per attempted name, so neither one client guessing
    // many names nor many clients guessing one name gets far.
    let ip = client_ip(&req, &app);
    let (field, name) = match (&b.username, &b.email) {
        (Some(u), None) => ("username", u.trim().to_lowercase()),
        (None, Some(e)) => ("email", e.trim().to_lowercase()),
        _ => {
            return Err(Error::field(
                "username",
                "give exactly one of `username` and `email`",
            ))
        }
    };
    // The name becomes a limiter key, kept until its bucket refills: a name
    // no account can have (longer than an email address may be) is refused
    // before it gets there.
    if name.len() > MAX_LOGIN_NAME_BYTES {
        return Err(Error::field(
            field,
            format!("must be at most {MAX_LOGIN_NAME_BYTES} bytes"),
        ));
    }
    rate_limit(&app, Bucket::Login, &ip, Some(&name)).await?;
    if b.password.len() > 1024 {
        return Err(Error::new(
            ErrorCode::InvalidCredentials,
            "invalid username or password",
        ));
    }
    let (user, pair) = app.auth.login(&app.db, &name, &b.password).await?;
    Ok(HttpResponse::Ok().json(session(&user, pair)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    refresh_token: String,
}

/// Rotate a refresh token: a new access and refresh token.
#[utoipa::path(
    post,
    path = "/api/v1/auth/refresh",
    tag = "auth",
    operation_id = "refresh",
    request_body = RefreshBody,
    responses(
        (status = 200, description = "A new token pair", body = SessionView),
        (status = 401, description = "`invalid_refresh_token` or `refresh_token_reused` (the session is revoked)", body = ErrorBody),
    ),
    security(()),
)]
pub async fn refresh(
    app: web::Data<App>,
    body: web::Json<RefreshBody>,
) -> Result<HttpResponse, Error> {
    let (user, pair) = app.auth.refresh(&app.db, &body.refresh_token).await?;
    Ok(HttpResponse::Ok().json(session(&user, pair)))
}

/// End the session of a refresh token; unknown tokens are fine too.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "auth",
    operation_id = "logout",
    request_body = RefreshBody,
    responses((status = 204, description = "The session, if any, is revoked")),
    security(()),
)]
pub async fn logout(
    app: web::Data<App>,
    body: web::Json<RefreshBody>,
) -> Result<HttpResponse, Error> {
    accounts::revoke_session_of_refresh(&app.db, &auth::tokens::hash_secret(&body.refresh_token))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The caller's account.
#[utoipa::path(
    get,
    path = "/api/v1/users/me",
    tag = "auth",
    operation_id = "me",
    responses((status = 200, description = "The caller", body = UserView)),
    security(("jwt" = []), ("api_key" = [])),
)]
pub async fn me(caller: Caller) -> Result<HttpResponse, Error> {
    Ok(HttpResponse::Ok().json(UserView::from(&caller.user)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    current_password: String,
    /// `auth.min_password_length` (10) to 256 characters.
    #[schema(min_length = 10, max_length = 256)]
    new_password: String,
}

/// Change the caller's password; every session of the user ends.
#[utoipa::path(
    post,
    path = "/api/v1/users/me/password",
    tag = "auth",
    operation_id = "change_password",
    request_body = PasswordBody,
    responses(
        (status = 204, description = "Changed"),
        (status = 401, description = "`invalid_credentials`: the current password is wrong", body = ErrorBody),
        (status = 403, description = "`session_required`: called with an API key", body = ErrorBody),
        (status = 422, description = "`invalid_field`: the new password is too short or too long", body = ErrorBody),
        (status = 429, description = "`rate_limited` (login's buckets)", body = ErrorBody),
    ),
    security(("jwt" = [])),
)]
pub async fn change_password(
    caller: Caller,
    req: HttpRequest,
    app: web::Data<App>,
    body: web::Json<PasswordBody>,
) -> Result<HttpResponse, Error> {
    caller.require_session()?;
    // Two Argon2 runs, and a way to guess the current password: login's limits.
    rate_limit_caller(&req, &app, Bucket::Login, &caller).await?;
    let b = body.into_inner();
    auth::check_password(
        "new_password",
        &b.new_password,
        app.settings.auth.min_password_length,
    )?;
    if !password::verify(&b.current_password, Some(&caller.user.password_hash)).await? {
        return Err(Error::new(
            ErrorCode::InvalidCredentials,
            "the current password is wrong",
        ));
    }
    let hash = password::hash(&b.new_password).await?;
    accounts::set_password(&app.db, &caller.user.id, &hash).await?;
    Ok(HttpResponse::NoContent().finish())
}
