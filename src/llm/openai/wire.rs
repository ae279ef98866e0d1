//! The chat completions wire format: chunks, errors, non-streamed answers.

use serde::Deserialize;

use super::call::{Failure, Item};
use super::sse::SseEvent;
use crate::llm::LlmError;

/// One `chat.completion.chunk`, read leniently: servers differ in the
/// fields around the content, and only the content matters here. Wrong types
/// where it does matter (`choices` not a list, `content` not a string) fail.
#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Option<Vec<Choice>>,
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

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<Content>,
    /// A non-streamed answer.
    #[serde(default)]
    message: Option<Content>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    content: Option<String>,
}

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
    let chunk: Chunk = match serde_json::from_str(data) {
        Ok(c) => c,
        Err(e) => {
            return Decoded::Error(LlmError::Malformed(format!(
                "unreadable chunk from the model server ({e}): {}",
                excerpt(data)
            )))
        }
    };
    if let Some(message) = chunk_error(&chunk) {
        return Decoded::Error(LlmError::Upstream(message));
    }
    let mut text = String::new();
    let mut finished = false;
    // Only one answer is asked for (no `n`): choice 0.
    for choice in chunk.choices.unwrap_or_default() {
        if choice.index != 0 {
            continue;
        }
        if let Some(content) = choice.delta.and_then(|d| d.content) {
            text.push_str(&content);
        }
        finished |= choice.finish_reason.is_some();
    }
    Decoded::Delta { text, finished }
}

fn chunk_error(chunk: &Chunk) -> Option<String> {
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
    let message = serde_json::from_str::<Chunk>(body)
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
    let chunk: Chunk = match serde_json::from_str(body) {
        Ok(c) => c,
        Err(e) => {
            return Item::Fail(Failure::fatal(LlmError::Malformed(format!(
                "unreadable answer from the model server ({e}): {}",
                excerpt(body)
            ))))
        }
    };
    if let Some(message) = chunk_error(&chunk) {
        return Item::Fail(Failure::fatal(LlmError::Upstream(message)));
    }
    let text = chunk
        .choices
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.index == 0)
        .and_then(|c| c.message)
        .and_then(|m| m.content);
    match text {
        Some(text) if !text.is_empty() => Item::Delta(text),
        _ => Item::Fail(Failure::fatal(LlmError::Malformed(format!(
            "no answer in the model server's response: {}",
            excerpt(body)
        )))),
    }
}
