//! `ragchat eval-answers`: the chat answerer judged against the sources.
//!
//! Each judged question of a BEIR set is asked of the set's own collection
//! through the same code path as the chat endpoints (retrieval, refusal,
//! prompt, model, citation filter). An answer's citations point at sources,
//! and each source at a document, so they can be checked against the
//! judgments:
//! - citation precision: of the documents an answer cites, the share judged
//!   relevant (over answers that cite something);
//! - citation recall: the share of questions whose answer cites at least one
//!   judged-relevant document (a refusal cites none);
//! - refusals of answerable questions, and of off-domain ones: another set's
//!   questions asked of this collection, which it cannot answer;
//! - time to first token.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio::sync::{mpsc, watch};

use super::beir::{load_queries, BeirQuery};
use super::run::{prepare, EvalOptions, Prepared};
use crate::app::App;
use crate::auth::Access;
use crate::chat::answer::grounding::Grounding;
use crate::chat::answer::{run_with_access, Ask, Event, SourceItem};
use crate::error::{Error, ErrorCode, Result};
use crate::ids::DocumentId;

#[derive(Debug, Clone)]
pub struct AnswerEvalOptions {
    pub base: EvalOptions,
    /// Other BEIR sets whose questions are asked of this collection.
    pub off_domain: Vec<PathBuf>,
    /// Questions per set (answerable and each off-domain set); all when None.
    pub limit: Option<usize>,
    pub top_k: Option<i64>,
}

/// One question's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// `answerable`, or the off-domain set's directory name.
    pub set: String,
    pub qid: String,
    pub refused: bool,
    pub grounding: Grounding,
    /// Cited documents (by the set's document ids), judged or not.
    pub cited: Vec<String>,
    /// How many of `cited` are judged relevant.
    pub cited_relevant: usize,
    /// Whether any source given to the model was judged relevant: what a
    /// perfect citer could have cited.
    pub relevant_in_sources: bool,
    pub first_token_ms: Option<f64>,
    pub error: Option<String>,
}

/// The averages a report prints.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub questions: usize,
    pub refused: usize,
    pub errors: usize,
    /// Over answers citing something.
    pub citation_precision: f64,
    /// Over all questions of the set.
    pub citation_recall: f64,
    /// Over all questions: a relevant document among the sources.
    pub relevant_in_sources: f64,
    pub first_token_p50_ms: f64,
    pub first_token_p95_ms: f64,
}

pub fn summarise(outcomes: &[&Outcome]) -> Summary {
    let n = outcomes.len();
    let citing: Vec<&&Outcome> = outcomes.iter().filter(|o| !o.cited.is_empty()).collect();
    let precision = if citing.is_empty() {
        0.0
    } else {
        citing
            .iter()
            .map(|o| o.cited_relevant as f64 / o.cited.len() as f64)
            .sum::<f64>()
            / citing.len() as f64
    };
    let share = |f: &dyn Fn(&Outcome) -> bool| {
        if n == 0 {
            0.0
        } else {
            outcomes.iter().filter(|o| f(o)).count() as f64 / n as f64
        }
    };
    let mut ttft: Vec<f64> = outcomes.iter().filter_map(|o| o.first_token_ms).collect();
    ttft.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        if ttft.is_empty() {
            0.0
        } else {
            ttft[((ttft.len() - 1) as f64 * p).round() as usize]
        }
    };
    Summary {
        questions: n,
        refused: outcomes.iter().filter(|o| o.refused).count(),
        errors: outcomes.iter().filter(|o| o.error.is_some()).count(),
        citation_precision: precision,
        citation_recall: share(&|o| o.cited_relevant > 0),
        relevant_in_sources: share(&|o| o.relevant_in_sources),
        first_token_p50_ms: pct(0.5),
        first_token_p95_ms: pct(0.95),
    }
}

/// The first `limit` questions in a stable order that does not follow the
/// file (a hash of the id), so a limited run is not biased to early ids.
fn sample(mut qs: Vec<BeirQuery>, limit: Option<usize>) -> Vec<BeirQuery> {
    let fnv = |s: &str| {
        s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        })
    };
    qs.sort_by_key(|q| (fnv(&q.id), q.id.clone()));
    if let Some(l) = limit {
        qs.truncate(l);
    }
    qs
}

/// Ingest (if needed), then ask every question; outcomes in order.
pub async fn evaluate_answers(
    app: &Arc<App>,
    opts: &AnswerEvalOptions,
    progress: &(dyn Fn(usize, usize) + Send + Sync),
) -> Result<(Prepared, Vec<Outcome>)> {
    let prepared = prepare(app, &opts.base, &|_, _| {}).await?;
    let judged: Vec<BeirQuery> = prepared
        .dataset
        .queries
        .iter()
        .filter(|q| {
            prepared
                .dataset
                .qrels
                .get(&q.id)
                .is_some_and(|j| j.values().any(|&g| g > 0))
        })
        .cloned()
        .collect();
    let mut questions: Vec<(String, BeirQuery)> = sample(judged, opts.limit)
        .into_iter()
        .map(|q| ("answerable".to_string(), q))
        .collect();
    for dir in &opts.off_domain {
        let path = dir.join("queries.jsonl");
        let qs = load_queries(&path)
            .map_err(|e| Error::new(ErrorCode::BadDataset, format!("{}: {e}", path.display())))?;
        let name = dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string());
        questions.extend(
            sample(qs, opts.limit)
                .into_iter()
                .map(|q| (name.clone(), q)),
        );
    }
    let total = questions.len();
    let mut out = Vec::with_capacity(total);
    // One at a time: time to first token is a latency, and concurrent
    // answers would measure the queue.
    for (i, (set, q)) in questions.into_iter().enumerate() {
        progress(i, total);
        let judged = if set == "answerable" {
            prepared.dataset.qrels.get(&q.id)
        } else {
            None
        };
        out.push(ask_one(app, opts, &prepared, set, &q, judged).await);
    }
    progress(total, total);
    Ok((prepared, out))
}

