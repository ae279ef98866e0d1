//! Whether what retrieval found can ground an answer, decided from more than
//! one number: how close the best passage is in meaning (the dense cosine),
//! and how much of the question's own vocabulary the passages contain,
//! weighted by rarity (see `LexicalIndex::term_evidence`). A question from
//! another field finds passages that are near in embedding space only in a
//! generic way, and that lack its distinctive terms. Measured on questions
//! paired across the development sets, the cosine separates most of them
//! and the vocabulary moves the border cases (docs/EVALUATION.md).

use serde::Serialize;

use crate::config::ChatSettings;

/// The evidence behind an answer or a refusal, reported in `done`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Grounding {
    /// Cosine similarity of the best source (-1 when there is none).
    pub best_similarity: f32,
    /// Share of the question's terms, weighted by IDF, that the sources
    /// contain (1 when the question has no content terms).
    pub term_share: f32,
    /// The question's distinct content terms (stemmed, stop words out).
    pub query_terms: usize,
}

impl Grounding {
    /// None found at all.
    pub const NOTHING: Grounding = Grounding {
        best_similarity: -1.0,
        term_share: 0.0,
        query_terms: 0,
    };

    /// The number the refusal compares with `chat.refusal_threshold`: the
    /// best cosine, moved up or down by how much of the question's own
    /// vocabulary the sources hold (a share of 0.5 moves nothing).
    pub fn evidence(&self, settings: &ChatSettings) -> f32 {
        self.best_similarity + settings.term_share_weight * (self.term_share - 0.5)
    }

    pub fn refuse(&self, settings: &ChatSettings) -> bool {
        self.evidence(settings) < settings.refusal_threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(best: f32, share: f32, terms: usize) -> Grounding {
        Grounding {
            best_similarity: best,
            term_share: share,
            query_terms: terms,
        }
    }

    #[test]
    fn the_cosine_decides_and_the_vocabulary_tips_the_balance() {
        let s = ChatSettings {
            refusal_threshold: 0.44,
            term_share_weight: 0.1,
            ..ChatSettings::default()
        };
        assert!(Grounding::NOTHING.refuse(&s));
        assert!(g(0.3, 1.0, 3).refuse(&s), "far in meaning");
        assert!(!g(0.6, 0.0, 3).refuse(&s), "close in meaning, other words");
        // At the border the terms decide: 0.45 + 0.1 × (0.2 − 0.5) = 0.42.
        assert!(g(0.45, 0.2, 3).refuse(&s));
        assert!(!g(0.43, 0.9, 3).refuse(&s), "0.43 + 0.04 = 0.47");
        assert!((g(0.5, 0.5, 2).evidence(&s) - 0.5).abs() < 1e-6);
    }
}
