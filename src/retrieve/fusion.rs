//! Fusion of the dense and lexical rankings into one, and of chunk rankings
//! into document rankings.
//!
//! Two fusion functions (Bruch, Gai and Ingber, "An Analysis of Fusion
//! Functions for Hybrid Retrieval", TOIS 2023):
//! - weighted reciprocal rank fusion, `Σ weight / (k + rank)`, which looks at
//!   ranks only;
//! - a convex combination `alpha · dense + (1 − alpha) · lexical` of scores
//!   normalised per query, by min-max or by the theoretical minimum (cosine
//!   −1, BM25 0) and the observed maximum.
//!
//! Every fused result keeps each signal's rank, raw score and (convex only)
//! normalised score, so a caller can see why it ranked where it did.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorCode, Result};
use crate::ids::{ChunkId, CollectionId, DocumentId};
use crate::index::Hit;

pub use crate::config::{Fusion, Method, Normalization, Weights};

/// A method's name as a request gives it.
pub fn parse_method(s: &str) -> Result<Method> {
    s.parse()
        .map_err(|e: String| Error::new(ErrorCode::InvalidFusion, e))
}

/// A normalisation's name as a request gives it.
pub fn parse_normalization(s: &str) -> Result<Normalization> {
    s.parse()
        .map_err(|e: String| Error::new(ErrorCode::InvalidFusion, e))
}

/// Every problem as a 400 naming the field.
pub fn check(f: &Fusion) -> Result<()> {
    if !(f.rrf_k.is_finite() && f.rrf_k > 0.0 && f.rrf_k <= 10_000.0) {
        return Err(Error::new(
            ErrorCode::InvalidFusion,
            "`rrf_k` must be a number above 0 and at most 10000",
        ));
    }
    if !(f.alpha.is_finite() && (0.0..=1.0).contains(&f.alpha)) {
        return Err(Error::new(
            ErrorCode::InvalidFusion,
            "`alpha` must be a number between 0 and 1",
        ));
    }
    for (name, w) in [("dense", f.weights.dense), ("lexical", f.weights.lexical)] {
        if !(w.is_finite() && (0.0..=100.0).contains(&w)) {
            return Err(Error::new(
                ErrorCode::InvalidWeights,
                format!("`weights.{name}` must be a number between 0 and 100"),
            ));
        }
    }
    Ok(())
}

/// One signal's view of a result. `rank` starts at 1; `normalized` is the
/// score convex fusion used (absent under RRF).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Signal {
    pub rank: usize,
    pub score: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalized: Option<f32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fused {
    pub chunk_id: ChunkId,
    pub document_id: DocumentId,
    pub collection_id: CollectionId,
    pub score: f32,
    pub dense: Option<Signal>,
    pub lexical: Option<Signal>,
}

/// Fuse two rankings (each best first) with `fusion`.
pub fn fuse(dense: &[Hit], lexical: &[Hit], fusion: &Fusion) -> Vec<Fused> {
    match fusion.method {
        Method::Rrf => rrf(dense, lexical, fusion.rrf_k, fusion.weights),
        Method::Convex => convex(dense, lexical, fusion.alpha, fusion.normalization),
    }
}

/// The union of both rankings, each chunk with its signals; a duplicate
/// within one ranking counts once, at its best rank.
fn union(dense: &[Hit], lexical: &[Hit]) -> Vec<Fused> {
    let mut by_id: HashMap<&ChunkId, usize> = HashMap::new();
    let mut out: Vec<Fused> = Vec::with_capacity(dense.len() + lexical.len());
    for (hits, is_dense) in [(dense, true), (lexical, false)] {
        for (i, h) in hits.iter().enumerate() {
            let at = *by_id.entry(&h.chunk_id).or_insert_with(|| {
                out.push(Fused {
                    chunk_id: h.chunk_id.clone(),
                    document_id: h.document_id.clone(),
                    collection_id: h.collection_id.clone(),
                    score: 0.0,
                    dense: None,
                    lexical: None,
                });
                out.len() - 1
            });
            let slot = if is_dense {
                &mut out[at].dense
            } else {
                &mut out[at].lexical
            };
            if slot.is_none() {
                *slot = Some(Signal {
                    rank: i + 1,
                    score: h.score,
                    normalized: None,
                });
            }
        }
    }
    out
}

