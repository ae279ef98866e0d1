//! One HTTP request at a time: rate limit, timeout, status, content type and
//! a body read that stops at the cap instead of downloading everything.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE, LOCATION, USER_AGENT};
use url::Url;

use super::limit::HostLimiter;
use super::{net, CrawlSpec, FetchError, SkipReason};

/// What the crawler turns into a document itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContentKind {
    Html,
    Text,
    Markdown,
    /// A type the caller asked for in `extra_content_types`: passed on as bytes.
    Other,
}

/// A 2xx response whose body was read in full (within the cap).
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) status: u16,
    pub(crate) kind: ContentKind,
    /// Media type without parameters, lowercased (`text/html`).
    pub(crate) content_type: String,
    pub(crate) charset: Option<String>,
    /// `X-Robots-Tag` header values.
    pub(crate) robots_tags: Vec<String>,
    pub(crate) body: Vec<u8>,
}

#[derive(Debug)]
pub(crate) enum Hop {
    Redirect {
        location: Option<String>,
    },
    Done(Fetched),
    /// Answered, but not something to keep (type, size); the body was not read.
    Skip(SkipReason),
}

/// A response for robots.txt: any status, the body only for 2xx.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    pub(crate) location: Option<String>,
    pub(crate) body: Vec<u8>,
}

const ACCEPT_VALUE: &str =
    "text/html,application/xhtml+xml,text/plain;q=0.9,text/markdown;q=0.9,*/*;q=0.5";

pub(crate) struct Fetcher<'a> {
    client: &'a reqwest::Client,
    pub(crate) spec: &'a CrawlSpec,
    /// The product token of the user agent, for robots.txt and meta robots.
    pub(crate) agent: &'a str,
    pub(crate) limiter: HostLimiter,
    /// HTTP requests sent (pages, redirect hops, robots.txt).
    pub(crate) requests: AtomicU64,
    /// Body bytes received, including the part of a body that was abandoned.
    pub(crate) bytes: AtomicU64,
}

