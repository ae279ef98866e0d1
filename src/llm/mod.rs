//! The seam between chat orchestration and whatever writes the answer: a
//! remote OpenAI-compatible endpoint, a local model, or the extractive
//! answerer that needs no model at all.
//!
//! Everything here is object-safe so the application can hold one
//! `Arc<dyn ChatModel>` chosen at start-up.

pub mod extractive;
#[cfg(feature = "local-llm")]
pub mod local;
pub mod markers;
pub mod openai;

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

pub use extractive::{ExtractiveConfig, ExtractiveModel, SentenceEmbedder};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// The same spelling serde uses, which is also what the `messages.role`
    /// column stores.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = LlmError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "system" => Ok(Role::System),
            "user" => Ok(Role::User),
            "assistant" => Ok(Role::Assistant),
            other => Err(LlmError::Malformed(format!("unknown role `{other}`"))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }

    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
}

/// One retrieved passage as the model sees it. `n` is the number the answer
/// cites it by (`[n]`), 1-based in retrieval rank order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub n: usize,
    pub chunk_id: String,
    pub document_id: String,
    pub title: String,
    pub text: String,
    pub score: f32,
}

/// What a model is asked to answer.
///
/// `messages` is the complete prompt (the system rules, the history that
/// fitted, then one user message with the numbered sources as quoted data and
/// the question), as built by `chat::prompt`. `sources` and `question` repeat the structured
/// parts for models that do not read prompts (the extractive one); a model
/// that does read the prompt ignores them.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub sources: Vec<Source>,
    pub question: String,
    /// Upper bound on the answer's length in the model's tokens. The prompt
    /// was sized so that this many tokens still fit the context window.
    /// 0 means no bound beyond the model's own.
    pub max_tokens: usize,
}

/// Token accounting for the `done` frame. The stream carries text only, so
/// the orchestrator fills this from the prompt's count and
/// `ChatModel::count_tokens` over the answer it collected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

impl Usage {
    pub fn total_tokens(&self) -> usize {
        self.prompt_tokens + self.completion_tokens
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    #[error("the model did not answer in time: {0}")]
    Timeout(String),
    /// The model (or its server) failed or refused.
    #[error("the model failed: {0}")]
    Upstream(String),
    /// The model answered something we cannot read.
    #[error("unreadable model output: {0}")]
    Malformed(String),
    /// The model is not configured or not loaded.
    #[error("no chat model available: {0}")]
    Unavailable(String),
    /// The sentence embedder behind the extractive model failed.
    #[error("embedding failed: {0}")]
    Embedding(String),
    #[error("generation cancelled")]
    Cancelled,
}

impl LlmError {
    /// Stable machine-readable name for error frames and logs.
    pub fn code(&self) -> &'static str {
        match self {
            LlmError::Timeout(_) => "llm_timeout",
            LlmError::Upstream(_) => "llm_upstream",
            LlmError::Malformed(_) => "llm_malformed",
            LlmError::Unavailable(_) => "llm_unavailable",
            LlmError::Embedding(_) => "llm_embedding",
            LlmError::Cancelled => "cancelled",
        }
    }

    /// What a client is told: the kind of failure without its detail, which
    /// can name the model server's address or files on the server.
    pub fn public_message(&self) -> &'static str {
        match self {
            LlmError::Timeout(_) => "the model did not answer in time",
            LlmError::Upstream(_) => "the model failed",
            LlmError::Malformed(_) => "the model's output could not be read",
            LlmError::Unavailable(_) => "no chat model is available",
            LlmError::Embedding(_) => "embedding failed",
            LlmError::Cancelled => "generation cancelled",
        }
    }
}

/// Text deltas of one answer, in order. Concatenated they are the answer.
pub type TokenStream = BoxStream<'static, Result<String, LlmError>>;

/// A chat model behind one streaming interface.
///
/// Cancellation is by drop: when the client goes away or sends `cancel`, the
/// orchestrator drops the `TokenStream`. Implementations must make that stop
/// the work, i.e. own their generation inside the stream (or abort a spawned
/// task from a drop guard, or close the HTTP response body) rather than
/// generating to completion in a detached task. A model must never keep
/// burning CPU or upstream quota for an answer nobody reads.
#[async_trait]
pub trait ChatModel: Send + Sync {
    /// Short name for logs, metrics and the stored message.
    fn name(&self) -> &str;

    /// Context window in this model's tokens (prompt plus answer).
    fn context_window(&self) -> usize;

    /// Length of `text` in this model's tokens, with its own tokenizer where
    /// it has one. Prompt budgeting trusts this, so it must not undercount.
    fn count_tokens(&self, text: &str) -> usize;

    /// Start answering. Errors before the first delta (bad request, model
    /// unavailable) come from here; errors mid-answer come through the stream.
    async fn stream(&self, req: ChatRequest) -> Result<TokenStream, LlmError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_spelling_is_shared_by_serde_display_and_parse() {
        for role in [Role::System, Role::User, Role::Assistant] {
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{}\"", role.as_str()));
            assert_eq!(role.to_string().parse::<Role>().unwrap(), role);
            let back: Role = serde_json::from_str(&json).unwrap();
            assert_eq!(back, role);
        }
        assert!("User".parse::<Role>().is_err());
    }

    #[test]
    fn message_serialises_with_lowercase_role() {
        let m = ChatMessage::assistant("hi");
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            serde_json::json!({"role": "assistant", "content": "hi"})
        );
    }

    #[test]
    fn error_codes_are_distinct() {
        let all = [
            LlmError::Timeout(String::new()),
            LlmError::Upstream(String::new()),
            LlmError::Malformed(String::new()),
            LlmError::Unavailable(String::new()),
            LlmError::Embedding(String::new()),
            LlmError::Cancelled,
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(LlmError::code).collect();
        assert_eq!(codes.len(), all.len());
    }

    #[test]
    fn chat_model_is_object_safe() {
        fn takes(_: Option<std::sync::Arc<dyn ChatModel>>) {}
        takes(None);
    }
}
