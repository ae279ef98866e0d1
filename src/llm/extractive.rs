//! Extractive answers: no language model. The answer is the few sentences of
//! the retrieved passages most similar to the question (embedding cosine,
//! redundancy removed with maximal marginal relevance), each followed by the
//! marker of its source. It is the default when no model is installed, and it
//! is deterministic, so the chat path can be tested end to end.
//!
//! It reads `ChatRequest::question` and `ChatRequest::sources` only: a
//! follow-up that leans on earlier turns ("and its population?") is answered
//! as it stands.

use std::cmp::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;

use super::{ChatModel, ChatRequest, LlmError, Source, TokenStream};
use crate::text::citations::strip_markers;

/// What the extractive model says when no sentence is similar enough.
pub const NO_ANSWER: &str = "The knowledge base does not cover this: none of the retrieved sources contain an answer to the question.";

/// Nothing is sent to a model, so the only limit is what is worth reading.
pub const CONTEXT_WINDOW: usize = 1 << 20;

/// Embeddings for the extractive model. Implemented for the crate's
/// `Embedder`; tests use a deterministic fake.
#[async_trait]
pub trait SentenceEmbedder: Send + Sync {
    /// One vector per text, in input order.
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, LlmError>;

    /// The question's vector. Separate so an implementation can reuse the
    /// vector that retrieval already computed for the same text.
    async fn embed_query(&self, text: &str) -> Result<Vec<f32>, LlmError> {
        self.embed(vec![text.to_string()])
            .await?
            .pop()
            .ok_or_else(|| LlmError::Embedding("no vector for the question".into()))
    }
}

#[async_trait]
impl SentenceEmbedder for crate::embed::Embedder {
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, LlmError> {
        crate::embed::Embedder::embed(self, texts)
            .await
            .map_err(embed_error)
    }

    async fn embed_query(&self, text: &str) -> Result<Vec<f32>, LlmError> {
        // Retrieval embedded this exact question moments ago; this hits its cache.
        crate::embed::Embedder::embed_query(self, text)
            .await
            .map(|v| v.as_ref().clone())
            .map_err(embed_error)
    }
}