/// Best first; ties go to the better single rank, then to the chunk id, so
/// results are deterministic.
fn sort(out: &mut [Fused]) {
    let best_rank = |f: &Fused| {
        f.dense
            .map(|s| s.rank)
            .into_iter()
            .chain(f.lexical.map(|s| s.rank))
            .min()
            .unwrap_or(usize::MAX)
    };
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| best_rank(a).cmp(&best_rank(b)))
            .then_with(|| a.chunk_id.cmp(&b.chunk_id))
    });
}

/// Weighted reciprocal rank fusion: `score = Σ weight / (k + rank)` over the
/// signals that returned the chunk.
pub fn rrf(dense: &[Hit], lexical: &[Hit], k: f32, weights: Weights) -> Vec<Fused> {
    let mut out = union(dense, lexical);
    for f in &mut out {
        f.score = f.dense.map_or(0.0, |s| weights.dense / (k + s.rank as f32))
            + f.lexical
                .map_or(0.0, |s| weights.lexical / (k + s.rank as f32));
    }
    sort(&mut out);
    out
}

/// The floor and ceiling a signal's scores are normalised between.
fn bounds(hits: &[Hit], norm: Normalization, theoretical_floor: f32) -> (f32, f32) {
    let max = hits
        .iter()
        .map(|h| h.score)
        .fold(f32::NEG_INFINITY, f32::max);
    let min = hits.iter().map(|h| h.score).fold(f32::INFINITY, f32::min);
    match norm {
        Normalization::MinMax => (min, max),
        // A score under the floor (BM25 never is; a cosine cannot be) would
        // go negative; the observed minimum then is the floor.
        Normalization::TheoreticalMin => (theoretical_floor.min(min), max),
    }
}

fn normalise(score: f32, (lo, hi): (f32, f32)) -> f32 {
    let span = hi - lo;
    if span > f32::EPSILON {
        ((score - lo) / span).clamp(0.0, 1.0)
    } else {
        // One score, or all equal: each is the best the signal offers.
        1.0
    }
}

/// Convex combination of normalised scores. A chunk one signal did not
/// return ranked below everything it did return, so it gets that signal's
/// lowest normalised score: the most its true score can be.
pub fn convex(dense: &[Hit], lexical: &[Hit], alpha: f32, norm: Normalization) -> Vec<Fused> {
    let mut out = union(dense, lexical);
    let db = bounds(dense, norm, -1.0);
    let lb = bounds(lexical, norm, 0.0);
    let floor = |hits: &[Hit], b| {
        hits.iter()
            .map(|h| normalise(h.score, b))
            .fold(f32::INFINITY, f32::min)
    };
    let d_floor = if dense.is_empty() {
        0.0
    } else {
        floor(dense, db)
    };
    let l_floor = if lexical.is_empty() {
        0.0
    } else {
        floor(lexical, lb)
    };
    for f in &mut out {
        let d = f.dense.as_mut().map(|s| {
            let n = normalise(s.score, db);
            s.normalized = Some(n);
            n
        });
        let l = f.lexical.as_mut().map(|s| {
            let n = normalise(s.score, lb);
            s.normalized = Some(n);
            n
        });
        f.score = alpha * d.unwrap_or(d_floor) + (1.0 - alpha) * l.unwrap_or(l_floor);
    }
    sort(&mut out);
    out
}

/// How chunk scores become a document's score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Aggregation {
    /// The document's best chunk.
    Max,
    /// The best chunk plus `decay`ⁱ times the i-th next best one's margin
    /// over the lowest fused score of the query (i ≥ 1), so a document that
    /// matches in several places gains a little. Margins, not raw scores:
    /// under convex fusion every candidate scores well above 0, and summing
    /// raw scores would rank documents by their length.
    Decayed(f32),
}

