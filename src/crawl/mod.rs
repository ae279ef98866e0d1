//! Web crawler: from a start URL, breadth-first over `<a href>` links, politely
//! (robots.txt, per-host rate limit, `noindex`/`nofollow`), into pages the
//! ingestion pipeline can take.
//!
//! - **Order.** Breadth-first by depth (the start URL is depth 0; redirects do
//!   not add depth). One depth is finished before the next starts, and the
//!   next depth is queued page by page in queue order, each page's links in
//!   document order, so which pages `max_pages` keeps does not depend on
//!   response timing. Within a depth up to `concurrency` requests are in
//!   flight, each host rate-limited on its own.
//! - **Identity.** Every URL is normalised ([`urls::normalize`]) before it is
//!   compared, fetched or reported; a page's identity (its document's source
//!   name) is the normalised URL after redirects. Each URL is fetched at most
//!   once; every URL found gets one event (a redirect's target shows up as
//!   that event's `final_url`).
//! - **Scope.** The start URL is fetched whatever the patterns say (it was
//!   chosen explicitly; robots.txt still applies):
//!   patterns and the host rule apply to the URLs found from it, and its own
//!   redirects may change host (`example.com` → `www.example.com`), after
//!   which both hosts count as "the same host". Every later redirect hop is
//!   checked like a link (host, patterns, robots.txt, already seen).
//! - **robots.txt.** Fetched once per origin and obeyed for our product
//!   token; 4xx → no restrictions; 429, 5xx or unreachable → the origin is
//!   disallowed for this crawl (Google's policy; details in `robots.rs`).
//!   A stricter `Crawl-delay` lowers that host's rate.
//! - **Events.** `on_event` runs on the crawl's own task between polls of
//!   the requests: keep it quick (hand pages to a channel or a queue).
//! - **Cancellation.** Dropping the future stops everything at once: no task
//!   is spawned for requests, so in-flight requests are dropped with it (an
//!   HTML parse already on the blocking pool finishes and is discarded).
//!   [`crawl_with_cancel`] also stops on a [`CancelToken`] and still returns
//!   the report of what was done.

mod fetch;
mod html;
mod limit;
mod robots;
pub mod urls;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::{stream, StreamExt};
use tokio::sync::Notify;
use url::Url;

// The title rules are ingestion's, so a page crawled from a site and the
// same file uploaded get the same title.
use crate::ingest::load::{markdown_title, text_title, RawDocument};

use fetch::{ContentKind, Fetched, Fetcher, Hop};
use html::Directives;
use robots::{Robots, RobotsCache};
pub use urls::Pattern;

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
    /// Globs over a URL's path and query ([`Pattern`]); when any are given a
    /// URL must match one. Default empty (everything).
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
    /// [`Page`]s with raw bytes and no document (e.g. `application/pdf` once
    /// a loader exists for it). Default empty: such responses are skipped
    /// without reading their bodies.
    pub extra_content_types: Vec<String>,
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
        }
    }

    /// Check every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), CrawlError> {
        let bad =
            |field: &'static str, message: String| Err(CrawlError::InvalidSpec { field, message });
        match Url::parse(self.start_url.trim()) {
            Err(e) => return bad("start_url", format!("not a URL: {e}")),
            Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                return bad(
                    "start_url",
                    format!(
                        "scheme {:?} is not supported (only http and https)",
                        u.scheme()
                    ),
                )
            }
            Ok(u) if u.host_str().is_none_or(str::is_empty) => {
                return bad("start_url", "has no host".into())
            }
            Ok(_) => {}
        }
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
/// timeout. Add to it (proxies, DNS overrides) before `build()`.
pub fn client_builder(spec: &CrawlSpec) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(spec.user_agent.as_str())
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(spec.timeout)
        .pool_max_idle_per_host(spec.concurrency)
}

/// [`client_builder`], validated and built.
pub fn build_client(spec: &CrawlSpec) -> Result<reqwest::Client, CrawlError> {
    spec.validate()?;
    client_builder(spec)
        .build()
        .map_err(|e| CrawlError::Client(e.to_string()))
}

