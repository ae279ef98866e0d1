//! `[jobs]`: the durable job queue and its workers.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// The durable job queue and its workers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JobSettings {
    /// Workers `serve` runs in process; 0 leaves jobs to `ragchat worker`.
    pub workers: usize,
    /// A worker renews its lease every third of this; a job whose lease
    /// lapses (its worker died) is taken by another worker.
    pub lease_secs: u64,
    pub max_attempts: u32,
    /// Retry backoff: base × 2^(attempt-1), capped.
    pub retry_base_secs: u64,
    pub retry_max_secs: u64,
    /// How often an idle worker looks for work.
    pub poll_interval_ms: u64,
    /// Periodic vector index optimisation; 0 turns it off.
    pub optimize_interval_secs: u64,
    /// Where `ragchat worker` answers `/health`, `/ready` and `/metrics`
    /// (`host:port`); empty: it opens no port.
    pub http_bind: String,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            workers: 1,
            lease_secs: 30,
            max_attempts: 5,
            retry_base_secs: 5,
            retry_max_secs: 600,
            poll_interval_ms: 500,
            optimize_interval_secs: 3600,
            http_bind: String::new(),
        }
    }
}

impl JobSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if !self.http_bind.is_empty() {
            self.http_bind
                .parse::<std::net::SocketAddr>()
                .map_err(|e| invalid("jobs.http_bind", format!("`{}`: {e}", self.http_bind)))?;
        }
        for (key, v) in [
            ("jobs.lease_secs", self.lease_secs),
            ("jobs.max_attempts", self.max_attempts as u64),
            ("jobs.retry_base_secs", self.retry_base_secs),
            ("jobs.poll_interval_ms", self.poll_interval_ms),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        // These feed date and duration arithmetic; a year is past any use.
        const YEAR: u64 = 366 * 24 * 3600;
        for (key, v) in [
            ("jobs.lease_secs", self.lease_secs),
            ("jobs.retry_max_secs", self.retry_max_secs),
            ("jobs.optimize_interval_secs", self.optimize_interval_secs),
            ("jobs.poll_interval_ms", self.poll_interval_ms / 1000),
        ] {
            if v > YEAR {
                return Err(invalid(key, format!("must be at most a year ({YEAR} s)")));
            }
        }
        if self.retry_max_secs < self.retry_base_secs {
            return Err(invalid(
                "jobs.retry_max_secs",
                "must be at least jobs.retry_base_secs",
            ));
        }
        Ok(())
    }
}
