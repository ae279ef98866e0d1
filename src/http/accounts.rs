//! Registration, login, token refresh, logout and the caller's own account.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::extract::{client_ip, rate_limit, rate_limit_caller};
use super::views::{SessionView, UserView};
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    username: String,
    password: String,
    email: Option<String>,
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    username: Option<String>,
    email: Option<String>,
    password: String,
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    refresh_token: String,
}

pub async fn refresh(
    app: web::Data<App>,
    body: web::Json<RefreshBody>,
) -> Result<HttpResponse, Error> {
    let (user, pair) = app.auth.refresh(&app.db, &body.refresh_token).await?;
    Ok(HttpResponse::Ok().json(session(&user, pair)))
}

pub async fn logout(
    app: web::Data<App>,
    body: web::Json<RefreshBody>,
) -> Result<HttpResponse, Error> {
    accounts::revoke_session_of_refresh(&app.db, &auth::tokens::hash_secret(&body.refresh_token))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn me(caller: Caller) -> Result<HttpResponse, Error> {
    Ok(HttpResponse::Ok().json(UserView::from(&caller.user)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    current_password: String,
    new_password: String,
}

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
