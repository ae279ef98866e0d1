//! The crawler against small sites served on 127.0.0.1 by a minimal HTTP/1.1
//! server that logs every request it receives. Host names (`site.test`,
//! `other.test`, …) are mapped to the server by the client's DNS overrides,
//! so one server plays several hosts and routes on the Host header. Specs
//! allow private networks (the server is on loopback), except where the
//! address guard is under test: DNS overrides bypass the guarded resolver,
//! so there `public.test` stands for a public site.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::ingest::clean::clean_text;

const HOSTS: &[&str] = &[
    "site.test",
    "www.site.test",
    "other.test",
    "down.test",
    "public.test",
];

#[derive(Clone)]
enum Body {
    Bytes(Vec<u8>),
    /// `total` bytes of HTML, written 64 KiB at a time, as the client reads.
    Stream {
        total: usize,
        declare_length: bool,
    },
}

#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Body,
    delay: Option<Duration>,
}

impl Reply {
    fn typed(content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Reply {
            status: 200,
            headers: vec![("content-type", content_type.to_string())],
            body: Body::Bytes(body.into()),
            delay: None,
        }
    }

    fn html(body: impl Into<String>) -> Self {
        Reply::typed("text/html; charset=utf-8", body.into())
    }

    /// A small page titled `title` linking to `links`.
    fn page(title: &str, links: &[&str]) -> Self {
        let anchors: String = links
            .iter()
            .map(|l| format!("<a href=\"{l}\">{l}</a> "))
            .collect();
        Reply::html(format!(
            "<html><head><title>{title}</title></head><body><p>{title} text.</p>{anchors}</body></html>"
        ))
    }

    fn status(status: u16) -> Self {
        Reply {
            status,
            ..Reply::typed("text/plain", "")
        }
    }

    fn redirect(status: u16, location: &str) -> Self {
        let mut reply = Reply::status(status);
        reply.headers.push(("location", location.to_string()));
        reply
    }

    fn stream(total: usize, declare_length: bool) -> Self {
        Reply {
            body: Body::Stream {
                total,
                declare_length,
            },
            ..Reply::typed("text/html", "")
        }
    }

    fn delayed(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }
}

type Routes = Arc<dyn Fn(&str, &str) -> Reply + Send + Sync>;