async fn ask_one(
    app: &Arc<App>,
    opts: &AnswerEvalOptions,
    prepared: &Prepared,
    set: String,
    q: &BeirQuery,
    judged: Option<&HashMap<String, i32>>,
) -> Outcome {
    let (tx, mut rx) = mpsc::channel(256);
    let (_cancel_tx, cancel) = watch::channel(false);
    let ask = Ask {
        conversation_id: None,
        message: q.text.clone(),
        collections: Some(vec![prepared.collection.clone()]),
        top_k: opts.top_k,
    };
    let started = Instant::now();
    let task = tokio::spawn(run_with_access(app.clone(), Access::All, ask, tx, cancel));
    let mut sources: Vec<SourceItem> = Vec::new();
    let mut first_token_ms = None;
    let mut outcome = Outcome {
        set,
        qid: q.id.clone(),
        refused: false,
        grounding: Grounding::NOTHING,
        cited: Vec::new(),
        cited_relevant: 0,
        relevant_in_sources: false,
        first_token_ms: None,
        error: None,
    };
    let name_of = |doc: &str| prepared.doc_names.get(&DocumentId::from(doc)).cloned();
    let relevant = |name: &str| judged.and_then(|j| j.get(name)).is_some_and(|&g| g > 0);
    while let Some(e) = rx.recv().await {
        match e {
            Event::Sources { items } => sources = items,
            Event::Delta { .. } => {
                if first_token_ms.is_none() {
                    first_token_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
                }
            }
            Event::Done {
                citations,
                refused,
                grounding,
                ..
            } => {
                outcome.refused = refused;
                outcome.grounding = grounding;
                let mut cited: Vec<String> = citations
                    .iter()
                    .filter_map(|n| sources.iter().find(|s| s.n == *n))
                    .filter_map(|s| name_of(&s.document_id))
                    .collect();
                cited.dedup();
                let mut seen = std::collections::HashSet::new();
                cited.retain(|d| seen.insert(d.clone()));
                outcome.cited_relevant = cited.iter().filter(|d| relevant(d)).count();
                outcome.cited = cited;
                outcome.relevant_in_sources = sources
                    .iter()
                    .filter_map(|s| name_of(&s.document_id))
                    .any(|d| relevant(&d));
                // A refusal's text is not an answer's first token.
                if !refused {
                    outcome.first_token_ms = first_token_ms;
                }
            }
            Event::Error { code, message, .. } => {
                outcome.error = Some(format!("{code}: {message}"));
            }
            Event::Conversation { .. } => {}
        }
    }
    let _ = task.await;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(refused: bool, cited: &[&str], relevant: usize, ttft: Option<f64>) -> Outcome {
        Outcome {
            set: "answerable".into(),
            qid: "q".into(),
            refused,
            grounding: Grounding::NOTHING,
            cited: cited.iter().map(|s| s.to_string()).collect(),
            cited_relevant: relevant,
            relevant_in_sources: relevant > 0,
            first_token_ms: ttft,
            error: None,
        }
    }

    #[test]
    fn summary_arithmetic() {
        let os = [
            outcome(false, &["a", "b"], 1, Some(10.0)),
            outcome(false, &["c"], 1, Some(30.0)),
            outcome(false, &[], 0, Some(20.0)),
            outcome(true, &[], 0, None),
        ];
        let refs: Vec<&Outcome> = os.iter().collect();
        let s = summarise(&refs);
        assert_eq!(s.questions, 4);
        assert_eq!(s.refused, 1);
        // (1/2 + 1/1) / 2 answers that cite.
        assert!((s.citation_precision - 0.75).abs() < 1e-12);
        // 2 of 4 questions cite a relevant document.
        assert!((s.citation_recall - 0.5).abs() < 1e-12);
        assert_eq!(s.first_token_p50_ms, 20.0);
        assert_eq!(s.first_token_p95_ms, 30.0);
        let empty = summarise(&[]);
        assert_eq!(empty.questions, 0);
        assert_eq!(empty.citation_recall, 0.0);
    }

    #[test]
    fn samples_are_stable_and_not_file_order() {
        let qs: Vec<BeirQuery> = (0..50)
            .map(|i| BeirQuery {
                id: format!("{i}"),
                text: String::new(),
            })
            .collect();
        let a = sample(qs.clone(), Some(10));
        let b = sample(qs, Some(10));
        assert_eq!(a.len(), 10);
        assert_eq!(
            a.iter().map(|q| &q.id).collect::<Vec<_>>(),
            b.iter().map(|q| &q.id).collect::<Vec<_>>()
        );
        assert_ne!(a[0].id, "0");
    }
}
