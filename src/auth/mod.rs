//! Who is calling: access JWTs and API keys turned into a [`Caller`], roles and
//! scopes, and the token issuing used by login and refresh.

pub mod password;
pub mod tokens;

use chrono::{Duration, NaiveDateTime};
use serde::Serialize;

use crate::config::AuthSettings;
pub use crate::db::accounts::Role;
use crate::db::accounts::{self, ApiKey, KeyLookup, RefreshOutcome, User, WsTicket};
use crate::db::now;
use crate::db::Db;
use crate::error::{Error, ErrorCode, Result};
use crate::ids::UserId;
use tokens::{Claims, JwtKeys, TokenError, API_KEY_PREFIX, ISSUER, REFRESH_PREFIX, TICKET_PREFIX};

crate::text_enum! {
    /// What an API key may be used for. A session (JWT) may do everything its
    /// role allows.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Scope ("scope") {
        Query = "query",
        Chat = "chat",
        Ingest = "ingest",
        Admin = "admin",
    }
}

pub fn parse_scopes(stored: &str) -> Vec<Scope> {
    stored.split(',').filter_map(|s| s.parse().ok()).collect()
}

#[derive(Debug, Clone)]
pub enum Credential {
    /// An access JWT of a session; `expires_at` is the token's `exp`.
    Session {
        session_id: String,
        expires_at: NaiveDateTime,
    },
    ApiKey {
        id: String,
        scopes: Vec<Scope>,
        expires_at: Option<NaiveDateTime>,
    },
}