#[derive(Default)]
struct Stats {
    /// `host path` of every request, in arrival order.
    log: Mutex<Vec<String>>,
    /// Body bytes of streamed replies the server managed to write.
    streamed: AtomicU64,
    /// Delayed replies whose client hung up before the delay ended.
    aborted: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

struct Site {
    addr: SocketAddr,
    stats: Arc<Stats>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Site {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Site {
    async fn start(routes: impl Fn(&str, &str) -> Reply + Send + Sync + 'static) -> Site {
        let listener = listen().unwrap_or_else(|e| panic!("listen: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr: {e}"));
        let stats = Arc::new(Stats::default());
        let routes: Routes = Arc::new(routes);
        let accept = {
            let stats = stats.clone();
            tokio::spawn(async move {
                while let Ok((sock, _)) = listener.accept().await {
                    tokio::spawn(serve(sock, routes.clone(), stats.clone()));
                }
            })
        };
        Site {
            addr,
            stats,
            accept,
        }
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.addr.port())
    }

    /// What the crawler identifies the page as: `http://host:port/path`
    /// reduced to `host/path` (or just `/path` on site.test) for readable
    /// assertions.
    fn short(&self, url: &str) -> String {
        let port = format!(":{}", self.addr.port());
        let url = url
            .strip_prefix("http://")
            .unwrap_or(url)
            .replacen(&port, "", 1);
        url.strip_prefix("site.test")
            .map(str::to_string)
            .unwrap_or(url)
    }

    /// Requests received, sorted (concurrency makes arrival order vary).
    fn requests(&self) -> Vec<String> {
        let mut log = lock(&self.stats.log).clone();
        log.sort();
        log
    }

    fn spec(&self, path: &str) -> CrawlSpec {
        CrawlSpec {
            requests_per_second: 100.0,
            timeout: Duration::from_millis(500),
            max_body_bytes: 64 * 1024,
            allow_private_networks: true,
            ..CrawlSpec::new(self.url("site.test", path))
        }
    }

    fn client(&self, spec: &CrawlSpec) -> reqwest::Client {
        HOSTS
            .iter()
            .fold(client_builder(spec).no_proxy(), |b, host| {
                b.resolve(host, self.addr)
            })
            .build()
            .unwrap_or_else(|e| panic!("client: {e}"))
    }

    async fn crawl(&self, spec: &CrawlSpec) -> (CrawlReport, Vec<CrawlEvent>) {
        let client = self.client(spec);
        let mut events = Vec::new();
        let report = crawl(spec, &client, |e| events.push(e))
            .await
            .unwrap_or_else(|e| panic!("crawl: {e}"));
        (report, events)
    }

    /// Each event as `(url, outcome)`, sorted by URL.
    fn outcomes(&self, events: &[CrawlEvent]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = events
            .iter()
            .map(|e| match e {
                CrawlEvent::Page(p) => (
                    self.short(&p.url),
                    format!("page {}", self.short(&p.final_url)),
                ),
                CrawlEvent::Skipped {
                    url,
                    final_url,
                    reason,
                } => (
                    self.short(url),
                    format!("skipped {} {}", reason.code(), self.short(final_url)),
                ),
                CrawlEvent::Failed {
                    url,
                    final_url,
                    error,
                } => (
                    self.short(url),
                    format!("failed {} {}", error.code(), self.short(final_url)),
                ),
            })
            .collect();
        out.sort();
        out
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = list
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    v.sort();
    v
}

fn strings(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

fn counts(list: &[(&str, usize)]) -> BTreeMap<String, usize> {
    list.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

struct InFlight<'a>(&'a Stats);

impl<'a> InFlight<'a> {
    fn new(stats: &'a Stats) -> Self {
        let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(stats)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A listener on 127.0.0.1 whose connections have small send buffers, so a
/// streamed body shows how much the client really took: the kernel cannot
/// absorb megabytes on the client's behalf.
fn listen() -> std::io::Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_send_buffer_size(64 * 1024)?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    socket.listen(128)
}

/// One request per connection (`connection: close`): enough for a crawler.
/// `PORT` in a reply's headers and body becomes the server's port, so
/// routes can link to other host names on the same server.
async fn serve(mut sock: TcpStream, routes: Routes, stats: Arc<Stats>) {
    let port = sock
        .local_addr()
        .map(|a| a.port().to_string())
        .unwrap_or_default();
    let mut buf = [0u8; 4096];
    let Some((host, target)) = read_head(&mut sock, &mut buf).await else {
        return;
    };
    lock(&stats.log).push(format!("{host} {target}"));
    let _in_flight = InFlight::new(&stats);
    let mut reply = routes(&host, &target);
    for (_, value) in &mut reply.headers {
        *value = value.replace("PORT", &port);
    }
    if let Body::Bytes(body) = &reply.body {
        if let Ok(text) = std::str::from_utf8(body) {
            let text = text.replace("PORT", &port);
            reply.body = Body::Bytes(text.into_bytes());
        }
    }
    if let Some(delay) = reply.delay {
        // The client sends nothing more, so a read only ends when it hangs up.
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = sock.read(&mut buf) => {
                stats.aborted.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
    }
    let mut out = format!("HTTP/1.1 {} X\r\nconnection: close\r\n", reply.status);
    for (name, value) in &reply.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    match reply.body {
        Body::Bytes(body) => {
            out.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
            let mut bytes = out.into_bytes();
            bytes.extend_from_slice(&body);
            let _ = sock.write_all(&bytes).await;
        }
        Body::Stream {
            total,
            declare_length,
        } => {
            if !stream_body(&mut sock, out, total, declare_length, &stats).await {
                return;
            }
        }
    }
    let _ = sock.shutdown().await;
}

/// Read a request's head; its host (without port) and target, or None when
/// the client hung up or sent too much.
async fn read_head(sock: &mut TcpStream, buf: &mut [u8]) -> Option<(String, String)> {
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return None;
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let host = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case("host").then(|| v.trim())
        })
        .unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h).to_string();
    Some((host, target))
}

/// Send `out` (the head so far) and `total` bytes of filler, with a length
/// or chunked, counting what was sent; false if the client hung up.
async fn stream_body(
    sock: &mut TcpStream,
    mut out: String,
    total: usize,
    declare_length: bool,
    stats: &Stats,
) -> bool {
    if declare_length {
        out.push_str(&format!("content-length: {total}\r\n\r\n"));
    } else {
        out.push_str("transfer-encoding: chunked\r\n\r\n");
    }
    if sock.write_all(out.as_bytes()).await.is_err() {
        return false;
    }
    let filler = b"<p>filler filler filler filler filler filler filler.</p>\n";
    let chunk: Vec<u8> = filler.iter().copied().cycle().take(64 * 1024).collect();
    let mut sent = 0;
    while sent < total {
        let part = &chunk[..chunk.len().min(total - sent)];
        let framed = if declare_length {
            part.to_vec()
        } else {
            let mut f = format!("{:x}\r\n", part.len()).into_bytes();
            f.extend_from_slice(part);
            f.extend_from_slice(b"\r\n");
            f
        };
        if sock.write_all(&framed).await.is_err() {
            return false;
        }
        sent += part.len();
        stats
            .streamed
            .fetch_add(part.len() as u64, Ordering::SeqCst);
    }
    if !declare_length {
        let _ = sock.write_all(b"0\r\n\r\n").await;
    }
    true
}

const HOME: &str = r#"<html><head><title>Home</title>
<script>var secret = "script text";</script><style>p { color: red }</style></head>
<body><nav>
<a href="/a">A</a> <a href="/b">B</a> <a href="/private/x">private</a>
<a href="http://external.test/page">elsewhere</a> <a href="mailto:someone@example.com">mail</a>
<a href="/a#frag">A again</a> <a href="javascript:void(0)">js</a> <a href="tel:+100">call</a>
<a href="/old">old</a> <a href="/moved">moved</a> <a href="/sneaky">sneaky</a> <a href="/away">away</a>
<a href="/slow">slow</a> <a href="/missing">missing</a> <a href="/error">error</a>
<a href="/huge">huge</a> <a href="/huge-declared">huge too</a>
<a href="/doc.txt">doc</a> <a href="/notes.md">notes</a> <a href="/img.png">image</a>
<a href="/noindex">noindex</a> <a href="/nofollow">nofollow</a> <a href="/tagged.txt">tagged</a>
</nav>
<main><h1>Welcome</h1><p>Home page text.</p></main>
<footer>Footer text</footer></body></html>"#;

const HUGE: usize = 16 * 1024 * 1024;

fn main_site(host: &str, path: &str) -> Reply {
    if host != "site.test" {
        return Reply::status(404);
    }
    match path {
        "/robots.txt" => Reply::typed("text/plain", "User-agent: *\nDisallow: /private/\n"),
        "/" => Reply::html(HOME),
        "/a" => Reply::html(
            r#"<html><head><title>Page A</title><script>track("a")</script></head><body>
            <header>Site header</header><nav><a href="/b">to B</a> <a href="/">home</a></nav>
            <article><h1>About A</h1><p>Alpha content.</p></article></body></html>"#,
        ),
        "/b" => Reply::page("Page B", &["a", "/a#top"]),
        "/old" => Reply::redirect(301, "/new"),
        "/new" => Reply::page("New Page", &[]),
        "/moved" => Reply::redirect(302, "/a"),
        "/sneaky" => Reply::redirect(302, "/private/y"),
        "/away" => Reply::redirect(301, "http://external.test/"),
        "/slow" => Reply::page("Slow", &[]).delayed(Duration::from_secs(3)),
        "/missing" => Reply::status(404),
        "/error" => Reply::status(500),
        "/huge" => Reply::stream(HUGE, false),
        "/huge-declared" => Reply::stream(HUGE, true),
        "/doc.txt" => Reply::typed("text/plain", "Plain notes\n\nSome plain text."),
        "/notes.md" => Reply::typed("text/markdown", "intro\n# Markdown Notes\n\nBody."),
        "/img.png" => Reply::typed("image/png", b"\x89PNG\r\n\x1a\n....".to_vec()),
        "/noindex" => Reply::html(
            r#"<html><head><meta name="robots" content="noindex"><title>Hidden</title></head>
            <body><a href="/from-noindex">on</a></body></html>"#,
        ),
        "/from-noindex" => Reply::page("From noindex", &[]),
        "/nofollow" => Reply::html(
            r#"<html><head><meta name="robots" content="nofollow"><title>Nofollow page</title></head>
            <body><p>Kept.</p><a href="/hidden">hidden</a></body></html>"#,
        ),
        "/tagged.txt" => Reply::typed("text/plain", "tagged").header("x-robots-tag", "noindex"),
        // Linked but never to be requested.
        "/private/x" | "/private/y" | "/hidden" => Reply::page("Must not be fetched", &[]),
        _ => Reply::status(404),
    }
}

#[tokio::test]
async fn crawls_a_site_politely_and_reports_every_url() {
    let site = Site::start(main_site).await;
    let spec = site.spec("/");
    let (report, events) = site.crawl(&spec).await;

    check_main_site_requests(&site);
    check_main_site_outcomes(&site, &events);
    check_main_site_documents(&site, &events);
    check_main_site_reasons(&events);
    check_main_site_report(&site, &report);

    // The oversized bodies were abandoned early: the crawler read about the
    // cap, and the server (small send buffers) got to send a small part of
    // its 2 × 16 MiB before the connections closed.
    assert!(report.bytes < 1024 * 1024, "read {} bytes", report.bytes);
    let streamed = site.stats.streamed.load(Ordering::SeqCst);
    assert!(streamed < 4 * 1024 * 1024, "server sent {streamed} bytes");
    // The timed-out request's connection was closed, not left hanging.
    wait_for(|| site.stats.aborted.load(Ordering::SeqCst) == 1).await;
}

/// The requests [`main_site`] saw, robots.txt first.
fn check_main_site_requests(site: &Site) {
    // Exactly these requests, each once: robots.txt first of all, nothing
    // under /private/, nothing off-host, no mailto:/javascript:/tel:, no
    // second fetch of /a (linked as /a, /a#frag, a, /a#top and redirected to).
    let expected_requests: Vec<String> = [
        "/robots.txt",
        "/",
        "/a",
        "/b",
        "/old",
        "/new",
        "/moved",
        "/sneaky",
        "/away",
        "/slow",
        "/missing",
        "/error",
        "/huge",
        "/huge-declared",
        "/doc.txt",
        "/notes.md",
        "/img.png",
        "/noindex",
        "/nofollow",
        "/tagged.txt",
        "/from-noindex",
    ]
    .iter()
    .map(|p| format!("site.test {p}"))
    .collect();
    let mut expected_sorted = expected_requests.clone();
    expected_sorted.sort();
    assert_eq!(site.requests(), expected_sorted);
    assert_eq!(lock(&site.stats.log)[0], "site.test /robots.txt");
}

/// One event per URL found, with what became of it.
fn check_main_site_outcomes(site: &Site, events: &[CrawlEvent]) {
    assert_eq!(
        site.outcomes(events),
        pairs(&[
            ("/", "page /"),
            ("/a", "page /a"),
            ("/b", "page /b"),
            ("/old", "page /new"),
            ("/doc.txt", "page /doc.txt"),
            ("/notes.md", "page /notes.md"),
            ("/from-noindex", "page /from-noindex"),
            ("/nofollow", "page /nofollow"),
            ("/private/x", "skipped disallowed_by_robots /private/x"),
            ("external.test/page", "skipped off_host external.test/page"),
            ("/moved", "skipped duplicate /a"),
            ("/sneaky", "skipped disallowed_by_robots /private/y"),
            ("/away", "skipped off_host external.test/"),
            ("/huge", "skipped body_too_large /huge"),
            ("/huge-declared", "skipped body_too_large /huge-declared"),
            ("/img.png", "skipped unsupported_content_type /img.png"),
            ("/noindex", "skipped noindex /noindex"),
            ("/tagged.txt", "skipped noindex /tagged.txt"),
            ("/slow", "failed timeout /slow"),
            ("/missing", "failed http_404 /missing"),
            ("/error", "failed http_500 /error"),
        ])
    );
}

/// The pages' documents, and the redirected page's final URL.
fn check_main_site_documents(site: &Site, events: &[CrawlEvent]) {
    // Documents: titles, clean text without scripts, styles, navigation,
    // headers or footers; identity is the final URL.
    let docs: BTreeMap<String, &RawDocument> = events
        .iter()
        .filter_map(|e| match e {
            CrawlEvent::Page(p) => p.document.as_ref().map(|d| (site.short(&d.source), d)),
            _ => None,
        })
        .collect();
    let summary: Vec<(&str, &str, String, bool)> = docs
        .iter()
        .map(|(source, d)| {
            (
                source.as_str(),
                d.title.as_str(),
                clean_text(&d.text),
                d.markdown,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("/", "Home", "Welcome\n\nHome page text.".to_string(), false),
            (
                "/a",
                "Page A",
                "About A\n\nAlpha content.".to_string(),
                false
            ),
            (
                "/b",
                "Page B",
                "Page B text.\n\na /a#top".to_string(),
                false
            ),
            (
                "/doc.txt",
                "Plain notes",
                "Plain notes\n\nSome plain text.".to_string(),
                false
            ),
            (
                "/from-noindex",
                "From noindex",
                "From noindex text.".to_string(),
                false
            ),
            ("/new", "New Page", "New Page text.".to_string(), false),
            (
                "/nofollow",
                "Nofollow page",
                "Kept.\n\nhidden".to_string(),
                false
            ),
            (
                "/notes.md",
                "Markdown Notes",
                "intro\n# Markdown Notes\n\nBody.".to_string(),
                true
            ),
        ]
    );
    let new_page = events
        .iter()
        .find_map(|e| match e {
            CrawlEvent::Page(p) if p.url.ends_with("/old") => Some(p),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no page for /old"));
    assert_eq!(new_page.final_url, site.url("site.test", "/new"));
    assert_eq!((new_page.status, new_page.depth), (200, 1));
    assert_eq!(new_page.content_type, "text/html");
}

/// Skips and failures explain themselves.
fn check_main_site_reasons(events: &[CrawlEvent]) {
    // Human-readable reasons.
    let reason_of = |suffix: &str| {
        events.iter().find_map(|e| match e {
            CrawlEvent::Skipped { url, reason, .. } if url.ends_with(suffix) => {
                Some(reason.to_string())
            }
            CrawlEvent::Failed { url, error, .. } if url.ends_with(suffix) => {
                Some(error.to_string())
            }
            _ => None,
        })
    };
    assert_eq!(
        reason_of("/img.png").as_deref(),
        Some("unsupported content type image/png")
    );
    assert_eq!(
        reason_of("/huge").as_deref(),
        Some("body larger than 65536 bytes")
    );
    assert_eq!(
        reason_of("/slow").as_deref(),
        Some("timed out after 500 ms")
    );
    assert_eq!(reason_of("/missing").as_deref(), Some("HTTP 404"));
}

/// The report's counts and URL lists.
fn check_main_site_report(site: &Site, report: &CrawlReport) {
    // The report.
    assert_eq!(report.pages, 8);
    assert_eq!(report.fetched, 19);
    assert_eq!(report.requests, 21);
    assert!(!report.cancelled);
    assert_eq!(
        report.page_urls,
        [
            "/",
            "/a",
            "/b",
            "/new",
            "/doc.txt",
            "/notes.md",
            "/from-noindex",
            "/nofollow"
        ]
        .iter()
        .map(|p| site.url("site.test", p))
        .collect()
    );
    assert_eq!(
        report.retry_urls,
        ["/slow", "/error"]
            .iter()
            .map(|p| site.url("site.test", p))
            .collect()
    );
    assert_eq!(
        report.skipped,
        counts(&[
            ("disallowed_by_robots", 2),
            ("off_host", 2),
            ("duplicate", 1),
            ("body_too_large", 2),
            ("unsupported_content_type", 1),
            ("noindex", 2),
        ])
    );
    assert_eq!(
        report.failed,
        counts(&[("timeout", 1), ("http_404", 1), ("http_500", 1)])
    );
}

/// Poll `done` for up to 10 s: for effects that follow a crawl's end
/// asynchronously (the server noticing a closed connection).
async fn wait_for(done: impl Fn() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached within 10 s");
}

fn chain_site(host: &str, path: &str) -> Reply {
    match (host, path) {
        ("site.test", "/d1") => Reply::page("D1", &["/d2"]),
        ("site.test", "/d2") => Reply::page("D2", &["/d3"]),
        ("site.test", "/d3") => Reply::page("D3", &["/d4"]),
        ("site.test", "/d4") => Reply::page("D4", &["/d5"]),
        _ => Reply::status(404),
    }
}

#[tokio::test]
async fn depth_limit_stops_the_chain() {
    let site = Site::start(chain_site).await;
    let spec = CrawlSpec {
        max_depth: 2,
        ..site.spec("/d1")
    };
    let (report, events) = site.crawl(&spec).await;
    // robots.txt is 404 here: no restrictions.
    assert_eq!(
        site.requests(),
        strings(&[
            "site.test /robots.txt",
            "site.test /d1",
            "site.test /d2",
            "site.test /d3"
        ])
    );
    assert_eq!(
        site.outcomes(&events),
        pairs(&[
            ("/d1", "page /d1"),
            ("/d2", "page /d2"),
            ("/d3", "page /d3"),
            ("/d4", "skipped too_deep /d4"),
        ])
    );
    let depths: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            CrawlEvent::Page(p) => Some(p.depth),
            _ => None,
        })
        .collect();
    assert_eq!(depths, [0, 1, 2]);
    assert_eq!(report.skipped, counts(&[("too_deep", 1)]));
}

fn fan_site(host: &str, path: &str) -> Reply {
    match (host, path) {
        ("site.test", "/") => Reply::page("Root", &["/p1", "/p2", "/p3", "/p4", "/p5"]),
        ("site.test", p) if p.starts_with("/p") => Reply::page(p, &[]),
        _ => Reply::status(404),
    }
}

#[tokio::test]
async fn max_pages_keeps_the_first_pages_in_link_order() {
    let site = Site::start(fan_site).await;
    let spec = CrawlSpec {
        max_pages: 3,
        ..site.spec("/")
    };
    let (report, events) = site.crawl(&spec).await;
    assert_eq!(
        site.requests(),
        strings(&[
            "site.test /robots.txt",
            "site.test /",
            "site.test /p1",
            "site.test /p2"
        ])
    );
    assert_eq!(
        site.outcomes(&events),
        pairs(&[
            ("/", "page /"),
            ("/p1", "page /p1"),
            ("/p2", "page /p2"),
            ("/p3", "skipped max_pages /p3"),
            ("/p4", "skipped max_pages /p4"),
            ("/p5", "skipped max_pages /p5"),
        ])
    );
    assert_eq!((report.fetched, report.pages), (3, 3));
}

fn docs_site(host: &str, path: &str) -> Reply {
    match (host, path) {
        ("site.test", "/") => Reply::page(
            "Root",
            &[
                "/docs/a",
                "/docs/b?x=1",
                "/docs/c.pdf",
                "/blog/d",
                "/docs",
                "/docs/sub/e",
            ],
        ),
        ("site.test", p) if p.starts_with("/docs") || p.starts_with("/blog") => Reply::page(p, &[]),
        _ => Reply::status(404),
    }
}

#[tokio::test]
async fn include_and_exclude_patterns_scope_the_crawl() {
    let site = Site::start(docs_site).await;
    let spec = CrawlSpec {
        include: vec!["/docs/*".into()],
        exclude: vec!["*?*".into(), "*.pdf".into()],
        ..site.spec("/")
    };
    let (report, events) = site.crawl(&spec).await;
    // The start page is fetched although it matches no include pattern.
    assert_eq!(
        site.requests(),
        strings(&[
            "site.test /robots.txt",
            "site.test /",
            "site.test /docs/a",
            "site.test /docs/sub/e"
        ])
    );
    assert_eq!(
        site.outcomes(&events),
        pairs(&[
            ("/", "page /"),
            ("/docs/a", "page /docs/a"),
            ("/docs/sub/e", "page /docs/sub/e"),
            ("/docs/b?x=1", "skipped excluded /docs/b?x=1"),
            ("/docs/c.pdf", "skipped excluded /docs/c.pdf"),
            ("/blog/d", "skipped not_included /blog/d"),
            ("/docs", "skipped not_included /docs"),
        ])
    );
    let excluded_by: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            CrawlEvent::Skipped {
                reason: SkipReason::Excluded(p),
                ..
            } => Some(p.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(excluded_by, ["*?*", "*.pdf"]);
    assert_eq!(
        report.skipped,
        counts(&[("excluded", 2), ("not_included", 2)])
    );
}

#[tokio::test]
async fn per_host_rate_limit_spaces_requests() {
    let site = Site::start(|host: &str, path: &str| match (host, path) {
        ("site.test", "/") => Reply::page("Root", &["/r1", "/r2", "/r3", "/r4"]),
        ("site.test", p) if p.starts_with("/r") && p != "/robots.txt" => Reply::page(p, &[]),
        _ => Reply::status(404),
    })
    .await;
    let spec = CrawlSpec {
        requests_per_second: 5.0,
        concurrency: 4,
        ..site.spec("/")
    };
    let started = Instant::now();
    let (report, _) = site.crawl(&spec).await;
    let elapsed = started.elapsed();
    let n = site.requests().len();
    // robots.txt, /, r1..r4: six requests are five intervals of 200 ms apart,
    // however many may be in flight.
    assert_eq!(n, 6);
    assert_eq!(report.requests, 6);
    assert!(elapsed >= Duration::from_millis(1000), "took {elapsed:?}");
}

#[tokio::test]
async fn crawl_delay_in_robots_txt_slows_the_host_down() {
    let site = Site::start(|host: &str, path: &str| match (host, path) {
        ("site.test", "/robots.txt") => {
            Reply::typed("text/plain", "User-agent: *\nCrawl-delay: 0.4\nDisallow:\n")
        }
        ("site.test", "/") => Reply::page("Root", &["/c1", "/c2"]),
        ("site.test", p) => Reply::page(p, &[]),
        _ => Reply::status(404),
    })
    .await;
    // 100 requests/s configured; the 0.4 s delay is stricter and wins, from
    // the request right after robots.txt on.
    let spec = site.spec("/");
    let started = Instant::now();
    let (report, _) = site.crawl(&spec).await;
    let elapsed = started.elapsed();
    assert_eq!(report.pages, 3);
    assert_eq!(site.requests().len(), 4);
    assert!(elapsed >= Duration::from_millis(1200), "took {elapsed:?}");
}

#[tokio::test]
async fn requests_run_concurrently_up_to_the_limit() {
    let site = Site::start(|host: &str, path: &str| match (host, path) {
        ("site.test", "/") => Reply::page("Root", &["/s1", "/s2", "/s3", "/s4", "/s5", "/s6"]),
        ("site.test", p) if p.starts_with("/s") => {
            Reply::page(p, &[]).delayed(Duration::from_millis(300))
        }
        _ => Reply::status(404),
    })
    .await;
    let spec = CrawlSpec {
        concurrency: 3,
        timeout: Duration::from_secs(5),
        ..site.spec("/")
    };
    let (report, _) = site.crawl(&spec).await;
    assert_eq!(report.pages, 7);
    let max = site.stats.max_in_flight.load(Ordering::SeqCst);
    assert!((2..=3).contains(&max), "max in flight {max}");
}

fn hosts_site(host: &str, path: &str) -> Reply {
    match (host, path) {
        ("site.test", "/") => Reply::page(
            "Root",
            &["http://other.test:PORT/o1", "http://down.test:PORT/x1"],
        ),
        ("other.test", "/o1") => Reply::page("Other", &["http://site.test:PORT/"]),
        ("down.test", "/robots.txt") => Reply::status(503),
        ("down.test", _) => Reply::page("Down", &[]),
        _ => Reply::status(404),
    }
}

#[tokio::test]
async fn same_host_rule_and_robots_failure_policy() {
    // same_host: links to other hosts are reported, never requested.
    let site = Site::start(hosts_site).await;
    let (_, events) = site.crawl(&site.spec("/")).await;
    assert_eq!(
        site.requests(),
        strings(&["site.test /robots.txt", "site.test /"])
    );
    assert_eq!(
        site.outcomes(&events),
        pairs(&[
            ("/", "page /"),
            ("other.test/o1", "skipped off_host other.test/o1"),
            ("down.test/x1", "skipped off_host down.test/x1"),
        ])
    );

    // Across hosts: each host's robots.txt is fetched once; a 404 allows
    // everything, a 503 disallows the whole host.
    let site = Site::start(hosts_site).await;
    let spec = CrawlSpec {
        same_host: false,
        ..site.spec("/")
    };
    let (report, events) = site.crawl(&spec).await;
    assert_eq!(
        site.requests(),
        strings(&[
            "site.test /robots.txt",
            "site.test /",
            "other.test /robots.txt",
            "other.test /o1",
            "down.test /robots.txt",
        ])
    );
    assert_eq!(
        site.outcomes(&events),
        pairs(&[
            ("/", "page /"),
            ("other.test/o1", "page other.test/o1"),
            ("down.test/x1", "skipped robots_unavailable down.test/x1"),
        ])
    );
    let down = events
        .iter()
        .find_map(|e| match e {
            CrawlEvent::Skipped { reason, .. } => Some(reason.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no skip"));
    assert_eq!(
        down,
        "robots.txt answered HTTP 503; the host is treated as disallowed"
    );
    assert_eq!(report.skipped, counts(&[("robots_unavailable", 1)]));
}

#[tokio::test]
async fn start_url_may_redirect_to_another_host() {
    let site = Site::start(|host: &str, path: &str| match (host, path) {
        ("site.test", "/") => Reply::redirect(301, "http://www.site.test:PORT/"),
        ("www.site.test", "/") => Reply::page("WWW", &["/w1", "http://site.test:PORT/s1"]),
        ("www.site.test", "/w1") | ("site.test", "/s1") => Reply::page(path, &[]),
        _ => Reply::status(404),
    })
    .await;
    let (report, events) = site.crawl(&site.spec("/")).await;
    // Both the start host and the one it moved to count as the same host.
    assert_eq!(
        site.outcomes(&events),
        pairs(&[
            ("/", "page www.site.test/"),
            ("www.site.test/w1", "page www.site.test/w1"),
            ("/s1", "page /s1"),
        ])
    );
    assert_eq!(
        site.requests(),
        strings(&[
            "site.test /robots.txt",
            "site.test /",
            "www.site.test /robots.txt",
            "www.site.test /",
            "www.site.test /w1",
            "site.test /s1",
        ])
    );
    assert_eq!(report.requests, 6);
}

#[tokio::test]
async fn redirect_chains_are_capped_and_loops_deduplicated() {
    let site = Site::start(|host: &str, path: &str| {
        if host != "site.test" {
            return Reply::status(404);
        }
        match path {
            "/" => Reply::page("Root", &["/r0", "/self", "/nowhere"]),
            "/self" => Reply::redirect(307, "/self"),
            "/nowhere" => Reply::status(302),
            p if p.starts_with("/r") && p != "/robots.txt" => {
                let n: u32 = p[2..].parse().unwrap_or(0);
                Reply::redirect(308, &format!("/r{}", n + 1))
            }
            _ => Reply::status(404),
        }
    })
    .await;
    let (report, events) = site.crawl(&site.spec("/")).await;
    assert_eq!(
        site.outcomes(&events),
        pairs(&[
            ("/", "page /"),
            ("/r0", "failed too_many_redirects /r5"),
            ("/self", "skipped duplicate /self"),
            ("/nowhere", "failed bad_redirect /nowhere"),
        ])
    );
    assert_eq!(
        site.requests(),
        strings(&[
            "site.test /robots.txt",
            "site.test /",
            "site.test /r0",
            "site.test /r1",
            "site.test /r2",
            "site.test /r3",
            "site.test /r4",
            "site.test /r5",
            "site.test /self",
            "site.test /nowhere",
        ])
    );
    // Redirect hops are requests, not extra pages.
    assert_eq!((report.fetched, report.requests), (4, 10));
    assert!(report.retry_urls.is_empty());
}

fn waiting_site(host: &str, path: &str) -> Reply {
    match (host, path) {
        ("site.test", "/") => Reply::page("Root", &["/w1", "/w2", "/w3", "/w4"]),
        ("site.test", p) if p.starts_with("/w") => {
            Reply::page(p, &[]).delayed(Duration::from_secs(30))
        }
        _ => Reply::status(404),
    }
}

fn waiting_requests(stats: &Stats) -> usize {
    lock(&stats.log)
        .iter()
        .filter(|l| l.starts_with("site.test /w"))
        .count()
}

#[tokio::test]
async fn cancel_token_stops_the_crawl_and_drops_its_requests() {
    let site = Site::start(waiting_site).await;
    let spec = CrawlSpec {
        timeout: Duration::from_secs(60),
        ..site.spec("/")
    };
    let client = site.client(&spec);
    let cancel = CancelToken::new();
    let canceller = {
        let (cancel, stats) = (cancel.clone(), site.stats.clone());
        tokio::spawn(async move {
            wait_for(|| waiting_requests(&stats) == 4).await;
            cancel.cancel();
        })
    };
    let mut events = Vec::new();
    let report = crawl_with_cancel(&spec, &client, &cancel, |e| events.push(e))
        .await
        .unwrap_or_else(|e| panic!("crawl: {e}"));
    canceller.await.unwrap_or_else(|e| panic!("canceller: {e}"));
    assert!(report.cancelled);
    assert_eq!((report.pages, report.fetched, events.len()), (1, 5, 1));
    // All four requests in flight were abandoned: their connections closed.
    wait_for(|| site.stats.aborted.load(Ordering::SeqCst) == 4).await;
}

#[tokio::test]
async fn dropping_the_crawl_future_drops_its_requests() {
    let site = Site::start(waiting_site).await;
    let spec = CrawlSpec {
        timeout: Duration::from_secs(60),
        ..site.spec("/")
    };
    let client = site.client(&spec);
    tokio::select! {
        _ = crawl(&spec, &client, |_| {}) => panic!("cannot finish: its pages take 30 s"),
        _ = wait_for(|| waiting_requests(&site.stats) == 4) => {}
    }
    wait_for(|| site.stats.aborted.load(Ordering::SeqCst) == 4).await;
}

/// A site that stands for a public one and sends the crawler towards its
/// own loopback every way it can: redirects to an IP literal, to a name that
/// resolves to 127.0.0.1, to an IPv4-mapped IPv6 literal, a link to a
/// literal, a robots.txt redirect.
fn inward_site(host: &str, path: &str) -> Reply {
    match (host, path) {
        ("public.test", "/robots.txt") => Reply::redirect(302, "http://127.0.0.1:PORT/robots.txt"),
        ("public.test", "/") => Reply::page(
            "Public",
            &[
                "/to-literal",
                "/to-name",
                "/to-mapped",
                "http://127.0.0.1:PORT/linked",
            ],
        ),
        ("public.test", "/start") => Reply::redirect(301, "http://127.0.0.1:PORT/secret"),
        ("public.test", "/to-literal") => Reply::redirect(302, "http://127.0.0.1:PORT/secret"),
        ("public.test", "/to-name") => Reply::redirect(302, "http://localhost:PORT/secret"),
        ("public.test", "/to-mapped") => {
            Reply::redirect(302, "http://[::ffff:127.0.0.1]:PORT/secret")
        }
        (_, "/secret" | "/linked") => Reply::page("Internal", &[]),
        _ => Reply::status(404),
    }
}

/// `spec` for `inward_site`, from `path` on public.test, any host.
fn inward_spec(site: &Site, path: &str, allow_private_networks: bool) -> CrawlSpec {
    CrawlSpec {
        same_host: false,
        allow_private_networks,
        start_url: site.url("public.test", path),
        ..site.spec(path)
    }
}

#[tokio::test]
async fn private_addresses_are_refused_on_every_hop() {
    let site = Site::start(inward_site).await;
    let (report, events) = site.crawl(&inward_spec(&site, "/", false)).await;
    // Only the public host was contacted.
    assert_eq!(
        site.requests(),
        strings(&[
            "public.test /robots.txt",
            "public.test /",
            "public.test /to-literal",
            "public.test /to-name",
            "public.test /to-mapped",
        ])
    );
    assert_eq!(
        site.outcomes(&events),
        pairs(&[
            ("public.test/", "page public.test/"),
            (
                "public.test/to-literal",
                "failed address_not_allowed 127.0.0.1/secret"
            ),
            (
                "public.test/to-name",
                "failed address_not_allowed localhost/secret"
            ),
            (
                "public.test/to-mapped",
                "failed address_not_allowed [::ffff:7f00:1]/secret"
            ),
            (
                "127.0.0.1/linked",
                "failed address_not_allowed 127.0.0.1/linked"
            ),
        ])
    );
    // One wording for every refusal, naming no address or cause.
    for event in &events {
        if let CrawlEvent::Failed { error, .. } = event {
            assert_eq!(
                error.to_string(),
                "address not allowed: crawls reach public addresses only"
            );
        }
    }
    assert_eq!(report.failed, counts(&[("address_not_allowed", 4)]));
    assert_eq!(report.requests, 5);

    // A public start URL that redirects inwards.
    let site = Site::start(inward_site).await;
    let (_, events) = site.crawl(&inward_spec(&site, "/start", false)).await;
    assert_eq!(
        site.outcomes(&events),
        pairs(&[(
            "public.test/start",
            "failed address_not_allowed 127.0.0.1/secret"
        )])
    );
    assert_eq!(
        site.requests(),
        strings(&["public.test /robots.txt", "public.test /start"])
    );

    // The same crawl with private networks allowed does reach them, so the
    // refusals above are the guard's doing.
    let site = Site::start(inward_site).await;
    let (_, _) = site.crawl(&inward_spec(&site, "/", true)).await;
    let requests = site.requests();
    for expected in [
        "127.0.0.1 /secret",
        "localhost /secret",
        "127.0.0.1 /linked",
    ] {
        assert!(
            requests.iter().any(|r| r == expected),
            "{expected} in {requests:?}"
        );
    }
}

#[tokio::test]
async fn a_start_name_that_resolves_to_loopback_is_refused() {
    let site = Site::start(|_: &str, _: &str| Reply::page("Internal", &[])).await;
    // No DNS override for localhost: the system resolver answers, the
    // guarded resolver refuses.
    let spec = CrawlSpec {
        allow_private_networks: false,
        ..site.spec("/")
    };
    let spec = CrawlSpec {
        start_url: site.url("localhost", "/"),
        ..spec
    };
    let (report, events) = site.crawl(&spec).await;
    assert_eq!(
        site.outcomes(&events),
        pairs(&[("localhost/", "failed address_not_allowed localhost/")])
    );
    assert_eq!(site.requests(), Vec::<String>::new());
    assert_eq!(report.requests, 0);

    let allowed = CrawlSpec {
        allow_private_networks: true,
        ..spec
    };
    let (report, _) = site.crawl(&allowed).await;
    assert_eq!(report.pages, 1);
}

#[test]
fn the_crawl_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let spec = CrawlSpec::new("http://example.com/");
    let client = reqwest::Client::new();
    let future = crawl(&spec, &client, |_| {});
    assert_send(&future);
}

#[test]
fn spec_defaults_are_valid() {
    let ok = CrawlSpec::new("https://example.com/docs");
    assert_eq!(
        (ok.max_pages, ok.max_depth, ok.same_host, ok.concurrency),
        (100, 3, true, 4)
    );
    assert_eq!(ok.requests_per_second, 2.0);
    assert_eq!(ok.timeout, Duration::from_secs(15));
    assert_eq!(ok.max_body_bytes, 5 * 1024 * 1024);
    assert!(ok.user_agent.starts_with("ragchat-crawler/0.1"));
    assert!(ok.validate().is_ok());
}

/// The (valid) defaults with one change.
fn spec_with(change: impl FnOnce(&mut CrawlSpec)) -> CrawlSpec {
    let mut spec = CrawlSpec::new("https://example.com/docs");
    change(&mut spec);
    spec
}

/// `spec` is refused, naming `expected` as the bad field.
fn assert_invalid(spec: CrawlSpec, expected: &str) {
    match spec.validate() {
        Err(CrawlError::InvalidSpec { field, .. }) => assert_eq!(field, expected, "{spec:?}"),
        other => panic!("{spec:?}: {other:?}"),
    }
}

#[test]
fn spec_start_url_must_be_an_http_url() {
    assert_invalid(CrawlSpec::new("ftp://example.com/"), "start_url");
    assert_invalid(CrawlSpec::new("mailto:someone@example.com"), "start_url");
    assert_invalid(CrawlSpec::new("/relative"), "start_url");
}

#[test]
fn spec_start_url_may_not_be_a_private_ip_literal() {
    for url in [
        "http://127.0.0.1:8080/",
        "http://10.0.0.7/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:192.168.0.1]/",
        "http://100.64.0.1/",
    ] {
        assert_invalid(CrawlSpec::new(url), "start_url");
        let allowed = CrawlSpec {
            allow_private_networks: true,
            ..CrawlSpec::new(url)
        };
        assert!(allowed.validate().is_ok(), "{url}");
    }
    // Names are judged when they resolve.
    assert!(CrawlSpec::new("http://localhost/").validate().is_ok());
}

#[test]
fn spec_limits_are_bounded() {
    assert_invalid(spec_with(|s| s.max_pages = 0), "max_pages");
    assert_invalid(spec_with(|s| s.max_pages = 10_001), "max_pages");
    assert_invalid(spec_with(|s| s.max_depth = 101), "max_depth");
    for rps in [0.0, -1.0, f64::NAN, 1000.0] {
        assert_invalid(
            spec_with(|s| s.requests_per_second = rps),
            "requests_per_second",
        );
    }
    assert_invalid(spec_with(|s| s.concurrency = 0), "concurrency");
    assert_invalid(spec_with(|s| s.timeout = Duration::ZERO), "timeout");
    assert_invalid(spec_with(|s| s.max_body_bytes = 0), "max_body_bytes");
    assert_invalid(
        spec_with(|s| s.max_crawl_delay = Duration::from_secs(3601)),
        "max_crawl_delay",
    );
}

#[test]
fn spec_user_agent_patterns_and_types_are_checked() {
    assert_invalid(spec_with(|s| s.user_agent = " ".into()), "user_agent");
    assert_invalid(spec_with(|s| s.user_agent = "bot\n".into()), "user_agent");
    assert_invalid(spec_with(|s| s.include = vec!["".into()]), "include");
    assert_invalid(spec_with(|s| s.exclude = vec![" ".into()]), "exclude");
    assert_invalid(
        spec_with(|s| s.extra_content_types = vec!["pdf".into()]),
        "extra_content_types",
    );
}

#[test]
fn spec_errors_name_the_field_and_the_problem() {
    let message = CrawlSpec::new("ftp://example.com/")
        .validate()
        .map_err(|e| e.to_string());
    assert_eq!(
        message,
        Err(
            "invalid crawl spec: start_url: scheme \"ftp\" is not supported (only http and https)"
                .into()
        )
    );
}