/// A fetched page. `document` is `Some` for HTML, plain text and markdown;
/// for `extra_content_types` it is `None` and `body` holds the bytes for
/// whichever loader handles `content_type`.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The URL as queued (normalised).
    pub url: String,
    /// The normalised URL after redirects: the page's identity, and the
    /// document's `source`.
    pub final_url: String,
    pub depth: u32,
    pub status: u16,
    /// Media type without parameters, lowercased (`text/html`).
    pub content_type: String,
    pub body: Vec<u8>,
    pub document: Option<RawDocument>,
}

/// Why a URL was not fetched, or fetched but not kept. Not errors: the crawl
/// did what it was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    DisallowedByRobots,
    /// robots.txt could not be read (5xx, 429, unreachable, unparseable), so
    /// the whole origin is off limits for this crawl.
    RobotsUnavailable(String),
    /// Another host while `same_host` is set.
    OffHost,
    /// Matches this exclude pattern.
    Excluded(String),
    /// Matches none of the include patterns.
    NotIncluded,
    /// Found on a page at `max_depth`.
    TooDeep(u32),
    /// `max_pages` URLs were already fetched.
    MaxPages(usize),
    /// Redirects to a URL this crawl already has (queued, fetched or skipped).
    Duplicate,
    /// Redirects to a URL that is not http(s).
    UnsupportedScheme(String),
    /// `noindex` in a meta tag or `X-Robots-Tag`.
    NoIndex,
    UnsupportedContentType(String),
    /// The body is larger than this many bytes (`max_body_bytes`).
    BodyTooLarge(u64),
}

impl SkipReason {
    /// A stable key for counting (`CrawlReport::skipped`).
    pub fn code(&self) -> &'static str {
        match self {
            SkipReason::DisallowedByRobots => "disallowed_by_robots",
            SkipReason::RobotsUnavailable(_) => "robots_unavailable",
            SkipReason::OffHost => "off_host",
            SkipReason::Excluded(_) => "excluded",
            SkipReason::NotIncluded => "not_included",
            SkipReason::TooDeep(_) => "too_deep",
            SkipReason::MaxPages(_) => "max_pages",
            SkipReason::Duplicate => "duplicate",
            SkipReason::UnsupportedScheme(_) => "unsupported_scheme",
            SkipReason::NoIndex => "noindex",
            SkipReason::UnsupportedContentType(_) => "unsupported_content_type",
            SkipReason::BodyTooLarge(_) => "body_too_large",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::DisallowedByRobots => write!(f, "disallowed by robots.txt"),
            SkipReason::RobotsUnavailable(why) => {
                write!(f, "{why}; the host is treated as disallowed")
            }
            SkipReason::OffHost => write!(f, "on another host"),
            SkipReason::Excluded(p) => write!(f, "matches exclude pattern {p:?}"),
            SkipReason::NotIncluded => write!(f, "matches no include pattern"),
            SkipReason::TooDeep(max) => write!(f, "deeper than max_depth {max}"),
            SkipReason::MaxPages(max) => write!(f, "max_pages {max} reached"),
            SkipReason::Duplicate => write!(f, "redirects to a URL this crawl already has"),
            SkipReason::UnsupportedScheme(s) => {
                write!(f, "redirects to an unsupported scheme {s:?}")
            }
            SkipReason::NoIndex => write!(f, "marked noindex"),
            SkipReason::UnsupportedContentType(t) => write!(f, "unsupported content type {t}"),
            SkipReason::BodyTooLarge(n) => write!(f, "body larger than {n} bytes"),
        }
    }
}

/// A URL that could not be fetched. Recorded per URL; never ends the crawl.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("timed out after {ms} ms")]
    Timeout { ms: u64 },
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("request failed: {0}")]
    Request(String),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
    #[error("redirect without a usable Location: {0}")]
    BadRedirect(String),
    #[error("reading the body failed: {0}")]
    Body(String),
    #[error("processing the page failed: {0}")]
    Process(String),
}

impl FetchError {
    /// A stable key for counting (`CrawlReport::failed`); statuses count
    /// separately (`http_404`, `http_503`).
    pub fn code(&self) -> String {
        match self {
            FetchError::Timeout { .. } => "timeout".into(),
            FetchError::Connect(_) => "connect".into(),
            FetchError::Request(_) => "request".into(),
            FetchError::Status(s) => format!("http_{s}"),
            FetchError::TooManyRedirects => "too_many_redirects".into(),
            FetchError::BadRedirect(_) => "bad_redirect".into(),
            FetchError::Body(_) => "body".into(),
            FetchError::Process(_) => "process".into(),
        }
    }