impl Aggregation {
    pub fn label(&self) -> String {
        match self {
            Aggregation::Max => "max".into(),
            Aggregation::Decayed(d) => format!("decay {d}"),
        }
    }
}

/// Documents ranked by their chunks' fused scores, best first, at most
/// `limit` of them.
pub fn documents(fused: &[Fused], agg: Aggregation, limit: usize) -> Vec<(DocumentId, f32)> {
    let floor = fused.iter().map(|f| f.score).fold(f32::INFINITY, f32::min);
    let mut order: Vec<&DocumentId> = Vec::new();
    let mut per_doc: HashMap<&DocumentId, Vec<f32>> = HashMap::new();
    // `fused` is best first, so each document's scores arrive best first.
    for f in fused {
        per_doc
            .entry(&f.document_id)
            .or_insert_with(|| {
                order.push(&f.document_id);
                Vec::new()
            })
            .push(f.score);
    }
    let mut docs: Vec<(usize, &DocumentId, f32)> = order
        .into_iter()
        .enumerate()
        .map(|(first, d)| {
            let scores = &per_doc[d];
            let score = match agg {
                Aggregation::Max => scores[0],
                Aggregation::Decayed(decay) => {
                    let mut w = decay;
                    let mut sum = scores[0];
                    for s in &scores[1..] {
                        sum += w * (s - floor);
                        w *= decay;
                    }
                    sum
                }
            };
            (first, d, score)
        })
        .collect();
    // Ties keep the order of the documents' best chunks.
    docs.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
    docs.into_iter()
        .take(limit)
        .map(|(_, d, s)| (d.clone(), s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn hit(n: u128, score: f32) -> Hit {
        hit_in(n, 1000 + n, score)
    }

    fn hit_in(n: u128, doc: u128, score: f32) -> Hit {
        Hit {
            chunk_id: Uuid::from_u128(n).into(),
            document_id: Uuid::from_u128(doc).into(),
            collection_id: Uuid::from_u128(7).into(),
            score,
        }
    }

    fn ids(f: &[Fused]) -> Vec<u128> {
        f.iter()
            .map(|x| x.chunk_id.to_uuid().unwrap().as_u128())
            .collect()
    }

    const EQUAL: Weights = Weights {
        dense: 1.0,
        lexical: 1.0,
    };

    #[test]
    fn rrf_arithmetic() {
        // dense: A(1) B(2) C(3); lexical: B(1) D(2) A(3); k = 60, equal weights.
        let dense = [hit(1, 0.9), hit(2, 0.8), hit(3, 0.7)];
        let lexical = [hit(2, 12.0), hit(4, 9.0), hit(1, 3.0)];
        let f = rrf(&dense, &lexical, 60.0, EQUAL);
        // B = 1/62 + 1/61 = 0.032522; A = 1/61 + 1/63 = 0.032266;
        // D = 1/62 = 0.016129; C = 1/63 = 0.015873.
        assert_eq!(ids(&f), vec![2, 1, 4, 3]);
        assert!((f[0].score - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-7);
        assert!((f[1].score - (1.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-7);
        assert!((f[2].score - 1.0 / 62.0).abs() < 1e-7);
        assert_eq!(
            f[0].dense,
            Some(Signal {
                rank: 2,
                score: 0.8,
                normalized: None
            })
        );
        assert_eq!(f[0].lexical.map(|s| (s.rank, s.score)), Some((1, 12.0)));
        assert_eq!(f[2].dense, None);

        // Weighting dense twice as much: A = 2/61 + 1/63 beats B = 2/62 + 1/61,
        // and C = 2/63 beats D = 1/62.
        let w = Weights {
            dense: 2.0,
            lexical: 1.0,
        };
        assert_eq!(ids(&rrf(&dense, &lexical, 60.0, w)), vec![1, 2, 3, 4]);

        // A zero weight keeps the signal's ranks visible but adds nothing.
        let w = Weights {
            dense: 1.0,
            lexical: 0.0,
        };
        let f = rrf(&dense, &lexical, 60.0, w);
        assert_eq!(ids(&f), vec![1, 2, 3, 4]);
        assert_eq!(f[3].score, 0.0);
        assert!(f[3].lexical.is_some());
    }

    #[test]
    fn rrf_single_signal_and_ties() {
        let f = rrf(&[], &[hit(5, 1.0), hit(6, 0.5)], 60.0, EQUAL);
        assert_eq!(ids(&f), vec![5, 6]);
        // Same rank in different signals: equal scores, tie broken by rank then id.
        let f = rrf(&[hit(9, 1.0)], &[hit(8, 1.0)], 60.0, EQUAL);
        assert_eq!(f[0].score, f[1].score);
        assert_eq!(ids(&f), vec![8, 9]);
        // A duplicate within one signal counts once, at its best rank.
        let f = rrf(&[hit(1, 1.0), hit(1, 0.5)], &[], 60.0, EQUAL);
        assert_eq!(f.len(), 1);
        assert!((f[0].score - 1.0 / 61.0).abs() < 1e-7);
    }

    #[test]
    fn convex_min_max_arithmetic() {
        // dense cosines A .9 B .7 C .5 → 1, .5, 0; BM25 B 10 D 6 A 2 → 1, .5, 0.
        let dense = [hit(1, 0.9), hit(2, 0.7), hit(3, 0.5)];
        let lexical = [hit(2, 10.0), hit(4, 6.0), hit(1, 2.0)];
        let f = convex(&dense, &lexical, 0.5, Normalization::MinMax);
        // A = .5·1 + .5·0 = .5; B = .5·.5 + .5·1 = .75; D = .5·0 (floor) + .5·.5
        // = .25; C = .5·0 + .5·0 (floor) = 0.
        assert_eq!(ids(&f), vec![2, 1, 4, 3]);
        let scores: Vec<f32> = f.iter().map(|x| x.score).collect();
        for (got, want) in scores.iter().zip([0.75, 0.5, 0.25, 0.0]) {
            assert!((got - want).abs() < 1e-6, "{scores:?}");
        }
        assert_eq!(f[0].dense.and_then(|s| s.normalized), Some(0.5));
        assert_eq!(f[0].lexical.and_then(|s| s.normalized), Some(1.0));
        assert_eq!(f[0].lexical.map(|s| s.score), Some(10.0));
        // alpha 1 is the dense order, alpha 0 the lexical one (then C and
        // D tie at 0, and D's better single rank puts it first).
        assert_eq!(
            ids(&convex(&dense, &lexical, 1.0, Normalization::MinMax)),
            [1, 2, 4, 3]
        );
        assert_eq!(
            ids(&convex(&dense, &lexical, 0.0, Normalization::MinMax))[..3],
            [2, 4, 1]
        );
    }

    #[test]
    fn convex_theoretical_min_keeps_weak_lists_weak() {
        // A flat dense list of weak cosines: min-max stretches the best to 1,
        // the theoretical floor (−1) keeps it near the others.
        let dense = [hit(1, 0.21), hit(2, 0.2)];
        let lexical = [hit(2, 8.0), hit(3, 4.0)];
        let mm = convex(&dense, &lexical, 0.5, Normalization::MinMax);
        let tmm = convex(&dense, &lexical, 0.5, Normalization::TheoreticalMin);
        let n = |f: &[Fused], id: u128| {
            f.iter()
                .find(|x| x.chunk_id.to_uuid().unwrap().as_u128() == id)
                .and_then(|x| x.dense)
                .and_then(|s| s.normalized)
                .unwrap()
        };
        assert_eq!(n(&mm, 1), 1.0);
        assert_eq!(n(&mm, 2), 0.0);
        // (0.21 + 1) / (0.21 + 1) = 1 and (0.2 + 1) / 1.21 = 0.9917.
        assert!((n(&tmm, 2) - 1.2 / 1.21).abs() < 1e-6);
        // BM25's floor is 0: 4 / 8.
        let lex3 = tmm
            .iter()
            .find(|x| x.chunk_id.to_uuid().unwrap().as_u128() == 3)
            .unwrap();
        assert_eq!(lex3.lexical.and_then(|s| s.normalized), Some(0.5));
        // Under tmm B (in both) wins; under min-max, A's stretched 1 ties it.
        assert_eq!(ids(&tmm)[0], 2);
    }

    #[test]
    fn convex_with_one_signal_or_equal_scores() {
        let f = convex(&[], &[hit(1, 3.0), hit(2, 1.0)], 0.5, Normalization::MinMax);
        assert_eq!(ids(&f), vec![1, 2]);
        // All-equal scores normalise to 1, not to a division by zero.
        let f = convex(&[hit(1, 0.4), hit(2, 0.4)], &[], 1.0, Normalization::MinMax);
        assert!(f.iter().all(|x| x.score == 1.0));
        assert!(f.iter().all(|x| x.score.is_finite()));
    }

    #[test]
    fn fusion_checks_and_parses() {
        let mut f = Fusion::PLAIN_RRF;
        assert!(check(&f).is_ok());
        f.alpha = 1.5;
        assert!(check(&f).is_err());
        f.alpha = f32::NAN;
        assert!(check(&f).is_err());
        f.alpha = 0.3;
        f.rrf_k = 0.0;
        assert!(check(&f).is_err());
        assert_eq!(parse_method("Convex").unwrap(), Method::Convex);
        let e = parse_method("borda").unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidFusion);
        assert_eq!(
            parse_normalization("tmm").unwrap(),
            Normalization::TheoreticalMin
        );
        let json = serde_json::to_value(Fusion::PLAIN_RRF).unwrap();
        assert_eq!(json["method"], "rrf");
        assert_eq!(json["normalization"], "min_max");
    }

    #[test]
    fn documents_rank_at_their_best_chunk_or_with_decay() {
        // Doc 20 has the best chunk; doc 10 the next two; doc 30 the last.
        let fused = rrf(
            &[
                hit_in(1, 20, 0.95),
                hit_in(2, 10, 0.9),
                hit_in(3, 10, 0.8),
                hit_in(4, 30, 0.7),
            ],
            &[],
            60.0,
            EQUAL,
        );
        let doc = |d: &[(DocumentId, f32)]| -> Vec<u128> {
            d.iter()
                .map(|(id, _)| id.to_uuid().unwrap().as_u128())
                .collect()
        };
        assert_eq!(
            doc(&documents(&fused, Aggregation::Max, 10)),
            vec![20, 10, 30]
        );
        // The floor is 1/64: doc 10 = 1/62 + 1 × (1/63 − 1/64) = 0.016377,
        // still under doc 20's 1/61 = 0.016393: a second chunk adds only its
        // margin over the weakest candidate…
        let d = documents(&fused, Aggregation::Decayed(1.0), 10);
        assert_eq!(doc(&d), vec![20, 10, 30]);
        assert!((d[1].1 - (1.0 / 62.0 + (1.0 / 63.0 - 1.0 / 64.0))).abs() < 1e-7);
        // …while a close second chunk lifts a document past a single one.
        let close = convex(
            &[
                hit_in(1, 20, 0.9),
                hit_in(2, 10, 0.89),
                hit_in(3, 10, 0.88),
                hit_in(4, 30, 0.1),
            ],
            &[],
            1.0,
            Normalization::MinMax,
        );
        let d = documents(&close, Aggregation::Decayed(0.5), 10);
        assert_eq!(doc(&d), vec![10, 20, 30]);
        assert_eq!(documents(&fused, Aggregation::Max, 1).len(), 1);
    }
}
