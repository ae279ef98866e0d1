//! An OpenAI-compatible chat completions endpoint as a [`ChatModel`]: OpenAI,
//! vLLM, Ollama (`/v1`) and llama.cpp's server all answer
//! `POST {base_url}/chat/completions` with `"stream": true` by server-sent
//! events, one `data: {chat.completion.chunk}` per delta and `data: [DONE]`
//! at the end.
//!
//! The wire types (request, chunks, choices) are `async-openai`'s; the
//! client is reqwest (the crate's HTTP client already) with a small SSE
//! reader, not `async-openai`'s client:
//! - its last release on reqwest 0.12 (0.35) streams from a detached task over
//!   `reqwest-eventsource`, whose default policy reconnects after a failure,
//!   i.e. silently POSTs the request again after an answer broke off
//!   mid-stream, and whose task keeps the upstream response open after the
//!   consumer dropped the stream until the server sends another event (never,
//!   when it stalls). It also drops the HTTP status of a failed request, so
//!   429 and 5xx cannot be told from 400. All three contradict what this
//!   backend must guarantee (cancel by drop, retry only before the first
//!   token, retry only what can succeed);
//! - the releases that fixed that (0.36 on) need reqwest 0.13, whose rustls
//!   feature brings aws-lc-rs: a second HTTP stack and a second crypto
//!   provider, and a feature change on the shared rustls that rebuilds
//!   everything above it.
//!
//! Retries (exponential backoff with jitter, at most `llm.max_retries`) cover
//! what fails before the first token only: connection errors, 429, 5xx, a
//! connection closed before any content and the first-token timeout. After a
//! delta has been handed out any failure ends the stream with an error, so a
//! client never sees the start of an answer twice. The request timeout bounds
//! the whole call, retries included.
//!
//! Everything happens inside the returned stream (connecting included), so
//! dropping it at any point, which is how the chat pipeline cancels, drops
//! the in-flight request or response and with it the connection: the server
//! sees the client go away and stops generating.

mod call;
mod sse;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestAssistantMessageContent,
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestSystemMessageContent, ChatCompletionRequestUserMessage,
    ChatCompletionRequestUserMessageContent, CreateChatCompletionRequest,
};
use async_trait::async_trait;
use futures::StreamExt;
use reqwest::header::HeaderValue;
use reqwest::Url;

use super::{ChatMessage, ChatModel, ChatRequest, LlmError, Role, TokenStream};
use crate::config::LlmSettings;
use call::Call;

pub struct OpenAiModel {
    endpoint: Arc<Endpoint>,
    model: String,
    context_window: usize,
}

/// What every request of every answer shares.
struct Endpoint {
    client: reqwest::Client,
    url: Url,
    auth: Option<HeaderValue>,
    request_timeout: Duration,
    first_token_timeout: Duration,
    max_retries: u32,
}

impl OpenAiModel {
    pub fn new(settings: &LlmSettings) -> Result<Self, LlmError> {
        let base = settings.base_url.trim().trim_end_matches('/');
        let url = Url::parse(&format!("{base}/chat/completions"))
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                LlmError::Unavailable(format!(
                    "llm.base_url `{}` is not an http(s) URL",
                    settings.base_url
                ))
            })?;
        let model = settings.model.trim();
        if model.is_empty() {
            return Err(LlmError::Unavailable("llm.model is empty".into()));
        }
        let key = settings.api_key.trim();
        let auth = if key.is_empty() {
            // Local servers (Ollama, llama.cpp, vLLM without --api-key) need none.
            None
        } else {
            let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                LlmError::Unavailable(
                    "llm.api_key contains characters a header cannot carry".into(),
                )
            })?;
            value.set_sensitive(true);
            Some(value)
        };
        let first_token_timeout = Duration::from_secs(settings.first_token_timeout_secs.max(1));
        let client = reqwest::Client::builder()
            // Deltas are small and latency is the point of streaming.
            .tcp_nodelay(true)
            .connect_timeout(first_token_timeout)
            .build()
            .map_err(|e| LlmError::Unavailable(format!("HTTP client: {e}")))?;
        Ok(Self {
            endpoint: Arc::new(Endpoint {
                client,
                url,
                auth,
                request_timeout: Duration::from_secs(settings.request_timeout_secs.max(1)),
                first_token_timeout,
                max_retries: settings.max_retries,
            }),
            model: model.to_string(),
            context_window: settings.context_window,
        })
    }

    /// `…/chat/completions`, for logs and errors.
    pub fn url(&self) -> &str {
        self.endpoint.url.as_str()
    }
}

