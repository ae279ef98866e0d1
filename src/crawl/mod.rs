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
//! - **Addresses.** Only public addresses are reached unless the spec's
//!   `allow_private_networks` is set: every request (page, redirect hop,
//!   robots.txt) is checked, IP literals before sending and names by the
//!   client's resolver (details in `net.rs`). A refused URL fails with the
//!   one reason [`FetchError::AddressNotAllowed`].
//! - **Events.** `on_event` runs on the crawl's own task between polls of
//!   the requests: keep it quick. [`crawl_into`] hands events to a bounded
//!   channel instead and waits while it is full, so a slow reader holds
//!   back the fetching rather than letting pages pile up in memory.
//! - **Cancellation.** Dropping the future stops everything at once: no task
//!   is spawned for requests, so in-flight requests are dropped with it (an
//!   HTML parse already on the blocking pool finishes and is discarded).
//!   [`crawl_with_cancel`] also stops on a [`CancelToken`] and still returns
//!   the report of what was done.

mod events;
mod fetch;
mod html;
mod limit;
mod net;
mod robots;
mod spec;
pub mod urls;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use futures::{stream, StreamExt};
use tokio::sync::{mpsc, Notify};
use url::Url;

// The title rules are ingestion's, so a page crawled from a site and the
// same file uploaded get the same title.
use crate::ingest::load::{markdown_title, text_title, RawDocument};

pub use events::{CrawlEvent, CrawlReport, FetchError, Page, SkipReason};
use fetch::{ContentKind, Fetched, Fetcher, Hop};
use html::Directives;
use robots::{Robots, RobotsCache};
pub use spec::{
    build_client, client_builder, CrawlError, CrawlSpec, DEFAULT_USER_AGENT, MAX_BODY_BYTES_CAP,
    MAX_CONCURRENCY, MAX_CRAWL_DELAY, MAX_DEPTH_CAP, MAX_PAGES_CAP, MAX_REDIRECTS,
    MAX_REQUESTS_PER_SECOND, MAX_TIMEOUT,
};
pub use urls::Pattern;

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
    run_crawl(spec, client, cancel, Callback(on_event)).await
}

/// [`crawl_with_cancel`] into a channel: each event waits for room in
/// `events`, and meanwhile no request makes progress, so at most the
/// channel's capacity plus `concurrency` pages are held at once. Stops like
/// a cancel when the receiver is dropped.
pub async fn crawl_into(
    spec: &CrawlSpec,
    client: &reqwest::Client,
    cancel: &CancelToken,
    events: mpsc::Sender<CrawlEvent>,
) -> Result<CrawlReport, CrawlError> {
    run_crawl(spec, client, cancel, events).await
}

async fn run_crawl(
    spec: &CrawlSpec,
    client: &reqwest::Client,
    cancel: &CancelToken,
    sink: impl EventSink,
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
        sink,
        cancel,
        stopped: false,
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

/// Where a crawl's events go.
trait EventSink: Send {
    /// Hand on `event`; resolves once it was taken (`true`) or nobody takes
    /// events any more (`false`).
    fn take(&mut self, event: CrawlEvent) -> impl Future<Output = bool> + Send;
}

/// A callback, called at once.
struct Callback<F>(F);

impl<F: FnMut(CrawlEvent) + Send> EventSink for Callback<F> {
    fn take(&mut self, event: CrawlEvent) -> impl Future<Output = bool> + Send {
        (self.0)(event);
        std::future::ready(true)
    }
}

/// A bounded channel: waits while it is full.
impl EventSink for mpsc::Sender<CrawlEvent> {
    async fn take(&mut self, event: CrawlEvent) -> bool {
        self.send(event).await.is_ok()
    }
}

/// Counts every event into the report before handing it on.
struct Recorder<'c, S> {
    report: CrawlReport,
    sink: S,
    /// Also ends a wait for the sink.
    cancel: &'c CancelToken,
    /// Cancelled, or the sink takes no more events: the crawl stops.
    stopped: bool,
}

