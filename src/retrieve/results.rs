//! The `/query` result cache: what an entry's key says, and when a result
//! may be stored.
//!
//! The key is a hash of everything a result depends on: the query (with
//! runs of white space made one space, which neither signal sees), mode,
//! top_k, the fusion (method and every parameter) and candidate setting, and every searched
//! collection's id with its generation. Access is resolved before the key is
//! made, so an entry is only ever found by a caller searching exactly the
//! same collections; a write to any of them bumps its generation, so its
//! old entries can no longer be found at all (they expire by TTL).
//!
//! An entry is written only by a node whose lexical index has applied the
//! change log up to every searched collection's last bump: a node still
//! catching up would otherwise store a result missing a change under a key
//! that promises it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Fusion, Mode, SearchResult};
use crate::config::RetrievalSettings;
use crate::db::collections::Collection;

/// Bumped when the cached form or the key's meaning changes, so nodes of
/// different versions never read each other's entries.
const FORMAT: u32 = 2;

#[derive(Serialize)]
struct KeyParts<'a> {
    format: u32,
    query: &'a str,
    mode: Mode,
    top_k: usize,
    fusion: super::Method,
    normalization: super::Normalization,
    // Bits, not floats: 0.1 must not be serialised two ways.
    dense_weight: u32,
    lexical_weight: u32,
    rrf_k: u32,
    alpha: u32,
    candidates: usize,
    collections: Vec<(&'a str, i64)>,
}

/// The cache key for a search over `collections` (as resolved for the caller).
pub fn key(
    query: &str,
    mode: Mode,
    top_k: usize,
    fusion: &Fusion,
    settings: &RetrievalSettings,
    collections: &[Collection],
) -> String {
    let query = normalise(query);
    let mut searched: Vec<(&str, i64)> = collections
        .iter()
        .map(|c| (c.id.as_str(), c.generation))
        .collect();
    searched.sort_unstable();
    let parts = KeyParts {
        format: FORMAT,
        query: &query,
        mode,
        top_k,
        fusion: fusion.method,
        normalization: fusion.normalization,
        dense_weight: fusion.weights.dense.to_bits(),
        lexical_weight: fusion.weights.lexical.to_bits(),
        rrf_k: fusion.rrf_k.to_bits(),
        alpha: fusion.alpha.to_bits(),
        candidates: settings.candidates,
        collections: searched,
    };
    // Serialising plain data into a Vec cannot fail.
    let bytes = serde_json::to_vec(&parts).unwrap_or_default();
    format!("res:{}", hex::encode(Sha256::digest(&bytes)))
}

/// Runs of white space as one space, none at the ends.
fn normalise(query: &str) -> String {
    query.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether this node may store a result it computed: dense-only results
/// depend on the vector index alone (written before every bump); the others
/// need the lexical index to have applied `position` (read before the
/// search started) past every searched collection's last bump.
pub fn may_store(mode: Mode, position: i64, collections: &[Collection]) -> bool {
    mode == Mode::Dense || collections.iter().all(|c| c.log_position <= position)
}

/// What an entry holds.
#[derive(Serialize, Deserialize)]
pub struct Entry {
    pub results: Vec<SearchResult>,
}

pub fn encode(results: &[SearchResult]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Borrowed<'a> {
        results: &'a [SearchResult],
    }
    serde_json::to_vec(&Borrowed { results }).unwrap_or_default()
}

/// `None` for anything unreadable (another version's entry, a truncated
/// value): a miss, never an error.
pub fn decode(bytes: &[u8]) -> Option<Entry> {
    serde_json::from_slice(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::CollectionId;

    fn collection(id: &str, generation: i64, log_position: i64) -> Collection {
        Collection {
            id: CollectionId::from(id),
            name: id.to_string(),
            description: String::new(),
            created_at: chrono::NaiveDateTime::default(),
            public: false,
            generation,
            log_position,
            retrieval: None,
        }
    }

    fn k(query: &str, mode: Mode, top_k: usize, cs: &[Collection]) -> String {
        key(
            query,
            mode,
            top_k,
            &Fusion::PLAIN_RRF,
            &RetrievalSettings::default(),
            cs,
        )
    }

    #[test]
    fn the_key_holds_everything_a_result_depends_on() {
        let a = collection("a", 1, 0);
        let b = collection("b", 4, 0);
        let base = k("shock waves", Mode::Hybrid, 10, &[a.clone(), b.clone()]);
        // Same search: same key, whatever the order or spacing.
        assert_eq!(
            base,
            k(
                "  shock \t waves ",
                Mode::Hybrid,
                10,
                &[b.clone(), a.clone()]
            )
        );
        // Anything else: another key.
        for other in [
            k("shock wave", Mode::Hybrid, 10, &[a.clone(), b.clone()]),
            k("shock waves", Mode::Dense, 10, &[a.clone(), b.clone()]),
            k("shock waves", Mode::Hybrid, 11, &[a.clone(), b.clone()]),
            k("shock waves", Mode::Hybrid, 10, std::slice::from_ref(&a)),
            k(
                "shock waves",
                Mode::Hybrid,
                10,
                &[a.clone(), collection("b", 5, 0)],
            ),
        ]
        .into_iter()
        .chain(
            [
                Fusion {
                    weights: super::super::Weights {
                        dense: 1.0,
                        lexical: 0.5,
                    },
                    ..Fusion::PLAIN_RRF
                },
                Fusion {
                    rrf_k: 20.0,
                    ..Fusion::PLAIN_RRF
                },
                Fusion {
                    method: super::super::Method::Convex,
                    ..Fusion::PLAIN_RRF
                },
                Fusion {
                    alpha: 0.7,
                    ..Fusion::PLAIN_RRF
                },
                Fusion {
                    normalization: super::super::Normalization::TheoreticalMin,
                    ..Fusion::PLAIN_RRF
                },
            ]
            .iter()
            .map(|f| {
                key(
                    "shock waves",
                    Mode::Hybrid,
                    10,
                    f,
                    &RetrievalSettings::default(),
                    &[a.clone(), b.clone()],
                )
            }),
        ) {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn only_a_caught_up_lexical_index_may_store() {
        let cs = [collection("a", 1, 10), collection("b", 1, 3)];
        assert!(!may_store(Mode::Hybrid, 9, &cs));
        assert!(!may_store(Mode::Lexical, 9, &cs));
        assert!(may_store(Mode::Hybrid, 10, &cs));
        assert!(
            may_store(Mode::Dense, 0, &cs),
            "dense needs no lexical index"
        );
    }

    #[test]
    fn unreadable_entries_are_misses() {
        assert!(decode(b"{not json").is_none());
        assert!(decode(br#"{"results":[{"rank":"x"}]}"#).is_none());
        assert_eq!(decode(&encode(&[])).map(|e| e.results.len()), Some(0));
    }
}
