//! `[auth]`: token signing, lifetimes and who may register.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// Who may create accounts through `POST /api/v1/auth/register`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Registration {
    /// Anyone may register.
    Open,
    /// Only admins create users.
    #[default]
    AdminOnly,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// HS256 signing secret for access tokens, at least 32 bytes. Empty is
    /// refused at start unless `serve --dev` (which then uses a random one).
    pub jwt_secret: String,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    pub registration: Registration,
    pub min_password_length: usize,
    /// Lifetime of a WebSocket ticket (`POST /api/v1/ws-tickets`): long
    /// enough to open the socket, short enough that a logged URL is worthless.
    pub ws_ticket_ttl_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: String::new(),
            access_ttl_secs: 15 * 60,
            refresh_ttl_secs: 30 * 24 * 3600,
            registration: Registration::AdminOnly,
            min_password_length: 10,
            ws_ticket_ttl_secs: 30,
        }
    }
}

/// Secrets that appear in examples and must never sign real tokens.
pub const KNOWN_SECRETS: &[&str] = &["secret", "changeme", "change-me", "dev-secret-change-me"];

impl AuthSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if !self.jwt_secret.is_empty() && self.jwt_secret.len() < 32 {
            return Err(invalid("auth.jwt_secret", "must be at least 32 bytes"));
        }
        if self.access_ttl_secs == 0 || self.access_ttl_secs > 24 * 3600 {
            return Err(invalid(
                "auth.access_ttl_secs",
                "must be between 1 and 86400",
            ));
        }
        if self.refresh_ttl_secs < self.access_ttl_secs {
            return Err(invalid(
                "auth.refresh_ttl_secs",
                "must be at least auth.access_ttl_secs",
            ));
        }
        if !(8..=128).contains(&self.min_password_length) {
            return Err(invalid(
                "auth.min_password_length",
                "must be between 8 and 128",
            ));
        }
        if !(1..=300).contains(&self.ws_ticket_ttl_secs) {
            return Err(invalid(
                "auth.ws_ticket_ttl_secs",
                "must be between 1 and 300",
            ));
        }
        Ok(())
    }

    /// The signing secret to use, or why the service must not start.
    /// `dev` allows a missing secret (replaced by a random one per process).
    pub fn signing_secret(&self, dev: bool) -> Result<Vec<u8>, ConfigError> {
        let s = &self.jwt_secret;
        if KNOWN_SECRETS.contains(&s.as_str()) && !s.is_empty() {
            return Err(invalid(
                "auth.jwt_secret",
                "is a published example value; generate one with `openssl rand -hex 32`",
            ));
        }
        if s.is_empty() {
            if !dev {
                return Err(invalid(
                    "auth.jwt_secret",
                    "is not set: set RAGCHAT_AUTH_JWT_SECRET (at least 32 bytes, e.g. `openssl rand -hex 32`) or run `ragchat serve --dev`",
                ));
            }
            let bytes: [u8; 32] = rand::random();
            return Ok(bytes.to_vec());
        }
        Ok(s.as_bytes().to_vec())
    }
}