#[async_trait]
impl ChatModel for OpenAiModel {
    fn name(&self) -> &str {
        &self.model
    }

    fn context_window(&self) -> usize {
        self.context_window
    }

    /// A remote model's tokenizer is not available here, so this estimates,
    /// on the high side because prompt budgeting must not undercount.
    /// BPE tokenizers (OpenAI's, Llama's, Qwen's) spend about 4 characters
    /// or 0.75 words per token on English prose; this charges 3 ASCII
    /// characters or 0.75 words per token, whichever is more, and a whole
    /// token per non-ASCII character (accents, CJK), which those tokenizers
    /// rarely beat. The cost is a prompt up to about a third shorter than the
    /// window would allow.
    fn count_tokens(&self, text: &str) -> usize {
        estimate_tokens(text)
    }

    async fn stream(&self, req: ChatRequest) -> Result<TokenStream, LlmError> {
        let body = serde_json::to_string(&wire_request(&self.model, &req))
            .map_err(|e| LlmError::Malformed(format!("cannot encode the request: {e}")))?;
        let call = Call::new(self.endpoint.clone(), body);
        Ok(futures::stream::unfold(call, |mut call| async move {
            let item = call.next().await?;
            Some((item, call))
        })
        .boxed())
    }
}

/// Tokens `text` may take in an unknown BPE vocabulary, rounded up (see
/// [`OpenAiModel::count_tokens`]).
pub fn estimate_tokens(text: &str) -> usize {
    let (mut ascii, mut other) = (0usize, 0usize);
    for c in text.chars() {
        if c.is_ascii() {
            ascii += 1;
        } else {
            other += 1;
        }
    }
    let by_chars = ascii.div_ceil(3) + other;
    let by_words = (text.split_whitespace().count() * 4).div_ceil(3);
    by_chars.max(by_words)
}

/// The request as OpenAI's wire format has it.
fn wire_request(model: &str, req: &ChatRequest) -> CreateChatCompletionRequest {
    // `max_tokens`, not `max_completion_tokens`: it is the one vLLM, Ollama
    // and llama.cpp's server read, and OpenAI still honours it for chat
    // models. 0 means "no limit" in `ChatRequest`; the server then uses its own.
    #[allow(deprecated)]
    CreateChatCompletionRequest {
        model: model.to_string(),
        messages: req.messages.iter().map(wire_message).collect(),
        max_tokens: (req.max_tokens > 0).then(|| u32::try_from(req.max_tokens).unwrap_or(u32::MAX)),
        stream: Some(true),
        ..Default::default()
    }
}

fn wire_message(m: &ChatMessage) -> ChatCompletionRequestMessage {
    let text = m.content.clone();
    match m.role {
        Role::System => ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage {
            content: ChatCompletionRequestSystemMessageContent::Text(text),
            name: None,
        }),
        Role::User => ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage {
            content: ChatCompletionRequestUserMessageContent::Text(text),
            name: None,
        }),
        Role::Assistant => {
            ChatCompletionRequestMessage::Assistant(ChatCompletionRequestAssistantMessage {
                content: Some(ChatCompletionRequestAssistantMessageContent::Text(text)),
                ..Default::default()
            })
        }
    }
}

#[cfg(test)]
#[path = "../../tests/api/helpers/openai_mock.rs"]
mod mock;

#[cfg(test)]
mod tests;
