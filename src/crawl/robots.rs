//! robots.txt: fetched once per origin (scheme, host, port), interpreted for
//! our user agent's product token.
//!
//! Failure policy (Google's, see "How Google interprets the robots.txt
//! specification"):
//! - 2xx: parsed; the first 500 KiB only, as Google does;
//! - 4xx other than 429 (404, 403, 410…): no restrictions;
//! - 429, 5xx, timeouts and connection errors: the whole origin is treated as
//!   disallowed for this crawl (the site may be struggling, or its rules may
//!   be unreadable right now; crawling it anyway could ignore a Disallow);
//! - redirects: followed up to 5 hops (to any http(s) host); more counts as 404;
//! - a file the parser rejects: disallowed, for the same reason as 5xx.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use texting_robots::Robot;
use tokio::sync::OnceCell;
use url::Url;

use super::fetch::{Fetcher, RawResponse};
use super::{lock, SkipReason, MAX_REDIRECTS};

/// Google parses the first 500 KiB of a robots.txt file and ignores the rest.
pub(crate) const ROBOTS_MAX_BYTES: u64 = 500 * 1024;

#[derive(Debug)]
pub(crate) enum Rules {
    AllowAll,
    /// The origin is off limits; the reason says why (5xx, unreachable…).
    DisallowAll(String),
    Parsed(Robot),
}

#[derive(Debug)]
pub(crate) struct Robots {
    pub(crate) rules: Rules,
    /// `Crawl-delay` for our agent (or `*`), if any.
    pub(crate) delay: Option<Duration>,
}

impl Robots {
    pub(crate) fn allow_all() -> Self {
        Robots {
            rules: Rules::AllowAll,
            delay: None,
        }
    }

    fn disallow_all(why: String) -> Self {
        Robots {
            rules: Rules::DisallowAll(why),
            delay: None,
        }
    }

    /// Interpret a fetched robots.txt file for `agent` (a product token).
    pub(crate) fn parse(agent: &str, body: &[u8]) -> Self {
        match Robot::new(agent, body) {
            Ok(robot) => {
                let delay = robot
                    .delay
                    .filter(|d| d.is_finite() && *d > 0.0)
                    .map(|d| Duration::from_secs_f64(f64::from(d)));
                Robots {
                    rules: Rules::Parsed(robot),
                    delay,
                }
            }
            Err(e) => Robots::disallow_all(format!("robots.txt could not be parsed: {e}")),
        }
    }

    /// May `url` be fetched?
    pub(crate) fn check(&self, url: &Url) -> Result<(), SkipReason> {
        match &self.rules {
            Rules::AllowAll => Ok(()),
            Rules::DisallowAll(why) => Err(SkipReason::RobotsUnavailable(why.clone())),
            Rules::Parsed(robot) => {
                if robot.allowed(url.as_str()) {
                    Ok(())
                } else {
                    Err(SkipReason::DisallowedByRobots)
                }
            }
        }
    }
}

/// The product token robots.txt groups are matched against:
/// `ragchat-crawler/0.1 (+https://…)` → `ragchat-crawler`.
pub(crate) fn agent_token(user_agent: &str) -> &str {
    let ua = user_agent.trim();
    let end = ua
        .find(|c: char| c == '/' || c.is_whitespace())
        .unwrap_or(ua.len());
    &ua[..end]
}

/// robots.txt per origin, each fetched at most once even when many pages of
/// the origin ask at the same time.
#[derive(Default)]
pub(crate) struct RobotsCache {
    origins: Mutex<HashMap<String, Arc<OnceCell<Arc<Robots>>>>>,
}

impl RobotsCache {
    pub(crate) async fn get(&self, fetcher: &Fetcher<'_>, url: &Url) -> Arc<Robots> {
        let origin = url.origin().ascii_serialization();
        let cell = lock(&self.origins).entry(origin).or_default().clone();
        cell.get_or_init(|| async {
            let robots = fetch(fetcher, url).await;
            if let (Some(delay), Some(host)) = (robots.delay, url.host_str()) {
                fetcher.limiter.slow_down(host, delay);
            }
            Arc::new(robots)
        })
        .await
        .clone()
    }
}

async fn fetch(fetcher: &Fetcher<'_>, page: &Url) -> Robots {
    let mut url = page.clone();
    url.set_path("/robots.txt");
    url.set_query(None);
    url.set_fragment(None);
    for _ in 0..=MAX_REDIRECTS {
        let response = match fetcher.get_raw(&url, ROBOTS_MAX_BYTES).await {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(%url, error = %e, "robots.txt unreachable; origin treated as disallowed");
                return Robots::disallow_all(format!("robots.txt unreachable: {e}"));
            }
        };
        let RawResponse {
            status,
            location,
            body,
        } = response;
        match status {
            200..=299 => return Robots::parse(fetcher.agent, &body),
            301 | 302 | 303 | 307 | 308 => {
                let next = location
                    .and_then(|l| url.join(&l).ok())
                    .filter(|u| matches!(u.scheme(), "http" | "https"));
                match next {
                    Some(next) => url = next,
                    // Google treats an unfollowable robots.txt redirect as 404.
                    None => return Robots::allow_all(),
                }
            }
            429 | 500..=599 => {
                return Robots::disallow_all(format!("robots.txt answered HTTP {status}"))
            }
            _ => return Robots::allow_all(),
        }
    }
    Robots::allow_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn product_token_is_the_name_before_the_version() {
        assert_eq!(
            agent_token("ragchat-crawler/0.1 (+https://example.com)"),
            "ragchat-crawler"
        );
        assert_eq!(agent_token("  plainbot  "), "plainbot");
    }

    #[test]
    fn our_group_wins_over_the_wildcard_and_delay_is_read() {
        let txt = b"User-agent: *\nDisallow: /\n\nUser-agent: ragchat-crawler\nDisallow: /private/\nCrawl-delay: 2\n";
        let robots = Robots::parse("ragchat-crawler", txt);
        assert_eq!(robots.check(&url("http://h/a")), Ok(()));
        assert_eq!(
            robots.check(&url("http://h/private/x")),
            Err(SkipReason::DisallowedByRobots)
        );
        assert_eq!(robots.delay, Some(Duration::from_secs(2)));
        let other = Robots::parse("otherbot", txt);
        assert_eq!(
            other.check(&url("http://h/a")),
            Err(SkipReason::DisallowedByRobots)
        );
    }

    #[test]
    fn disallow_all_names_the_reason() {
        let robots = Robots::disallow_all("robots.txt answered HTTP 503".into());
        assert_eq!(
            robots.check(&url("http://h/")),
            Err(SkipReason::RobotsUnavailable(
                "robots.txt answered HTTP 503".into()
            ))
        );
    }
}
