//! `[llm]`: the OpenAI-compatible server behind `chat.backend = "openai"`.

use serde::{Deserialize, Serialize};

use super::{invalid, ChatBackend, ConfigError};

/// An OpenAI-compatible chat completions endpoint (OpenAI, vLLM, Ollama,
/// llama.cpp server), used when `chat.backend = "openai"`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LlmSettings {
    /// Such as `https://api.openai.com/v1` or `http://127.0.0.1:11434/v1`.
    pub base_url: String,
    pub model: String,
    /// Best given as `RAGCHAT_LLM_API_KEY`; empty sends no key.
    pub api_key: String,
    /// Whole answer, first byte to last.
    pub request_timeout_secs: u64,
    /// From sending the request to the first token; only before it are
    /// failures retried, so a client never sees an answer twice.
    pub first_token_timeout_secs: u64,
    pub max_retries: u32,
    /// The model's context window in tokens (prompt and answer).
    pub context_window: usize,
}

impl Default for LlmSettings {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            model: String::new(),
            api_key: String::new(),
            request_timeout_secs: 120,
            first_token_timeout_secs: 30,
            max_retries: 2,
            context_window: 8192,
        }
    }
}

impl LlmSettings {
    /// The endpoint and model are only required when they will be used.
    pub(super) fn check(&self, backend: ChatBackend) -> Result<(), ConfigError> {
        if backend == ChatBackend::OpenAi {
            if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
                return Err(invalid(
                    "llm.base_url",
                    "chat.backend = \"openai\" needs an http(s) URL such as http://127.0.0.1:11434/v1",
                ));
            }
            if self.model.trim().is_empty() {
                return Err(invalid(
                    "llm.model",
                    "chat.backend = \"openai\" needs a model name",
                ));
            }
        }
        if self.request_timeout_secs == 0 || self.first_token_timeout_secs == 0 {
            return Err(invalid(
                "llm.request_timeout_secs",
                "timeouts must be at least 1 second",
            ));
        }
        if self.max_retries > 10 {
            return Err(invalid("llm.max_retries", "must be at most 10"));
        }
        if self.context_window < 256 {
            return Err(invalid("llm.context_window", "must be at least 256 tokens"));
        }
        Ok(())
    }
}
