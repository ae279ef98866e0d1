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

use std::cmp::Ordering;
use std::collections::HashMap;

use base64::Engine;
use sha2::{Digest, Sha256};

/// Default number of permutations (signature length).
pub const DEFAULT_NUM_PERM: usize = 128;
/// Default shingle size in words.
pub const DEFAULT_SHINGLE_SIZE: usize = 5;
/// Default near-duplicate threshold on the estimated Jaccard similarity.
pub const DEFAULT_THRESHOLD: f64 = 0.9;

/// Version of the algorithm above; part of the serialised signature.
pub const SIGNATURE_VERSION: u8 = 1;
const SIGNATURE_MAGIC: [u8; 2] = *b"MH";
const HEADER_LEN: usize = 6;

/// Fixed seed of the hash family ("ragchat1" in ASCII).
const SEED: u64 = 0x7261_6763_6861_7431;
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

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

const fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fnv1a64(bytes: &[u8], mut hash: u64) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// Scripts written without spaces between words; see the module notes.
pub(crate) fn is_unspaced_script(c: char) -> bool {
    matches!(c as u32,
        0x0E00..=0x0EFF        // Thai, Lao
        | 0x1000..=0x109F      // Myanmar
        | 0x1780..=0x17FF      // Khmer
        | 0x3040..=0x30FF      // Hiragana, Katakana
        | 0x31F0..=0x31FF      // Katakana phonetic extensions
        | 0x3400..=0x4DBF      // CJK extension A
        | 0x4E00..=0x9FFF      // CJK unified ideographs
        | 0xF900..=0xFAFF      // CJK compatibility ideographs
        | 0xFF66..=0xFF9F      // half-width Katakana
        | 0x20000..=0x3FFFF) // CJK extensions B and later
}

/// The words of `text` as defined in step 1 of the module notes.
pub fn normalized_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if !c.is_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
        } else if is_unspaced_script(c) {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            words.push(c.to_lowercase().collect());
        } else {
            current.extend(c.to_lowercase());
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// SHA-256 hex of the normalised text (step 2 of the module notes): equal for
/// texts that differ only in case, punctuation and whitespace.
pub fn normalized_hash(text: &str) -> String {
    let mut h = Sha256::new();
    for (i, w) in normalized_words(text).iter().enumerate() {
        if i > 0 {
            h.update(b" ");
        }
        h.update(w.as_bytes());
    }
    hex::encode(h.finalize())
}

fn shingle_hash(words: &[String]) -> u64 {
    let mut hash = FNV_OFFSET;
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            hash = fnv1a64(b" ", hash);
        }
        hash = fnv1a64(w.as_bytes(), hash);
    }
    hash
}

/// Computes MinHash signatures with a fixed shingle size and signature length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinHasher {
    num_perm: usize,
    shingle_size: usize,
}

impl Default for MinHasher {
    fn default() -> Self {
        MinHasher {
            num_perm: DEFAULT_NUM_PERM,
            shingle_size: DEFAULT_SHINGLE_SIZE,
        }
    }
}

impl MinHasher {
    pub fn new(num_perm: usize, shingle_size: usize) -> Result<Self, DedupError> {
        if num_perm == 0 || num_perm > usize::from(u16::MAX) {
            return Err(DedupError::NumPerm(num_perm));
        }
        if shingle_size == 0 || shingle_size > usize::from(u8::MAX) {
            return Err(DedupError::ShingleSize(shingle_size));
        }
        Ok(MinHasher {
            num_perm,
            shingle_size,
        })
    }

    pub fn num_perm(&self) -> usize {
        self.num_perm
    }

    pub fn shingle_size(&self) -> usize {
        self.shingle_size
    }

    /// The 64-bit hashes of the text's shingles (steps 3 and 4), in text order.
    pub fn shingle_hashes(&self, text: &str) -> Vec<u64> {
        let words = normalized_words(text);
        if words.is_empty() {
            Vec::new()
        } else if words.len() < self.shingle_size {
            vec![shingle_hash(&words)]
        } else {
            words.windows(self.shingle_size).map(shingle_hash).collect()
        }
    }

