//! Users, their sessions' tokens, and API keys.

use serde::Serialize;
use utoipa::ToSchema;

use super::{time, Time};
use crate::auth::{parse_scopes, Scope, TokenPair};
use crate::db::accounts::{ApiKey, User};

/// A user, without the password hash or token version.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView<'a> {
    pub id: &'a str,
    pub username: &'a str,
    pub email: Option<&'a str>,
    #[schema(value_type = RoleName)]
    pub role: &'a str,
    pub disabled: bool,
    pub created_at: Time,
}

impl<'a> From<&'a User> for UserView<'a> {
    fn from(u: &'a User) -> Self {
        UserView {
            id: &u.id,
            username: &u.username,
            email: u.email.as_deref(),
            role: u.role.as_str(),
            disabled: u.disabled,
            created_at: Time(u.created_at),
        }
    }
}

/// A login or refresh: the token pair and whose it is.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView<'a> {
    #[serde(flatten)]
    pub tokens: TokenPair,
    pub user: UserView<'a>,
}

/// An API key, never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub prefix: &'a str,
    #[schema(value_type = Vec<ScopeName>)]
    pub scopes: Vec<&'static str>,
    pub created_at: Time,
    pub expires_at: Option<Time>,
    pub last_used_at: Option<Time>,
}

impl<'a> From<&'a ApiKey> for KeyView<'a> {
    fn from(k: &'a ApiKey) -> Self {
        KeyView {
            id: &k.id,
            name: &k.name,
            prefix: &k.prefix,
            scopes: parse_scopes(&k.scopes)
                .into_iter()
                .map(Scope::as_str)
                .collect(),
            created_at: Time(k.created_at),
            expires_at: time(k.expires_at),
            last_used_at: time(k.last_used_at),
        }
    }
}

/// A scope's name, as keys are created with and list them.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = Scope)]
#[allow(dead_code)] // Only its schema is used: keys hold scopes as strings.
pub enum ScopeName {
    Query,
    Chat,
    Ingest,
    Admin,
}

/// A user's role.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = Role)]
#[allow(dead_code)] // Only its schema is used: views hold roles as strings.
pub enum RoleName {
    Admin,
    User,
}

/// A key just created: the only time its secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewKeyView<'a> {
    #[serde(flatten)]
    pub key: KeyView<'a>,
    #[serde(rename = "key")]
    pub secret: &'a str,
}

/// A WebSocket ticket just issued: the only time it is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct TicketView<'a> {
    pub ticket: &'a str,
    pub expires_in: u64,
    pub expires_at: Time,
}