fn embed_error(e: crate::embed::EmbedError) -> LlmError {
    match e {
        crate::embed::EmbedError::Missing { .. } => LlmError::Unavailable(e.to_string()),
        other => LlmError::Embedding(other.to_string()),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExtractiveConfig {
    /// Most sentences in one answer.
    pub max_sentences: usize,
    /// Cosine with the question below which a sentence is never used.
    /// Calibrated for all-MiniLM-L6-v2 on the sample corpus: on-topic
    /// sentences score 0.5 to 0.75, the best sentence for an off-topic
    /// question 0.15 to 0.3.
    pub min_similarity: f32,
    /// A sentence this much less similar than the best one is left out:
    /// a tangent is worse than a shorter answer.
    pub max_gap_from_best: f32,
    /// MMR trade-off: 1.0 is pure relevance, lower values favour variety.
    pub lambda: f32,
    /// A sentence at least this similar to one already picked is a repeat.
    pub max_redundancy: f32,
    /// Sentences considered per request (in source order), bounding the
    /// embedding work for very long sources.
    pub max_candidates: usize,
    /// Embed each sentence as `title. sentence`: a sentence from the middle
    /// of a document often lacks its subject, as chunks do at indexing.
    pub title_context: bool,
}

impl Default for ExtractiveConfig {
    fn default() -> Self {
        Self {
            max_sentences: 3,
            min_similarity: 0.35,
            max_gap_from_best: 0.15,
            lambda: 0.7,
            max_redundancy: 0.9,
            max_candidates: 400,
            title_context: true,
        }
    }
}

pub struct ExtractiveModel<E: ?Sized> {
    embedder: Arc<E>,
    config: ExtractiveConfig,
}

impl<E: SentenceEmbedder + ?Sized> ExtractiveModel<E> {
    pub fn new(embedder: Arc<E>) -> Self {
        Self::with_config(embedder, ExtractiveConfig::default())
    }

    pub fn with_config(embedder: Arc<E>, config: ExtractiveConfig) -> Self {
        Self { embedder, config }
    }

    pub fn config(&self) -> &ExtractiveConfig {
        &self.config
    }

    /// The whole answer text (the stream is this, cut into deltas).
    pub async fn answer(&self, req: &ChatRequest) -> Result<String, LlmError> {
        let question = req.question.trim();
        let candidates: Vec<Candidate> = candidates(&req.sources, &self.config)
            .into_iter()
            .filter(|c| !restates(&c.text, question))
            .collect();
        if question.is_empty() || candidates.is_empty() || self.config.max_sentences == 0 {
            return Ok(NO_ANSWER.to_string());
        }
        let query = self.embedder.embed_query(question).await?;
        let texts: Vec<String> = candidates.iter().map(|c| c.embed_text.clone()).collect();
        let vectors = self.embedder.embed(texts).await?;
        if vectors.len() != candidates.len() {
            return Err(LlmError::Embedding(format!(
                "{} vectors for {} sentences",
                vectors.len(),
                candidates.len()
            )));
        }
        let relevance: Vec<f32> = vectors.iter().map(|v| cosine(&query, v)).collect();
        let budget = if req.max_tokens == 0 {
            usize::MAX
        } else {
            req.max_tokens
        };
        let picked = select(&candidates, &vectors, &relevance, &self.config, budget);
        if picked.is_empty() {
            return Ok(NO_ANSWER.to_string());
        }
        let parts: Vec<String> = picked
            .iter()
            .map(|p| format!("{} [{}]", p.text, candidates[p.index].n))
            .collect();
        Ok(parts.join(" "))
    }
}

#[async_trait]
impl<E: SentenceEmbedder + ?Sized + 'static> ChatModel for ExtractiveModel<E> {
    fn name(&self) -> &str {
        "extractive"
    }

    fn context_window(&self) -> usize {
        CONTEXT_WINDOW
    }

    /// Whitespace words. This model has no tokenizer and its output is made
    /// of whole source words plus one marker per sentence, so a word count is
    /// the natural unit for its answer budget and usage figures.
    fn count_tokens(&self, text: &str) -> usize {
        text.split_whitespace().count()
    }

    async fn stream(&self, req: ChatRequest) -> Result<TokenStream, LlmError> {
        let answer = self.answer(&req).await?;
        // Word-sized deltas, so the client and the citation filter see a
        // real stream (markers included) rather than one block.
        Ok(futures::stream::iter(deltas(&answer).into_iter().map(Ok)).boxed())
    }
}

struct Candidate {
    n: usize,
    text: String,
    embed_text: String,
}

struct Pick {
    index: usize,
    text: String,
}

/// Sentences of all sources in (n, position) order, which is also the
/// tie-break order, so equal inputs give equal answers whatever order the
/// sources arrived in.
fn candidates(sources: &[Source], config: &ExtractiveConfig) -> Vec<Candidate> {
    let mut ordered: Vec<&Source> = sources.iter().collect();
    ordered.sort_by_key(|s| s.n);
    let mut out = Vec::new();
    for src in ordered {
        let title = src.title.trim();
        for sentence in whole_sentences(&src.text) {
            if out.len() >= config.max_candidates {
                return out;
            }
            let embed_text = if !config.title_context || title.is_empty() {
                sentence.clone()
            } else if title.ends_with(['.', '?', '!']) {
                format!("{title} {sentence}")
            } else {
                format!("{title}. {sentence}")
            };
            out.push(Candidate {
                n: src.n,
                text: sentence,
                embed_text,
            });
        }
    }
    out
}

/// Greedy MMR over the sentences relevant enough, within the sentence and
/// token limits; returned most relevant first.
fn select(
    candidates: &[Candidate],
    vectors: &[Vec<f32>],
    relevance: &[f32],
    config: &ExtractiveConfig,
    budget: usize,
) -> Vec<Pick> {
    let cost = |text: &str| text.split_whitespace().count() + 1;
    let Some(best) = (0..candidates.len())
        .filter(|&i| relevance[i] >= config.min_similarity)
        .max_by(|&a, &b| by_score(relevance, a, b))
    else {
        return Vec::new();
    };
    let floor = config
        .min_similarity
        .max(relevance[best] - config.max_gap_from_best);
    let mut open: Vec<usize> = (0..candidates.len())
        .filter(|&i| relevance[i] >= floor)
        .collect();
    let mut picked: Vec<usize> = Vec::new();
    let mut used = 0;
    while picked.len() < config.max_sentences {
        let mut best_pick: Option<(usize, f32)> = None;
        open.retain(|&i| {
            let redundancy = picked
                .iter()
                .map(|&j| cosine(&vectors[i], &vectors[j]))
                .fold(0.0f32, f32::max);
            if redundancy >= config.max_redundancy {
                return false;
            }
            let mmr = config.lambda * relevance[i] - (1.0 - config.lambda) * redundancy;
            // Strictly greater, so among equals the earliest (lowest n, then
            // position) wins.
            if best_pick.is_none_or(|(_, m)| mmr.total_cmp(&m) == Ordering::Greater) {
                best_pick = Some((i, mmr));
            }
            true
        });
        let Some((i, _)) = best_pick else { break };
        open.retain(|&j| j != i);
        let c = cost(&candidates[i].text);
        if used + c <= budget {
            used += c;
            picked.push(i);
        }
    }
    if picked.is_empty() {
        // Not even the best sentence fits the budget: a truncated relevant
        // sentence is still better than claiming there is no answer.
        let words: Vec<&str> = candidates[best].text.split_whitespace().collect();
        let keep = budget.saturating_sub(1).max(1).min(words.len());
        let text = format!("{}…", words[..keep].join(" "));
        return vec![Pick { index: best, text }];
    }
    picked.sort_by(|&a, &b| by_score(relevance, b, a));
    picked
        .into_iter()
        .map(|index| Pick {
            index,
            text: candidates[index].text.clone(),
        })
        .collect()
}

/// Higher relevance is greater; among equals the earlier candidate is greater.
fn by_score(relevance: &[f32], a: usize, b: usize) -> Ordering {
    relevance[a]
        .total_cmp(&relevance[b])
        .then_with(|| b.cmp(&a))
}

/// Cosine similarity; 0 for mismatched, zero or non-finite vectors so that a
/// bad vector can never win.
fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    let c = dot / (na.sqrt() * nb.sqrt());
    if c.is_finite() {
        c
    } else {
        0.0
    }
}