    pub fn signature(&self, text: &str) -> MinHashSignature {
        let mut hashes = self.shingle_hashes(text);
        // Repeated shingles cannot change a minimum; skipping them saves the
        // per-permutation loop on boilerplate-heavy texts.
        hashes.sort_unstable();
        hashes.dedup();
        let mut values = vec![u64::MAX; self.num_perm];
        for x in hashes {
            let h1 = splitmix64(x ^ SEED);
            let h2 = splitmix64(h1) | 1;
            let mut hi = h1;
            for v in values.iter_mut() {
                let p = splitmix64(hi);
                if p < *v {
                    *v = p;
                }
                hi = hi.wrapping_add(h2);
            }
        }
        MinHashSignature {
            shingle_size: self.shingle_size as u8,
            values,
        }
    }
}

/// A MinHash signature and the shingle size it was computed with (signatures
/// of different shingle sizes or lengths are not comparable).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MinHashSignature {
    shingle_size: u8,
    values: Vec<u64>,
}

impl MinHashSignature {
    /// A signature from raw values, e.g. for tests or another encoding.
    pub fn from_values(shingle_size: u8, values: Vec<u64>) -> Self {
        MinHashSignature {
            shingle_size,
            values,
        }
    }

    pub fn values(&self) -> &[u64] {
        &self.values
    }

    pub fn num_perm(&self) -> usize {
        self.values.len()
    }

    pub fn shingle_size(&self) -> usize {
        usize::from(self.shingle_size)
    }

    /// True for the signature of a text without words.
    pub fn is_empty(&self) -> bool {
        self.values.iter().all(|v| *v == u64::MAX)
    }

    pub fn is_compatible(&self, other: &MinHashSignature) -> bool {
        self.shingle_size == other.shingle_size && self.values.len() == other.values.len()
    }

    /// Share of agreeing values, the unbiased MinHash estimate of the Jaccard
    /// similarity of the two shingle sets; 0 for incompatible signatures.
    pub fn jaccard_estimate(&self, other: &MinHashSignature) -> f64 {
        if !self.is_compatible(other) || self.values.is_empty() {
            return 0.0;
        }
        matching_values(&self.values, &other.values) as f64 / self.values.len() as f64
    }

    /// `"MH"`, format version (1), shingle size (u8), number of values (u16
    /// little-endian), then each value as u64 little-endian: 1030 bytes for
    /// 128 permutations.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + 8 * self.values.len());
        out.extend_from_slice(&SIGNATURE_MAGIC);
        out.push(SIGNATURE_VERSION);
        out.push(self.shingle_size);
        // Lengths above u16::MAX cannot come from a MinHasher; saturate rather
        // than wrap so such a signature fails to decode instead of mis-decoding.
        let n = u16::try_from(self.values.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&n.to_le_bytes());
        for v in &self.values {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DedupError> {
        let bad = |m: &str| DedupError::Encoding(m.to_string());
        if bytes.len() < HEADER_LEN || bytes[..2] != SIGNATURE_MAGIC {
            return Err(bad("not a MinHash signature"));
        }
        if bytes[2] != SIGNATURE_VERSION {
            return Err(DedupError::Encoding(format!(
                "unsupported signature version {} (this build reads {SIGNATURE_VERSION})",
                bytes[2]
            )));
        }
        let shingle_size = bytes[3];
        let n = usize::from(u16::from_le_bytes([bytes[4], bytes[5]]));
        if shingle_size == 0 || n == 0 {
            return Err(bad("zero shingle size or length"));
        }
        let body = &bytes[HEADER_LEN..];
        if body.len() != 8 * n {
            return Err(DedupError::Encoding(format!(
                "expected {} bytes of values, found {}",
                8 * n,
                body.len()
            )));
        }
        let values = body
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect();
        Ok(MinHashSignature {
            shingle_size,
            values,
        })
    }

    /// [`to_bytes`](Self::to_bytes) in standard padded base64, for a text column.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.to_bytes())
    }

    pub fn from_base64(s: &str) -> Result<Self, DedupError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|e| DedupError::Encoding(e.to_string()))?;
        Self::from_bytes(&bytes)
    }
}

fn matching_values(a: &[u64], b: &[u64]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x == y).count()
}

/// Smallest number of agreeing values whose share reaches `threshold`,
/// computed with the same division as `jaccard_estimate` so the two agree.
fn min_matches(threshold: f64, num_perm: usize) -> usize {
    (0..=num_perm)
        .find(|m| *m as f64 / num_perm as f64 >= threshold)
        .unwrap_or(num_perm)
}

