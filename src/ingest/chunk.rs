//! Token-sized chunking with the embedding model's own tokenizer, so a chunk
//! never exceeds what the model reads (256 tokens) and no text is silently
//! truncated away. Markdown is split on its structure first.

use text_splitter::{ChunkConfig, MarkdownSplitter, TextSplitter};
use tokenizers::Tokenizer;

#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("invalid chunking settings: {0}")]
    Config(String),
}

/// One chunk of a document. Offsets are in characters (Unicode scalar values)
/// into the cleaned document text, end exclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub position: usize,
    pub text: String,
    pub char_start: usize,
    pub char_end: usize,
    pub token_count: usize,
}

pub struct Chunker {
    text: TextSplitter<Tokenizer>,
    markdown: MarkdownSplitter<Tokenizer>,
    tokenizer: Tokenizer,
    max_tokens: usize,
    overlap: usize,
}

impl Chunker {
    pub fn new(
        tokenizer: Tokenizer,
        max_tokens: usize,
        overlap: usize,
    ) -> Result<Self, ChunkError> {
        let config = || {
            ChunkConfig::new(max_tokens)
                .with_overlap(overlap)
                .map(|c| c.with_sizer(tokenizer.clone()))
                .map_err(|e| ChunkError::Config(e.to_string()))
        };
        Ok(Self {
            text: TextSplitter::new(config()?),
            markdown: MarkdownSplitter::new(config()?),
            tokenizer,
            max_tokens,
            overlap,
        })
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Identifies the settings that shape chunks.
    pub fn signature(&self) -> String {
        format!("chunker:v1:{}:{}", self.max_tokens, self.overlap)
    }

    /// Token count without special tokens.
    pub fn count_tokens(&self, text: &str) -> usize {
        self.tokenizer
            .encode_fast(text, false)
            .map(|e| e.len())
            .unwrap_or_else(|_| text.split_whitespace().count())
    }

    pub fn chunk(&self, text: &str, markdown: bool) -> Vec<Piece> {
        let raw: Vec<(usize, &str)> = if markdown {
            self.markdown
                .chunk_char_indices(text)
                .map(|c| (c.char_offset, c.chunk))
                .collect()
        } else {
            self.text
                .chunk_char_indices(text)
                .map(|c| (c.char_offset, c.chunk))
                .collect()
        };
        raw.into_iter()
            .filter(|(_, t)| !t.trim().is_empty())
            .enumerate()
            .map(|(position, (start, t))| Piece {
                position,
                char_start: start,
                char_end: start + t.chars().count(),
                token_count: self.count_tokens(t),
                text: t.to_string(),
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::embed::{load_tokenizer, ModelPaths};

    /// Tests need the real tokenizer: the whole point is sizing in model tokens.
    pub(crate) fn test_tokenizer() -> Tokenizer {
        let dir = std::env::var("RAGCHAT_MODELS_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
        load_tokenizer(&ModelPaths::new(&dir))
            .expect("tokenizer missing: run scripts/setup-models.sh before the tests")
    }

    fn sample() -> String {
        let mut s = String::new();
        for i in 0..60 {
            s.push_str(&format!(
                "Sentence number {i} talks about boundary layers, shock waves and heat transfer at Mach {i}. "
            ));
            if i % 7 == 6 {
                s.push_str("\n\n");
            }
        }
        s.push_str("Ünïcödé tail — with dashes.");
        s
    }

    fn char_slice(text: &str, start: usize, end: usize) -> String {
        text.chars().skip(start).take(end - start).collect()
    }

    #[test]
    fn offsets_sizes_and_overlap() {
        // Overlap is made of whole semantic units (sentences here, ~22 tokens),
        // so it must be large enough to hold one.
        let chunker = Chunker::new(test_tokenizer(), 96, 40).unwrap();
        let text = sample();
        let pieces = chunker.chunk(&text, false);
        assert!(
            pieces.len() > 5,
            "expected several chunks, got {}",
            pieces.len()
        );
        for (i, p) in pieces.iter().enumerate() {
            assert_eq!(p.position, i);
            assert_eq!(
                char_slice(&text, p.char_start, p.char_end),
                p.text,
                "offsets of chunk {i}"
            );
            assert!(
                p.token_count <= 96,
                "chunk {i} has {} tokens",
                p.token_count
            );
            assert!(p.token_count > 0);
        }
        // Overlap: neighbours share text, except across a paragraph break,
        // where text-splitter starts afresh; either way no text is skipped.
        let mut overlapping = 0;
        for w in pieces.windows(2) {
            assert!(w[1].char_start > w[0].char_start);
            if w[1].char_start < w[0].char_end {
                overlapping += 1;
            } else {
                let gap = char_slice(&text, w[0].char_end, w[1].char_start);
                assert!(
                    gap.trim().is_empty(),
                    "text skipped between chunks: {gap:?}"
                );
            }
        }
        assert!(
            overlapping >= pieces.len() / 2,
            "{overlapping} of {} pairs overlap",
            pieces.len() - 1
        );
        assert_eq!(pieces[0].char_start, 0);
        assert_eq!(pieces.last().unwrap().char_end, text.chars().count());
    }

    #[test]
    fn no_overlap_means_disjoint_chunks() {
        let chunker = Chunker::new(test_tokenizer(), 64, 0).unwrap();
        let text = sample();
        let pieces = chunker.chunk(&text, false);
        for w in pieces.windows(2) {
            assert!(w[1].char_start >= w[0].char_end);
        }
    }

    #[test]
    fn markdown_splits_on_headings() {
        // Each section is ~20 tokens: together they exceed 32, so the split
        // must fall on the heading, not inside a section.
        let chunker = Chunker::new(test_tokenizer(), 32, 0).unwrap();
        let text = "# Install\n\nRun the installer script and wait for it to finish downloading the files it needs.\n\n# Configure\n\nEdit the settings file and set the data directory to a place with enough space.";
        let pieces = chunker.chunk(text, true);
        assert_eq!(pieces.len(), 2, "{pieces:?}");
        assert!(pieces[0].text.starts_with("# Install"));
        assert!(pieces[1].text.starts_with("# Configure"));
    }

    #[test]
    fn short_and_empty_texts() {
        let chunker = Chunker::new(test_tokenizer(), 64, 8).unwrap();
        assert!(chunker.chunk("", false).is_empty());
        assert!(chunker.chunk("   \n ", false).is_empty());
        let one = chunker.chunk("Just one line.", false);
        assert_eq!(one.len(), 1);
        assert_eq!((one[0].char_start, one[0].char_end), (0, 14));
    }

    #[test]
    fn overlap_must_be_smaller_than_size() {
        assert!(Chunker::new(test_tokenizer(), 32, 32).is_err());
    }
}