/// The answer cut after each run of whitespace: "a b  c" → "a ", "b  ", "c".
fn deltas(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_space = false;
    for c in text.chars() {
        if in_space && !c.is_whitespace() {
            out.push(std::mem::take(&mut current));
        }
        in_space = c.is_whitespace();
        current.push(c);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Words after which a single period does not end a sentence.
const ABBREVIATIONS: &[&str] = &[
    "e.g", "i.e", "cf", "vs", "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "fig", "figs",
    "vol", "pp", "approx", "ca", "dept", "eq", "ref",
];

/// Split passage text into answer-worthy sentences: markdown headings, list
/// bullets and the passage's own reference markers (`[3]`) are removed, and
/// fragments of fewer than three words are left out.
pub fn split_sentences(text: &str) -> Vec<String> {
    let text = strip_markers(text);
    let mut out = Vec::new();
    for block in blocks(&text) {
        split_block(&block, &mut out);
    }
    out.into_iter().filter_map(|s| clean_sentence(&s)).collect()
}

/// Whether `sentence` only repeats words of the question: a guide that lists
/// sample questions holds the user's question almost word for word, and it
/// is the most similar sentence there is, but it answers nothing.
fn restates(sentence: &str, question: &str) -> bool {
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    let asked = words(question);
    let said = words(sentence);
    !said.is_empty() && said.iter().all(|w| asked.contains(w))
}

/// The sentences of a passage that are whole. A passage is a window on its
/// document, and with chunk overlap a window can open or close in the middle
/// of a sentence; an answer made of "the number of documents processed, [2]"
/// reads as broken. The first sentence is a fragment when it opens with
/// punctuation, or lowercase with a word that nowhere else in the passage
/// opens a sentence (which keeps lowercase names such as "ragchat runs…");
/// the last is one when the window ends on a long line of prose without a
/// closing mark.
pub fn whole_sentences(text: &str) -> Vec<String> {
    let mut sentences = split_sentences(text);
    let opening = strip_markers(text);
    let opening = opening.trim_start();
    if let Some(first) = sentences.first() {
        // Only when the passage's own first words are that sentence's, not a
        // heading or a bullet that was stripped.
        let cut = opening.starts_with(first.split_whitespace().next().unwrap_or("\u{0}"))
            && opens_mid_sentence(first, &sentences[1..]);
        if cut {
            sentences.remove(0);
        }
    }
    let last_line = text.trim_end().lines().last().unwrap_or("").trim();
    let unfinished = last_line.split_whitespace().count() >= 6
        && list_marker_len(last_line).is_none()
        && !last_line.starts_with(['#', '|', '>'])
        && !last_line.ends_with(|c: char| is_terminal(c) || is_closer(c) || matches!(c, ':' | ';'));
    if unfinished {
        if let Some(last) = sentences.last() {
            let tail: String = last_line.split_whitespace().collect::<Vec<_>>().join(" ");
            if tail.ends_with(last.as_str()) || last.ends_with(tail.as_str()) {
                sentences.pop();
            }
        }
    }
    sentences
}

fn opens_mid_sentence(first: &str, rest: &[String]) -> bool {
    let Some(c) = first.chars().next() else {
        return false;
    };
    if matches!(c, ',' | ';' | ':' | ')' | ']' | '}' | '-' | '–' | '—') {
        return true;
    }
    if !c.is_lowercase() {
        return false;
    }
    let word = first.split_whitespace().next().unwrap_or("");
    !rest
        .iter()
        .any(|s| s.split_whitespace().next() == Some(word))
}

/// Lines grouped into runs of prose. A single newline inside a paragraph is
/// usually a hard wrap, so lines are joined unless the break is structural:
/// a blank line, a heading, a list item, a table row, or a short line
/// without punctuation (a title).
fn blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current = String::new();
    let mut flush = |current: &mut String| {
        if !current.is_empty() {
            blocks.push(std::mem::take(current));
        }
    };
    let mut in_item = false;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty()
            || line.starts_with('#')
            || line.starts_with('|')
            || line.starts_with("```")
        {
            // Headings, table rows and fences are not sentences.
            flush(&mut current);
            in_item = false;
            continue;
        }
        let item = list_marker_len(line).is_some() || line.starts_with('>');
        // A list item continues only on indented lines; an unindented line
        // after it is new prose.
        if item || (in_item && !raw.starts_with(char::is_whitespace)) {
            flush(&mut current);
            in_item = item;
        }
        let short_unpunctuated = !item
            && line.split_whitespace().count() < 6
            && !line.ends_with(['.', '?', '!', '…', ':', ';', ',']);
        if short_unpunctuated && current.is_empty() {
            // A title or label on a line of its own: not an answer.
            continue;
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(line);
        if short_unpunctuated {
            // The short last line of a paragraph that lacks its full stop.
            flush(&mut current);
        }
    }
    flush(&mut current);
    blocks
}

fn split_block(block: &str, out: &mut Vec<String>) {
    let chars: Vec<(usize, char)> = block.char_indices().collect();
    let mut start = 0;
    let mut k = 0;
    while k < chars.len() {
        if !is_terminal(chars[k].1) {
            k += 1;
            continue;
        }
        let run_start = k;
        while k < chars.len() && is_terminal(chars[k].1) {
            k += 1;
        }
        let single_period = k - run_start == 1 && chars[run_start].1 == '.';
        while k < chars.len() && is_closer(chars[k].1) {
            k += 1;
        }
        let end = chars.get(k).map_or(block.len(), |&(i, _)| i);
        if end < block.len() && !block[end..].starts_with(char::is_whitespace) {
            // "3.5", "e.g.,", "example.com": not an ending.
            continue;
        }
        let next = block[end..].trim_start().chars().next();
        if ends_sentence(&block[start..chars[run_start].0], single_period, next) {
            out.push(block[start..end].to_string());
            start = end;
        }
    }
    if start < block.len() {
        out.push(block[start..].to_string());
    }
}

/// Whether punctuation after `before` ends the sentence, given the next
/// visible character.
fn ends_sentence(before: &str, single_period: bool, next: Option<char>) -> bool {
    let Some(next) = next else { return true };
    if !single_period {
        return true;
    }
    let word = before
        .rsplit(char::is_whitespace)
        .next()
        .unwrap_or("")
        .trim_start_matches(|c: char| !c.is_alphanumeric());
    let lower = word.to_lowercase();
    if ABBREVIATIONS.contains(&lower.as_str()) {
        return false;
    }
    // A lowercase word after a short or dotted word ("etc. and", "a.m. on")
    // means an abbreviation we do not list. After a long word it is a new
    // sentence that starts with a lowercase name ("… vectors. ragchat runs").
    if next.is_lowercase() && (word.chars().count() <= 3 || word.contains('.')) {
        return false;
    }
    if lower == "no" && next.is_ascii_digit() {
        return false;
    }
    // An initial, as in "J. R. R. Tolkien".
    let mut letters = word.chars();
    if let (Some(c), None) = (letters.next(), letters.next()) {
        if c.is_uppercase() {
            return false;
        }
    }
    true
}

fn is_terminal(c: char) -> bool {
    matches!(c, '.' | '?' | '!' | '…')
}

fn is_closer(c: char) -> bool {
    matches!(c, '"' | '\'' | ')' | ']' | '”' | '’' | '»')
}

/// Length of a leading list marker ("- ", "* ", "1. ", "2) "), if any.
fn list_marker_len(line: &str) -> Option<usize> {
    for bullet in ["- ", "* ", "+ ", "• "] {
        if line.starts_with(bullet) {
            return Some(bullet.len());
        }
    }
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    if (1..=3).contains(&digits) {
        let rest = &line[digits..];
        if rest.starts_with(". ") || rest.starts_with(") ") {
            return Some(digits + 2);
        }
    }
    None
}

fn clean_sentence(s: &str) -> Option<String> {
    let mut s = s.trim();
    while let Some(len) = list_marker_len(s).or_else(|| s.starts_with("> ").then_some(2)) {
        s = s[len..].trim_start();
    }
    let words: Vec<&str> = s.split_whitespace().collect();
    // A sentence ending in a colon introduces what follows it (a list, a
    // code block) and says nothing on its own.
    if words.len() < 3 || !s.chars().any(char::is_alphabetic) || s.ends_with(':') {
        return None;
    }
    Some(words.join(" "))
}

#[cfg(test)]
mod tests;
