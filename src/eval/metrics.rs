//! Ranking metrics with the same definitions as `trec_eval` (and so `pytrec_eval`,
//! which BEIR reports), so our numbers can be compared with published ones.
//!
//! Rankings are taken in the order given: unlike `trec_eval` we do not re-sort by
//! score, because the service already returns documents best-first.
//!
//! A document id that appears more than once in a ranking counts only at its
//! first occurrence; later copies are dropped before the cut-off is applied, so
//! they neither earn gain again nor push other documents down. Otherwise a
//! ranking that repeats a relevant document could score above 1.
//!
//! Grades `<= 0` are not relevant: they earn no gain and do not count towards
//! recall or the ideal ranking.

use std::collections::{HashMap, HashSet};

/// Query id → document id → graded relevance.
pub type Qrels = HashMap<String, HashMap<String, i32>>;

/// Averages over the judged queries, in the cut-offs BEIR reports.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Scores {
    pub ndcg_at_10: f64,
    pub recall_at_100: f64,
    pub mrr_at_10: f64,
    /// Queries averaged over: those in the qrels with at least one relevant doc.
    pub queries: usize,
}

/// trec_eval's `ndcg_cut.k`: linear gain (the grade itself, not `2^g - 1`),
/// discount `1 / log2(rank + 1)`, ideal DCG from the judged grades sorted
/// descending and cut at `k`. 0 when the query has no relevant document.
pub fn ndcg_at_k(ranked: &[String], judged: &HashMap<String, i32>, k: usize) -> f64 {
    let mut ideal: Vec<i32> = judged.values().copied().filter(|&g| g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg = dcg(ideal.into_iter().take(k));
    if idcg == 0.0 {
        return 0.0;
    }
    let gains = top_k_unique(ranked, k).map(|id| judged.get(id).copied().unwrap_or(0));
    dcg(gains) / idcg
}

/// Fraction of the relevant documents that appear in the top `k`.
/// 0 when the query has no relevant document.
pub fn recall_at_k(ranked: &[String], judged: &HashMap<String, i32>, k: usize) -> f64 {
    let relevant = judged.values().filter(|&&g| g > 0).count();
    if relevant == 0 {
        return 0.0;
    }
    let hits = top_k_unique(ranked, k)
        .filter(|id| is_relevant(judged, id))
        .count();
    hits as f64 / relevant as f64
}

/// Reciprocal rank of the first relevant document in the top `k`, else 0.
pub fn mrr_at_k(ranked: &[String], judged: &HashMap<String, i32>, k: usize) -> f64 {
    top_k_unique(ranked, k)
        .position(|id| is_relevant(judged, id))
        .map_or(0.0, |i| 1.0 / (i + 1) as f64)
}

/// Averages the metrics over every query in `qrels` that has a relevant
/// document. A query missing from `run` scores 0 rather than being skipped, so
/// a retriever cannot look better by failing on hard queries; run entries for
/// queries not in `qrels` are ignored.
pub fn evaluate(run: &HashMap<String, Vec<String>>, qrels: &Qrels) -> Scores {
    // HashMap order changes from process to process; summing in a fixed order
    // keeps the reported floats bit-identical between runs.
    let mut qids: Vec<&String> = qrels
        .iter()
        .filter(|(_, judged)| judged.values().any(|&g| g > 0))
        .map(|(qid, _)| qid)
        .collect();
    qids.sort_unstable();

    let mut total = Scores::default();
    for qid in &qids {
        let judged = &qrels[*qid];
        let ranked = run.get(*qid).map_or(&[][..], Vec::as_slice);
        total.ndcg_at_10 += ndcg_at_k(ranked, judged, 10);
        total.recall_at_100 += recall_at_k(ranked, judged, 100);
        total.mrr_at_10 += mrr_at_k(ranked, judged, 10);
    }

    let n = qids.len();
    if n == 0 {
        return total;
    }
    Scores {
        ndcg_at_10: total.ndcg_at_10 / n as f64,
        recall_at_100: total.recall_at_100 / n as f64,
        mrr_at_10: total.mrr_at_10 / n as f64,
        queries: n,
    }
}

fn is_relevant(judged: &HashMap<String, i32>, id: &str) -> bool {
    judged.get(id).is_some_and(|&g| g > 0)
}

/// The first `k` distinct ids, in ranking order.
fn top_k_unique(ranked: &[String], k: usize) -> impl Iterator<Item = &str> {
    let mut seen = HashSet::new();
    ranked
        .iter()
        .map(String::as_str)
        .filter(move |id| seen.insert(*id))
        .take(k)
}

/// Gains are in rank order, so index `i` is rank `i + 1`, discounted by
/// `log2(i + 2)`.
fn dcg(gains: impl Iterator<Item = i32>) -> f64 {
    gains
        .enumerate()
        .filter(|&(_, g)| g > 0)
        .map(|(i, g)| f64::from(g) / (i as f64 + 2.0).log2())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPS: f64 = 1e-12;

    fn ids(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    fn judged(xs: &[(&str, i32)]) -> HashMap<String, i32> {
        xs.iter().map(|&(d, g)| (d.to_string(), g)).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < EPS
    }

    #[test]
    fn perfect_ranking_scores_one() {
        let j = judged(&[("a", 3), ("b", 2), ("c", 1)]);
        let r = ids(&["a", "b", "c"]);
        assert!(close(ndcg_at_k(&r, &j, 10), 1.0));
        assert!(close(recall_at_k(&r, &j, 100), 1.0));
        assert!(close(mrr_at_k(&r, &j, 10), 1.0));
    }

    #[test]
    fn graded_ndcg_by_hand() {
        // Judged a=3, b=2, c=1, d=0; ranking c, x (unjudged), a, b, d.
        // DCG  = 1/log2(2) + 0 + 3/log2(4) + 2/log2(5) + 0
        //      = 1 + 0 + 1.5 + 0.861353116... = 3.361353116146786
        // IDCG = 3/log2(2) + 2/log2(3) + 1/log2(4)
        //      = 3 + 1.261859507... + 0.5 = 4.761859507142915
        // nDCG = 3.361353116146786 / 4.761859507142915 = 0.7058908628246313
        let j = judged(&[("a", 3), ("b", 2), ("c", 1), ("d", 0)]);
        let r = ids(&["c", "x", "a", "b", "d"]);
        assert!(close(ndcg_at_k(&r, &j, 10), 0.7058908628246313));

        // Cut at 2: DCG = 1/log2(2) = 1; IDCG = 3 + 2/log2(3) = 4.261859507...
        // nDCG = 1 / 4.261859507142915 = 0.23463936301137822
        assert!(close(ndcg_at_k(&r, &j, 2), 0.23463936301137822));
    }

    #[test]
    fn gain_is_linear_not_exponential() {
        // Grades 2 then 1, ranked reversed.
        // Linear:      DCG = 1 + 2/log2(3) = 2.261859507; IDCG = 2 + 1/log2(3) = 2.630929754
        //              nDCG = 0.859718...
        // Exponential: DCG = 1 + 3/log2(3) = 2.892789261; IDCG = 3 + 1/log2(3) = 3.630929754
        //              nDCG = 0.796707...
        let j = judged(&[("a", 2), ("b", 1)]);
        let r = ids(&["b", "a"]);
        let linear = (1.0 + 2.0 / 3f64.log2()) / (2.0 + 1.0 / 3f64.log2());
        assert!(close(ndcg_at_k(&r, &j, 10), linear));
        assert!((linear - 0.8597).abs() < 1e-4);
    }

    #[test]
    fn no_relevant_docs_scores_zero() {
        let j = judged(&[("a", 0), ("b", -1)]);
        let r = ids(&["a", "b"]);
        assert_eq!(ndcg_at_k(&r, &j, 10), 0.0);
        assert_eq!(recall_at_k(&r, &j, 10), 0.0);
        assert_eq!(mrr_at_k(&r, &j, 10), 0.0);
    }

    #[test]
    fn recall_counts_only_top_k() {
        // Relevant: a, b, c (d is graded 0). Top 3 of (a, x, b, c) holds a, b → 2/3;
        // top 4 holds all three → 1; top 1 holds a → 1/3.
        let j = judged(&[("a", 1), ("b", 2), ("c", 1), ("d", 0)]);
        let r = ids(&["a", "x", "b", "c", "d"]);
        assert!(close(recall_at_k(&r, &j, 3), 2.0 / 3.0));
        assert!(close(recall_at_k(&r, &j, 4), 1.0));
        assert!(close(recall_at_k(&r, &j, 1), 1.0 / 3.0));
        assert_eq!(recall_at_k(&r, &j, 0), 0.0);
    }

    #[test]
    fn mrr_is_first_relevant_within_k() {
        // First relevant doc (b) is at rank 3 → 1/3; outside a cut of 2 → 0.
        // d at rank 2 is graded 0, so it does not count.
        let j = judged(&[("b", 1), ("c", 2), ("d", 0)]);
        let r = ids(&["x", "d", "b", "c"]);
        assert!(close(mrr_at_k(&r, &j, 10), 1.0 / 3.0));
        assert_eq!(mrr_at_k(&r, &j, 2), 0.0);
    }

    #[test]
    fn duplicates_count_once() {
        // Repeats of a relevant doc: with duplicates kept, recall would be 3/2 and
        // nDCG (1 + 1/log2(3) + 1/2) / (1 + 1/log2(3)) > 1. Deduplicated, only a
        // counts: recall 1/2, nDCG 1 / (1 + 0.630929754) = 0.613147...
        let j = judged(&[("a", 1), ("b", 1)]);
        let r = ids(&["a", "a", "a"]);
        assert!(close(recall_at_k(&r, &j, 10), 0.5));
        assert!(close(
            ndcg_at_k(&r, &j, 10),
            1.0 / (1.0 + 1.0 / 3f64.log2())
        ));

        // Repeats of an irrelevant doc do not take up ranks: b moves to rank 2,
        // so MRR = 1/2 (not 1/3), and it is inside a cut of 2.
        let j = judged(&[("b", 1)]);
        let r = ids(&["x", "x", "b"]);
        assert!(close(mrr_at_k(&r, &j, 10), 0.5));
        assert!(close(recall_at_k(&r, &j, 2), 1.0));
    }

    #[test]
    fn evaluate_averages_over_judged_queries() {
        // q1: perfect → 1 on every metric. q2: missing from the run → 0.
        // q3: no relevant docs → not averaged. q9: not judged → ignored.
        // Means over {q1, q2}: (1 + 0) / 2 = 0.5.
        let qrels: Qrels = [
            ("q1", judged(&[("a", 1)])),
            ("q2", judged(&[("b", 2), ("c", 1)])),
            ("q3", judged(&[("d", 0)])),
        ]
        .into_iter()
        .map(|(q, j)| (q.to_string(), j))
        .collect();
        let run: HashMap<String, Vec<String>> = [
            ("q1".to_string(), ids(&["a", "z"])),
            ("q3".to_string(), ids(&["d"])),
            ("q9".to_string(), ids(&["a"])),
        ]
        .into_iter()
        .collect();

        let s = evaluate(&run, &qrels);
        assert_eq!(s.queries, 2);
        assert!(close(s.ndcg_at_10, 0.5));
        assert!(close(s.recall_at_100, 0.5));
        assert!(close(s.mrr_at_10, 0.5));
    }

    #[test]
    fn evaluate_with_no_judged_queries_is_zero() {
        let s = evaluate(&HashMap::new(), &Qrels::new());
        assert_eq!(s, Scores::default());
    }
}
