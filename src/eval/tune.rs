//! `ragchat eval --tune`: choose fusion parameters from judged queries, and
//! report what the choice is worth on queries it was not chosen on.
//!
//! Each query is searched once per signal; every candidate fusion is then
//! applied to the same two rankings in memory, so a sweep costs little more
//! than one run. The judged queries are split into folds; for each fold the
//! parameters that score best on the other folds are applied to it, and the
//! cross-validated score is the mean over every query of its held-out score.
//! That number, not the best score on all queries (which has seen the
//! answers), is the one to compare with the defaults.

use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::{self, StreamExt};

use super::metrics::{mrr_at_k, ndcg_at_k, recall_at_k, Scores};
use super::run::{Prepared, DOCS_PER_QUERY};
use crate::app::App;
use crate::config::{Fusion, Method, Normalization, Weights};
use crate::error::Result;
use crate::index::Hit;
use crate::retrieve::fusion::{self, Aggregation};
use crate::retrieve::{signals, Mode};

/// One judged query's two rankings.
pub struct QuerySignals {
    pub qid: String,
    pub dense: Vec<Hit>,
    pub lexical: Vec<Hit>,
}

/// Search every judged query (that has a relevant document) once per signal.
pub async fn collect(
    app: &Arc<App>,
    prepared: &Prepared,
    candidates: usize,
    concurrency: usize,
) -> Result<Vec<QuerySignals>> {
    let cols = [prepared.collection_id.clone()];
    let judged = |qid: &str| {
        prepared
            .dataset
            .qrels
            .get(qid)
            .is_some_and(|j| j.values().any(|&g| g > 0))
    };
    let mut out: Vec<QuerySignals> =
        stream::iter(prepared.dataset.queries.iter().filter(|q| judged(&q.id)))
            .map(|q| {
                let cols = &cols;
                async move {
                    let (dense, lexical) =
                        signals(app, &q.text, cols, Mode::Hybrid, candidates).await?;
                    Ok::<_, crate::error::Error>(QuerySignals {
                        qid: q.id.clone(),
                        dense,
                        lexical,
                    })
                }
            })
            .buffered(concurrency.max(1))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_>>()?;
    // Sums in a fixed order keep reported floats identical between runs.
    out.sort_by(|a, b| a.qid.cmp(&b.qid));
    Ok(out)
}

/// Per-query scores of one way of ranking, in `QuerySignals` order.
#[derive(Debug, Clone)]
pub struct PerQuery {
    pub ndcg: Vec<f64>,
    pub recall: Vec<f64>,
    pub mrr: Vec<f64>,
}

impl PerQuery {
    fn mean_over(&self, idx: impl Iterator<Item = usize> + Clone) -> Scores {
        let n = idx.clone().count();
        let avg = |v: &[f64]| {
            if n == 0 {
                0.0
            } else {
                idx.clone().map(|i| v[i]).sum::<f64>() / n as f64
            }
        };
        Scores {
            ndcg_at_10: avg(&self.ndcg),
            recall_at_100: avg(&self.recall),
            mrr_at_10: avg(&self.mrr),
            queries: n,
        }
    }

    pub fn mean(&self) -> Scores {
        self.mean_over(0..self.ndcg.len())
    }
}

/// How one query's two rankings become a document ranking.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ranker {
    Dense,
    Lexical,
    Fused(Fusion, Aggregation),
}

impl Ranker {
    pub fn label(&self) -> String {
        match self {
            Ranker::Dense => "dense".into(),
            Ranker::Lexical => "lexical".into(),
            Ranker::Fused(f, Aggregation::Max) => f.label(),
            Ranker::Fused(f, a) => format!("{}, {}", f.label(), a.label()),
        }
    }
}

/// Score `ranker` on every query.
pub fn score(prepared: &Prepared, queries: &[QuerySignals], ranker: Ranker) -> PerQuery {
    let mut out = PerQuery {
        ndcg: Vec::with_capacity(queries.len()),
        recall: Vec::with_capacity(queries.len()),
        mrr: Vec::with_capacity(queries.len()),
    };
    for q in queries {
        let (fused, agg) = match ranker {
            Ranker::Dense => (
                fusion::fuse(&q.dense, &[], &Fusion::PLAIN_RRF),
                Aggregation::Max,
            ),
            Ranker::Lexical => (
                fusion::fuse(&[], &q.lexical, &Fusion::PLAIN_RRF),
                Aggregation::Max,
            ),
            Ranker::Fused(f, agg) => (fusion::fuse(&q.dense, &q.lexical, &f), agg),
        };
        let ranked: Vec<String> = fusion::documents(&fused, agg, usize::MAX)
            .into_iter()
            .filter_map(|(d, _)| prepared.doc_names.get(&d).cloned())
            .take(DOCS_PER_QUERY)
            .collect();
        let judged = &prepared.dataset.qrels[&q.qid];
        out.ndcg.push(ndcg_at_k(&ranked, judged, 10));
        out.recall.push(recall_at_k(&ranked, judged, 100));
        out.mrr.push(mrr_at_k(&ranked, judged, 10));
    }
    out
}