/// An authenticated caller, re-checked against the DB on every request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub credential: Credential,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }

    /// When the credential stops working by itself: the access token's `exp`,
    /// or the API key's expiry if it has one.
    pub fn expires_at(&self) -> Option<NaiveDateTime> {
        match &self.credential {
            Credential::Session { expires_at, .. } => Some(*expires_at),
            Credential::ApiKey { expires_at, .. } => *expires_at,
        }
    }

    /// API keys must carry `scope`; sessions always may.
    pub fn require_scope(&self, scope: Scope) -> Result<()> {
        match &self.credential {
            Credential::Session { .. } => Ok(()),
            Credential::ApiKey { scopes, .. } if scopes.contains(&scope) => Ok(()),
            Credential::ApiKey { .. } => Err(Error::new(
                ErrorCode::InsufficientScope,
                format!("this API key lacks the `{}` scope", scope.as_str()),
            )),
        }
    }

    /// Admin role, and for API keys the `admin` scope too.
    pub fn require_admin(&self) -> Result<()> {
        if !self.is_admin() {
            return Err(Error::new(
                ErrorCode::Forbidden,
                "this needs the admin role",
            ));
        }
        self.require_scope(Scope::Admin)
    }

    /// Account management (password, keys) needs a signed-in session, so a
    /// leaked key cannot mint more keys or lock its owner out.
    /// Any one of `scopes` (sessions always pass).
    pub fn require_any_scope(&self, scopes: &[Scope]) -> Result<()> {
        match scopes.iter().find(|s| self.require_scope(**s).is_ok()) {
            Some(_) => Ok(()),
            None => Err(Error::new(
                ErrorCode::InsufficientScope,
                format!(
                    "this API key needs one of the scopes {}",
                    scopes
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    pub fn require_session(&self) -> Result<&str> {
        match &self.credential {
            Credential::Session { session_id, .. } => Ok(session_id),
            Credential::ApiKey { .. } => Err(Error::new(
                ErrorCode::SessionRequired,
                "this needs a signed-in session, not an API key",
            )),
        }
    }
}

/// The collections a caller may read. Admins read all.
#[derive(Debug, Clone, PartialEq)]
pub enum Access {
    All,
    Only(std::collections::HashSet<String>),
}

impl Access {
    pub async fn of(db: &Db, caller: &Caller) -> Result<Self> {
        if caller.is_admin() {
            return Ok(Access::All);
        }
        let ids = crate::db::accounts::readable_collection_ids(db, &caller.user.id).await?;
        Ok(Access::Only(ids.into_iter().collect()))
    }

    pub fn can_read(&self, collection_id: &str) -> bool {
        match self {
            Access::All => true,
            Access::Only(ids) => ids.contains(collection_id),
        }
    }
}

fn unauthorized() -> Error {
    Error::new(ErrorCode::Unauthorized, "missing or invalid credentials")
}

fn token_expired() -> Error {
    Error::new(ErrorCode::TokenExpired, "the access token has expired")
}

fn invalid_ticket() -> Error {
    Error::new(
        ErrorCode::InvalidTicket,
        "the ticket is unknown, expired or already used",
    )
}

/// The token pair a login or refresh returns.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    pub expires_in: u64,
    pub refresh_token: String,
    pub refresh_expires_in: u64,
}

pub struct Auth {
    keys: JwtKeys,
    settings: AuthSettings,
}

impl Auth {
    pub fn new(secret: &[u8], settings: AuthSettings) -> Self {
        Self {
            keys: JwtKeys::new(secret),
            settings,
        }
    }

    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    fn access_token(&self, user: &User, session_id: &str) -> Result<String> {
        let iat = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: ISSUER.into(),
            sub: user.id.to_string(),
            sid: session_id.to_string(),
            ver: user.token_version,
            iat,
            exp: iat + self.settings.access_ttl_secs as i64,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        self.keys
            .issue(&claims)
            .map_err(|e| Error::Internal(format!("signing token: {e}")))
    }

    fn refresh_expiry(&self) -> chrono::NaiveDateTime {
        now() + Duration::seconds(self.settings.refresh_ttl_secs as i64)
    }

    fn pair(&self, user: &User, session_id: &str, refresh: String) -> Result<TokenPair> {
        Ok(TokenPair {
            access_token: self.access_token(user, session_id)?,
            token_type: "Bearer",
            expires_in: self.settings.access_ttl_secs,
            refresh_token: refresh,
            refresh_expires_in: self.settings.refresh_ttl_secs,
        })
    }

    /// Check a username and password. Unknown user, wrong password and a
    /// disabled account give the same error after the same amount of hashing.
    /// `login` is a username or, if it contains `@`, an email address.
    pub async fn login(&self, db: &Db, login: &str, password: &str) -> Result<(User, TokenPair)> {
        let login = login.trim().to_lowercase();
        let user = if login.contains('@') {
            accounts::user_by_email(db, &login).await?
        } else {
            accounts::user_by_username(db, &login).await?
        };
        let ok =
            password::verify(password, user.as_ref().map(|u| u.password_hash.as_str())).await?;
        let user = match user {
            Some(u) if ok && !u.disabled => u,
            _ => {
                return Err(Error::new(
                    ErrorCode::InvalidCredentials,
                    "invalid username or password",
                ))
            }
        };
        let refresh = tokens::new_secret(REFRESH_PREFIX);
        let session = accounts::create_session(
            db,
            &user.id,
            &tokens::hash_secret(&refresh),
            self.refresh_expiry(),
        )
        .await?;
        let pair = self.pair(&user, &session.id, refresh)?;
        Ok((user, pair))
    }

    pub async fn refresh(&self, db: &Db, refresh_token: &str) -> Result<(User, TokenPair)> {
        let new_refresh = tokens::new_secret(REFRESH_PREFIX);
        let outcome = accounts::rotate_refresh(
            db,
            &tokens::hash_secret(refresh_token),
            &tokens::hash_secret(&new_refresh),
            self.refresh_expiry(),
        )
        .await?;
        match outcome {
            RefreshOutcome::Rotated { user, session_id } => {
                let pair = self.pair(&user, &session_id, new_refresh)?;
                Ok((user, pair))
            }
            RefreshOutcome::Invalid => Err(Error::new(
                ErrorCode::InvalidRefreshToken,
                "the refresh token is unknown, expired or revoked",
            )),
            RefreshOutcome::Reused => Err(Error::new(
                ErrorCode::RefreshTokenReused,
                "this refresh token was already used; the session has been revoked",
            )),
        }
    }

    /// Resolve an `Authorization` header value to a caller.
    pub async fn authenticate(&self, db: &Db, header: Option<&str>) -> Result<Caller> {
        let header = header.ok_or_else(unauthorized)?;
        let (scheme, token) = header.trim().split_once(' ').ok_or_else(unauthorized)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(unauthorized());
        }
        let token = token.trim();
        if token.starts_with(API_KEY_PREFIX) {
            let hash = tokens::hash_secret(token);
            return self.key_caller(db, KeyLookup::Hash(&hash)).await;
        }
        let claims = self.keys.verify(token).map_err(|e| match e {
            TokenError::Expired => token_expired(),
            TokenError::Invalid => unauthorized(),
        })?;
        let expires_at = chrono::DateTime::from_timestamp(claims.exp, 0)
            .ok_or_else(unauthorized)?
            .naive_utc();
        self.session_caller(db, claims.sid, &claims.sub, claims.ver, expires_at)
            .await
    }

    /// The caller as the database sees it now, for a connection that outlives
    /// the request that authenticated it: the same checks as
    /// [`Auth::authenticate`] (session live, user enabled, token version
    /// unchanged, key not revoked, nothing expired) and the user's current role.
    pub async fn recheck(&self, db: &Db, caller: &Caller) -> Result<Caller> {
        match &caller.credential {
            Credential::Session {
                session_id,
                expires_at,
            } => {
                self.session_caller(
                    db,
                    session_id.clone(),
                    &caller.user.id,
                    caller.user.token_version,
                    *expires_at,
                )
                .await
            }
            Credential::ApiKey { id, .. } => self.key_caller(db, KeyLookup::Id(id)).await,
        }
    }

    /// A short-lived, single-use ticket that opens a WebSocket as `caller`
    /// without putting a long-lived credential in the URL; with its expiry.
    pub async fn issue_ticket(&self, db: &Db, caller: &Caller) -> Result<(String, NaiveDateTime)> {
        let secret = tokens::new_secret(TICKET_PREFIX);
        let t = now();
        let (session_id, api_key_id) = match &caller.credential {
            Credential::Session { session_id, .. } => (Some(session_id.as_str().into()), None),
            Credential::ApiKey { id, .. } => (None, Some(id.as_str().into())),
        };
        let ticket = WsTicket {
            ticket_hash: tokens::hash_secret(&secret),
            user_id: caller.user.id.clone(),
            session_id,
            api_key_id,
            token_version: caller.user.token_version,
            credential_expires_at: caller.expires_at(),
            created_at: t,
            expires_at: t + Duration::seconds(self.settings.ws_ticket_ttl_secs as i64),
        };
        accounts::create_ws_ticket(db, &ticket).await?;
        Ok((secret, ticket.expires_at))
    }

    /// Spend a ticket and resolve it to the caller it was issued for, checked
    /// as of now: a ticket outlives neither its session nor its key.
    pub async fn redeem_ticket(&self, db: &Db, ticket: &str) -> Result<Caller> {
        let row = accounts::take_ws_ticket(db, &tokens::hash_secret(ticket))
            .await?
            .ok_or_else(invalid_ticket)?;
        if row.expires_at <= now() {
            return Err(invalid_ticket());
        }
        match (row.session_id, row.api_key_id, row.credential_expires_at) {
            (Some(session_id), _, Some(expires_at)) => {
                self.session_caller(
                    db,
                    session_id.into(),
                    &row.user_id,
                    row.token_version,
                    expires_at,
                )
                .await
            }
            (None, Some(key_id), _) => self.key_caller(db, KeyLookup::Id(&key_id)).await,
            _ => Err(invalid_ticket()),
        }
    }

    /// The caller of a session whose access token said `user_id`, `version`
    /// and `expires_at`: refused once the token has expired, the session is
    /// revoked, the user is disabled or their token version moved on.
    async fn session_caller(
        &self,
        db: &Db,
        session_id: String,
        user_id: &str,
        version: i32,
        expires_at: NaiveDateTime,
    ) -> Result<Caller> {
        if expires_at <= now() {
            return Err(token_expired());
        }
        let user = accounts::session_user(db, &session_id)
            .await?
            .ok_or_else(unauthorized)?;
        if user.id != user_id || user.disabled || user.token_version != version {
            return Err(unauthorized());
        }
        Ok(Caller {
            user,
            credential: Credential::Session {
                session_id,
                expires_at,
            },
        })
    }

    /// The caller of a live key.
    async fn key_caller(&self, db: &Db, by: KeyLookup<'_>) -> Result<Caller> {
        let (api_key, user): (ApiKey, User) = accounts::api_key_with_user(db, by)
            .await?
            .ok_or_else(unauthorized)?;
        if user.disabled {
            return Err(unauthorized());
        }
        let t = now();
        if api_key.expires_at.is_some_and(|e| e <= t) {
            return Err(Error::new(
                ErrorCode::ApiKeyExpired,
                "this API key has expired; create a new one",
            ));
        }
        // Recording every use would turn each read into a write; a minute's
        // resolution is enough to tell live keys from dead ones.
        if api_key
            .last_used_at
            .is_none_or(|u| t - u > Duration::seconds(60))
        {
            accounts::touch_api_key(db, &api_key.id).await?;
        }
        Ok(Caller {
            user,
            credential: Credential::ApiKey {
                scopes: parse_scopes(&api_key.scopes),
                expires_at: api_key.expires_at,
                id: api_key.id.into(),
            },
        })
    }
}

/// Usernames: 3–64 of `a-z 0-9 . _ -`, compared lower-case.
pub fn normalize_username(raw: &str) -> Result<String> {
    let name = raw.trim().to_lowercase();
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if !(3..=64).contains(&name.chars().count()) || !ok_chars {
        return Err(Error::field(
            "username",
            "must be 3 to 64 characters of a-z, 0-9, `.`, `_` and `-`",
        ));
    }
    Ok(name)
}

pub fn check_password(field: &str, password: &str, min_len: usize) -> Result<()> {
    let n = password.chars().count();
    if n < min_len || n > 256 {
        return Err(Error::field(
            field,
            format!("must be {min_len} to 256 characters"),
        ));
    }
    Ok(())
}

pub fn check_email(email: &str) -> Result<()> {
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !email.chars().any(char::is_whitespace);
    if valid {
        Ok(())
    } else {
        Err(Error::field("email", "must be an email address"))
    }
}

/// Create a user (CLI bootstrap, registration, admin endpoint).
pub async fn create_user(
    db: &Db,
    username: &str,
    password: &str,
    email: Option<&str>,
    role: Role,
    min_password_length: usize,
) -> Result<User> {
    let username = normalize_username(username)?;
    check_password("password", password, min_password_length)?;
    let email = email.map(|e| e.trim().to_lowercase());
    if let Some(e) = &email {
        check_email(e)?;
        if accounts::user_by_email(db, e).await?.is_some() {
            return Err(Error::new(
                ErrorCode::EmailTaken,
                "that email address belongs to another user",
            ));
        }
    }
    let t = now();
    let user = User {
        id: UserId::random(),
        username: username.clone(),
        email: email.clone(),
        password_hash: password::hash(password).await?,
        role,
        disabled: false,
        token_version: 0,
        created_at: t,
        updated_at: t,
    };
    accounts::create_user(db, user).await?.ok_or_else(|| {
        Error::new(
            ErrorCode::UsernameTaken,
            format!("username `{username}` is taken"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_normalized_and_checked() {
        assert_eq!(normalize_username(" Alice.B ").unwrap(), "alice.b");
        for bad in ["ab", "a b", "ålice", "x".repeat(65).as_str(), "a/b"] {
            assert!(normalize_username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scopes_parse_and_ignore_unknown() {
        assert_eq!(
            parse_scopes("query,chat,bogus"),
            vec![Scope::Query, Scope::Chat]
        );
        assert_eq!("admin".parse::<Scope>(), Ok(Scope::Admin));
        assert!("root".parse::<Scope>().is_err());
    }

    #[test]
    fn emails_and_passwords() {
        assert!(check_email("a@b.co").is_ok());
        for bad in ["a", "@b.co", "a@b", "a @b.co", "a@.b"] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
        assert!(check_password("password", "short", 10).is_err());
        assert!(check_password("password", "long enough pw", 10).is_ok());
        assert!(check_password("password", &"x".repeat(257), 10).is_err());
    }
}
