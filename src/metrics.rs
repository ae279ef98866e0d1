//! What `/metrics` reports, as `prometheus-client` families: names and units
//! by Prometheus conventions (seconds and bytes, `_total` counters).
//!
//! Everything recorded on a request path is an atomic update of a metric
//! created once; label sets are small closed sets (route templates, modes,
//! stages, cache names), so families cannot grow with client input. What
//! only the database or an index knows (jobs per state, index sizes, the
//! lexical log's lag) is read when scraped and set on gauges then.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Upper bounds of duration buckets, seconds: 1 ms to 30 s.
const SECONDS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Job durations run from a second to hours.
const JOB_SECONDS: [f64; 10] = [
    0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
];
const BATCH_SIZES: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
const TOKEN_RATES: [f64; 9] = [1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds_family<L: Clone + std::hash::Hash + Eq>() -> Histograms<L> {
    Family::new_with_constructor(|| Histogram::new(SECONDS))
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The route template (`/api/v1/collections/{id}`), never the path.
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabels {
    pub mode: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub cache: &'static str,
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub kind: String,
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IndexLabels {
    pub index: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BucketLabels {
    pub bucket: &'static str,
}

/// What chat records per answer.
#[derive(Clone)]
pub struct ChatMetrics {
    pub retrieval: Histogram,
    pub first_token: Histogram,
    pub tokens_per_second: Histogram,
    pub answers: Counter,
    pub refusals: Counter,
    pub cancelled: Counter,
    pub errors: Counter,
    pub dropped_citations: Counter,
}

impl Default for ChatMetrics {
    fn default() -> Self {
        Self {
            retrieval: Histogram::new(SECONDS),
            first_token: Histogram::new(SECONDS),
            tokens_per_second: Histogram::new(TOKEN_RATES),
            answers: Counter::default(),
            refusals: Counter::default(),
            cancelled: Counter::default(),
            errors: Counter::default(),
            dropped_citations: Counter::default(),
        }
    }
}

/// What the lexical index's change-log follower records (see
/// `index::lexical::follow`).
#[derive(Clone, Default)]
pub struct LexicalMetrics {
    /// The last log position applied.
    pub position: Gauge,
    pub applied: Counter,
    pub rebuilds: Counter,
    pub errors: Counter,
}

/// What the embedder records: how long a caller waited for a model session,
/// and how many texts went to the model in one call.
#[derive(Clone)]
pub struct EmbedderMetrics {
    pub queue_wait: Histogram,
    pub batch_size: Histogram,
    pub texts: Counter,
}

impl Default for EmbedderMetrics {
    fn default() -> Self {
        Self {
            queue_wait: Histogram::new(SECONDS),
            batch_size: Histogram::new(BATCH_SIZES),
            texts: Counter::default(),
        }
    }
}

/// Hits and misses of one cache.
#[derive(Clone)]
pub struct CacheCounters {
    pub hits: Counter,
    pub misses: Counter,
}

impl CacheCounters {
    pub fn record(&self, hit: bool) {
        if hit {
            self.hits.inc();
        } else {
            self.misses.inc();
        }
    }
}

/// Errors talking to Redis, and whether the last attempt worked.
#[derive(Clone, Default)]
pub struct RedisMetrics {
    pub errors: Family<OpLabels, Counter>,
    pub up: Gauge,
    pub fallbacks: Family<OpLabels, Counter>,
}

pub struct Metrics {
    registry: Registry,
    pub chat: ChatMetrics,
    /// Shared with the follower, which lives outside `App`'s metrics.
    pub lexical: LexicalMetrics,
    pub embedder: EmbedderMetrics,
    pub redis: RedisMetrics,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Histograms<RouteLabels>,
    pub query_duration: Histograms<ModeLabels>,
    pub query_stage: Histograms<StageLabels>,
    cache: Family<CacheLabels, Counter>,
    pub rate_limited: Family<BucketLabels, Counter>,
    pub jobs_finished: Family<JobLabels, Counter>,
    pub job_duration: Family<KindLabels, Histogram, fn() -> Histogram>,
    pub documents_ingested: Counter,
    pub chunks_ingested: Counter,
    pub vector_errors: Family<OpLabels, Counter>,
    // Set when scraped.
    pub jobs: Family<StateLabels, Gauge>,
    pub index_entries: Family<IndexLabels, Gauge>,
    pub lexical_behind: Gauge,
    pub lexical_seconds_behind: Gauge<f64, AtomicU64>,
    pub resident_memory: Gauge,
    pub virtual_memory: Gauge,
    pub heap: HeapGauges,
}

/// The Rust heap as jemalloc sees it (zero in a build without it): bytes in
/// live allocations, in pages backing them, and resident in the allocator's
/// mappings (live plus freed pages not yet returned to the OS).
#[derive(Clone, Default)]
pub struct HeapGauges {
    pub allocated: Gauge,
    pub active: Gauge,
    pub resident: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("ragchat");
        let chat = ChatMetrics::default();
        let lexical = LexicalMetrics::default();
        let embedder = EmbedderMetrics::default();
        let redis = RedisMetrics::default();
        let m = Self {
            http_requests: Family::default(),
            http_duration: seconds_family(),
            query_duration: seconds_family(),
            query_stage: seconds_family(),
            cache: Family::default(),
            rate_limited: Family::default(),
            jobs_finished: Family::default(),
            job_duration: Family::new_with_constructor(|| Histogram::new(JOB_SECONDS)),
            documents_ingested: Counter::default(),
            chunks_ingested: Counter::default(),
            vector_errors: Family::default(),
            jobs: Family::default(),
            index_entries: Family::default(),
            lexical_behind: Gauge::default(),
            lexical_seconds_behind: Gauge::default(),
            resident_memory: Gauge::default(),
            virtual_memory: Gauge::default(),
            heap: HeapGauges::default(),
            registry: Registry::default(),
            chat,
            lexical,
            embedder,
            redis,
        };
        let secs = Unit::Seconds;
        r.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status.",
            m.http_requests.clone(),
        );
        r.register_with_unit(
            "http_request_duration",
            "Time to the response head, by method and route template.",
            secs.clone(),
            m.http_duration.clone(),
        );
        r.register_with_unit(
            "query_duration",
            "Whole /query requests past validation, by mode (cache hits included).",
            secs.clone(),
            m.query_duration.clone(),
        );
        r.register_with_unit(
            "query_stage_duration",
            "Stages of an uncached search: embed, dense, lexical, fuse, db, highlight.",
            secs.clone(),
            m.query_stage.clone(),
        );
        r.register_with_unit(
            "embedder_queue_wait",
            "Time a caller waited for a free model session.",
            secs.clone(),
            m.embedder.queue_wait.clone(),
        );
        r.register(
            "embedder_batch_size",
            "Texts per model call.",
            m.embedder.batch_size.clone(),
        );
        r.register(
            "embedder_texts",
            "Texts run through the embedding model (cache hits excluded).",
            m.embedder.texts.clone(),
        );
        r.register(
            "cache_requests",
            "Cache lookups by cache (query_embeddings, query_results) and result (hit, miss).",
            m.cache.clone(),
        );
        r.register(
            "rate_limited",
            "Requests refused by a rate limit, by bucket.",
            m.rate_limited.clone(),
        );
        r.register(
            "jobs_finished",
            "Job runs that ended, by kind and outcome (succeeded, failed, retry, cancelled).",
            m.jobs_finished.clone(),
        );
        r.register_with_unit(
            "job_duration",
            "Time one job run took, by kind.",
            secs.clone(),
            m.job_duration.clone(),
        );
        r.register(
            "jobs",
            "Jobs in the database by state (all nodes), read when scraped.",
            m.jobs.clone(),
        );
        r.register(
            "documents_ingested",
            "Documents written by this process's jobs (new or changed).",
            m.documents_ingested.clone(),
        );
        r.register(
            "chunks_ingested",
            "Chunks embedded and indexed by this process's jobs.",
            m.chunks_ingested.clone(),
        );
        r.register(
            "index_entries",
            "Entries per index, read when scraped: chunks in the database, points in the vector index, documents in this node's lexical index.",
            m.index_entries.clone(),
        );
        r.register(
            "vector_index_errors",
            "Vector index (Qdrant) requests that failed, retried ones included, by operation.",
            m.vector_errors.clone(),
        );
        r.register(
            "redis_errors",
            "Redis commands that failed or timed out, by operation.",
            m.redis.errors.clone(),
        );
        r.register(
            "redis_fallbacks",
            "Requests served without Redis (in-process limiter, no shared cache) because it failed.",
            m.redis.fallbacks.clone(),
        );
        r.register(
            "redis_up",
            "1 when the last Redis command worked, 0 when it failed (absent without Redis).",
            m.redis.up.clone(),
        );
        let chat_reg = r.sub_registry_with_prefix("chat");
        for (name, help, c) in [
            (
                "answers",
                "Chat answers finished (any outcome).",
                &m.chat.answers,
            ),
            (
                "refusals",
                "Questions refused: no relevant source.",
                &m.chat.refusals,
            ),
            (
                "cancelled",
                "Answers cancelled or abandoned by the client.",
                &m.chat.cancelled,
            ),
            ("errors", "Answers ended by a model error.", &m.chat.errors),
            (
                "dropped_citations",
                "Citation markers removed: they pointed at no source sent.",
                &m.chat.dropped_citations,
            ),
        ] {
            chat_reg.register(name, help, c.clone());
        }
        chat_reg.register_with_unit(
            "retrieval",
            "Retrieval time per answer.",
            secs.clone(),
            m.chat.retrieval.clone(),
        );
        chat_reg.register_with_unit(
            "first_token",
            "Time from the question to the first token.",
            secs.clone(),
            m.chat.first_token.clone(),
        );
        chat_reg.register(
            "tokens_per_second",
            "Generation speed after the first token.",
            m.chat.tokens_per_second.clone(),
        );
        let lex = r.sub_registry_with_prefix("lexical");
        lex.register(
            "log_applied",
            "Change-log entries applied to this node's lexical index.",
            m.lexical.applied.clone(),
        );
        lex.register(
            "rebuilds",
            "Rebuilds of this node's lexical index from the database (new, or behind the pruned log).",
            m.lexical.rebuilds.clone(),
        );
        lex.register(
            "follow_errors",
            "Failed attempts to apply the change log to this node's lexical index.",
            m.lexical.errors.clone(),
        );
        lex.register(
            "log_position",
            "The last change-log position applied to this node's lexical index.",
            m.lexical.position.clone(),
        );
        lex.register(
            "log_positions_behind",
            "Chunk changes in the database this node's lexical index has not applied yet.",
            m.lexical_behind.clone(),
        );
        lex.register_with_unit(
            "log_behind",
            "Age of the oldest chunk change this node's lexical index has not applied (0 when none).",
            secs,
            m.lexical_seconds_behind.clone(),
        );
        let process = r.sub_registry_with_prefix("process");
        process.register_with_unit(
            "resident_memory",
            "Resident set size of this process.",
            Unit::Bytes,
            m.resident_memory.clone(),
        );
        process.register_with_unit(
            "virtual_memory",
            "Virtual memory size of this process.",
            Unit::Bytes,
            m.virtual_memory.clone(),
        );
        let heap = r.sub_registry_with_prefix("heap");
        for (name, help, g) in [
            (
                "allocated",
                "Bytes in live Rust allocations (jemalloc stats.allocated).",
                &m.heap.allocated,
            ),
            (
                "active",
                "Bytes in pages holding live Rust allocations (jemalloc stats.active).",
                &m.heap.active,
            ),
            (
                "resident",
                "Bytes resident in the Rust allocator's mappings, live or freed but not yet returned (jemalloc stats.resident).",
                &m.heap.resident,
            ),
        ] {
            heap.register_with_unit(name, help, Unit::Bytes, g.clone());
        }
        Self { registry: r, ..m }
    }

    /// The hit and miss counters of the cache called `name`.
    pub fn cache(&self, name: &'static str) -> CacheCounters {
        let get = |result| {
            self.cache
                .get_or_create(&CacheLabels {
                    cache: name,
                    result,
                })
                .clone()
        };
        CacheCounters {
            hits: get("hit"),
            misses: get("miss"),
        }
    }

    pub fn observe_stage(&self, stage: &'static str, took: Duration) {
        self.query_stage
            .get_or_create(&StageLabels { stage })
            .observe(took.as_secs_f64());
    }

    /// Set the process memory gauges from `/proc/self/statm` (Linux only;
    /// elsewhere they stay 0).
    pub fn read_process_memory(&self) {
        let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
            return;
        };
        let mut pages = statm.split_whitespace().map(|v| v.parse::<i64>().ok());
        // statm counts pages; every Linux ragchat runs on uses 4 KiB pages.
        const PAGE: i64 = 4096;
        if let (Some(Some(size)), Some(Some(resident))) = (pages.next(), pages.next()) {
            self.virtual_memory.set(size * PAGE);
            self.resident_memory.set(resident * PAGE);
        }
        self.read_heap();
    }

    #[cfg(feature = "jemalloc")]
    fn read_heap(&self) {
        use tikv_jemalloc_ctl::{epoch, stats};
        // The statistics are cached until the epoch moves.
        if epoch::advance().is_err() {
            return;
        }
        for (read, gauge) in [
            (stats::allocated::read(), &self.heap.allocated),
            (stats::active::read(), &self.heap.active),
            (stats::resident::read(), &self.heap.resident),
        ] {
            if let Ok(v) = read {
                gauge.set(v as i64);
            }
        }
    }

    #[cfg(not(feature = "jemalloc"))]
    fn read_heap(&self) {}

    /// The OpenMetrics text exposition of every family.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_histograms_and_units_follow_the_conventions() {
        let m = Metrics::new();
        m.chat.answers.inc_by(2);
        m.chat.first_token.observe(0.007);
        m.http_requests
            .get_or_create(&HttpLabels {
                method: "GET".into(),
                route: "/api/v1/query".into(),
                status: 200,
            })
            .inc();
        m.cache("query_results").record(true);
        m.lexical.position.set(42);
        m.read_process_memory();
        let text = m.encode();
        for line in [
            "ragchat_chat_answers_total 2",
            "ragchat_chat_first_token_seconds_bucket{le=\"0.005\"} 0",
            "ragchat_chat_first_token_seconds_bucket{le=\"0.01\"} 1",
            "ragchat_chat_first_token_seconds_count 1",
            "ragchat_http_requests_total{method=\"GET\",route=\"/api/v1/query\",status=\"200\"} 1",
            "ragchat_cache_requests_total{cache=\"query_results\",result=\"hit\"} 1",
            "ragchat_lexical_log_position 42",
            "# TYPE ragchat_process_resident_memory_bytes gauge",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
        let rss = text
            .lines()
            .find_map(|l| l.strip_prefix("ragchat_process_resident_memory_bytes "))
            .and_then(|v| v.parse::<i64>().ok())
            .expect("resident memory reported");
        assert!(rss > 1 << 20, "{rss}");
    }

    #[test]
    fn histogram_families_are_created_per_label_set() {
        let m = Metrics::new();
        m.observe_stage("embed", Duration::from_millis(3));
        m.observe_stage("embed", Duration::from_millis(30));
        m.observe_stage("dense", Duration::from_micros(500));
        let text = m.encode();
        assert!(
            text.contains("ragchat_query_stage_duration_seconds_count{stage=\"embed\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "ragchat_query_stage_duration_seconds_bucket{le=\"0.001\",stage=\"dense\"} 1"
            ),
            "{text}"
        );
    }
}