struct Slot {
    id: String,
    values: Box<[u64]>,
}

/// Banded LSH over MinHash signatures of one length, with candidates verified
/// against the full signature. See the module notes for the band choice.
pub struct LshIndex {
    threshold: f64,
    num_perm: usize,
    bands: usize,
    rows: usize,
    min_matches: usize,
    /// Per band: band hash → slots holding a signature with that band.
    buckets: Vec<HashMap<u64, Vec<u32>>>,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    by_id: HashMap<String, u32>,
}

impl std::fmt::Debug for LshIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LshIndex")
            .field("threshold", &self.threshold)
            .field("num_perm", &self.num_perm)
            .field("bands", &self.bands)
            .field("rows", &self.rows)
            .field("len", &self.len())
            .finish()
    }
}

impl LshIndex {
    /// Bands chosen by the pigeonhole rule in the module notes, so that no pair
    /// at or above the threshold is missed.
    pub fn new(threshold: f64, num_perm: usize) -> Result<Self, DedupError> {
        check_threshold(threshold)?;
        if num_perm == 0 || num_perm > usize::from(u16::MAX) {
            return Err(DedupError::NumPerm(num_perm));
        }
        let bands = num_perm - min_matches(threshold, num_perm) + 1;
        Self::with_bands(threshold, num_perm, bands, num_perm / bands)
    }

    /// Explicit bands × rows (using the first `bands × rows` values). Pairs at
    /// the threshold are then found with probability `candidate_probability`.
    pub fn with_bands(
        threshold: f64,
        num_perm: usize,
        bands: usize,
        rows: usize,
    ) -> Result<Self, DedupError> {
        check_threshold(threshold)?;
        if num_perm == 0 || num_perm > usize::from(u16::MAX) {
            return Err(DedupError::NumPerm(num_perm));
        }
        if bands == 0 || rows == 0 || bands.saturating_mul(rows) > num_perm {
            return Err(DedupError::Bands {
                bands,
                rows,
                num_perm,
            });
        }
        Ok(LshIndex {
            threshold,
            num_perm,
            bands,
            rows,
            min_matches: min_matches(threshold, num_perm),
            buckets: vec![HashMap::new(); bands],
            slots: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
        })
    }

    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    pub fn num_perm(&self) -> usize {
        self.num_perm
    }

