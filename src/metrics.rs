//! In-process metrics: counters and fixed-bucket histograms, cheap enough to
//! record on every request (atomics, no locks). The `/metrics` endpoint will
//! render a [`Metrics::snapshot`]; until then they are read in tests and logs.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

/// Upper bounds (inclusive) of histogram buckets, plus an implicit +Inf.
pub const MS_BUCKETS: &[f64] = &[
    1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];
pub const RATE_BUCKETS: &[f64] = &[1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound, then +Inf.
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in thousandths, so it stays an integer atomic.
    sum_milli: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_milli: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        if !v.is_finite() || v < 0.0 {
            return;
        }
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_milli
            .fetch_add((v * 1000.0).round() as u64, Ordering::Relaxed);
    }

    /// Cumulative bucket counts as Prometheus reports them.
    pub fn snapshot(&self) -> Value {
        let mut cumulative = 0;
        let mut buckets = Vec::new();
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let le = self
                .bounds
                .get(i)
                .map_or_else(|| json!("+Inf"), |b| json!(b));
            buckets.push(json!({ "le": le, "count": cumulative }));
        }
        json!({
            "count": self.count.load(Ordering::Relaxed),
            "sum": self.sum_milli.load(Ordering::Relaxed) as f64 / 1000.0,
            "buckets": buckets,
        })
    }
}

/// What chat records per answer.
pub struct ChatMetrics {
    pub retrieval_ms: Histogram,
    pub first_token_ms: Histogram,
    pub tokens_per_second: Histogram,
    pub answers: AtomicU64,
    pub refusals: AtomicU64,
    pub cancelled: AtomicU64,
    pub errors: AtomicU64,
    pub dropped_citations: AtomicU64,
}

impl Default for ChatMetrics {
    fn default() -> Self {
        Self {
            retrieval_ms: Histogram::new(MS_BUCKETS),
            first_token_ms: Histogram::new(MS_BUCKETS),
            tokens_per_second: Histogram::new(RATE_BUCKETS),
            answers: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            dropped_citations: AtomicU64::new(0),
        }
    }
}

/// What the lexical index's change-log follower records (see
/// `index::lexical::follow`); how far behind it is right now is measured
/// when asked ([`lag_gauges`]).
#[derive(Default)]
pub struct LexicalMetrics {
    /// The last log position applied.
    pub position: AtomicI64,
    pub applied: AtomicU64,
    pub rebuilds: AtomicU64,
    pub errors: AtomicU64,
}

#[derive(Default)]
pub struct Metrics {
    pub chat: ChatMetrics,
    /// Shared with the follower, which lives outside `App`'s metrics.
    pub lexical: Arc<LexicalMetrics>,
}

/// Gauges of how far this node's lexical index is behind the change log:
/// positions, and seconds since the oldest change it has not applied
/// (`None` when that change was pruned already).
pub fn lag_gauges(positions: i64, seconds: Option<f64>) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, v: String| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n"
        ));
    };
    gauge(
        "ragchat_lexical_log_positions_behind",
        "Chunk changes in the database this node's lexical index has not applied yet.",
        positions.to_string(),
    );
    if let Some(s) = seconds {
        gauge(
            "ragchat_lexical_log_seconds_behind",
            "Age of the oldest chunk change this node's lexical index has not applied.",
            format!("{s:.3}"),
        );
    }
    out
}

impl Metrics {
    pub fn snapshot(&self) -> Value {
        let c = &self.chat;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({
            "chat": {
                "answers_total": n(&c.answers),
                "refusals_total": n(&c.refusals),
                "cancelled_total": n(&c.cancelled),
                "errors_total": n(&c.errors),
                "dropped_citations_total": n(&c.dropped_citations),
                "retrieval_ms": c.retrieval_ms.snapshot(),
                "first_token_ms": c.first_token_ms.snapshot(),
                "tokens_per_second": c.tokens_per_second.snapshot(),
            },
            "lexical": {
                "log_position": self.lexical.position.load(Ordering::Relaxed),
                "log_applied_total": n(&self.lexical.applied),
                "rebuilds_total": n(&self.lexical.rebuilds),
                "follow_errors_total": n(&self.lexical.errors),
            }
        })
    }
}

