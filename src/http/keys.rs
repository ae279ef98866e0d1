//! API keys: created and revoked by their owner from a signed-in session.

use actix_web::{web, HttpResponse};
use chrono::Duration;
use serde::Deserialize;
use utoipa::ToSchema;

use super::views::{ErrorBody, Items, KeyView, NewKeyView, ScopeName};
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyBody {
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    name: String,
    #[schema(value_type = Vec<ScopeName>, min_items = 1)]
    scopes: Vec<String>,
    /// 1 to 3650; or give `expires_at`, not both.
    #[schema(minimum = 1, maximum = 3650)]
    expires_in_days: Option<i64>,
    /// RFC 3339; the alternative to `expires_in_days` for a precise end.
    expires_at: Option<String>,
}

/// The longest life a key may be given.
const MAX_KEY_DAYS: i64 = 3650;

/// When the key stops working, from either way of saying it.
fn expiry(in_days: Option<i64>, at: Option<&str>) -> Result<Option<chrono::NaiveDateTime>, Error> {
    let t = now();
    match (in_days, at) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(Error::field(
            "expires_at",
            "give `expires_at` or `expires_in_days`, not both",
        )),
        (Some(d), None) if (1..=MAX_KEY_DAYS).contains(&d) => Ok(Some(t + Duration::days(d))),
        (Some(_), None) => Err(Error::field(
            "expires_in_days",
            format!("must be between 1 and {MAX_KEY_DAYS}"),
        )),
        (None, Some(raw)) => {
            let at = chrono::DateTime::parse_from_rfc3339(raw)
                .map_err(|_| {
                    Error::field(
                        "expires_at",
                        "must be an RFC 3339 timestamp such as 2030-01-31T12:00:00Z",
                    )
                })?
                .naive_utc();
            if at <= t || at > t + Duration::days(MAX_KEY_DAYS) {
                return Err(Error::field(
                    "expires_at",
                    format!("must be in the future and at most {MAX_KEY_DAYS} days away"),
                ));
            }
            Ok(Some(at))
        }
    }
}

/// Create an API key for the caller; its secret (`key`) is shown only here.
#[utoipa::path(
    post,
    path = "/api/v1/api-keys",
    tag = "api keys",
    operation_id = "create_api_key",
    request_body = CreateKeyBody,
    responses(
        (status = 201, description = "The key, with its secret", body = NewKeyView),
        (status = 403, description = "`session_required` (called with an API key), or `forbidden` (the `admin` scope by a non-admin)", body = ErrorBody),
        (status = 422, description = "`invalid_field`: name, scopes or expiry", body = ErrorBody),
    ),
    security(("jwt" = [])),
)]
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
    let expires_at = expiry(b.expires_in_days, b.expires_at.as_deref())?;
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

/// The caller's keys, newest first, without their secrets.
#[utoipa::path(
    get,
    path = "/api/v1/api-keys",
    tag = "api keys",
    operation_id = "list_api_keys",
    responses(
        (status = 200, description = "The caller's live keys", body = Items<KeyView>),
        (status = 403, description = "`session_required`", body = ErrorBody),
    ),
    security(("jwt" = [])),
)]
pub async fn list(caller: Caller, app: web::Data<App>) -> Result<HttpResponse, Error> {
    caller.require_session()?;
    let keys = accounts::list_api_keys(&app.db, &caller.user.id).await?;
    Ok(HttpResponse::Ok().json(Items {
        items: keys.iter().map(KeyView::from).collect(),
    }))
}

/// Revoke one of the caller's keys; it stops working at once.
#[utoipa::path(
    delete,
    path = "/api/v1/api-keys/{id}",
    tag = "api keys",
    operation_id = "revoke_api_key",
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "`session_required`", body = ErrorBody),
        (status = 404, description = "`api_key_not_found`: unknown, or another user's", body = ErrorBody),
    ),
    security(("jwt" = [])),
)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_one_of_two_forms_in_range() {
        assert_eq!(expiry(None, None).unwrap(), None);
        let in_days = expiry(Some(2), None).unwrap().unwrap();
        assert!(in_days > now() + Duration::days(1));
        let soon = (chrono::Utc::now() + Duration::minutes(5)).to_rfc3339();
        let at = expiry(None, Some(&soon)).unwrap().unwrap();
        assert!(at > now() && at < now() + Duration::minutes(6));
        let past = (chrono::Utc::now() - Duration::minutes(5)).to_rfc3339();
        let far = (chrono::Utc::now() + Duration::days(MAX_KEY_DAYS + 1)).to_rfc3339();
        for (days, at, field) in [
            (Some(0), None, "expires_in_days"),
            (Some(MAX_KEY_DAYS + 1), None, "expires_in_days"),
            (None, Some("tomorrow"), "expires_at"),
            (None, Some(past.as_str()), "expires_at"),
            (None, Some(far.as_str()), "expires_at"),
            (Some(1), Some(soon.as_str()), "expires_at"),
        ] {
            match expiry(days, at) {
                Err(Error::InvalidField { field: f, .. }) => {
                    assert_eq!(f, field, "{days:?} {at:?}")
                }
                other => panic!("{days:?} {at:?}: {other:?}"),
            }
        }
    }
}
