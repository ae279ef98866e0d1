//! `[local_llm]`: a GGUF model run in process by llama.cpp.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// A GGUF model run in process by llama.cpp, used when `chat.backend =
/// "local"`, or by `auto` when the model file exists.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LocalLlmSettings {
    /// Empty means `<models_dir>/llm/SmolLM2-135M-Instruct.Q4_1.gguf`, which
    /// `scripts/setup-models.sh --with-llm` installs.
    pub model_path: PathBuf,
    /// Threads per generation; 0 means one per core. Size it to the cores
    /// left free: oversubscribed llama.cpp threads collapse throughput.
    pub threads: usize,
    /// Context window in tokens (prompt and answer), at most what the model
    /// was trained on.
    pub context_window: usize,
    /// Answers generated at once; more wait their turn.
    pub max_concurrent: usize,
    /// 0 is greedy decoding: deterministic, and what grounded answers want.
    pub temperature: f32,
    pub top_p: f32,
    /// 1.0 disables it; small models loop without a little.
    pub repeat_penalty: f32,
    pub seed: u32,
}

impl Default for LocalLlmSettings {
    fn default() -> Self {
        Self {
            model_path: PathBuf::new(),
            threads: 0,
            context_window: 4096,
            max_concurrent: 1,
            temperature: 0.0,
            top_p: 0.95,
            repeat_penalty: 1.1,
            seed: 42,
        }
    }
}

impl LocalLlmSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.context_window < 256 {
            return Err(invalid(
                "local_llm.context_window",
                "must be at least 256 tokens",
            ));
        }
        if self.max_concurrent == 0 {
            return Err(invalid("local_llm.max_concurrent", "must be at least 1"));
        }
        if !(self.temperature.is_finite() && (0.0..=2.0).contains(&self.temperature)) {
            return Err(invalid("local_llm.temperature", "must be between 0 and 2"));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(invalid("local_llm.top_p", "must be in (0, 1]"));
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return Err(invalid("local_llm.repeat_penalty", "must be above 0"));
        }
        Ok(())
    }
}