impl Metrics {
    /// The Prometheus text exposition format (version 0.0.4).
    pub fn prometheus(&self) -> String {
        let c = &self.chat;
        let mut out = String::new();
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (name, help, v) in [
            (
                "ragchat_chat_answers_total",
                "Chat answers finished (any outcome).",
                n(&c.answers),
            ),
            (
                "ragchat_chat_refusals_total",
                "Questions refused: no relevant source.",
                n(&c.refusals),
            ),
            (
                "ragchat_chat_cancelled_total",
                "Answers cancelled or abandoned by the client.",
                n(&c.cancelled),
            ),
            (
                "ragchat_chat_errors_total",
                "Answers ended by a model error.",
                n(&c.errors),
            ),
            (
                "ragchat_chat_dropped_citations_total",
                "Citation markers removed: they pointed at no source sent.",
                n(&c.dropped_citations),
            ),
            (
                "ragchat_lexical_log_applied_total",
                "Change-log entries applied to this node's lexical index.",
                n(&self.lexical.applied),
            ),
            (
                "ragchat_lexical_rebuilds_total",
                "Rebuilds of this node's lexical index from the database (new, or behind the pruned log).",
                n(&self.lexical.rebuilds),
            ),
            (
                "ragchat_lexical_follow_errors_total",
                "Failed attempts to apply the change log to this node's lexical index.",
                n(&self.lexical.errors),
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            ));
        }
        let name = "ragchat_lexical_log_position";
        out.push_str(&format!(
            "# HELP {name} The last change-log position applied to this node's lexical index.\n# TYPE {name} gauge\n{name} {}\n",
            self.lexical.position.load(Ordering::Relaxed)
        ));
        for (name, help, h) in [
            (
                "ragchat_chat_retrieval_ms",
                "Retrieval time per answer, milliseconds.",
                &c.retrieval_ms,
            ),
            (
                "ragchat_chat_first_token_ms",
                "Time to the first token, milliseconds.",
                &c.first_token_ms,
            ),
            (
                "ragchat_chat_tokens_per_second",
                "Generation speed after the first token.",
                &c.tokens_per_second,
            ),
        ] {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} histogram\n"));
            let mut cumulative = 0;
            for (i, count) in h.counts.iter().enumerate() {
                cumulative += count.load(Ordering::Relaxed);
                let le = h
                    .bounds
                    .get(i)
                    .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
                out.push_str(&format!("{name}_bucket{{le=\"{le}\"}} {cumulative}\n"));
            }
            out.push_str(&format!(
                "{name}_sum {}\n{name}_count {}\n",
                h.sum_milli.load(Ordering::Relaxed) as f64 / 1000.0,
                h.count.load(Ordering::Relaxed)
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_counters_and_histograms() {
        let m = Metrics::default();
        m.chat.answers.fetch_add(2, Ordering::Relaxed);
        m.chat.first_token_ms.observe(7.0);
        let text = m.prometheus();
        assert!(text.contains("ragchat_chat_answers_total 2\n"), "{text}");
        assert!(
            text.contains("ragchat_chat_first_token_ms_bucket{le=\"5\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("ragchat_chat_first_token_ms_bucket{le=\"10\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("ragchat_chat_first_token_ms_count 1\n"),
            "{text}"
        );
    }

    #[test]
    fn lexical_counters_and_lag_gauges_render() {
        let m = Metrics::default();
        m.lexical.rebuilds.fetch_add(1, Ordering::Relaxed);
        m.lexical.position.store(42, Ordering::Relaxed);
        let text = m.prometheus();
        assert!(
            text.contains("ragchat_lexical_rebuilds_total 1\n"),
            "{text}"
        );
        assert!(text.contains("ragchat_lexical_log_position 42\n"), "{text}");
        let lag = lag_gauges(3, Some(1.5));
        assert!(
            lag.contains("ragchat_lexical_log_positions_behind 3\n"),
            "{lag}"
        );
        assert!(
            lag.contains("ragchat_lexical_log_seconds_behind 1.500\n"),
            "{lag}"
        );
        assert!(!lag_gauges(0, None).contains("seconds_behind"));
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_ignore_garbage() {
        let h = Histogram::new(&[1.0, 10.0]);
        for v in [0.5, 1.0, 3.0, 50.0, f64::NAN, -1.0] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s["count"], 4);
        assert_eq!(s["sum"], 54.5);
        assert_eq!(
            s["buckets"],
            json!([{"le": 1.0, "count": 2}, {"le": 10.0, "count": 3}, {"le": "+Inf", "count": 4}])
        );
    }
}
