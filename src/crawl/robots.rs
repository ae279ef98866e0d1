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
//! - an address the crawl may not reach (see `net.rs`), for the file or a
//!   redirect hop: as an unfollowable redirect, 404. The pages of a refused
//!   origin then fail on their own with the same uniform reason;
//! - a file the parser rejects: disallowed, for the same reason as 5xx.
//!
//! `Crawl-delay` is capped at the spec's `max_crawl_delay`: a site may slow
//! a crawl down, not park it for years (or, with 1e30, overflow a
//! `Duration`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use texting_robots::Robot;
use tokio::sync::OnceCell;
use url::Url;

use super::fetch::{Fetcher, RawResponse};
use super::{lock, FetchError, SkipReason, MAX_REDIRECTS};

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

    /// Interpret a fetched robots.txt file for `agent` (a product token),
    /// with `Crawl-delay` capped at `max_delay`.
    pub(crate) fn parse(agent: &str, body: &[u8], max_delay: Duration) -> Self {
        match Robot::new(agent, body) {
            Ok(robot) => {
                let delay = crawl_delay(robot.delay, max_delay);
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

/// A `Crawl-delay` value as a wait of at most `max`: NaN, zero and negative
/// values ask for nothing; infinite and huge ones get the cap.
fn crawl_delay(raw: Option<f32>, max: Duration) -> Option<Duration> {
    let secs = f64::from(raw?);
    if secs.is_nan() || secs <= 0.0 {
        return None;
    }
    // Fails for infinity and for values past Duration's range: both capped.
    let delay = Duration::try_from_secs_f64(secs).map_or(max, |d| d.min(max));
    (!delay.is_zero()).then_some(delay)
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
            Err(FetchError::AddressNotAllowed) => return Robots::allow_all(),
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
            200..=299 => return Robots::parse(fetcher.agent, &body, fetcher.spec.max_crawl_delay),
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
        let robots = Robots::parse("ragchat-crawler", txt, Duration::from_secs(10));
        assert_eq!(robots.check(&url("http://h/a")), Ok(()));
        assert_eq!(
            robots.check(&url("http://h/private/x")),
            Err(SkipReason::DisallowedByRobots)
        );
        assert_eq!(robots.delay, Some(Duration::from_secs(2)));
        let other = Robots::parse("otherbot", txt, Duration::from_secs(10));
        assert_eq!(
            other.check(&url("http://h/a")),
            Err(SkipReason::DisallowedByRobots)
        );
    }

    #[test]
    fn crawl_delay_is_capped_and_nonsense_ignored() {
        let max = Duration::from_secs(10);
        let delay = |value: &str| {
            let txt = format!("User-agent: *\nCrawl-delay: {value}\nDisallow: /x\n");
            Robots::parse("ragchat-crawler", txt.as_bytes(), max).delay
        };
        assert_eq!(delay("2.5"), Some(Duration::from_millis(2500)));
        assert_eq!(delay("10"), Some(max));
        for huge in [
            "11", "86400", "1e9", "1e30", "1e39", "inf", "infinity", "-inf",
        ] {
            let expected = (!huge.starts_with('-')).then_some(max);
            assert_eq!(delay(huge), expected, "{huge}");
        }
        for nothing in ["NaN", "nan", "-5", "0", "-0", "soon"] {
            assert_eq!(delay(nothing), None, "{nothing}");
        }
        // A cap of zero ignores Crawl-delay altogether.
        let txt = b"User-agent: *\nCrawl-delay: 5\n";
        assert_eq!(Robots::parse("bot", txt, Duration::ZERO).delay, None);
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