    /// Might work next time (network trouble, 429, 5xx). A re-crawl should
    /// keep documents whose URLs failed like this rather than delete them.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Timeout { .. }
            | FetchError::Connect(_)
            | FetchError::Request(_)
            | FetchError::Body(_)
            | FetchError::Process(_) => true,
            FetchError::Status(s) => *s == 429 || *s >= 500,
            FetchError::TooManyRedirects | FetchError::BadRedirect(_) => false,
        }
    }

    fn from_reqwest(e: reqwest::Error) -> Self {
        // reqwest's own message is generic; the cause is in the source chain.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        // A timeout here can only be the connect timeout (the request
        // timeout is ours), so it is a connection failure.
        if e.is_timeout() || e.is_connect() {
            FetchError::Connect(message)
        } else if e.is_body() || e.is_decode() {
            FetchError::Body(message)
        } else {
            FetchError::Request(message)
        }
    }
}

/// What the crawl reports as it goes: one event per URL it found.
#[derive(Debug, Clone, PartialEq)]
pub enum CrawlEvent {
    Page(Box<Page>),
    /// `final_url` is where the reason applies (after redirects; else `url`).
    Skipped {
        url: String,
        final_url: String,
        reason: SkipReason,
    },
    Failed {
        url: String,
        final_url: String,
        error: FetchError,
    },
}

/// The totals of a crawl.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CrawlReport {
    /// `Page` events.
    pub pages: usize,
    /// URLs fetched (what `max_pages` limits).
    pub fetched: usize,
    /// HTTP requests sent: pages, redirect hops and robots.txt files.
    pub requests: u64,
    /// Body bytes received, including abandoned oversized bodies.
    pub bytes: u64,
    /// Final URLs of every `Page`: the source names a re-crawl keeps.
    pub page_urls: BTreeSet<String>,
    /// URLs that failed transiently ([`FetchError::is_transient`]): a
    /// re-crawl should keep their existing documents too. (Removing unseen
    /// sources only makes sense when the crawl was not cancelled and hit
    /// neither `max_pages` nor a robots.txt outage.)
    pub retry_urls: BTreeSet<String>,
    /// Skips per [`SkipReason::code`].
    pub skipped: BTreeMap<String, usize>,
    /// Failures per [`FetchError::code`].
    pub failed: BTreeMap<String, usize>,
    pub cancelled: bool,
    pub elapsed: Duration,
}

/// Stops a crawl from elsewhere (an API call, shutdown). Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<CancelInner>);

