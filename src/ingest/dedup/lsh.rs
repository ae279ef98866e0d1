//! Banded LSH over MinHash signatures (see the parent module for the band
//! choice).

use std::cmp::Ordering;
use std::collections::HashMap;

use super::minhash::{matching_values, splitmix64, SEED};
use super::{DedupError, MinHashSignature};

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
