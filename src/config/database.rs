//! `[database]`: the relational store (embedded SQLite or PostgreSQL).

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// Empty means the embedded SQLite file `<data_dir>/ragchat.db`.
    pub url: String,
    pub pool_size: u32,
    pub connect_timeout_secs: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            pool_size: 8,
            connect_timeout_secs: 10,
        }
    }
}

impl DatabaseSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let url = &self.url;
        let known = ["sqlite://", "postgres://", "postgresql://"];
        if !(url.is_empty() || known.iter().any(|p| url.starts_with(p))) {
            return Err(invalid(
                "database.url",
                "must start with sqlite:// or postgres:// (or be empty for the embedded SQLite file)",
            ));
        }
        if self.pool_size == 0 {
            return Err(invalid("database.pool_size", "must be at least 1"));
        }
        Ok(())
    }
}
