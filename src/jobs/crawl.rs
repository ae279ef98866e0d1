//! The `crawl` job: crawl a site into a collection. Pages are screened and
//! ingested in batches while the crawl runs; at the end, documents of an
//! earlier crawl of the same start URL that were not seen again are removed
//! (only when the crawl saw the whole site it was asked to see). With a
//! re-crawl interval the job enqueues its own next run.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{JobContext, JobError, KIND_CRAWL};
use crate::config::CrawlSettings;
use crate::crawl::{self, CancelToken, CrawlEvent, CrawlReport, CrawlSpec};
use crate::db::collections::Collection;
use crate::db::jobs::{self, NewJob};
use crate::db::now;
use crate::db::{collections, documents};
use crate::ingest::formats;
use crate::ingest::load::RawDocument;
use crate::ingest::pipeline::{self, IngestReport};
use crate::ingest::screen::{Screener, SkipReason, SkippedDoc};

const BATCH: usize = 16;
/// Crawl events (pages, each up to `max_body_bytes`) waiting for ingestion,
/// at most: when ingestion falls behind, the crawler waits instead of
/// holding the rest of the site in memory.
const QUEUED_EVENTS: usize = BATCH;
/// Re-crawl intervals above a year are refused: the next run's date must be
/// representable, and a crawl a decade out is a typo.
pub const MAX_RECRAWL_INTERVAL_SECS: u64 = 366 * 24 * 3600;
const MAX_LISTED: usize = 1000;

/// What `POST /collections/{id}/crawl` takes; also the job payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CrawlRequest {
    pub start_url: String,
    pub max_pages: usize,
    pub max_depth: u32,
    pub same_host: bool,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub requests_per_second: f64,
    pub concurrency: usize,
    pub timeout_secs: u64,
    pub max_body_bytes: u64,
    /// Crawl again this long after a successful crawl; 0 = once.
    pub recrawl_interval_secs: u64,
}

impl Default for CrawlRequest {
    fn default() -> Self {
        let d = CrawlSpec::new("");
        Self {
            start_url: String::new(),
            max_pages: d.max_pages,
            max_depth: d.max_depth,
            same_host: d.same_host,
            include: d.include,
            exclude: d.exclude,
            requests_per_second: d.requests_per_second,
            concurrency: d.concurrency,
            timeout_secs: d.timeout.as_secs(),
            max_body_bytes: d.max_body_bytes,
            recrawl_interval_secs: 0,
        }
    }
}

impl CrawlRequest {
    /// The crawl to run: the request's fields, and the deployment's
    /// `[crawl]` settings for what the caller may not choose.
    pub fn spec(&self, settings: &CrawlSettings) -> CrawlSpec {
        CrawlSpec {
            start_url: self.start_url.clone(),
            max_pages: self.max_pages,
            max_depth: self.max_depth,
            same_host: self.same_host,
            include: self.include.clone(),
            exclude: self.exclude.clone(),
            requests_per_second: self.requests_per_second,
            concurrency: self.concurrency,
            timeout: Duration::from_secs(self.timeout_secs),
            max_body_bytes: self.max_body_bytes,
            // PDFs and Word files go through the upload loaders.
            extra_content_types: vec![
                "application/pdf".into(),
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document".into(),
            ],
            allow_private_networks: settings.allow_private_networks,
            max_crawl_delay: Duration::from_secs(settings.max_crawl_delay_secs),
            ..CrawlSpec::new("")
        }
    }

    /// The spec's checks plus the re-crawl interval, which feeds date
    /// arithmetic when the next crawl is scheduled.
    pub fn validate(&self, settings: &CrawlSettings) -> Result<(), crawl::CrawlError> {
        self.spec(settings).validate()?;
        if self.recrawl_interval_secs > MAX_RECRAWL_INTERVAL_SECS {
            return Err(crawl::CrawlError::InvalidSpec {
                field: "recrawl_interval_secs",
                message: format!(
                    "must be at most {MAX_RECRAWL_INTERVAL_SECS} (a year), got {}",
                    self.recrawl_interval_secs
                ),
            });
        }
        Ok(())
    }

    /// The key that keeps one live crawl per collection and start URL.
    pub fn dedupe_key(&self, collection_id: &str) -> String {
        format!("crawl:{collection_id}:{}", self.start_url.trim())
    }
}

/// Turn a fetched page into documents: HTML and text come parsed; other
/// types the crawler kept are loaded like an upload of the same bytes.
fn documents_of(page: crawl::Page, start: &str) -> Result<Vec<RawDocument>, String> {
    let mut docs = match page.document {
        Some(d) => vec![d],
        None => {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let path = dir.path().join("page");
            std::fs::write(&path, &page.body).map_err(|e| e.to_string())?;
            formats::load(&path, &page.final_url, &formats::Limits::default())
                .map_err(|e| e.reason())?
                .documents
        }
    };
    for d in &mut docs {
        d.source = page.final_url.clone();
        if let Value::Object(m) = &mut d.metadata {
            m.insert("crawl".into(), json!(start));
            m.insert("url".into(), json!(page.final_url));
        }
    }
    Ok(docs)
}

