//! `[server]`: where and how the HTTP server listens.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub bind: String,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    pub shutdown_timeout_secs: u64,
    /// Open WebSocket connections (chat and job events together) one user may hold.
    pub max_ws_per_user: usize,
    /// Open WebSocket connections from one client address.
    pub max_ws_per_ip: usize,
    /// When set, `GET /metrics` answers only requests that carry it as a
    /// bearer token (`Authorization: Bearer …`); empty leaves it open, for
    /// scrapers on a private network.
    pub metrics_token: String,
    /// Serve the web app from this directory instead of the copy compiled
    /// into the binary; for working on `web/` without rebuilding. Empty uses
    /// the compiled-in copy.
    pub web_dir: String,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            workers: 0,
            shutdown_timeout_secs: 10,
            max_ws_per_user: 8,
            max_ws_per_ip: 32,
            metrics_token: String::new(),
            web_dir: String::new(),
        }
    }
}

impl ServerSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        self.bind
            .parse::<SocketAddr>()
            .map_err(|e| invalid("server.bind", format!("`{}`: {e}", self.bind)))?;
        for (key, v) in [
            ("server.max_ws_per_user", self.max_ws_per_user),
            ("server.max_ws_per_ip", self.max_ws_per_ip),
        ] {
            if !(1..=100_000).contains(&v) {
                return Err(invalid(key, "must be between 1 and 100000"));
            }
        }
        if !self.web_dir.is_empty() && !std::path::Path::new(&self.web_dir).is_dir() {
            return Err(invalid(
                "server.web_dir",
                format!("`{}` is not a directory", self.web_dir),
            ));
        }
        Ok(())
    }
}
