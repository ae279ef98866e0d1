//! Whether what retrieval found can ground an answer, decided from more than
//! one number: how close the best passage is in meaning (the dense cosine),
//! and how much of the question's own vocabulary the passages contain,
//! weighted by rarity (see `LexicalIndex::term_evidence`). A question from
//! another field finds passages that are near in embedding space only in a
//! generic way, and that lack its distinctive terms.

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

    /// Whether to refuse: no sources, a best source below the cosine floor,
    /// or too little of the question's vocabulary in the sources unless the
    /// meaning match is strong enough to stand alone (a paraphrase).
    pub fn refuse(&self, settings: &ChatSettings) -> bool {
        if self.best_similarity < settings.refusal_threshold {
            return true;
        }
        let lexical_ok = self.query_terms == 0 || self.term_share >= settings.min_term_share;
        !(lexical_ok || self.best_similarity >= settings.confident_similarity)
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
    fn each_signal_can_refuse_and_a_strong_match_stands_alone() {
        let s = ChatSettings {
            refusal_threshold: 0.3,
            min_term_share: 0.5,
            confident_similarity: 0.7,
            ..ChatSettings::default()
        };
        assert!(Grounding::NOTHING.refuse(&s));
        assert!(g(0.25, 1.0, 3).refuse(&s), "cosine below the floor");
        assert!(g(0.5, 0.2, 3).refuse(&s), "vocabulary missing");
        assert!(!g(0.5, 0.6, 3).refuse(&s));
        assert!(!g(0.75, 0.2, 3).refuse(&s), "a paraphrase");
        assert!(!g(0.5, 0.0, 0).refuse(&s), "no content terms to check");
    }
}