    pub fn bands(&self) -> usize {
        self.bands
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// Probability that a pair with Jaccard similarity `s` becomes a candidate:
    /// `1 - (1 - s^rows)^bands`.
    pub fn candidate_probability(&self, s: f64) -> f64 {
        1.0 - (1.0 - s.powi(self.rows as i32)).powi(self.bands as i32)
    }

    fn band_key(&self, values: &[u64], band: usize) -> u64 {
        let start = band * self.rows;
        values[start..start + self.rows]
            .iter()
            .fold(SEED, |h, v| splitmix64(h ^ v))
    }

    /// Adds or replaces the signature stored under `id`.
    pub fn insert(&mut self, id: String, sig: &MinHashSignature) -> Result<(), DedupError> {
        if sig.num_perm() != self.num_perm {
            return Err(DedupError::Length {
                id,
                got: sig.num_perm(),
                want: self.num_perm,
            });
        }
        self.remove(&id);
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        for band in 0..self.bands {
            let key = self.band_key(sig.values(), band);
            self.buckets[band].entry(key).or_default().push(slot);
        }
        self.by_id.insert(id.clone(), slot);
        self.slots[slot as usize] = Some(Slot {
            id,
            values: sig.values().into(),
        });
        Ok(())
    }

    /// Removes `id`; false if it was not indexed.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(slot) = self.by_id.remove(id) else {
            return false;
        };
        if let Some(entry) = self.slots[slot as usize].take() {
            for band in 0..self.bands {
                let key = self.band_key(&entry.values, band);
                if let Some(list) = self.buckets[band].get_mut(&key) {
                    list.retain(|s| *s != slot);
                    if list.is_empty() {
                        self.buckets[band].remove(&key);
                    }
                }
            }
        }
        self.free.push(slot);
        true
    }

    /// Indexed signatures whose estimated Jaccard similarity to `sig` reaches
    /// the threshold, most similar first (ties by id). A signature of another
    /// length matches nothing.
    pub fn query(&self, sig: &MinHashSignature) -> Vec<(String, f64)> {
        self.query_excluding(sig, None)
    }

    /// [`query`](Self::query) without the entry stored under `exclude`.
    pub fn query_excluding(
        &self,
        sig: &MinHashSignature,
        exclude: Option<&str>,
    ) -> Vec<(String, f64)> {
        if sig.num_perm() != self.num_perm {
            return Vec::new();
        }
        let mut candidates: Vec<u32> = Vec::new();
        for band in 0..self.bands {
            if let Some(list) = self.buckets[band].get(&self.band_key(sig.values(), band)) {
                candidates.extend_from_slice(list);
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        let mut out: Vec<(String, f64)> = candidates
            .into_iter()
            .filter_map(|slot| self.slots[slot as usize].as_ref())
            .filter(|entry| exclude != Some(entry.id.as_str()))
            .filter_map(|entry| {
                let m = matching_values(&entry.values, sig.values());
                (m >= self.min_matches).then(|| (entry.id.clone(), m as f64 / self.num_perm as f64))
            })
            .collect();
        out.sort_by(|a, b| {
            b.1.partial_cmp(&a.1)
                .unwrap_or(Ordering::Equal)
                .then_with(|| a.0.cmp(&b.0))
        });
        out
    }
}

fn check_threshold(threshold: f64) -> Result<(), DedupError> {
    if threshold > 0.0 && threshold <= 1.0 {
        Ok(())
    } else {
        Err(DedupError::Threshold(threshold))
    }
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
        if fp.signature.is_empty() || fp.signature.shingle_size() != self.hasher.shingle_size {
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
        if sig.num_perm() != self.hasher.num_perm || sig.shingle_size() != self.hasher.shingle_size
        {
            return Err(DedupError::Incompatible {
                id,
                got_perm: sig.num_perm(),
                got_shingle: sig.shingle_size(),
                want_perm: self.hasher.num_perm,
                want_shingle: self.hasher.shingle_size,
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
mod tests {
    use std::collections::HashSet;
    use std::time::Instant;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// A vocabulary of pseudo-words, so random texts share words but almost
    /// never a 5-word shingle.
    fn vocabulary(rng: &mut StdRng, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                let len = rng.random_range(2..9);
                (0..len)
                    .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
                    .collect()
            })
            .collect()
    }

    fn random_words(rng: &mut StdRng, vocab: &[String], n: usize) -> Vec<String> {
        (0..n)
            .map(|_| vocab[rng.random_range(0..vocab.len())].clone())
            .collect()
    }

    fn true_jaccard(hasher: &MinHasher, a: &str, b: &str) -> f64 {
        let sa: HashSet<u64> = hasher.shingle_hashes(a).into_iter().collect();
        let sb: HashSet<u64> = hasher.shingle_hashes(b).into_iter().collect();
        sa.intersection(&sb).count() as f64 / sa.union(&sb).count() as f64
    }

    #[test]
    fn words_ignore_case_punctuation_and_split_unspaced_scripts() {
        assert_eq!(
            normalized_words("Hello, WORLD! Straße—x2 «ÉTÉ»"),
            ["hello", "world", "straße", "x2", "été"]
        );
        assert_eq!(
            normalized_words("東京タワー is tall"),
            ["東", "京", "タ", "ワ", "ー", "is", "tall"]
        );
        assert!(normalized_words(" -- !! ").is_empty());
    }

    #[test]
    fn normalized_hash_is_case_punctuation_and_space_insensitive() {
        // SHA-256 of "hello world".
        let want = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
        assert_eq!(normalized_hash("hello world"), want);
        assert_eq!(normalized_hash("  Hello,\n\nWORLD!  "), want);
        assert_ne!(normalized_hash("hello worlds"), want);
    }

    #[test]
    fn jaccard_estimate_within_a_tenth_of_true_jaccard() {
        let mut rng = StdRng::seed_from_u64(7);
        let vocab = vocabulary(&mut rng, 3000);
        let hasher = MinHasher::default();
        let mut covered = Vec::new();
        for replace_every in [1usize, 2, 3, 5, 8, 13, 25, 60, 150, 1000] {
            let a = random_words(&mut rng, &vocab, 400);
            let mut b = a.clone();
            for i in (0..b.len()).step_by(replace_every) {
                b[i] = format!("zz{i}");
            }
            let (a, b) = (a.join(" "), b.join(" "));
            let truth = true_jaccard(&hasher, &a, &b);
            let est = hasher.signature(&a).jaccard_estimate(&hasher.signature(&b));
            assert!(
                (est - truth).abs() <= 0.1,
                "every {replace_every}th word replaced: true {truth:.3}, estimate {est:.3}"
            );
            covered.push(truth);
        }
        // The pairs span the whole range, not just the easy ends.
        assert!(covered.iter().any(|j| *j < 0.05));
        assert!(covered.iter().any(|j| (0.3..0.7).contains(j)));
        assert!(covered.iter().any(|j| *j > 0.9));
    }

    #[test]
    fn signature_is_stable_across_versions() {
        // Pinned values: a failure means stored signatures no longer compare
        // with new ones, which needs a new SIGNATURE_VERSION and a migration.
        let sig = MinHasher::default()
            .signature("The quick brown fox jumps over the lazy dog while the cat sleeps.");
        assert_eq!(sig.num_perm(), 128);
        assert_eq!(sig.shingle_size(), 5);
        assert_eq!(&sig.values()[..4], &PINNED[..]);
        let short = MinHasher::default().signature("hello world");
        assert_eq!(short.values()[0], PINNED_SHORT);
    }

    // Also reproduced by an independent Python implementation of the module notes.
    const PINNED: [u64; 4] = [
        759716945609312959,
        2289746046032125123,
        550518749707774059,
        1682837081869719913,
    ];
    const PINNED_SHORT: u64 = 17030592050629378802;

    #[test]
    fn signature_round_trips_through_bytes_and_base64() {
        let sig = MinHasher::new(64, 3)
            .unwrap()
            .signature("a small text about round trips of signatures");
        let bytes = sig.to_bytes();
        assert_eq!(bytes.len(), 6 + 64 * 8);
        assert_eq!(&bytes[..4], &[b'M', b'H', 1, 3]);
        assert_eq!(MinHashSignature::from_bytes(&bytes).unwrap(), sig);
        assert_eq!(
            MinHashSignature::from_base64(&sig.to_base64()).unwrap(),
            sig
        );

        let mut wrong_version = bytes.clone();
        wrong_version[2] = 2;
        assert!(MinHashSignature::from_bytes(&wrong_version).is_err());
        assert!(MinHashSignature::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        assert!(MinHashSignature::from_bytes(b"XX\x01\x05\x01\x00").is_err());
        assert!(MinHashSignature::from_base64("not base64!").is_err());
    }

    #[test]
    fn empty_and_short_texts() {
        let hasher = MinHasher::default();
        assert!(hasher.signature("").is_empty());
        assert!(hasher.signature(" ... ").is_empty());
        let short = hasher.signature("Hello world");
        assert!(!short.is_empty());
        assert_eq!(short, hasher.signature("hello, world!"));
        assert_eq!(
            short.jaccard_estimate(&hasher.signature("hello there")),
            0.0
        );
        // Signatures of other shapes do not compare.
        let other = MinHasher::new(128, 3).unwrap().signature("Hello world");
        assert_eq!(short.jaccard_estimate(&other), 0.0);
    }

    #[test]
    fn band_choice_follows_the_pigeonhole_rule() {
        let lsh = LshIndex::new(0.9, 128).unwrap();
        assert_eq!((lsh.bands(), lsh.rows()), (13, 9));
        assert!(lsh.candidate_probability(0.9) > 0.99);
        assert!(lsh.candidate_probability(0.3) < 1e-3);
        let lsh = LshIndex::new(0.8, 128).unwrap();
        assert_eq!((lsh.bands(), lsh.rows()), (26, 4));
        let lsh = LshIndex::new(1.0, 128).unwrap();
        assert_eq!((lsh.bands(), lsh.rows()), (1, 128));
        assert!(LshIndex::new(0.0, 128).is_err());
        assert!(LshIndex::new(1.1, 128).is_err());
        assert!(LshIndex::new(0.9, 0).is_err());
        assert!(LshIndex::with_bands(0.9, 128, 10, 13).is_err());
    }

    /// A signature agreeing with `base` in exactly the positions of `same`.
    fn variant(
        rng: &mut StdRng,
        base: &MinHashSignature,
        same: &HashSet<usize>,
    ) -> MinHashSignature {
        let values = base
            .values()
            .iter()
            .enumerate()
            .map(|(i, v)| if same.contains(&i) { *v } else { rng.random() })
            .collect();
        MinHashSignature::from_values(5, values)
    }

    #[test]
    fn threshold_boundary_is_exact() {
        let mut rng = StdRng::seed_from_u64(11);
        let base = MinHashSignature::from_values(5, (0..128).map(|_| rng.random()).collect());
        let mut lsh = LshIndex::new(0.9, 128).unwrap();
        // 0.9 × 128 = 115.2: 116 agreeing values (0.906) pass, 115 (0.898) do not,
        // wherever the disagreements fall.
        let mut expected = Vec::new();
        for n in 0..400 {
            let agree = 108 + n % 21; // 108..=128
            let mut positions: Vec<usize> = (0..128).collect();
            for i in 0..128 {
                positions.swap(i, rng.random_range(i..128));
            }
            let same: HashSet<usize> = positions[..agree].iter().copied().collect();
            let id = format!("d{n:03}");
            lsh.insert(id.clone(), &variant(&mut rng, &base, &same))
                .unwrap();
            if agree >= 116 {
                expected.push((id, agree as f64 / 128.0));
            }
        }
        let mut got = lsh.query(&base);
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got, expected);
        assert!(got.iter().all(|(_, s)| *s >= 0.9));

        // A threshold that is an exact share includes the boundary.
        let mut half = LshIndex::new(0.5, 128).unwrap();
        let same: HashSet<usize> = (0..64).collect();
        half.insert("half".into(), &variant(&mut rng, &base, &same))
            .unwrap();
        assert_eq!(half.query(&base), vec![("half".to_string(), 0.5)]);
    }

    #[test]
    fn query_orders_by_similarity_and_remove_forgets() {
        let hasher = MinHasher::default();
        let mut rng = StdRng::seed_from_u64(3);
        let vocab = vocabulary(&mut rng, 2000);
        let words = random_words(&mut rng, &vocab, 300);
        let mut one = words.clone();
        one[150] = "changed".into();
        let mut two = one.clone();
        two[40] = "again".into();
        let mut lsh = LshIndex::new(0.9, 128).unwrap();
        lsh.insert("two".into(), &hasher.signature(&two.join(" ")))
            .unwrap();
        lsh.insert("one".into(), &hasher.signature(&one.join(" ")))
            .unwrap();
        let got = lsh.query(&hasher.signature(&words.join(" ")));
        assert_eq!(
            got.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(),
            ["one", "two"]
        );
        assert!(got[0].1 >= got[1].1);
        assert!(lsh.remove("one"));
        assert!(!lsh.remove("one"));
        assert_eq!(lsh.len(), 1);
        let got = lsh.query(&hasher.signature(&words.join(" ")));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "two");
        // Re-inserting an id replaces its signature, and freed slots are reused.
        lsh.insert(
            "two".into(),
            &hasher.signature("something else entirely, five words or more"),
        )
        .unwrap();
        lsh.insert("three".into(), &hasher.signature(&one.join(" ")))
            .unwrap();
        assert_eq!(lsh.len(), 2);
        let got = lsh.query(&hasher.signature(&words.join(" ")));
        assert_eq!(
            got.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(),
            ["three"]
        );
        let short = MinHashSignature::from_values(5, vec![1, 2, 3]);
        assert!(lsh.query(&short).is_empty());
        assert!(lsh.insert("bad".into(), &short).is_err());
    }

    #[test]
    fn lsh_finds_the_near_duplicate_among_10k_documents() {
        let mut rng = StdRng::seed_from_u64(42);
        let vocab = vocabulary(&mut rng, 20_000);
        let hasher = MinHasher::default();
        let mut lsh = LshIndex::new(0.9, 128).unwrap();
        let started = Instant::now();
        let mut target = Vec::new();
        for n in 0..10_000 {
            let words = random_words(&mut rng, &vocab, 120);
            if n == 6_789 {
                target = words.clone();
            }
            lsh.insert(format!("doc{n}"), &hasher.signature(&words.join(" ")))
                .unwrap();
        }
        let built = started.elapsed();
        target[60] = "edited".into();
        let started = Instant::now();
        let got = lsh.query(&hasher.signature(&target.join(" ")));
        let queried = started.elapsed();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, "doc6789");
        assert!(got[0].1 >= 0.9);
        // Far documents: a fresh random text and a half-changed copy.
        assert!(lsh
            .query(&hasher.signature(&random_words(&mut rng, &vocab, 120).join(" ")))
            .is_empty());
        for w in target.iter_mut().step_by(2) {
            *w = "x".into();
        }
        assert!(lsh.query(&hasher.signature(&target.join(" "))).is_empty());
        println!("10k documents indexed in {built:?}, one query in {queried:?}");
    }

    #[test]
    fn deduplicator_verdicts() {
        let mut rng = StdRng::seed_from_u64(5);
        let vocab = vocabulary(&mut rng, 5000);
        let text = random_words(&mut rng, &vocab, 300);
        let original = text.join(" ");
        let mut d = Deduplicator::new(&DedupSettings::default()).unwrap();
        assert_eq!(d.check(&original, None), Verdict::Unique);
        d.add("orig".into(), d.fingerprint(&original)).unwrap();

        // Identical text, and the same text with other case and punctuation.
        assert_eq!(
            d.check(&original, None),
            Verdict::ExactDuplicate { of: "orig".into() }
        );
        assert_eq!(
            d.check(&format!("{}!", original.to_uppercase()), None),
            Verdict::ExactDuplicate { of: "orig".into() }
        );

        // One changed word in 300.
        let mut edited = text.clone();
        edited[123] = "different".into();
        match d.check(&edited.join(" "), None) {
            Verdict::NearDuplicate { of, similarity } => {
                assert_eq!(of, "orig");
                assert!(similarity >= 0.9, "{similarity}");
            }
            v => panic!("expected a near duplicate, got {v:?}"),
        }

        // Unrelated text.
        let other = random_words(&mut rng, &vocab, 300).join(" ");
        assert_eq!(d.check(&other, None), Verdict::Unique);
        assert_eq!(d.check("", None), Verdict::Unique);
    }

    #[test]
    fn deduplicator_excludes_the_document_itself() {
        let mut rng = StdRng::seed_from_u64(9);
        let vocab = vocabulary(&mut rng, 5000);
        let text = random_words(&mut rng, &vocab, 200);
        let original = text.join(" ");
        let mut d = Deduplicator::new(&DedupSettings::default()).unwrap();
        d.add("a".into(), d.fingerprint(&original)).unwrap();

        // Re-uploading the same or a slightly edited version under its own id.
        assert_eq!(d.check(&original, Some("a")), Verdict::Unique);
        let mut edited = text.clone();
        edited[10] = "tweak".into();
        let edited = edited.join(" ");
        assert_eq!(d.check(&edited, Some("a")), Verdict::Unique);

        // Replacing "a" moves its hash: the old text is free again.
        d.add("a".into(), d.fingerprint(&edited)).unwrap();
        assert_eq!(d.len(), 1);
        assert!(matches!(
            d.check(&original, None),
            Verdict::NearDuplicate { ref of, .. } if of == "a"
        ));
        assert_eq!(
            d.check(&edited, None),
            Verdict::ExactDuplicate { of: "a".into() }
        );

        // Another copy is still reported while its sibling re-uploads.
        d.add("b".into(), d.fingerprint(&edited)).unwrap();
        assert_eq!(
            d.check(&edited, Some("a")),
            Verdict::ExactDuplicate { of: "b".into() }
        );
        assert_eq!(
            d.check(&edited, Some("b")),
            Verdict::ExactDuplicate { of: "a".into() }
        );
        assert!(d.remove("a"));
        assert!(!d.remove("a"));
        assert_eq!(d.check(&edited, Some("b")), Verdict::Unique);
    }

    #[test]
    fn deduplicator_rebuilds_from_stored_fingerprints() {
        let settings = DedupSettings::default();
        let hasher = MinHasher::default();
        let texts = [
            "First stored document with enough words to shingle.",
            "Second stored document, also long enough for shingles.",
        ];
        let rows: Vec<(String, String, MinHashSignature)> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let stored = hasher.signature(t).to_base64();
                (
                    format!("id{i}"),
                    normalized_hash(t),
                    MinHashSignature::from_base64(&stored).unwrap(),
                )
            })
            .collect();
        let d = Deduplicator::from_existing(&settings, rows).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(
            d.check(texts[1], None),
            Verdict::ExactDuplicate { of: "id1".into() }
        );

        let wrong = MinHasher::new(64, 5).unwrap().signature(texts[0]);
        let err = Deduplicator::from_existing(
            &settings,
            [("x".to_string(), normalized_hash(texts[0]), wrong)],
        )
        .unwrap_err();
        assert!(matches!(err, DedupError::Incompatible { .. }), "{err}");
        assert!(Deduplicator::new(&DedupSettings {
            threshold: 0.0,
            ..DedupSettings::default()
        })
        .is_err());
    }

    /// Near-duplicate pairs in the evaluation corpora at the default
    /// threshold, through the Deduplicator as ingestion would use it (check,
    /// then add), cross-checked by brute force.
    #[test]
    fn near_duplicate_pairs_in_eval_corpora() {
        for name in ["scifact-train", "cranfield", "adi"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("../shared/eval/{name}/corpus.jsonl"));
            if path.exists() {
                near_duplicate_pairs(name, &path);
            } else {
                println!("note: {} is absent; skipped", path.display());
            }
        }
    }

    fn near_duplicate_pairs(name: &str, path: &std::path::Path) {
        let docs = crate::ingest::formats::beir::load_corpus(path).unwrap();
        let started = Instant::now();
        let texts: Vec<(String, String)> = docs
            .into_iter()
            .map(|d| (d.id, crate::ingest::clean::clean_text(&d.text)))
            .collect();
        let settings = DedupSettings::default();
        let mut d = Deduplicator::new(&settings).unwrap();
        let mut lsh = LshIndex::new(settings.threshold, settings.num_perm).unwrap();
        let (mut exact, mut near, mut pairs) = (0, 0, 0);
        for (id, text) in &texts {
            let fp = d.fingerprint(text);
            match d.check_fingerprint(&fp, None) {
                Verdict::Unique => {}
                Verdict::ExactDuplicate { of } => {
                    exact += 1;
                    println!("  exact: {id} = {of}");
                }
                Verdict::NearDuplicate { of, similarity } => {
                    near += 1;
                    println!("  near: {id} ~ {of} ({similarity:.3})");
                }
            }
            // All pairs, not only the best match per document.
            pairs += lsh.query(&fp.signature).len();
            lsh.insert(id.clone(), &fp.signature).unwrap();
            d.add(id.clone(), fp).unwrap();
        }
        let took = started.elapsed();
        println!(
            "{name}: {} documents, {exact} exact duplicates, {near} near duplicates, \
             {pairs} pairs at >= {} (estimated Jaccard of word 5-grams), in {took:?}",
            texts.len(),
            settings.threshold
        );
        // Cross-check against a brute-force scan, and show what lower
        // thresholds would catch.
        let started = Instant::now();
        let sigs: Vec<MinHashSignature> =
            texts.iter().map(|(_, t)| d.hasher().signature(t)).collect();
        let mut at = [0usize; 4];
        let mut best = (0.0f64, 0, 0);
        for i in 0..sigs.len() {
            for j in i + 1..sigs.len() {
                let s = sigs[i].jaccard_estimate(&sigs[j]);
                for (k, t) in [0.3, 0.5, 0.8, 0.9].iter().enumerate() {
                    if s >= *t {
                        at[k] += 1;
                    }
                }
                if s > best.0 {
                    best = (s, i, j);
                }
            }
        }
        let most_similar = if best.0 > 0.0 {
            format!("{} ~ {} ({:.3})", texts[best.1].0, texts[best.2].0, best.0)
        } else {
            "no pair shares a shingle".to_string()
        };
        println!(
            "  brute force in {:?}: pairs >= 0.3: {}, >= 0.5: {}, >= 0.8: {}, >= 0.9: {}; \
             most similar: {most_similar}",
            started.elapsed(),
            at[0],
            at[1],
            at[2],
            at[3],
        );
        assert_eq!(at[3], pairs);
        assert!(took.as_secs() < 60);
    }

    #[test]
    fn verdict_serialises_with_a_kind_tag() {
        let v = Verdict::NearDuplicate {
            of: "x".into(),
            similarity: 0.95,
        };
        assert_eq!(
            serde_json::to_value(&v).unwrap(),
            serde_json::json!({"kind": "near_duplicate", "of": "x", "similarity": 0.95})
        );
        assert_eq!(
            serde_json::to_value(Verdict::Unique).unwrap(),
            serde_json::json!({"kind": "unique"})
        );
    }
}