impl<'a> Fetcher<'a> {
    pub(crate) fn new(client: &'a reqwest::Client, spec: &'a CrawlSpec, agent: &'a str) -> Self {
        Fetcher {
            client,
            spec,
            agent,
            limiter: HostLimiter::new(Duration::from_secs_f64(1.0 / spec.requests_per_second)),
            requests: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// Wait for the host's slot, then run `work` (a request) under the
    /// timeout: the timeout starts after the wait, since politeness delays
    /// are not the server's fault.
    async fn limited<T>(
        &self,
        url: &Url,
        work: impl std::future::Future<Output = Result<T, FetchError>>,
    ) -> Result<T, FetchError> {
        self.limiter
            .acquire(url.host_str().unwrap_or_default())
            .await;
        tokio::time::timeout(self.spec.timeout, work)
            .await
            .unwrap_or_else(|_| Err(self.timeout_error()))
    }

    /// The one place a request leaves: pages, redirect hops and robots.txt
    /// all pass the address check here (IP literals; names are checked by
    /// the client's resolver, see `net.rs`).
    async fn send(&self, url: &Url) -> Result<reqwest::Response, FetchError> {
        net::check_host(url, self.spec.allow_private_networks)?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = self
            .client
            .get(url.clone())
            .header(USER_AGENT, &self.spec.user_agent)
            .header(ACCEPT, ACCEPT_VALUE)
            .send()
            .await
            .map_err(|e| {
                let e = FetchError::from_reqwest(e);
                if e == FetchError::AddressNotAllowed {
                    // The resolver refused every address: nothing was sent.
                    self.requests.fetch_sub(1, Ordering::Relaxed);
                }
                e
            })?;
        // A client that follows redirects itself would bypass the per-hop
        // checks (host, robots.txt, patterns): refuse its answers.
        if response.url() != url {
            return Err(FetchError::Request(
                "the HTTP client followed a redirect; build it with crawl::client_builder \
                 (redirect::Policy::none())"
                    .into(),
            ));
        }
        Ok(response)
    }

    fn timeout_error(&self) -> FetchError {
        FetchError::Timeout {
            ms: u64::try_from(self.spec.timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// GET for robots.txt: the body (2xx only) is truncated at `cap`.
    pub(crate) async fn get_raw(&self, url: &Url, cap: u64) -> Result<RawResponse, FetchError> {
        let work = async {
            let mut response = self.send(url).await?;
            let status = response.status().as_u16();
            let location = header_str(response.headers(), LOCATION);
            let mut body = Vec::new();
            if response.status().is_success() {
                self.read_body(&mut response, cap, &mut body).await?;
                body.truncate(usize::try_from(cap).unwrap_or(usize::MAX));
            }
            Ok(RawResponse {
                status,
                location,
                body,
            })
        };
        self.limited(url, work).await
    }

    /// GET a page: one hop, redirects are the caller's to check and follow.
    pub(crate) async fn get(&self, url: &Url) -> Result<Hop, FetchError> {
        let work = async {
            let mut response = self.send(url).await?;
            let status = response.status();
            if matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
                return Ok(Hop::Redirect {
                    location: header_str(response.headers(), LOCATION),
                });
            }
            if !status.is_success() {
                return Err(FetchError::Status(status.as_u16()));
            }
            let (content_type, charset) = content_type(response.headers(), url);
            let kind = match kind_of(&content_type) {
                Some(kind) => kind,
                None if self
                    .spec
                    .extra_content_types
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(&content_type)) =>
                {
                    ContentKind::Other
                }
                // Dropping the response closes the connection unread.
                None => return Ok(Hop::Skip(SkipReason::UnsupportedContentType(content_type))),
            };
            let cap = self.spec.max_body_bytes;
            if response.content_length().is_some_and(|len| len > cap) {
                return Ok(Hop::Skip(SkipReason::BodyTooLarge(cap)));
            }
            let mut body = Vec::new();
            if !self.read_body(&mut response, cap, &mut body).await? {
                return Ok(Hop::Skip(SkipReason::BodyTooLarge(cap)));
            }
            Ok(Hop::Done(Fetched {
                status: status.as_u16(),
                kind,
                content_type,
                charset,
                robots_tags: response
                    .headers()
                    .get_all("x-robots-tag")
                    .iter()
                    .filter_map(|v| v.to_str().ok().map(str::to_string))
                    .collect(),
                body,
            }))
        };
        self.limited(url, work).await
    }

    /// Read the body into `out` until it ends (`true`) or goes past `cap`
    /// bytes (`false`, with what was read so far). Reads chunk by chunk, so
    /// an oversized body costs about `cap` bytes, not its full size.
    async fn read_body(
        &self,
        response: &mut reqwest::Response,
        cap: u64,
        out: &mut Vec<u8>,
    ) -> Result<bool, FetchError> {
        let cap = usize::try_from(cap).unwrap_or(usize::MAX);
        while let Some(chunk) = response.chunk().await.map_err(FetchError::from_reqwest)? {
            self.bytes.fetch_add(
                u64::try_from(chunk.len()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            if out.len() + chunk.len() > cap {
                let room = cap - out.len();
                out.extend_from_slice(&chunk[..room]);
                return Ok(false);
            }
            out.extend_from_slice(&chunk);
        }
        Ok(true)
    }
}

fn header_str(headers: &HeaderMap, name: reqwest::header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Media type (lowercased, without parameters) and charset. Without a
/// Content-Type header the path's extension decides, so a bare static file
/// server still yields documents; otherwise the type is unknown.
fn content_type(headers: &HeaderMap, url: &Url) -> (String, Option<String>) {
    if let Some(value) = header_str(headers, CONTENT_TYPE) {
        let mut parts = value.split(';');
        let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let charset = parts.find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("charset")
                .then(|| v.trim().trim_matches('"').to_ascii_lowercase())
        });
        return (essence, charset);
    }
    let path = url.path().to_ascii_lowercase();
    let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or_default();
    let guessed = match ext {
        "html" | "htm" => "text/html",
        "txt" => "text/plain",
        "md" | "markdown" => "text/markdown",
        _ => "application/octet-stream",
    };
    (guessed.to_string(), None)
}

fn kind_of(content_type: &str) -> Option<ContentKind> {
    match content_type {
        "text/html" | "application/xhtml+xml" => Some(ContentKind::Html),
        "text/plain" => Some(ContentKind::Text),
        "text/markdown" | "text/x-markdown" => Some(ContentKind::Markdown),
        _ => None,
    }
}

/// Bytes to text. UTF-8 (lossy: a stray byte costs one character, not the
/// page) unless the header names Latin-1, which maps byte to code point.
/// Windows-1252 is read as Latin-1: only its 0x80–0x9F punctuation differs.
/// Other charsets are read as UTF-8 (no encoding tables in the dependencies).
pub(crate) fn decode(body: &[u8], charset: Option<&str>) -> String {
    match charset {
        Some("iso-8859-1" | "latin1" | "latin-1" | "windows-1252" | "cp1252" | "us-ascii") => {
            body.iter().map(|&b| char::from(b)).collect()
        }
        _ => {
            let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
            String::from_utf8_lossy(body).into_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(ct).unwrap_or_else(|e| panic!("{e}")),
        );
        h
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn content_type_essence_charset_and_guess() {
        assert_eq!(
            content_type(&headers("Text/HTML; Charset=\"UTF-8\""), &url("http://h/")),
            ("text/html".to_string(), Some("utf-8".to_string()))
        );
        assert_eq!(
            content_type(&HeaderMap::new(), &url("http://h/notes.MD")),
            ("text/markdown".to_string(), None)
        );
        assert_eq!(
            content_type(&HeaderMap::new(), &url("http://h/x")).0,
            "application/octet-stream"
        );
        assert_eq!(kind_of("application/pdf"), None);
        assert_eq!(kind_of("application/xhtml+xml"), Some(ContentKind::Html));
    }

    #[test]
    fn decodes_utf8_with_bom_and_latin1() {
        assert_eq!(decode(b"\xEF\xBB\xBFcaf\xC3\xA9", None), "café");
        assert_eq!(decode(b"caf\xE9", Some("iso-8859-1")), "café");
        assert_eq!(decode(b"caf\xE9", Some("utf-8")), "caf\u{FFFD}");
    }
}
