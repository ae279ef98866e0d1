//! Steps 3 to 6 of the algorithm (see the parent module): shingles, their
//! hashes, the hash family and the signature, with its stored encoding.

use base64::Engine;

use super::words::normalized_words;
use super::{DedupError, DEFAULT_NUM_PERM, DEFAULT_SHINGLE_SIZE, SIGNATURE_VERSION};

const SIGNATURE_MAGIC: [u8; 2] = *b"MH";
const HEADER_LEN: usize = 6;

/// Fixed seed of the hash family ("ragchat1" in ASCII).
pub(super) const SEED: u64 = 0x7261_6763_6861_7431;
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

pub(super) const fn splitmix64(x: u64) -> u64 {
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

pub(super) fn matching_values(a: &[u64], b: &[u64]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x == y).count()
}
