//! `[crawl]`: what crawl jobs may reach and how long a site may make them wait.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// `crawl.max_crawl_delay_secs` may not exceed this: a crawl paced slower
/// than one page an hour is a mistake, and the delay feeds duration
/// arithmetic.
pub const MAX_CRAWL_DELAY_SECS: u64 = 3600;

/// Settings of crawl jobs that the caller who starts a crawl must not choose.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CrawlSettings {
    /// Let crawls reach loopback, private, link-local, unique-local, CGNAT
    /// and other non-public addresses. Off, a crawl (started by an admin or
    /// an `ingest` API key) cannot make the server fetch from its own
    /// network: its admin ports, cloud metadata, the intranet.
    pub allow_private_networks: bool,
    /// A robots.txt `Crawl-delay` above this many seconds is lowered to it;
    /// 0 ignores `Crawl-delay` (`requests_per_second` alone paces a host).
    pub max_crawl_delay_secs: u64,
}

impl Default for CrawlSettings {
    fn default() -> Self {
        Self {
            allow_private_networks: false,
            max_crawl_delay_secs: 10,
        }
    }
}

impl CrawlSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.max_crawl_delay_secs > MAX_CRAWL_DELAY_SECS {
            return Err(invalid(
                "crawl.max_crawl_delay_secs",
                format!("must be at most {MAX_CRAWL_DELAY_SECS}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ConfigError, Settings};

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let env = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Settings::load(None, false, env)
    }

    #[test]
    fn private_networks_are_off_by_default_and_set_by_env() {
        let s = load(&[]).unwrap();
        assert!(!s.crawl.allow_private_networks);
        assert_eq!(s.crawl.max_crawl_delay_secs, 10);
        let s = load(&[
            ("RAGCHAT_CRAWL_ALLOW_PRIVATE_NETWORKS", "true"),
            ("RAGCHAT_CRAWL_MAX_CRAWL_DELAY_SECS", "0"),
        ])
        .unwrap();
        assert!(s.crawl.allow_private_networks);
        assert_eq!(s.crawl.max_crawl_delay_secs, 0);
    }

    #[test]
    fn bad_values_name_the_key() {
        for (var, value, key) in [
            (
                "RAGCHAT_CRAWL_ALLOW_PRIVATE_NETWORKS",
                "maybe",
                "crawl.allow_private_networks",
            ),
            (
                "RAGCHAT_CRAWL_MAX_CRAWL_DELAY_SECS",
                "3601",
                "crawl.max_crawl_delay_secs",
            ),
            (
                "RAGCHAT_CRAWL_MAX_CRAWL_DELAY_SECS",
                "-1",
                "crawl.max_crawl_delay_secs",
            ),
        ] {
            let err = load(&[(var, value)]).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { key: k, .. } if k == key),
                "{var}={value}: error `{err}` should name `{key}`"
            );
        }
    }
}