impl<S: EventSink> Recorder<'_, S> {
    async fn emit(&mut self, event: CrawlEvent) {
        if self.stopped {
            return;
        }
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
        // A sink with room takes the event even after a cancel; a cancel
        // ends a wait for room.
        let taken = tokio::select! {
            biased;
            taken = self.sink.take(event) => taken,
            _ = self.cancel.cancelled() => false,
        };
        self.stopped = !taken;
    }

    async fn skip(&mut self, url: &Url, reason: SkipReason) {
        self.emit(skipped(url.as_str(), url, reason)).await;
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

/// The level's URLs that robots.txt allows, up to the page budget; the rest
/// are skipped.
async fn admit<S: EventSink>(
    level: Vec<Url>,
    robots_of: &HashMap<String, Arc<Robots>>,
    budget: &mut usize,
    max_pages: usize,
    rec: &mut Recorder<'_, S>,
) -> Vec<Url> {
    let mut admitted = Vec::new();
    for url in level {
        let verdict = robots_of
            .get(&url.origin().ascii_serialization())
            .map_or(Ok(()), |r| r.check(&url));
        if let Err(reason) = verdict {
            rec.skip(&url, reason).await;
        } else if *budget == 0 {
            rec.skip(&url, SkipReason::MaxPages(max_pages)).await;
        } else {
            *budget -= 1;
            admitted.push(url);
        }
    }
    admitted
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

    /// Crawl level by level; `true` when cancelled or nobody takes its
    /// events any more.
    async fn run<S: EventSink>(
        &self,
        start: Url,
        cancel: &CancelToken,
        rec: &mut Recorder<'_, S>,
    ) -> bool {
        let spec = self.spec;
        let mut level = vec![start];
        let mut depth: u32 = 0;
        let mut budget = spec.max_pages;
        while !level.is_empty() {
            let Some(robots_of) = self.robots_of(&level, cancel).await else {
                return true;
            };
            let admitted = admit(level, &robots_of, &mut budget, spec.max_pages, rec).await;
            if rec.stopped {
                return true;
            }
            rec.report.fetched += admitted.len();
            let Some(found) = self.fetch_level(admitted, depth, cancel, rec).await else {
                return true;
            };
            level = self.next_level(found, depth, budget, rec).await;
            if rec.stopped {
                return true;
            }
            depth += 1;
        }
        rec.stopped
    }

    /// robots.txt of the level's origins first (concurrently, once each), so
    /// admission can go in queue order; None when cancelled.
    async fn robots_of(
        &self,
        level: &[Url],
        cancel: &CancelToken,
    ) -> Option<HashMap<String, Arc<Robots>>> {
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
            .buffer_unordered(self.spec.concurrency)
            .collect::<HashMap<String, Arc<Robots>>>();
        tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            r = robots_of => Some(r),
        }
    }

    /// Fetch a level's admitted URLs, emitting their events; the links each
    /// found, by its position in `admitted`; None when cancelled.
    async fn fetch_level<S: EventSink>(
        &self,
        admitted: Vec<Url>,
        depth: u32,
        cancel: &CancelToken,
        rec: &mut Recorder<'_, S>,
    ) -> Option<Vec<(usize, Vec<Url>)>> {
        let seed = depth == 0;
        let mut fetches = stream::iter(admitted.into_iter().enumerate())
            .map(move |(i, url)| async move { (i, self.fetch_page(url, depth, seed).await) })
            .buffer_unordered(self.spec.concurrency);
        let mut found: Vec<(usize, Vec<Url>)> = Vec::new();
        loop {
            let next = tokio::select! {
                biased;
                _ = cancel.cancelled() => return None,
                next = fetches.next() => next,
            };
            let Some((i, (event, links))) = next else {
                break;
            };
            // While the sink is full, `fetches` is not polled: requests in
            // flight wait and no new ones start.
            rec.emit(event).await;
            if rec.stopped {
                return None;
            }
            if !links.is_empty() {
                found.push((i, links));
            }
        }
        Some(found)
    }

    /// The next level, in the order of the pages that linked to it; links
    /// out of scope, too deep or over the budget are skipped.
    async fn next_level<S: EventSink>(
        &self,
        mut found: Vec<(usize, Vec<Url>)>,
        depth: u32,
        budget: usize,
        rec: &mut Recorder<'_, S>,
    ) -> Vec<Url> {
        let spec = self.spec;
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
                rec.skip(&link, reason).await;
            } else if depth >= spec.max_depth {
                rec.skip(&link, SkipReason::TooDeep(spec.max_depth)).await;
            } else if budget == 0 {
                rec.skip(&link, SkipReason::MaxPages(spec.max_pages)).await;
            } else {
                next.push(link);
            }
        }
        next
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