struct Progress {
    started: Instant,
    pages: usize,
    skipped_urls: usize,
    failed_urls: usize,
    documents_done: usize,
    report: IngestReport,
    skipped_docs: Vec<SkippedDoc>,
    skipped_counts: std::collections::BTreeMap<&'static str, usize>,
    removed: usize,
}

impl Progress {
    fn new() -> Self {
        Progress {
            started: Instant::now(),
            pages: 0,
            skipped_urls: 0,
            failed_urls: 0,
            documents_done: 0,
            report: IngestReport::default(),
            skipped_docs: Vec::new(),
            skipped_counts: Default::default(),
            removed: 0,
        }
    }

    fn skip(&mut self, s: SkippedDoc) {
        *self.skipped_counts.entry(s.reason.as_str()).or_default() += 1;
        if self.skipped_docs.len() < MAX_LISTED {
            self.skipped_docs.push(s);
        }
    }

    fn json(&self, phase: &str) -> Value {
        let secs = self.started.elapsed().as_secs_f64();
        json!({
            "phase": phase,
            "pages": self.pages,
            "urls_skipped": self.skipped_urls,
            "urls_failed": self.failed_urls,
            "documents_done": self.documents_done,
            "documents_added": self.report.added,
            "documents_updated": self.report.updated,
            "documents_unchanged": self.report.unchanged,
            "documents_removed": self.removed,
            "chunks_embedded": self.report.chunks_embedded,
            "chunks_deleted": self.report.chunks_deleted,
            "skipped": self.skipped_counts,
            "elapsed_secs": secs,
            "pages_per_sec": if secs > 0.0 { self.pages as f64 / secs } else { 0.0 },
        })
    }
}

async fn ingest_pages(
    ctx: &JobContext,
    collection: &Collection,
    screener: Screener,
    docs: Vec<RawDocument>,
    p: &mut Progress,
) -> Result<Screener, JobError> {
    let mut screener = screener;
    let (screened, back) = tokio::task::spawn_blocking(move || {
        let s = screener.screen(docs);
        (s, screener)
    })
    .await
    .map_err(|e| JobError::Retryable(e.to_string()))?;
    let n = screened.accepted.len();
    p.documents_done += n + screened.skipped.len();
    for s in screened.skipped {
        p.skip(s);
    }
    if n > 0 {
        let r = pipeline::ingest_batch(&ctx.app.indexer(), collection, screened.accepted, &|_| {})
            .await?;
        documents::save_signatures(&ctx.app.db, screened.signatures).await?;
        p.report.absorb(&r);
    }
    ctx.progress(&p.json("crawling")).await?;
    Ok(back)
}

