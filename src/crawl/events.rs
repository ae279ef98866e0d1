//! What a crawl reports: pages, skips, failures, and the final report.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use super::MAX_REDIRECTS;
use crate::ingest::load::RawDocument;

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
    /// The host is, or resolves only to, a non-public address and private
    /// networks are off. Worded the same for every address and every cause,
    /// and no connection was tried: results must not map the server's
    /// network (which ports are open, which names resolve internally).
    #[error("address not allowed: crawls reach public addresses only")]
    AddressNotAllowed,
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
            FetchError::AddressNotAllowed => "address_not_allowed".into(),
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
            FetchError::TooManyRedirects
            | FetchError::BadRedirect(_)
            | FetchError::AddressNotAllowed => false,
        }
    }

    pub(super) fn from_reqwest(e: reqwest::Error) -> Self {
        // The guarded resolver refused every address of the name.
        if super::net::is_refusal(&e) {
            return FetchError::AddressNotAllowed;
        }
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
