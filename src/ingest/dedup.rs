//! Duplicate detection within a collection: exact duplicates by a hash of
//! normalised text, near duplicates by MinHash signatures and an LSH index.
//!
//! Signatures are stored in the database and compared with signatures computed
//! by later versions of this code, so everything below is specified exactly and
//! depends on nothing process-specific (no `std` `RandomState`, no RNG). The
//! stability test pins the first values of a fixed text's signature: if it
//! fails, the change invalidates every stored signature and needs a new format
//! version (see [`MinHashSignature::to_bytes`]).
//!
//! # Algorithm, version 1
//!
//! 1. **Words** ([`normalized_words`]): the text is lower-cased (`char::to_lowercase`)
//!    and split into maximal runs of alphanumeric characters
//!    (`char::is_alphanumeric`); everything else separates words. A character
//!    of a script written without spaces (Han, Hiragana, Katakana, Thai, Lao,
//!    Khmer, Myanmar) is a word on its own, otherwise a whole sentence would be
//!    one "word" and near duplicates of such texts would never share a shingle.
//! 2. **Exact hash** ([`normalized_hash`]): SHA-256 (lower-case hex) of the words
//!    joined by single spaces. Case, punctuation and whitespace therefore do not
//!    matter: "Hello, World!" and "hello world" are exact duplicates.
//! 3. **Shingles**: every run of `k` consecutive words (`k` = 5 by default).
//!    A text of 1 to `k - 1` words is one shingle of all its words (its only
//!    near duplicates are texts with the same words, which the exact hash finds
//!    anyway); a text without words has no shingles.
//! 4. **Shingle hash**: 64-bit FNV-1a over the UTF-8 bytes of the shingle's
//!    words joined by single spaces (offset basis `0xcbf29ce484222325`, prime
//!    `0x100000001b3`).
//! 5. **Hash family**: with `x` the shingle hash and `splitmix64` the SplitMix64
//!    output function (add `0x9E3779B97F4A7C15`, then the two xor-shift-multiply
//!    rounds with `0xBF58476D1CE4E5B9` and `0x94D049BB133111EB`):
//!    `h1 = splitmix64(x ^ SEED)`, `h2 = splitmix64(h1) | 1`, and permutation `i`
//!    (0-based) maps the shingle to `splitmix64(h1 + i * h2)` (wrapping
//!    arithmetic). Double hashing gives `num_perm` hashes from two; the final
//!    mix decorrelates them, because the raw values `h1 + i * h2` are linear in
//!    `i` and would make the minima of neighbouring permutations depend on each
//!    other.
//! 6. **Signature**: per permutation, the minimum over all shingles; `u64::MAX`
//!    everywhere for a text without shingles.
//!
//! # LSH banding
//!
//! [`LshIndex::new`] does not place the S-curve's 50% point at the threshold
//! (datasketch's default optimisation picks 5 bands × 25 rows for 0.9 and 128
//! permutations, which finds only 31% of the pairs at exactly 0.9). Candidates
//! are verified against the full signature anyway, so a false candidate costs
//! one 128-value comparison while a missed one lets a duplicate through. It
//! uses the pigeonhole principle instead: a pair is reported when at least
//! `m = ceil(threshold × num_perm)` signature values agree, i.e. at most
//! `num_perm - m` differ; with `b = num_perm - m + 1` bands, one band is then
//! free of differences, so every pair that passes verification is a candidate.
//! For 0.9 and 128 that is 13 bands × 9 rows (117 of the 128 values), S-curve
//! midpoint (1/13)^(1/9) ≈ 0.75: the index returns exactly what a brute-force
//! scan over all signatures would. Lower thresholds mean more, shorter bands
//! and more candidates (0.8 → 26 × 4); [`LshIndex::with_bands`] takes an
//! explicit choice when that is too slow.

use std::collections::HashMap;

mod lsh;
mod minhash;
mod words;

pub use lsh::LshIndex;
pub use minhash::{MinHashSignature, MinHasher};
pub(crate) use words::is_unspaced_script;
pub use words::{normalized_hash, normalized_words};

/// Default number of permutations (signature length).
pub const DEFAULT_NUM_PERM: usize = 128;
/// Default shingle size in words.
pub const DEFAULT_SHINGLE_SIZE: usize = 5;
/// Default near-duplicate threshold on the estimated Jaccard similarity.
pub const DEFAULT_THRESHOLD: f64 = 0.9;

/// Version of the algorithm above; part of the serialised signature.
pub const SIGNATURE_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DedupError {
    #[error("threshold must be in (0, 1], got {0}")]
    Threshold(f64),
    #[error("num_perm must be between 1 and 65535, got {0}")]
    NumPerm(usize),
    #[error("shingle size must be between 1 and 255 words, got {0}")]
    ShingleSize(usize),
    #[error("{bands} bands × {rows} rows do not fit in {num_perm} permutations")]
    Bands {
        bands: usize,
        rows: usize,
        num_perm: usize,
    },
    #[error("signature of {id} has {got} values; this index expects {want}")]
    Length { id: String, got: usize, want: usize },
    #[error("invalid signature encoding: {0}")]
    Encoding(String),
    #[error(
        "signature of {id} has {got_perm} values and shingle size {got_shingle}; \
         this index expects {want_perm} and {want_shingle}"
    )]
    Incompatible {
        id: String,
        got_perm: usize,
        got_shingle: usize,
        want_perm: usize,
        want_shingle: usize,
    },
}

