//! What to crawl and how politely, and its validation.

use std::time::Duration;

use url::Url;

use super::{net, robots};
use crate::config::MAX_CRAWL_DELAY_SECS;

/// Default user agent. Deployments that crawl other people's sites should set
/// one with a contact URL (`ragchat-crawler/0.1 (+https://your.site/bot)`);
/// robots.txt rules are matched against the part before the `/`.
pub const DEFAULT_USER_AGENT: &str = "ragchat-crawler/0.1";
/// `max_pages` may not exceed this.
pub const MAX_PAGES_CAP: usize = 10_000;
/// `max_depth` may not exceed this.
pub const MAX_DEPTH_CAP: u32 = 100;
/// `concurrency` may not exceed this.
pub const MAX_CONCURRENCY: usize = 64;
/// `requests_per_second` (per host) may not exceed this.
pub const MAX_REQUESTS_PER_SECOND: f64 = 100.0;
/// `timeout` may not exceed this.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// `max_body_bytes` may not exceed this.
pub const MAX_BODY_BYTES_CAP: u64 = 100 * 1024 * 1024;
/// Redirect hops followed per URL (and per robots.txt).
pub const MAX_REDIRECTS: usize = 5;
/// `max_crawl_delay` may not exceed this.
pub const MAX_CRAWL_DELAY: Duration = Duration::from_secs(MAX_CRAWL_DELAY_SECS);

/// What to crawl and how politely. [`CrawlSpec::new`] gives the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct CrawlSpec {
    /// http or https.
    pub start_url: String,
    /// URLs fetched at most (a redirect chain counts once; robots.txt does
    /// not count). Default 100, at most [`MAX_PAGES_CAP`].
    pub max_pages: usize,
    /// Links followed from the start URL at most. Default 3.
    pub max_depth: u32,
    /// Only follow links to the start URL's host (any port or scheme).
    /// Default true.
    pub same_host: bool,
    /// Globs over a URL's path and query ([`Pattern`](super::Pattern)); when
    /// any are given a URL must match one. Default empty (everything).
    pub include: Vec<String>,
    /// Globs over a URL's path and query; a match is skipped. Wins over
    /// `include`. Default empty.
    pub exclude: Vec<String>,
    /// Per host; lowered further by a stricter robots.txt `Crawl-delay`.
    /// Default 2.0.
    pub requests_per_second: f64,
    /// Requests in flight across all hosts. Default 4.
    pub concurrency: usize,
    /// Per request (one redirect hop), from sending until the body is read;
    /// rate-limit waits do not count. Default 15 s.
    pub timeout: Duration,
    /// Larger bodies are abandoned (and skipped) once this many bytes have
    /// arrived. Default 5 MiB.
    pub max_body_bytes: u64,
    /// Sent with every request; its product token is what robots.txt and
    /// `<meta name="…">` are matched against. Default [`DEFAULT_USER_AGENT`].
    pub user_agent: String,
    /// Media types besides HTML, plain text and markdown to deliver as
    /// [`Page`](super::Page)s with raw bytes and no document (e.g. `application/pdf` once
    /// a loader exists for it). Default empty: such responses are skipped
    /// without reading their bodies.
    pub extra_content_types: Vec<String>,
    /// Let requests reach loopback, private, link-local and other
    /// non-public addresses (see `net.rs`). Default false: such hosts, as IP
    /// literals or names that resolve to them, fail with
    /// [`FetchError::AddressNotAllowed`](super::FetchError), on every hop.
    /// A deployment's setting, never a crawl request's.
    pub allow_private_networks: bool,
    /// A robots.txt `Crawl-delay` above this is lowered to it; zero ignores
    /// `Crawl-delay`. Default 10 s, at most [`MAX_CRAWL_DELAY`].
    pub max_crawl_delay: Duration,
}

impl CrawlSpec {
    pub fn new(start_url: impl Into<String>) -> Self {
        CrawlSpec {
            start_url: start_url.into(),
            max_pages: 100,
            max_depth: 3,
            same_host: true,
            include: Vec::new(),
            exclude: Vec::new(),
            requests_per_second: 2.0,
            concurrency: 4,
            timeout: Duration::from_secs(15),
            max_body_bytes: 5 * 1024 * 1024,
            user_agent: DEFAULT_USER_AGENT.to_string(),
            extra_content_types: Vec::new(),
            allow_private_networks: false,
            max_crawl_delay: Duration::from_secs(10),
        }
    }

