//! API keys: created and revoked by their owner from a signed-in session.

use actix_web::{web, HttpResponse};
use chrono::Duration;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::rfc3339;
use crate::app::App;
use crate::auth::tokens::{self, API_KEY_PREFIX};
use crate::auth::{parse_scopes, Caller, Scope};
use crate::db::accounts::{self, ApiKey};
use crate::db::now;
use crate::error::Error;

fn key_json(k: &ApiKey) -> Value {
    let scopes: Vec<&str> = parse_scopes(&k.scopes)
        .into_iter()
        .map(Scope::as_str)
        .collect();
    json!({
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "scopes": scopes,
        "created_at": rfc3339(k.created_at),
        "expires_at": k.expires_at.map(rfc3339),
        "last_used_at": k.last_used_at.map(rfc3339),
    })
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
        return Err(Error::forbidden(
            "forbidden",
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
    let mut body = key_json(&key);
    body["key"] = json!(secret);
    Ok(HttpResponse::Created().json(body))
}

pub async fn list(caller: Caller, app: web::Data<App>) -> Result<HttpResponse, Error> {
    caller.require_session()?;
    let items: Vec<Value> = accounts::list_api_keys(&app.db, &caller.user.id)
        .await?
        .iter()
        .map(key_json)
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
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
        Err(Error::not_found("api_key_not_found", "no such API key"))
    }
}
