//! `[chat]`: which model writes answers and the limits of a conversation.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// The answer writer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatBackend {
    /// The local GGUF model when its file is installed, else extractive.
    #[default]
    Auto,
    /// The extractive answerer: no model needed.
    Extractive,
    /// An OpenAI-compatible endpoint, see `[llm]`.
    #[serde(rename = "openai")]
    OpenAi,
    /// llama.cpp in process, see `[local_llm]`.
    Local,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChatSettings {
    pub backend: ChatBackend,
    /// The question is refused without calling the model when its evidence,
    /// the best source's cosine similarity plus `term_share_weight` × (the
    /// share of the question's terms the sources contain − 0.5), is below
    /// this.
    pub refusal_threshold: f32,
    /// How much the question's own vocabulary in the sources moves the
    /// evidence (0: the cosine alone).
    pub term_share_weight: f32,
    pub default_top_k: usize,
    pub max_top_k: usize,
    /// Tokens kept free for the answer in the model's context window.
    pub answer_reserve_tokens: usize,
    /// Recent messages considered as history (then fitted to the budget).
    pub history_messages: usize,
    pub max_question_chars: usize,
    /// Seconds between WebSocket pings; a client silent for three is dropped.
    pub ping_interval_secs: u64,
}

impl Default for ChatSettings {
    fn default() -> Self {
        Self {
            backend: ChatBackend::Auto,
            // Measured with each development set's questions asked of the
            // other sets' collections (docs/EVALUATION.md, "Refusal").
            refusal_threshold: 0.44,
            term_share_weight: 0.1,
            default_top_k: 5,
            max_top_k: 20,
            answer_reserve_tokens: 512,
            history_messages: 20,
            max_question_chars: 4000,
            ping_interval_secs: 15,
        }
    }
}

impl ChatSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.backend == ChatBackend::Local && !cfg!(feature = "local-llm") {
            return Err(invalid(
                "chat.backend",
                "`local` needs a build with the `local-llm` feature (the default)",
            ));
        }
        if !(self.refusal_threshold.is_finite() && (-1.0..=1.0).contains(&self.refusal_threshold)) {
            return Err(invalid(
                "chat.refusal_threshold",
                "must be a cosine similarity between -1 and 1",
            ));
        }
        if !(self.term_share_weight.is_finite() && (0.0..=1.0).contains(&self.term_share_weight)) {
            return Err(invalid("chat.term_share_weight", "must be between 0 and 1"));
        }
        if self.max_top_k == 0 || self.max_top_k > 100 {
            return Err(invalid("chat.max_top_k", "must be between 1 and 100"));
        }
        if self.default_top_k == 0 || self.default_top_k > self.max_top_k {
            return Err(invalid(
                "chat.default_top_k",
                "must be between 1 and chat.max_top_k",
            ));
        }
        if self.answer_reserve_tokens < 16 {
            return Err(invalid("chat.answer_reserve_tokens", "must be at least 16"));
        }
        if self.max_question_chars == 0 || self.max_question_chars > 100_000 {
            return Err(invalid(
                "chat.max_question_chars",
                "must be between 1 and 100000",
            ));
        }
        if self.ping_interval_secs == 0 {
            return Err(invalid("chat.ping_interval_secs", "must be at least 1"));
        }
        Ok(())
    }
}
