//! `[lexical]`: the lexical index each node keeps, and the database change
//! log it follows.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// How a node's lexical index follows the chunk change log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LexicalSettings {
    /// How often `serve` looks for changes other processes wrote: the bound
    /// on how long another node's write takes to reach this node's searches
    /// (its own writes are applied before they are reported done).
    pub poll_interval_ms: u64,
    /// Log entries are kept while younger than this …
    pub log_retention_secs: u64,
    /// … or while among the newest this many. An entry past both is pruned;
    /// a node whose position falls behind what is left rebuilds its index
    /// from the database.
    pub log_retention_positions: u64,
    /// How often `serve` prunes the log; 0 leaves it to other nodes.
    pub prune_interval_secs: u64,
}

impl Default for LexicalSettings {
    fn default() -> Self {
        Self {
            poll_interval_ms: 500,
            log_retention_secs: 24 * 3600,
            log_retention_positions: 100_000,
            prune_interval_secs: 300,
        }
    }
}

impl LexicalSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.poll_interval_ms == 0 {
            return Err(invalid("lexical.poll_interval_ms", "must be at least 1"));
        }
        // These feed date and duration arithmetic; a year is past any use.
        const YEAR: u64 = 366 * 24 * 3600;
        for (key, v) in [
            ("lexical.poll_interval_ms", self.poll_interval_ms / 1000),
            ("lexical.log_retention_secs", self.log_retention_secs),
            ("lexical.prune_interval_secs", self.prune_interval_secs),
        ] {
            if v > YEAR {
                return Err(invalid(key, format!("must be at most a year ({YEAR} s)")));
            }
        }
        if i64::try_from(self.log_retention_positions).is_err() {
            return Err(invalid(
                "lexical.log_retention_positions",
                format!("must be at most {}", i64::MAX),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked() {
        assert!(LexicalSettings::default().check().is_ok());
        let zero = LexicalSettings {
            poll_interval_ms: 0,
            ..Default::default()
        };
        assert!(
            matches!(zero.check(), Err(ConfigError::Invalid { key, .. }) if key == "lexical.poll_interval_ms")
        );
        let long = LexicalSettings {
            log_retention_secs: u64::MAX,
            ..Default::default()
        };
        assert!(
            matches!(long.check(), Err(ConfigError::Invalid { key, .. }) if key == "lexical.log_retention_secs")
        );
        let many = LexicalSettings {
            log_retention_positions: u64::MAX,
            ..Default::default()
        };
        assert!(many.check().is_err());
    }
}