/// Settings of a [`Deduplicator`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupSettings {
    /// Estimated Jaccard similarity of word 5-gram sets at or above which two
    /// documents are near duplicates.
    pub threshold: f64,
    pub num_perm: usize,
    pub shingle_size: usize,
}

impl Default for DedupSettings {
    fn default() -> Self {
        DedupSettings {
            threshold: DEFAULT_THRESHOLD,
            num_perm: DEFAULT_NUM_PERM,
            shingle_size: DEFAULT_SHINGLE_SIZE,
        }
    }
}

/// What is stored per document: the exact-duplicate hash and the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub normalized_hash: String,
    pub signature: MinHashSignature,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    Unique,
    ExactDuplicate { of: String },
    NearDuplicate { of: String, similarity: f64 },
}

/// Exact and near-duplicate lookup for one collection.
#[derive(Debug)]
pub struct Deduplicator {
    hasher: MinHasher,
    lsh: LshIndex,
    /// Normalised hash → ids in insertion order, so the earliest copy is named.
    exact: HashMap<String, Vec<String>>,
    /// Id → its normalised hash, to undo `exact` on replace and remove.
    hashes: HashMap<String, String>,
}

impl Deduplicator {
    pub fn new(settings: &DedupSettings) -> Result<Self, DedupError> {
        Ok(Deduplicator {
            hasher: MinHasher::new(settings.num_perm, settings.shingle_size)?,
            lsh: LshIndex::new(settings.threshold, settings.num_perm)?,
            exact: HashMap::new(),
            hashes: HashMap::new(),
        })
    }

    /// Rebuilds the state of a collection from its stored `(id, normalized
    /// hash, signature)` triples. Pass them oldest first: an exact duplicate
    /// is reported against the first id added with that hash.
    pub fn from_existing(
        settings: &DedupSettings,
        entries: impl IntoIterator<Item = (String, String, MinHashSignature)>,
    ) -> Result<Self, DedupError> {
        let mut d = Self::new(settings)?;
        for (id, normalized_hash, signature) in entries {
            d.add(
                id,
                Fingerprint {
                    normalized_hash,
                    signature,
                },
            )?;
        }
        Ok(d)
    }

    pub fn hasher(&self) -> &MinHasher {
        &self.hasher
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    pub fn fingerprint(&self, text: &str) -> Fingerprint {
        Fingerprint {
            normalized_hash: normalized_hash(text),
            signature: self.hasher.signature(text),
        }
    }

    /// Classifies `text` against the documents added so far, ignoring
    /// `own_id` (a document being re-uploaded is not its own duplicate).
    pub fn check(&self, text: &str, own_id: Option<&str>) -> Verdict {
        self.check_fingerprint(&self.fingerprint(text), own_id)
    }

    pub fn check_fingerprint(&self, fp: &Fingerprint, own_id: Option<&str>) -> Verdict {
        if let Some(of) = self
            .exact
            .get(&fp.normalized_hash)
            .and_then(|ids| ids.iter().find(|id| Some(id.as_str()) != own_id))
        {
            return Verdict::ExactDuplicate { of: of.clone() };
        }
        // Texts without words all share one signature; the exact hash already
        // covers them, and indexing them would fill one bucket per band.
        if fp.signature.is_empty() || fp.signature.shingle_size() != self.hasher.shingle_size() {
            return Verdict::Unique;
        }
        match self
            .lsh
            .query_excluding(&fp.signature, own_id)
            .into_iter()
            .next()
        {
            Some((of, similarity)) => Verdict::NearDuplicate { of, similarity },
            None => Verdict::Unique,
        }
    }

    /// Adds (or replaces) document `id`.
    pub fn add(&mut self, id: String, fp: Fingerprint) -> Result<(), DedupError> {
        let sig = &fp.signature;
        if sig.num_perm() != self.hasher.num_perm()
            || sig.shingle_size() != self.hasher.shingle_size()
        {
            return Err(DedupError::Incompatible {
                id,
                got_perm: sig.num_perm(),
                got_shingle: sig.shingle_size(),
                want_perm: self.hasher.num_perm(),
                want_shingle: self.hasher.shingle_size(),
            });
        }
        self.remove(&id);
        if !sig.is_empty() {
            self.lsh.insert(id.clone(), sig)?;
        }
        self.exact
            .entry(fp.normalized_hash.clone())
            .or_default()
            .push(id.clone());
        self.hashes.insert(id, fp.normalized_hash);
        Ok(())
    }

    /// Forgets document `id`; false if it was unknown.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(hash) = self.hashes.remove(id) else {
            return false;
        };
        if let Some(ids) = self.exact.get_mut(&hash) {
            ids.retain(|x| x != id);
            if ids.is_empty() {
                self.exact.remove(&hash);
            }
        }
        self.lsh.remove(id);
        true
    }
}

#[cfg(test)]
mod tests;
