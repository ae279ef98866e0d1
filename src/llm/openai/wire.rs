//! The chat completions wire format: chunks, errors, non-streamed answers.

use async_openai::types::chat::{ChatChoice, ChatChoiceStream};
use serde::Deserialize;

use super::call::{Failure, Item};
use super::sse::SseEvent;
use crate::llm::LlmError;

/// One `chat.completion.chunk` (or, from a server that does not stream, one
/// `chat.completion`). The choices are async-openai's types, read as OpenAI
/// defines them; the envelope around them is read leniently, because
/// servers differ in the members only OpenAI's own clients use (`id`,
/// `created`, `system_fingerprint`, …) and ragchat needs none of them.
#[derive(Deserialize)]
struct Chunk<C> {
    #[serde(default)]
    choices: Option<Vec<C>>,
    /// `{"error": {"message": …}}` (OpenAI, vLLM, llama.cpp) or
    /// `{"error": "…"}` (Ollama).
    #[serde(default)]
    error: Option<serde_json::Value>,
    /// Older vLLM sends errors as `{"object": "error", "message": …}`.
    #[serde(default)]
    object: Option<String>,
    #[serde(default)]
    message: Option<serde_json::Value>,
}

/// Only the members that say the server failed.
type ErrorChunk = Chunk<serde_json::Value>;

pub(super) enum Decoded {
    Delta { text: String, finished: bool },
    Done,
    Error(LlmError),
}

pub(super) fn decode(event: &SseEvent) -> Decoded {
    let data = event.data.trim();
    if event.event == "error" {
        return Decoded::Error(LlmError::Upstream(error_message(data)));
    }
    if data == "[DONE]" {
        return Decoded::Done;
    }
    // An error chunk is not a chunk: read it as one before the choices'
    // types can call it malformed.
    if let Some(message) = serde_json::from_str::<ErrorChunk>(data)
        .ok()
        .and_then(|c| chunk_error(&c))
    {
        return Decoded::Error(LlmError::Upstream(message));
    }
    let chunk: Chunk<ChatChoiceStream> = match serde_json::from_str(data) {
        Ok(c) => c,
        Err(e) => {
            return Decoded::Error(LlmError::Malformed(format!(
                "unreadable chunk from the model server ({e}): {}",
                excerpt(data)
            )))
        }
    };
    let mut text = String::new();
    let mut finished = false;
    // Only one answer is asked for (no `n`): choice 0.
    for choice in chunk.choices.unwrap_or_default() {
        if choice.index != 0 {
            continue;
        }
        if let Some(content) = choice.delta.content {
            text.push_str(&content);
        }
        finished |= choice.finish_reason.is_some();
    }
    Decoded::Delta { text, finished }
}

fn chunk_error<C>(chunk: &Chunk<C>) -> Option<String> {
    if let Some(e) = &chunk.error {
        return Some(message_of(e));
    }
    if chunk.object.as_deref() == Some("error") {
        return Some(
            chunk
                .message
                .as_ref()
                .map(message_of)
                .unwrap_or_else(|| "unspecified error".into()),
        );
    }
    None
}

fn message_of(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(o) => match o.get("message") {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => v.to_string(),
        },
        other => other.to_string(),
    }
}

/// The server's own words for an error body: its `error.message` when it
/// sent JSON, else (a bounded excerpt of) the text.
pub(super) fn error_message(body: &str) -> String {
    let message = serde_json::from_str::<ErrorChunk>(body)
        .ok()
        .and_then(|c| chunk_error(&c))
        .unwrap_or_else(|| body.trim().to_string());
    if message.is_empty() {
        "no details".into()
    } else {
        excerpt(&message)
    }
}

fn excerpt(s: &str) -> String {
    const MAX: usize = 300;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A non-streamed `chat.completion` body.
pub(super) fn whole_answer(body: &str) -> Item {
    if let Some(message) = serde_json::from_str::<ErrorChunk>(body)
        .ok()
        .and_then(|c| chunk_error(&c))
    {
        return Item::Fail(Failure::fatal(LlmError::Upstream(message)));
    }
    let chunk: Chunk<ChatChoice> = match serde_json::from_str(body) {
        Ok(c) => c,
        Err(e) => {
            return Item::Fail(Failure::fatal(LlmError::Malformed(format!(
                "unreadable answer from the model server ({e}): {}",
                excerpt(body)
            ))))
        }
    };
    let text = chunk
        .choices
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.index == 0)
        .and_then(|c| c.message.content);
    match text {
        Some(text) if !text.is_empty() => Item::Delta(text),
        _ => Item::Fail(Failure::fatal(LlmError::Malformed(format!(
            "no answer in the model server's response: {}",
            excerpt(body)
        )))),
    }
}
