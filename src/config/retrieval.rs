//! `[retrieval]`: hybrid search and its reciprocal rank fusion.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetrievalSettings {
    /// `rrf` or `convex`; a collection tuned by `ragchat eval --tune --store`
    /// uses its own values instead, and a request may set its own.
    pub fusion: Method,
    /// Convex fusion: the dense signal's share (lexical gets 1 − alpha).
    pub alpha: f32,
    /// Convex fusion: `min_max` or `theoretical_min`.
    pub normalization: Normalization,
    pub rrf_k: f32,
    /// Chunks each signal contributes before fusion.
    pub candidates: usize,
    pub default_top_k: usize,
    pub max_top_k: usize,
    pub dense_weight: f32,
    pub lexical_weight: f32,
}

impl Default for RetrievalSettings {
    fn default() -> Self {
        Self {
            // Chosen on Cranfield, ADI and SciFact: with any one of them held
            // out, the best on the other two still beats plain RRF on it
            // (docs/EVALUATION.md, "Fusion").
            fusion: Method::Convex,
            alpha: 0.85,
            normalization: Normalization::TheoreticalMin,
            rrf_k: 60.0,
            candidates: 100,
            default_top_k: 10,
            max_top_k: 100,
            dense_weight: 1.0,
            lexical_weight: 1.0,
        }
    }
}

impl RetrievalSettings {
    /// The configured fusion, before any collection's or request's values.
    pub fn fusion(&self) -> Fusion {
        Fusion {
            method: self.fusion,
            rrf_k: self.rrf_k,
            weights: Weights {
                dense: self.dense_weight,
                lexical: self.lexical_weight,
            },
            alpha: self.alpha,
            normalization: self.normalization,
        }
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if !(self.rrf_k.is_finite() && self.rrf_k > 0.0) {
            return Err(invalid("retrieval.rrf_k", "must be a positive number"));
        }
        if !(self.alpha.is_finite() && (0.0..=1.0).contains(&self.alpha)) {
            return Err(invalid(
                "retrieval.alpha",
                "must be a number between 0 and 1",
            ));
        }
        if self.max_top_k == 0 || self.max_top_k > 1000 {
            return Err(invalid("retrieval.max_top_k", "must be between 1 and 1000"));
        }
        if self.default_top_k == 0 || self.default_top_k > self.max_top_k {
            return Err(invalid(
                "retrieval.default_top_k",
                "must be between 1 and retrieval.max_top_k",
            ));
        }
        if self.candidates == 0 || self.candidates > 10_000 {
            return Err(invalid(
                "retrieval.candidates",
                "must be between 1 and 10000",
            ));
        }
        for (key, w) in [
            ("retrieval.dense_weight", self.dense_weight),
            ("retrieval.lexical_weight", self.lexical_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return Err(invalid(key, "must be a non-negative number"));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Weights {
    pub dense: f32,
    pub lexical: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Weighted reciprocal rank fusion.
    Rrf,
    /// A convex combination of normalised scores.
    Convex,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// `(s − min) / (max − min)` over the scores the signal returned.
    MinMax,
    /// `(s − floor) / (max − floor)` with the score's theoretical floor:
    /// −1 for cosine similarity, 0 for BM25. Unlike min-max it does not
    /// stretch a flat list of weak scores to fill [0, 1].
    TheoreticalMin,
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "rrf" => Ok(Method::Rrf),
            "convex" => Ok(Method::Convex),
            other => Err(format!("unknown fusion `{other}`: expected rrf or convex")),
        }
    }
}

impl std::str::FromStr for Normalization {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "min_max" | "minmax" => Ok(Normalization::MinMax),
            "theoretical_min" | "tmm" => Ok(Normalization::TheoreticalMin),
            other => Err(format!(
                "unknown normalization `{other}`: expected min_max or theoretical_min"
            )),
        }
    }
}

/// Everything that decides how two rankings become one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Fusion {
    pub method: Method,
    /// RRF's k: larger flattens the difference between ranks.
    pub rrf_k: f32,
    /// RRF's weight of each signal.
    pub weights: Weights,
    /// Convex: the dense signal's share, 0 to 1; lexical gets `1 − alpha`.
    pub alpha: f32,
    /// Convex: how each signal's scores are brought to [0, 1].
    pub normalization: Normalization,
}

impl Fusion {
    /// Plain RRF: k = 60, equal weights (the reference every change is
    /// measured against).
    pub const PLAIN_RRF: Fusion = Fusion {
        method: Method::Rrf,
        rrf_k: 60.0,
        weights: Weights {
            dense: 1.0,
            lexical: 1.0,
        },
        alpha: 0.5,
        normalization: Normalization::MinMax,
    };

    /// A short label for tables: `rrf k=60 w=1:1`, `convex tmm a=0.70`.
    pub fn label(&self) -> String {
        match self.method {
            Method::Rrf => format!(
                "rrf k={} w={}:{}",
                self.rrf_k, self.weights.dense, self.weights.lexical
            ),
            Method::Convex => format!(
                "convex {} a={:.2}",
                match self.normalization {
                    Normalization::MinMax => "minmax",
                    Normalization::TheoreticalMin => "tmm",
                },
                self.alpha
            ),
        }
    }
}