#[derive(Debug, Default)]
struct CancelInner {
    cancelled: AtomicBool,
    notify: Notify,
}

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    /// Resolves once [`cancel`](Self::cancel) has been called.
    pub async fn cancelled(&self) {
        loop {
            // Created before the check: `notify_waiters` reaches a `Notified`
            // from its creation on, so a cancel between the two is not lost.
            let notified = self.0.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// Crawl `spec` with `client` (see [`client_builder`]), calling `on_event`
/// for every page, skip and failure as it happens.
pub async fn crawl(
    spec: &CrawlSpec,
    client: &reqwest::Client,
    on_event: impl FnMut(CrawlEvent) + Send,
) -> Result<CrawlReport, CrawlError> {
    crawl_with_cancel(spec, client, &CancelToken::new(), on_event).await
}

/// [`crawl`] that stops when `cancel` fires: in-flight requests are dropped
/// and the report so far comes back with `cancelled` set.
pub async fn crawl_with_cancel(
    spec: &CrawlSpec,
    client: &reqwest::Client,
    cancel: &CancelToken,
    on_event: impl FnMut(CrawlEvent) + Send,
) -> Result<CrawlReport, CrawlError> {
    spec.validate()?;
    let start = urls::normalize_str(&spec.start_url).ok_or_else(|| CrawlError::InvalidSpec {
        field: "start_url",
        message: "not an http(s) URL".into(),
    })?;
    let started = Instant::now();
    let crawler = Crawler::new(spec, client, &start);
    let mut recorder = Recorder {
        report: CrawlReport::default(),
        on_event,
    };
    let cancelled = crawler.run(start, cancel, &mut recorder).await;
    let mut report = recorder.report;
    report.cancelled = cancelled;
    report.requests = crawler.fetcher.requests.load(Ordering::Relaxed);
    report.bytes = crawler.fetcher.bytes.load(Ordering::Relaxed);
    report.elapsed = started.elapsed();
    tracing::info!(
        start = %spec.start_url,
        pages = report.pages,
        fetched = report.fetched,
        requests = report.requests,
        bytes = report.bytes,
        cancelled,
        "crawl finished"
    );
    Ok(report)
}

/// Counts every event into the report before handing it on.
struct Recorder<F> {
    report: CrawlReport,
    on_event: F,
}

impl<F: FnMut(CrawlEvent)> Recorder<F> {
    fn emit(&mut self, event: CrawlEvent) {
        let report = &mut self.report;
        match &event {
            CrawlEvent::Page(page) => {
                tracing::debug!(url = %page.final_url, bytes = page.body.len(), "crawled");
                report.pages += 1;
                report.page_urls.insert(page.final_url.clone());
            }
            CrawlEvent::Skipped { url, reason, .. } => {
                tracing::debug!(%url, %reason, "skipped");
                *report.skipped.entry(reason.code().to_string()).or_default() += 1;
            }
            CrawlEvent::Failed {
                url,
                final_url,
                error,
            } => {
                tracing::debug!(%url, %error, "failed");
                *report.failed.entry(error.code()).or_default() += 1;
                if error.is_transient() {
                    report.retry_urls.insert(final_url.clone());
                }
            }
        }
        (self.on_event)(event);
    }

    fn skip(&mut self, url: &Url, reason: SkipReason) {
        self.emit(skipped(url.as_str(), url, reason));
    }
}

fn skipped(url: &str, final_url: &Url, reason: SkipReason) -> CrawlEvent {
    CrawlEvent::Skipped {
        url: url.to_string(),
        final_url: final_url.to_string(),
        reason,
    }
}

fn failed(url: &str, final_url: &Url, error: FetchError) -> CrawlEvent {
    CrawlEvent::Failed {
        url: url.to_string(),
        final_url: final_url.to_string(),
        error,
    }
}

/// A poisoned lock only means another future panicked mid-update of a set or
/// map; the data is still usable for crawling.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One crawl's shared state. Futures for concurrent pages borrow it; nothing
/// is spawned, so dropping the crawl future drops every request.
struct Crawler<'a> {
    spec: &'a CrawlSpec,
    fetcher: Fetcher<'a>,
    robots: RobotsCache,
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
    /// Every normalised URL queued, skipped or reached by a redirect.
    seen: Mutex<HashSet<String>>,
    /// Hosts that count as "the same host".
    hosts: Mutex<HashSet<String>>,
}

impl<'a> Crawler<'a> {
    fn new(spec: &'a CrawlSpec, client: &'a reqwest::Client, start: &Url) -> Self {
        Crawler {
            spec,
            fetcher: Fetcher::new(client, spec, robots::agent_token(&spec.user_agent)),
            robots: RobotsCache::default(),
            include: spec
                .include
                .iter()
                .map(|p| Pattern::new(p.trim()))
                .collect(),
            exclude: spec
                .exclude
                .iter()
                .map(|p| Pattern::new(p.trim()))
                .collect(),
            seen: Mutex::new(HashSet::from([start.to_string()])),
            hosts: Mutex::new(start.host_str().map(str::to_string).into_iter().collect()),
        }
    }

    /// Crawl level by level; `true` when cancelled.
    async fn run<F: FnMut(CrawlEvent)>(
        &self,
        start: Url,
        cancel: &CancelToken,
        rec: &mut Recorder<F>,
    ) -> bool {
        let spec = self.spec;
        let mut level = vec![start];
        let mut depth: u32 = 0;
        let mut budget = spec.max_pages;
        while !level.is_empty() {
            // robots.txt of the level's origins first (concurrently, once
            // each), so admission below can go in queue order.
            let mut origins = HashSet::new();
            let first_of_origin: Vec<Url> = level
                .iter()
                .filter(|u| origins.insert(u.origin().ascii_serialization()))
                .cloned()
                .collect();
            let robots_of = stream::iter(first_of_origin)
                .map(|u| async move {
                    let robots = self.robots.get(&self.fetcher, &u).await;
                    (u.origin().ascii_serialization(), robots)
                })
                .buffer_unordered(spec.concurrency)
                .collect::<HashMap<String, Arc<Robots>>>();
            let robots_of = tokio::select! {
                biased;
                _ = cancel.cancelled() => return true,
                r = robots_of => r,
            };

            let mut admitted = Vec::new();
            for url in level {
                let verdict = robots_of
                    .get(&url.origin().ascii_serialization())
                    .map_or(Ok(()), |r| r.check(&url));
                if let Err(reason) = verdict {
                    rec.skip(&url, reason);
                } else if budget == 0 {
                    rec.skip(&url, SkipReason::MaxPages(spec.max_pages));
                } else {
                    budget -= 1;
                    admitted.push(url);
                }
            }
            rec.report.fetched += admitted.len();

            let seed = depth == 0;
            let mut fetches = stream::iter(admitted.into_iter().enumerate())
                .map(move |(i, url)| async move { (i, self.fetch_page(url, depth, seed).await) })
                .buffer_unordered(spec.concurrency);
            let mut found: Vec<(usize, Vec<Url>)> = Vec::new();
            loop {
                let next = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return true,
                    next = fetches.next() => next,
                };
                let Some((i, (event, links))) = next else {
                    break;
                };
                rec.emit(event);
                if !links.is_empty() {
                    found.push((i, links));
                }
            }

            // The next level, in the order of the pages that linked to it.
            found.sort_by_key(|(i, _)| *i);
            let mut next = Vec::new();
            for link in found.into_iter().flat_map(|(_, links)| links) {
                // mailto:, javascript:, tel: and the like are not pages.
                let Some(link) = urls::normalize(link) else {
                    continue;
                };
                if !self.mark_seen(&link) {
                    continue;
                }
                if let Err(reason) = self.in_scope(&link) {
                    rec.skip(&link, reason);
                } else if depth >= spec.max_depth {
                    rec.skip(&link, SkipReason::TooDeep(spec.max_depth));
                } else if budget == 0 {
                    rec.skip(&link, SkipReason::MaxPages(spec.max_pages));
                } else {
                    next.push(link);
                }
            }
            level = next;
            depth += 1;
        }
        false
    }

    /// `true` if the URL is new to this crawl.
    fn mark_seen(&self, url: &Url) -> bool {
        lock(&self.seen).insert(url.to_string())
    }

    /// Host rule and patterns (not robots.txt, which needs a fetch).
    fn in_scope(&self, url: &Url) -> Result<(), SkipReason> {
        if self.spec.same_host && !lock(&self.hosts).contains(url.host_str().unwrap_or_default()) {
            return Err(SkipReason::OffHost);
        }
        let subject = urls::path_and_query(url);
        if let Some(p) = self.exclude.iter().find(|p| p.matches(&subject)) {
            return Err(SkipReason::Excluded(p.as_str().to_string()));
        }
        if !self.include.is_empty() && !self.include.iter().any(|p| p.matches(&subject)) {
            return Err(SkipReason::NotIncluded);
        }
        Ok(())
    }

    /// Fetch one admitted URL, following redirects: its outcome event and
    /// the links to consider next.
    async fn fetch_page(&self, url: Url, depth: u32, seed: bool) -> (CrawlEvent, Vec<Url>) {
        let requested = url.to_string();
        let mut current = url;
        let mut hops = 0;
        loop {
            let hop = match self.fetcher.get(&current).await {
                Ok(hop) => hop,
                Err(e) => return (failed(&requested, &current, e), Vec::new()),
            };
            let location = match hop {
                Hop::Done(fetched) => {
                    return self.process(&requested, current, depth, fetched).await
                }
                Hop::Skip(reason) => return (skipped(&requested, &current, reason), Vec::new()),
                Hop::Redirect { location } => location,
            };
            hops += 1;
            if hops > MAX_REDIRECTS {
                return (
                    failed(&requested, &current, FetchError::TooManyRedirects),
                    Vec::new(),
                );
            }
            let target = match location.as_deref().map(|l| current.join(l)) {
                Some(Ok(target)) => target,
                Some(Err(e)) => {
                    let error = FetchError::BadRedirect(format!("{location:?}: {e}"));
                    return (failed(&requested, &current, error), Vec::new());
                }
                None => {
                    let error = FetchError::BadRedirect("no Location header".into());
                    return (failed(&requested, &current, error), Vec::new());
                }
            };
            let scheme = target.scheme().to_string();
            let Some(target) = urls::normalize(target) else {
                let reason = SkipReason::UnsupportedScheme(scheme);
                return (skipped(&requested, &current, reason), Vec::new());
            };
            // Each hop is checked like a link. The start URL may move to
            // another host (and that host joins the crawl).
            let verdict = if seed {
                if let Some(host) = target.host_str() {
                    lock(&self.hosts).insert(host.to_string());
                }
                Ok(())
            } else {
                self.in_scope(&target)
            };
            let verdict = verdict.and_then(|()| {
                if self.mark_seen(&target) {
                    Ok(())
                } else {
                    Err(SkipReason::Duplicate)
                }
            });
            let verdict = match verdict {
                Ok(()) => self.robots.get(&self.fetcher, &target).await.check(&target),
                Err(reason) => Err(reason),
            };
            if let Err(reason) = verdict {
                return (skipped(&requested, &target, reason), Vec::new());
            }
            current = target;
        }
    }

    /// Turn a fetched body into a page (or a noindex skip), with its links.
    async fn process(
        &self,
        requested: &str,
        final_url: Url,
        depth: u32,
        fetched: Fetched,
    ) -> (CrawlEvent, Vec<Url>) {
        let agent = self.fetcher.agent;
        let mut directives = Directives::default();
        directives.apply_headers(&fetched.robots_tags, agent);
        let charset = fetched.charset.as_deref();
        let (format, title, text, links) = match fetched.kind {
            ContentKind::Html => {
                let html = fetch::decode(&fetched.body, charset);
                let (url, agent) = (final_url.clone(), agent.to_string());
                let want_text = !directives.noindex;
                let parsed = tokio::task::spawn_blocking(move || {
                    html::analyse(&html, &url, &agent, want_text)
                })
                .await;
                let page = match parsed {
                    Ok(page) => page,
                    Err(e) => {
                        let error = FetchError::Process(e.to_string());
                        return (failed(requested, &final_url, error), Vec::new());
                    }
                };
                directives.noindex |= page.directives.noindex;
                directives.nofollow |= page.directives.nofollow;
                ("html", page.title, page.text, page.links)
            }
            ContentKind::Text => {
                let text = fetch::decode(&fetched.body, charset);
                ("text", text_title(&text), text, Vec::new())
            }
            ContentKind::Markdown => {
                let text = fetch::decode(&fetched.body, charset);
                ("markdown", markdown_title(&text), text, Vec::new())
            }
            ContentKind::Other => ("bytes", None, String::new(), Vec::new()),
        };
        let links = if directives.nofollow {
            Vec::new()
        } else {
            links
        };
        if directives.noindex {
            return (skipped(requested, &final_url, SkipReason::NoIndex), links);
        }
        let source = final_url.to_string();
        let document = (fetched.kind != ContentKind::Other).then(|| RawDocument {
            title: title.unwrap_or_else(|| fallback_title(&final_url)),
            text,
            markdown: fetched.kind == ContentKind::Markdown,
            metadata: serde_json::json!({
                "url": source,
                "requested_url": requested,
                "content_type": fetched.content_type,
                "depth": depth,
                "format": format,
            }),
            source: source.clone(),
        });
        let page = Page {
            url: requested.to_string(),
            final_url: source,
            depth,
            status: fetched.status,
            content_type: fetched.content_type,
            body: fetched.body,
            document,
        };
        (CrawlEvent::Page(Box::new(page)), links)
    }
}

/// A page without a title is named after its last path segment, or its host.
fn fallback_title(url: &Url) -> String {
    url.path_segments()
        .and_then(|mut s| s.rfind(|seg| !seg.is_empty()).map(str::to_string))
        .or_else(|| url.host_str().map(str::to_string))
        .unwrap_or_else(|| url.to_string())
}