/// The fusions a sweep tries, the reference (plain RRF) first so it wins
/// ties. Convex alphas in steps of 0.05 with both normalisations; RRF with
/// k from 5 to 200 and the dense weight from half to twice the lexical one.
pub fn grid() -> Vec<Fusion> {
    let mut out = vec![Fusion::PLAIN_RRF];
    for k in [5.0, 10.0, 20.0, 40.0, 60.0, 100.0, 200.0] {
        for dense in [0.5, 0.67, 0.8, 1.0, 1.25, 1.5, 2.0] {
            let f = Fusion {
                rrf_k: k,
                weights: Weights {
                    dense,
                    lexical: 1.0,
                },
                ..Fusion::PLAIN_RRF
            };
            if f != Fusion::PLAIN_RRF {
                out.push(f);
            }
        }
    }
    for normalization in [Normalization::MinMax, Normalization::TheoreticalMin] {
        for step in 0..=20 {
            out.push(Fusion {
                method: Method::Convex,
                alpha: step as f32 / 20.0,
                normalization,
                ..Fusion::PLAIN_RRF
            });
        }
    }
    out
}

/// The fold of each query (by position): queries are dealt round-robin in
/// the order of a hash of their id, so folds do not follow file order.
pub fn folds(queries: &[QuerySignals], k: usize) -> Vec<usize> {
    let fnv = |s: &str| {
        s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        })
    };
    let mut order: Vec<usize> = (0..queries.len()).collect();
    order.sort_by_key(|&i| (fnv(&queries[i].qid), i));
    let mut fold = vec![0; queries.len()];
    for (n, i) in order.into_iter().enumerate() {
        fold[i] = n % k.max(1);
    }
    fold
}

/// What cross-validation found.
pub struct CrossValidated {
    /// The mean over all queries of each query's held-out score.
    pub scores: Scores,
    /// Each fold's choice (index into the grid).
    pub chosen: Vec<usize>,
}

/// For each fold, choose the grid entry with the best mean nDCG@10 on the
/// other folds and score the fold with it.
pub fn cross_validate(per: &[PerQuery], fold: &[usize], k: usize) -> CrossValidated {
    let n = fold.len();
    let mut held = PerQuery {
        ndcg: vec![0.0; n],
        recall: vec![0.0; n],
        mrr: vec![0.0; n],
    };
    let mut chosen = Vec::with_capacity(k);
    for f in 0..k {
        let train = (0..n).filter(|&i| fold[i] != f);
        let best = best_by_ndcg(per, train);
        chosen.push(best);
        for i in (0..n).filter(|&i| fold[i] == f) {
            held.ndcg[i] = per[best].ndcg[i];
            held.recall[i] = per[best].recall[i];
            held.mrr[i] = per[best].mrr[i];
        }
    }
    CrossValidated {
        scores: held.mean(),
        chosen,
    }
}

/// The entry with the highest mean nDCG@10 over `idx`; the first on ties.
pub fn best_by_ndcg(per: &[PerQuery], idx: impl Iterator<Item = usize> + Clone) -> usize {
    let mut best = 0;
    let mut best_score = f64::NEG_INFINITY;
    for (g, p) in per.iter().enumerate() {
        let s = p.mean_over(idx.clone()).ndcg_at_10;
        if s > best_score + 1e-12 {
            best = g;
            best_score = s;
        }
    }
    best
}

/// Mean nDCG@10 per entry, for ranking the grid in a report.
pub fn ranked_entries(per: &[PerQuery]) -> Vec<(usize, Scores)> {
    let mut v: Vec<(usize, Scores)> = per.iter().map(|p| p.mean()).enumerate().collect();
    v.sort_by(|a, b| {
        b.1.ndcg_at_10
            .total_cmp(&a.1.ndcg_at_10)
            .then(a.0.cmp(&b.0))
    });
    v
}

