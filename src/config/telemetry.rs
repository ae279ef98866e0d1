//! `[telemetry]`: trace export over OTLP.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// An OTLP/HTTP collector's traces URL, such as
    /// `http://127.0.0.1:4318/v1/traces`; empty: no traces are exported.
    pub otlp_endpoint: String,
    /// `service.name` on every span.
    pub service_name: String,
    /// Share of requests traced, 0 to 1 (a parent's decision is kept).
    pub sample_ratio: f64,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            service_name: "ragchat".into(),
            sample_ratio: 1.0,
        }
    }
}

impl TelemetrySettings {
    pub fn exports(&self) -> bool {
        !self.otlp_endpoint.trim().is_empty()
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.exports() {
            let url = url::Url::parse(self.otlp_endpoint.trim())
                .map_err(|e| invalid("telemetry.otlp_endpoint", e.to_string()))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(invalid(
                    "telemetry.otlp_endpoint",
                    "must be an http:// or https:// URL (OTLP over HTTP)",
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(invalid("telemetry.sample_ratio", "must be between 0 and 1"));
        }
        if self.service_name.trim().is_empty() {
            return Err(invalid("telemetry.service_name", "must not be empty"));
        }
        Ok(())
    }
}
