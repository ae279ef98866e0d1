//! Steps 1 and 2 of the algorithm (see the parent module): words and the
//! exact hash.

use sha2::{Digest, Sha256};

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