/// Paired comparison of two rankers over the same queries: how many queries
/// each wins on nDCG@10.
pub fn wins(a: &PerQuery, b: &PerQuery) -> (usize, usize) {
    let better = a.ndcg.iter().zip(&b.ndcg).filter(|(x, y)| x > y).count();
    let worse = a.ndcg.iter().zip(&b.ndcg).filter(|(x, y)| x < y).count();
    (better, worse)
}

/// Build the folds and the grid's per-query scores.
pub fn sweep(
    prepared: &Prepared,
    queries: &[QuerySignals],
    grid: &[Fusion],
    agg: Aggregation,
) -> Vec<PerQuery> {
    // Fusion is CPU work on rankings already in memory: split the grid over
    // the cores.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = grid.len().div_ceil(threads).max(1);
    let mut out: HashMap<usize, PerQuery> = HashMap::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = grid
            .chunks(chunk)
            .enumerate()
            .map(|(c, part)| {
                s.spawn(move || {
                    part.iter()
                        .enumerate()
                        .map(|(i, f)| {
                            (
                                c * chunk + i,
                                score(prepared, queries, Ranker::Fused(*f, agg)),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            if let Ok(v) = h.join() {
                out.extend(v);
            }
        }
    });
    (0..grid.len())
        .map(|i| {
            out.remove(&i)
                .unwrap_or_else(|| score(prepared, queries, Ranker::Fused(grid[i], agg)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per(ndcg: &[f64]) -> PerQuery {
        PerQuery {
            ndcg: ndcg.to_vec(),
            recall: ndcg.to_vec(),
            mrr: ndcg.to_vec(),
        }
    }

    #[test]
    fn cross_validation_scores_each_fold_with_what_the_others_chose() {
        // Two entries, four queries in two folds (0, 1, 0, 1). Entry 1 wins
        // fold 0's queries, entry 0 fold 1's, by a lot; the other fold then
        // decides, so each fold gets the entry that is worse for it.
        let a = per(&[0.0, 1.0, 0.0, 1.0]);
        let b = per(&[1.0, 0.0, 1.0, 0.0]);
        let fold = [0, 1, 0, 1];
        let cv = cross_validate(&[a.clone(), b.clone()], &fold, 2);
        // Fold 0 is scored with the choice on fold 1 (entry a, 0 on fold 0).
        assert_eq!(cv.chosen, vec![0, 1]);
        assert_eq!(cv.scores.ndcg_at_10, 0.0);
        assert_eq!(cv.scores.queries, 4);
        // The best on all queries ties; the first entry wins ties.
        assert_eq!(best_by_ndcg(&[a.clone(), b.clone()], 0..4), 0);
        // An entry better everywhere is chosen in every fold.
        let a = per(&[0.0, 0.5, 0.0, 0.5]);
        let b = per(&[0.5, 0.0, 0.5, 0.0]);
        let c = per(&[1.0, 1.0, 1.0, 0.75]);
        let cv = cross_validate(&[a, b, c], &fold, 2);
        assert_eq!(cv.chosen, vec![2, 2]);
        assert!((cv.scores.ndcg_at_10 - 0.9375).abs() < 1e-12);
    }

    #[test]
    fn folds_are_balanced_and_stable() {
        let qs: Vec<QuerySignals> = (0..23)
            .map(|i| QuerySignals {
                qid: format!("q{i}"),
                dense: vec![],
                lexical: vec![],
            })
            .collect();
        let f = folds(&qs, 5);
        assert_eq!(f, folds(&qs, 5));
        for k in 0..5 {
            let n = f.iter().filter(|&&x| x == k).count();
            assert!((4..=5).contains(&n), "fold {k} has {n}");
        }
        // Not simply file order.
        assert_ne!(f[..5], [0, 1, 2, 3, 4]);
    }

    #[test]
    fn the_grid_starts_with_plain_rrf_and_has_no_duplicates() {
        let g = grid();
        assert_eq!(g[0], Fusion::PLAIN_RRF);
        for (i, a) in g.iter().enumerate() {
            assert!(g[i + 1..].iter().all(|b| b != a), "{a:?} twice");
        }
        assert!(g
            .iter()
            .any(|f| f.method == Method::Convex && f.alpha == 1.0));
    }

    #[test]
    fn wins_count_each_side() {
        assert_eq!(wins(&per(&[1.0, 0.5, 0.2]), &per(&[0.5, 0.5, 0.3])), (1, 1));
    }
}
