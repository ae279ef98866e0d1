//! `[rate_limit]`: token buckets per client IP and per user.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// Token buckets per client IP and per user, one pair per kind of request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    pub enabled: bool,
    pub login_per_minute: u32,
    pub login_burst: u32,
    pub query_per_minute: u32,
    pub query_burst: u32,
    pub chat_per_minute: u32,
    pub chat_burst: u32,
    /// WebSocket upgrades (chat and job events).
    pub ws_connect_per_minute: u32,
    pub ws_connect_burst: u32,
    /// Take the client IP from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// Per-IP buckets are this many times the per-user ones (users behind one NAT).
    pub ip_factor: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            login_per_minute: 10,
            login_burst: 5,
            query_per_minute: 600,
            query_burst: 60,
            chat_per_minute: 60,
            chat_burst: 10,
            ws_connect_per_minute: 30,
            ws_connect_burst: 10,
            trust_forwarded_for: false,
            ip_factor: 4,
        }
    }
}

impl RateLimitSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("rate_limit.login_per_minute", self.login_per_minute),
            ("rate_limit.login_burst", self.login_burst),
            ("rate_limit.query_per_minute", self.query_per_minute),
            ("rate_limit.query_burst", self.query_burst),
            ("rate_limit.chat_per_minute", self.chat_per_minute),
            ("rate_limit.chat_burst", self.chat_burst),
            (
                "rate_limit.ws_connect_per_minute",
                self.ws_connect_per_minute,
            ),
            ("rate_limit.ws_connect_burst", self.ws_connect_burst),
            ("rate_limit.ip_factor", self.ip_factor),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        Ok(())
    }
}