    /// Check every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), CrawlError> {
        self.check_start_url()?;
        self.check_limits()?;
        self.check_matching()
    }

    fn check_start_url(&self) -> Result<(), CrawlError> {
        match Url::parse(self.start_url.trim()) {
            Err(e) => bad("start_url", format!("not a URL: {e}")),
            Ok(u) if !matches!(u.scheme(), "http" | "https") => bad(
                "start_url",
                format!(
                    "scheme {:?} is not supported (only http and https)",
                    u.scheme()
                ),
            ),
            Ok(u) if u.host_str().is_none_or(str::is_empty) => {
                bad("start_url", "has no host".into())
            }
            // Names are checked when they resolve, hop by hop; a literal can
            // be refused before anything is queued.
            Ok(u) if !self.allow_private_networks => {
                net::literal_refusal(&u).map_or(Ok(()), |why| bad("start_url", why))
            }
            Ok(_) => Ok(()),
        }
    }

    /// The numbers: pages, depth, rate, concurrency, timeout, body size.
    fn check_limits(&self) -> Result<(), CrawlError> {
        if self.max_pages == 0 || self.max_pages > MAX_PAGES_CAP {
            return bad(
                "max_pages",
                format!(
                    "must be between 1 and {MAX_PAGES_CAP}, got {}",
                    self.max_pages
                ),
            );
        }
        if self.max_depth > MAX_DEPTH_CAP {
            return bad(
                "max_depth",
                format!("must be at most {MAX_DEPTH_CAP}, got {}", self.max_depth),
            );
        }
        let rps = self.requests_per_second;
        if !rps.is_finite() || rps <= 0.0 || rps > MAX_REQUESTS_PER_SECOND {
            return bad(
                "requests_per_second",
                format!("must be above 0 and at most {MAX_REQUESTS_PER_SECOND}, got {rps}"),
            );
        }
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            return bad(
                "concurrency",
                format!(
                    "must be between 1 and {MAX_CONCURRENCY}, got {}",
                    self.concurrency
                ),
            );
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return bad(
                "timeout",
                format!(
                    "must be above 0 and at most {MAX_TIMEOUT:?}, got {:?}",
                    self.timeout
                ),
            );
        }
        if self.max_body_bytes == 0 || self.max_body_bytes > MAX_BODY_BYTES_CAP {
            return bad(
                "max_body_bytes",
                format!(
                    "must be between 1 and {MAX_BODY_BYTES_CAP}, got {}",
                    self.max_body_bytes
                ),
            );
        }
        if self.max_crawl_delay > MAX_CRAWL_DELAY {
            return bad(
                "max_crawl_delay",
                format!(
                    "must be at most {MAX_CRAWL_DELAY:?}, got {:?}",
                    self.max_crawl_delay
                ),
            );
        }
        Ok(())
    }

    /// What requests and URLs are matched against: the user agent, the
    /// include/exclude patterns, the extra media types.
    fn check_matching(&self) -> Result<(), CrawlError> {
        let ua = &self.user_agent;
        if robots::agent_token(ua).is_empty()
            || !ua.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
        {
            return bad(
                "user_agent",
                "must start with a product name (`name/version …`) and be printable ASCII".into(),
            );
        }
        for (field, patterns) in [("include", &self.include), ("exclude", &self.exclude)] {
            // A pattern sees `/path?query`; one starting otherwise (say a
            // full URL) could never match, which is surely a mistake.
            if let Some(p) = patterns
                .iter()
                .map(|p| p.trim())
                .find(|p| !(p.starts_with('/') || p.starts_with('*')))
            {
                return bad(
                    field,
                    format!("pattern {p:?} must start with / or * (it matches the path and query)"),
                );
            }
        }
        if self.extra_content_types.iter().any(|t| !t.contains('/')) {
            return bad(
                "extra_content_types",
                "entries must be media types like application/pdf".into(),
            );
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CrawlError {
    #[error("invalid crawl spec: {field}: {message}")]
    InvalidSpec {
        field: &'static str,
        message: String,
    },
    #[error("could not build the HTTP client: {0}")]
    Client(String),
}

/// A client fit for crawling with `spec`: redirects are not followed (the
/// crawler checks and follows each hop itself), our user agent, a connect
/// timeout, and unless `allow_private_networks` a DNS resolver that passes
/// on public addresses only. No proxy from the environment: through a proxy
/// the addresses checked would be the proxy's, not the site's. DNS
/// overrides added to it (`resolve`) are trusted as given: they bypass the
/// resolver.
pub fn client_builder(spec: &CrawlSpec) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder()
        .user_agent(spec.user_agent.as_str())
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(spec.timeout)
        .pool_max_idle_per_host(spec.concurrency)
        .no_proxy();
    if spec.allow_private_networks {
        builder
    } else {
        builder.dns_resolver(std::sync::Arc::new(net::GuardedResolver::system()))
    }
}

/// The error for a bad `field`.
fn bad(field: &'static str, message: String) -> Result<(), CrawlError> {
    Err(CrawlError::InvalidSpec { field, message })
}

/// [`client_builder`], validated and built.
pub fn build_client(spec: &CrawlSpec) -> Result<reqwest::Client, CrawlError> {
    spec.validate()?;
    client_builder(spec)
        .build()
        .map_err(|e| CrawlError::Client(e.to_string()))
}