/// Stops the crawl when this job stops for any reason (cancel, lease lost,
/// an ingest error): dropping the guard cancels it.
struct StopOnDrop(CancelToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

pub async fn run(ctx: &JobContext) -> Result<Value, JobError> {
    let app = &ctx.app;
    let (req, spec, collection) = load(ctx).await?;
    let client = crawl::build_client(&spec).map_err(|e| JobError::Retryable(e.to_string()))?;
    let start = req.start_url.trim().to_string();

    let screener = Screener::for_collection(&app.db, &collection.id, &app.settings.cleaning)
        .await
        .map_err(JobError::from)?;
    let mut p = Progress::new();
    ctx.progress(&p.json("crawling")).await?;

    let cancel = CancelToken::new();
    let (crawling, rx) = start_crawl(spec.clone(), client, cancel.clone());
    let _guard = StopOnDrop(cancel.clone());

    let failures = ingest_events(ctx, &collection, screener, rx, &start, &mut p).await?;
    let report = crawling
        .await
        .map_err(|e| JobError::Retryable(e.to_string()))?
        .map_err(|e| JobError::Permanent(e.to_string()))?;
    ctx.checkpoint()?;

    let complete = remove_unseen(ctx, &collection, &spec, &report, &start, &mut p).await?;
    ctx.progress(&p.json("optimizing")).await?;
    let mut changed = p.report.clone();
    changed.chunks_deleted += p.removed;
    pipeline::optimize_after(&app.indexer(), &changed)
        .await
        .map_err(JobError::from)?;
    if req.recrawl_interval_secs > 0 {
        schedule_next(ctx, &req, &collection).await?;
    }

    let mut out = p.json("done");
    out["complete"] = json!(complete);
    out["urls_fetched"] = json!(report.fetched);
    out["requests"] = json!(report.requests);
    out["bytes"] = json!(report.bytes);
    out["url_skips"] = json!(report.skipped);
    out["url_failures"] = json!(report.failed);
    out["failed_urls"] = json!(failures);
    out["skipped_documents"] = json!(p.skipped_docs);
    Ok(out)
}

/// Run the crawl on its own task; its events arrive on the receiver, which
/// holds at most [`QUEUED_EVENTS`]: pages are ingested by the job's task as
/// they arrive, and the crawl waits while ingestion catches up, so a large
/// site never sits in memory.
fn start_crawl(
    spec: CrawlSpec,
    client: reqwest::Client,
    cancel: CancelToken,
) -> (
    tokio::task::JoinHandle<Result<CrawlReport, crawl::CrawlError>>,
    tokio::sync::mpsc::Receiver<CrawlEvent>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<CrawlEvent>(QUEUED_EVENTS);
    let crawling =
        tokio::spawn(async move { crawl::crawl_into(&spec, &client, &cancel, tx).await });
    (crawling, rx)
}

/// The job's request, its checked spec and its collection.
async fn load(ctx: &JobContext) -> Result<(CrawlRequest, CrawlSpec, Collection), JobError> {
    let req: CrawlRequest = serde_json::from_value(ctx.payload()?)
        .map_err(|e| JobError::Permanent(format!("unreadable crawl payload: {e}")))?;
    // Checked again here: a payload enqueued by an older version, or edited
    // in the database, must not reach the date arithmetic unchecked.
    let settings = &ctx.app.settings.crawl;
    req.validate(settings)
        .map_err(|e| JobError::Permanent(e.to_string()))?;
    let spec = req.spec(settings);
    let collection_id = ctx
        .job
        .collection_id
        .clone()
        .ok_or_else(|| JobError::Permanent("crawl job without a collection".into()))?;
    let collection = collections::collection_by_id(&ctx.app.db, &collection_id)
        .await?
        .ok_or_else(|| JobError::Permanent("the collection was deleted".into()))?;
    Ok((req, spec, collection))
}

/// Ingest the crawl's pages in batches as its events arrive, until it ends;
/// the failed URLs (the first [`MAX_LISTED`]).
async fn ingest_events(
    ctx: &JobContext,
    collection: &Collection,
    mut screener: Screener,
    mut rx: tokio::sync::mpsc::Receiver<CrawlEvent>,
    start: &str,
    p: &mut Progress,
) -> Result<Vec<Value>, JobError> {
    let mut batch: Vec<RawDocument> = Vec::new();
    let mut failures: Vec<Value> = Vec::new();
    while let Some(ev) = rx.recv().await {
        ctx.checkpoint()?;
        match ev {
            CrawlEvent::Page(page) => {
                p.pages += 1;
                let url = page.final_url.clone();
                let start = start.to_string();
                match tokio::task::spawn_blocking(move || documents_of(*page, &start))
                    .await
                    .map_err(|e| JobError::Retryable(e.to_string()))?
                {
                    Ok(docs) => batch.extend(docs),
                    Err(reason) => p.skip(SkippedDoc {
                        source: url,
                        reason: SkipReason::Unreadable,
                        detail: reason,
                        duplicate_of: None,
                        similarity: None,
                    }),
                }
            }
            CrawlEvent::Skipped { .. } => p.skipped_urls += 1,
            CrawlEvent::Failed {
                url,
                final_url: _,
                error,
            } => {
                p.failed_urls += 1;
                if failures.len() < MAX_LISTED {
                    failures.push(json!({"url": url, "error": error.to_string()}));
                }
            }
        }
        if batch.len() >= BATCH {
            screener =
                ingest_pages(ctx, collection, screener, std::mem::take(&mut batch), p).await?;
        }
    }
    if !batch.is_empty() {
        ingest_pages(ctx, collection, screener, batch, p).await?;
    }
    Ok(failures)
}

/// Remove the documents of an earlier crawl of `start` that this one did
/// not see again; whether the crawl was complete enough to judge that.
async fn remove_unseen(
    ctx: &JobContext,
    collection: &Collection,
    spec: &CrawlSpec,
    report: &CrawlReport,
    start: &str,
    p: &mut Progress,
) -> Result<bool, JobError> {
    // Only a crawl that saw everything it was asked to may conclude that a
    // page is gone; a page that failed transiently keeps its document.
    let complete = !report.cancelled
        && report.fetched < spec.max_pages
        && !report.skipped.contains_key("robots_unavailable");
    if complete {
        let keep: HashSet<&String> = report.page_urls.iter().chain(&report.retry_urls).collect();
        for (id, source) in documents::crawled_by(&ctx.app.db, &collection.id, start).await? {
            if !keep.contains(&source) {
                pipeline::delete_document(&ctx.app.indexer(), &id).await?;
                p.removed += 1;
            }
        }
    }
    Ok(complete)
}

/// Enqueue the next crawl, `recrawl_interval_secs` from now.
async fn schedule_next(
    ctx: &JobContext,
    req: &CrawlRequest,
    collection: &Collection,
) -> Result<(), JobError> {
    let mut next = NewJob::new(
        KIND_CRAWL,
        serde_json::to_value(req).map_err(|e| JobError::Permanent(e.to_string()))?,
    );
    next.collection_id = Some(collection.id.clone());
    next.created_by = ctx.job.created_by.clone();
    next.max_attempts = ctx.job.max_attempts;
    next.run_after = Some(
        i64::try_from(req.recrawl_interval_secs)
            .ok()
            .and_then(TimeDelta::try_seconds)
            .and_then(|d| now().checked_add_signed(d))
            .ok_or_else(|| {
                JobError::Permanent(format!(
                    "recrawl_interval_secs {} is out of range",
                    req.recrawl_interval_secs
                ))
            })?,
    );
    // Keyed by this job: a retry of this job after a crash finds the
    // successor it already enqueued instead of adding a second.
    next.dedupe_key = Some(format!("recrawl-after:{}", ctx.job.id));
    jobs::enqueue(&ctx.app.db, next).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const PAGES: usize = 60;
    // A site that fits in the queue would pass the bound test below without
    // any bound at all.
    const _: () = assert!(
        PAGES > 2 * (QUEUED_EVENTS + 2),
        "the site must outgrow the queue"
    );

    /// A site on 127.0.0.1 of `PAGES` pages, all linked from `/`; counts the
    /// requests it receives. Its address.
    async fn fan_site(requests: Arc<AtomicUsize>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let requests = requests.clone();
                tokio::spawn(async move {
                    let (mut head, mut buf) = (Vec::new(), [0u8; 1024]);
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    requests.fetch_add(1, Ordering::SeqCst);
                    let head = String::from_utf8_lossy(&head);
                    let path = head.split_whitespace().nth(1).unwrap_or("/");
                    let (status, body) = match path {
                        "/" => (
                            "200 OK",
                            (0..PAGES)
                                .map(|i| format!("<a href=\"/p{i}\">p{i}</a>\n"))
                                .collect(),
                        ),
                        "/robots.txt" => ("404 Not Found", String::new()),
                        p => ("200 OK", format!("<title>{p}</title><p>Page {p}.</p>")),
                    };
                    let reply = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\
                         connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(reply.as_bytes()).await;
                });
            }
        });
        base
    }

    #[tokio::test]
    async fn the_crawl_waits_while_ingestion_is_behind() {
        let requests = Arc::new(AtomicUsize::new(0));
        let base = fan_site(requests.clone()).await;
        let spec = CrawlSpec {
            requests_per_second: 100.0,
            concurrency: 2,
            allow_private_networks: true,
            ..CrawlSpec::new(format!("{base}/"))
        };
        let client = crawl::build_client(&spec).unwrap();
        let concurrency = spec.concurrency;
        let (crawling, mut rx) = start_crawl(spec, client, CancelToken::new());

        // Nobody reads. The crawl may fetch robots.txt and `/`, then pages
        // until the queue is full, one more waiting for room, and the rest
        // of the requests in flight: never the whole site.
        let bound = 2 + QUEUED_EVENTS + concurrency;
        let fetched = || requests.load(Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(60);
        while rx.len() < QUEUED_EVENTS {
            assert!(fetched() <= bound, "{} requests, nobody reading", fetched());
            assert!(Instant::now() < deadline, "the queue never filled");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Full: for a while longer nothing more is fetched.
        for _ in 0..100 {
            assert!(fetched() <= bound, "{} requests, nobody reading", fetched());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(rx.len(), QUEUED_EVENTS);

        // Reading lets it go on to the end.
        let mut pages = 0;
        while let Some(event) = rx.recv().await {
            pages += usize::from(matches!(event, CrawlEvent::Page(_)));
        }
        let report = crawling.await.unwrap().unwrap();
        assert_eq!((pages, report.pages), (PAGES + 1, PAGES + 1));
        assert_eq!(fetched(), PAGES + 2);
    }

    #[test]
    fn the_deployment_settings_reach_the_spec() {
        let req = CrawlRequest {
            start_url: "http://127.0.0.1:8080/".into(),
            ..CrawlRequest::default()
        };
        let off = CrawlSettings::default();
        assert!(!req.spec(&off).allow_private_networks);
        assert!(matches!(
            req.validate(&off),
            Err(crawl::CrawlError::InvalidSpec {
                field: "start_url",
                ..
            })
        ));
        let on = CrawlSettings {
            allow_private_networks: true,
            max_crawl_delay_secs: 3,
        };
        assert!(req.validate(&on).is_ok());
        assert_eq!(req.spec(&on).max_crawl_delay, Duration::from_secs(3));
    }
}
