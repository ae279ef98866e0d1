//! API keys: created and revoked by their owner from a signed-in session.

use actix_web::{web, HttpResponse};
use chrono::Duration;
use serde::Deserialize;

use super::views::{Items, KeyView, NewKeyView};
use crate::app::App;
use crate::auth::tokens::{self, API_KEY_PREFIX};
use crate::auth::{Caller, Scope};
use crate::db::accounts;
use crate::db::accounts::ApiKey;
use crate::db::now;
use crate::error::{Error, ErrorCode};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api-keys", web::post().to(create))
        .route("/api-keys", web::get().to(list))
        .route("/api-keys/{id}", web::delete().to(revoke));
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyBody {
    name: String,
    scopes: Vec<String>,
    expires_in_days: Option<i64>,
}

pub async fn create(
    caller: Caller,
    app: web::Data<App>,
    body: web::Json<CreateKeyBody>,
) -> Result<HttpResponse, Error> {
    caller.require_session()?;
    let b = body.into_inner();
    let name = b.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::field("name", "must be 1 to 100 characters"));
    }
    if b.scopes.is_empty() {
        return Err(Error::field("scopes", "must name at least one scope"));
    }
    let mut scopes = Vec::new();
    for s in &b.scopes {
        let scope: Scope = s.parse().map_err(|_| {
            Error::field(
                "scopes",
                format!("unknown scope `{s}`; use query, chat, ingest or admin"),
            )
        })?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    if scopes.contains(&Scope::Admin) && !caller.is_admin() {
        return Err(Error::new(
            ErrorCode::Forbidden,
            "only admins can create keys with the `admin` scope",
        ));
    }
    let expires_at = match b.expires_in_days {
        None => None,
        Some(d) if (1..=3650).contains(&d) => Some(now() + Duration::days(d)),
        Some(_) => {
            return Err(Error::field(
                "expires_in_days",
                "must be between 1 and 3650",
            ))
        }
    };
    let secret = tokens::new_secret(API_KEY_PREFIX);
    let key = ApiKey {
        id: crate::ids::ApiKeyId::random(),
        user_id: caller.user.id.clone(),
        name: name.to_string(),
        prefix: secret.chars().take(API_KEY_PREFIX.len() + 8).collect(),
        key_hash: tokens::hash_secret(&secret),
        scopes: scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(","),
        created_at: now(),
        expires_at,
        last_used_at: None,
        revoked_at: None,
    };
    let key = accounts::create_api_key(&app.db, key).await?;
    Ok(HttpResponse::Created().json(NewKeyView {
        key: KeyView::from(&key),
        secret: &secret,
    }))
}

pub async fn list(caller: Caller, app: web::Data<App>) -> Result<HttpResponse, Error> {
    caller.require_session()?;
    let keys = accounts::list_api_keys(&app.db, &caller.user.id).await?;
    Ok(HttpResponse::Ok().json(Items {
        items: keys.iter().map(KeyView::from).collect(),
    }))
}

pub async fn revoke(
    caller: Caller,
    app: web::Data<App>,
    path: web::Path<String>,
) -> Result<HttpResponse, Error> {
    caller.require_session()?;
    if accounts::revoke_api_key(&app.db, &caller.user.id, &path).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(Error::new(ErrorCode::ApiKeyNotFound, "no such API key"))
    }
}
