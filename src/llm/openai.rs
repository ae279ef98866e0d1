//! An OpenAI-compatible chat completions endpoint as a [`ChatModel`]: OpenAI,
//! vLLM, Ollama (`/v1`) and llama.cpp's server all answer
//! `POST {base_url}/chat/completions` with `"stream": true` by server-sent
//! events, one `data: {chat.completion.chunk}` per delta and `data: [DONE]`
//! at the end.
//!
//! The client is reqwest (the crate's HTTP client already) with a small SSE
//! reader, not `async-openai`:
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

use std::collections::VecDeque;
use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use rand::Rng;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use tokio::time::{timeout_at, Instant};

use super::{ChatMessage, ChatModel, ChatRequest, LlmError, TokenStream};
use crate::config::LlmSettings;

/// First retry waits about this long, doubling per retry (with jitter).
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// A `Retry-After` or backoff longer than this is capped.
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// One SSE line longer than this is refused: a chunk is a few hundred bytes,
/// and a server that never sends a newline must not fill our memory.
const MAX_LINE_BYTES: usize = 1 << 20;
/// Error bodies (and non-streamed answers) are read up to this size.
const MAX_BODY_BYTES: usize = 1 << 20;

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
        let body = serde_json::to_string(&WireRequest {
            model: &self.model,
            messages: &req.messages,
            // 0 means "no limit" in `ChatRequest`; the server then uses its own.
            max_tokens: (req.max_tokens > 0).then_some(req.max_tokens),
            stream: true,
        })
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

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    /// `ChatMessage` serialises as `{"role": "system"|"user"|"assistant", "content"}`.
    messages: &'a [ChatMessage],
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<usize>,
    stream: bool,
}

/// What one request of a call produced, in order.
enum Item {
    Delta(String),
    End,
    Fail(Failure),
}

struct Failure {
    error: LlmError,
    /// Worth another request if no token was handed out yet.
    retryable: bool,
    /// The server's `Retry-After`, if any.
    retry_after: Option<Duration>,
}

impl Failure {
    fn fatal(error: LlmError) -> Self {
        Self {
            error,
            retryable: false,
            retry_after: None,
        }
    }

    fn retryable(error: LlmError) -> Self {
        Self {
            error,
            retryable: true,
            retry_after: None,
        }
    }
}

/// One answer: the requests it takes (retries included) and the response
/// being read. Owned by the stream, so dropping the stream drops it all.
struct Call {
    endpoint: Arc<Endpoint>,
    body: String,
    /// The request timeout, for the whole call.
    deadline: Instant,
    /// The first-token timeout of the current request.
    first_token_deadline: Instant,
    /// Requests sent so far.
    attempts: u32,
    /// A delta was handed out: from here on nothing is retried.
    started: bool,
    /// The server said why it stopped (`finish_reason`): a connection closed
    /// after that is a complete answer even without `[DONE]`, as older
    /// llama.cpp servers end.
    finished: bool,
    done: bool,
    response: Option<reqwest::Response>,
    sse: SseReader,
    pending: VecDeque<Item>,
}

impl Call {
    fn new(endpoint: Arc<Endpoint>, body: String) -> Self {
        let now = Instant::now();
        Self {
            deadline: now + endpoint.request_timeout,
            first_token_deadline: now + endpoint.first_token_timeout,
            endpoint,
            body,
            attempts: 0,
            started: false,
            finished: false,
            done: false,
            response: None,
            sse: SseReader::default(),
            pending: VecDeque::new(),
        }
    }

    /// The next delta, the error that ends the answer, or None at its end.
    async fn next(&mut self) -> Option<Result<String, LlmError>> {
        if self.done {
            return None;
        }
        let item = match self.advance().await {
            Ok(Some(delta)) => {
                self.started = true;
                return Some(Ok(delta));
            }
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        };
        // Finished either way: let the connection go now, not when the
        // consumer gets round to dropping the stream.
        self.done = true;
        self.response = None;
        self.pending.clear();
        item
    }

    async fn advance(&mut self) -> Result<Option<String>, LlmError> {
        loop {
            let failure = match self.pending.pop_front() {
                Some(Item::Delta(text)) => return Ok(Some(text)),
                Some(Item::End) => return Ok(None),
                Some(Item::Fail(f)) => f,
                None => match self.pull().await {
                    Ok(()) => continue,
                    Err(f) => f,
                },
            };
            // Close this request's connection before waiting for the next.
            self.response = None;
            self.pending.clear();
            if self.started || !failure.retryable || self.attempts > self.endpoint.max_retries {
                return Err(failure.error);
            }
            let wait = self.backoff(failure.retry_after);
            if Instant::now() + wait >= self.deadline {
                return Err(failure.error);
            }
            tracing::warn!(
                url = %self.endpoint.url,
                attempt = self.attempts,
                wait_ms = wait.as_millis() as u64,
                error = %failure.error,
                "model request failed before the first token; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// 250 ms × 2^retry, jittered to 50–100 % so that clients failed by the
    /// same outage do not come back in step; at least what the server asked.
    fn backoff(&self, retry_after: Option<Duration>) -> Duration {
        let retry = self.attempts.saturating_sub(1).min(6);
        let full = BACKOFF_BASE.saturating_mul(1 << retry).min(BACKOFF_MAX);
        let jittered = full.mul_f64(rand::rng().random_range(0.5..=1.0));
        jittered.max(retry_after.unwrap_or_default().min(BACKOFF_MAX))
    }

    /// Until the first token, the first-token timeout applies as well.
    fn limit(&self) -> Instant {
        if self.started {
            self.deadline
        } else {
            self.deadline.min(self.first_token_deadline)
        }
    }

    fn timed_out(&self) -> Failure {
        if Instant::now() >= self.deadline {
            Failure::fatal(LlmError::Timeout(format!(
                "no complete answer within {} s (llm.request_timeout_secs)",
                self.endpoint.request_timeout.as_secs()
            )))
        } else {
            Failure::retryable(LlmError::Timeout(format!(
                "no first token within {} s (llm.first_token_timeout_secs)",
                self.endpoint.first_token_timeout.as_secs()
            )))
        }
    }

    /// Send the request if none is open, else read the next piece of the
    /// response; what it yields is queued in `pending`.
    async fn pull(&mut self) -> Result<(), Failure> {
        let limit = self.limit();
        let Some(response) = self.response.as_mut() else {
            return self.send().await;
        };
        match timeout_at(limit, response.chunk()).await {
            Err(_) => Err(self.timed_out()),
            Ok(Err(e)) => Err(Failure::retryable(LlmError::Upstream(format!(
                "the model server's answer broke off: {}",
                chain(&e)
            )))),
            Ok(Ok(Some(bytes))) => {
                let events = self.sse.feed(&bytes).map_err(Failure::fatal)?;
                self.queue(events);
                Ok(())
            }
            Ok(Ok(None)) => {
                let events = self.sse.finish().map_err(Failure::fatal)?;
                self.queue(events);
                if !matches!(self.pending.back(), Some(Item::End | Item::Fail(_))) {
                    self.pending.push_back(if self.finished {
                        Item::End
                    } else {
                        Item::Fail(Failure::retryable(LlmError::Upstream(
                            "the model server closed the connection before the answer was complete"
                                .into(),
                        )))
                    });
                }
                Ok(())
            }
        }
    }

    /// Decode events until the first that ends the answer (what a server
    /// sends after `[DONE]` or an error is not part of it).
    fn queue(&mut self, events: Vec<SseEvent>) {
        for event in events {
            if matches!(self.pending.back(), Some(Item::End | Item::Fail(_))) {
                return;
            }
            match decode(&event) {
                Decoded::Delta { text, finished } => {
                    self.finished |= finished;
                    if !text.is_empty() {
                        self.pending.push_back(Item::Delta(text));
                    }
                }
                Decoded::Done => self.pending.push_back(Item::End),
                Decoded::Error(e) => self.pending.push_back(Item::Fail(Failure::fatal(e))),
            }
        }
    }

    async fn send(&mut self) -> Result<(), Failure> {
        self.attempts += 1;
        self.first_token_deadline = Instant::now() + self.endpoint.first_token_timeout;
        self.sse = SseReader::default();
        self.finished = false;
        let limit = self.limit();
        let ep = &self.endpoint;
        let mut request = ep
            .client
            .post(ep.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "text/event-stream")
            .body(self.body.clone());
        if let Some(auth) = &ep.auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let response = match timeout_at(limit, request.send()).await {
            Err(_) => return Err(self.timed_out()),
            Ok(Err(e)) => {
                return Err(Failure::retryable(LlmError::Upstream(format!(
                    "cannot reach the model server at {}: {}",
                    ep.url,
                    chain(&e)
                ))))
            }
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = self.read_body(response, limit).await.unwrap_or_default();
            let error = LlmError::Upstream(format!(
                "the model server answered {status}: {}",
                error_message(&body)
            ));
            return Err(Failure {
                error,
                retryable: status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error(),
                retry_after,
            });
        }
        if content_type.starts_with("application/json") {
            // A server that ignores `stream: true` sends the whole answer.
            let body = self.read_body(response, limit).await?;
            let item = whole_answer(&body);
            let answered = matches!(item, Item::Delta(_));
            self.pending.push_back(item);
            if answered {
                self.pending.push_back(Item::End);
            }
            return Ok(());
        }
        if !(content_type.is_empty() || content_type.starts_with("text/event-stream")) {
            return Err(Failure::fatal(LlmError::Malformed(format!(
                "expected text/event-stream from the model server, got {content_type}"
            ))));
        }
        self.response = Some(response);
        Ok(())
    }

    /// A whole (small) body, within the current time limit.
    async fn read_body(
        &self,
        mut response: reqwest::Response,
        limit: Instant,
    ) -> Result<String, Failure> {
        let mut body = Vec::new();
        loop {
            match timeout_at(limit, response.chunk()).await {
                Err(_) => return Err(self.timed_out()),
                Ok(Err(e)) => {
                    return Err(Failure::retryable(LlmError::Upstream(format!(
                        "the model server's answer broke off: {}",
                        chain(&e)
                    ))))
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(bytes))) => {
                    body.extend_from_slice(&bytes);
                    if body.len() > MAX_BODY_BYTES {
                        return Err(Failure::fatal(LlmError::Malformed(
                            "the model server's response is too large".into(),
                        )));
                    }
                }
            }
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}

/// An error with its causes: reqwest's own message ("error sending request")
/// says nothing about what went wrong.
fn chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

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

enum Decoded {
    Delta { text: String, finished: bool },
    Done,
    Error(LlmError),
}

fn decode(event: &SseEvent) -> Decoded {
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
fn error_message(body: &str) -> String {
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
fn whole_answer(body: &str) -> Item {
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

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Default)]
struct SseEvent {
    /// The `event:` field; empty for the default `message`.
    event: String,
    /// The `data:` lines joined by `\n`.
    data: String,
}

/// Incremental server-sent events parser (the WHATWG format, minus `id`
/// and `retry`, which a one-shot request has no use for). Bytes arrive in
/// arbitrary pieces: a line, even a UTF-8 character, may be split.
#[derive(Default)]
struct SseReader {
    buf: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
}

impl SseReader {
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, LlmError> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(i) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + i;
            let line = &self.buf[start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let line = std::str::from_utf8(line)
                .map_err(|_| LlmError::Malformed("the event stream is not UTF-8".into()))?
                .to_string();
            self.line(&line, &mut out);
            start = end + 1;
        }
        self.buf.drain(..start);
        if self.buf.len() > MAX_LINE_BYTES {
            return Err(LlmError::Malformed(format!(
                "an event stream line longer than {MAX_LINE_BYTES} bytes"
            )));
        }
        Ok(out)
    }

    /// End of the body: an unterminated last line or event still counts.
    fn finish(&mut self) -> Result<Vec<SseEvent>, LlmError> {
        let mut out = if self.buf.is_empty() {
            Vec::new()
        } else {
            self.feed(b"\n")?
        };
        self.line("", &mut out);
        Ok(out)
    }

    fn line(&mut self, line: &str, out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if self.has_data {
                out.push(SseEvent {
                    event: std::mem::take(&mut self.event),
                    data: std::mem::take(&mut self.data),
                });
            }
            self.event.clear();
            self.has_data = false;
            return;
        }
        if line.starts_with(':') {
            // A comment: keep-alive.
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = value.to_string(),
            _ => {}
        }
    }
}

#[cfg(test)]
#[path = "../../tests/api/helpers/openai_mock.rs"]
mod mock;

#[cfg(test)]
mod tests {
    use super::mock::{self, End, MockLlm, Reply};
    use super::*;

    fn settings(mock: &MockLlm) -> LlmSettings {
        LlmSettings {
            base_url: mock.base_url.clone(),
            model: "mock".into(),
            api_key: "sk-test".into(),
            request_timeout_secs: 30,
            first_token_timeout_secs: 1,
            max_retries: 2,
            context_window: 4096,
        }
    }

    fn request() -> ChatRequest {
        ChatRequest {
            messages: vec![
                ChatMessage::system(
                    "Answer from the sources.\n\nSources:\n\n[1] Shocks\nPressure rises.",
                ),
                ChatMessage::user("earlier question"),
                ChatMessage::assistant("earlier answer [1]"),
                ChatMessage::user("What happens to pressure?"),
            ],
            sources: Vec::new(),
            question: "What happens to pressure?".into(),
            max_tokens: 64,
        }
    }

    /// Every item of the stream, errors included.
    async fn collect(model: &OpenAiModel) -> Vec<Result<String, LlmError>> {
        match model.stream(request()).await {
            Ok(stream) => stream.collect().await,
            Err(e) => vec![Err(e)],
        }
    }

    fn texts(items: &[Result<String, LlmError>]) -> String {
        items
            .iter()
            .filter_map(|i| i.as_ref().ok())
            .cloned()
            .collect()
    }

    fn stream_of(events: Vec<String>, end: End) -> Reply {
        Reply::Stream {
            events,
            gap: Duration::from_millis(5),
            end,
        }
    }

    #[tokio::test]
    async fn streams_the_deltas_and_sends_the_prompt() {
        let mock = MockLlm::start(vec![mock::answer(&["Pressure", " rises", " [1]."])]);
        let model = OpenAiModel::new(&settings(&mock)).unwrap();
        assert_eq!(model.name(), "mock");
        assert_eq!(model.context_window(), 4096);
        let items = collect(&model).await;
        // The role-only and finish chunks carry no text and yield nothing.
        assert_eq!(
            items,
            vec![
                Ok("Pressure".into()),
                Ok(" rises".into()),
                Ok(" [1].".into())
            ]
        );

        let requests = mock.requests();
        assert_eq!(requests.len(), 1);
        let r = &requests[0];
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/v1/chat/completions")
        );
        assert_eq!(r.header("authorization"), Some("Bearer sk-test"));
        assert_eq!(r.header("accept"), Some("text/event-stream"));
        let expected: Vec<serde_json::Value> = request()
            .messages
            .iter()
            .map(|m| serde_json::json!({"role": m.role.as_str(), "content": m.content}))
            .collect();
        assert_eq!(
            r.body,
            serde_json::json!({"model": "mock", "messages": expected, "max_tokens": 64, "stream": true})
        );
    }

    #[tokio::test]
    async fn an_error_mid_stream_ends_the_answer_without_a_retry() {
        // The server drops the connection after two deltas.
        let mock = MockLlm::start(vec![stream_of(
            vec![mock::role_chunk(), mock::chunk("Pres"), mock::chunk("sure")],
            End::Close,
        )]);
        let model = OpenAiModel::new(&settings(&mock)).unwrap();
        let items = collect(&model).await;
        assert_eq!(texts(&items), "Pressure");
        assert_eq!(items.len(), 3, "{items:?}");
        assert!(matches!(items[2], Err(LlmError::Upstream(_))), "{items:?}");
        assert_eq!(mock.request_count(), 1, "no retry after the first token");

        // The server reports an error event after a delta.
        let mock = MockLlm::start(vec![stream_of(
            vec![
                mock::chunk("Pres"),
                mock::error_event("the GPU fell over"),
                mock::chunk("never seen"),
            ],
            End::Done,
        )]);
        let model = OpenAiModel::new(&settings(&mock)).unwrap();
        let items = collect(&model).await;
        assert_eq!(items.len(), 2, "{items:?}");
        assert_eq!(items[0], Ok("Pres".into()));
        match &items[1] {
            Err(LlmError::Upstream(m)) => assert!(m.contains("the GPU fell over"), "{m}"),
            other => panic!("expected an upstream error, got {other:?}"),
        }
        assert_eq!(mock.request_count(), 1);
    }

    #[tokio::test]
    async fn a_stalled_first_token_times_out_after_the_retries() {
        // Headers and a role-only chunk, then nothing: no token ever comes.
        let mock = MockLlm::start(vec![stream_of(vec![mock::role_chunk()], End::Hang)]);
        let model = OpenAiModel::new(&settings(&mock)).unwrap();
        let items = collect(&model).await;
        assert_eq!(items.len(), 1, "{items:?}");
        assert!(matches!(items[0], Err(LlmError::Timeout(_))), "{items:?}");
        assert_eq!(
            mock.request_count(),
            3,
            "one request and max_retries = 2 retries"
        );
        // Each timed-out request's connection was closed, not left open.
        assert!(mock.client_gone_within(3, Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn server_errors_before_the_first_token_are_retried_once_each() {
        let mock = MockLlm::start(vec![
            Reply::Status {
                code: 500,
                body: r#"{"error": {"message": "overloaded"}}"#.into(),
            },
            Reply::Status {
                code: 429,
                body: r#"{"error": {"message": "slow down"}}"#.into(),
            },
            mock::answer(&["Hello", " world"]),
        ]);
        let model = OpenAiModel::new(&settings(&mock)).unwrap();
        let items = collect(&model).await;
        assert!(items.iter().all(Result::is_ok), "{items:?}");
        assert_eq!(texts(&items), "Hello world", "complete, nothing twice");
        assert_eq!(mock.request_count(), 3);

        // Past max_retries the last error is the answer.
        let mock = MockLlm::start(vec![Reply::Status {
            code: 503,
            body: "upstream unavailable".into(),
        }]);
        let mut s = settings(&mock);
        s.max_retries = 1;
        let items = collect(&OpenAiModel::new(&s).unwrap()).await;
        match &items[..] {
            [Err(LlmError::Upstream(m))] => {
                assert!(
                    m.contains("503") && m.contains("upstream unavailable"),
                    "{m}"
                )
            }
            other => panic!("expected one upstream error, got {other:?}"),
        }
        assert_eq!(mock.request_count(), 2);
    }

    #[tokio::test]
    async fn client_errors_are_not_retried() {
        let mock = MockLlm::start(vec![Reply::Status {
            code: 404,
            body: r#"{"error": {"message": "model `mock` not found", "type": "invalid_request_error"}}"#
                .into(),
        }]);
        let items = collect(&OpenAiModel::new(&settings(&mock)).unwrap()).await;
        match &items[..] {
            [Err(LlmError::Upstream(m))] => assert!(m.contains("model `mock` not found"), "{m}"),
            other => panic!("expected one upstream error, got {other:?}"),
        }
        assert_eq!(mock.request_count(), 1);
    }

    #[tokio::test]
    async fn a_malformed_chunk_is_an_error() {
        let mock = MockLlm::start(vec![stream_of(
            vec![
                mock::chunk("Hi"),
                "{\"choices\": [{\"delta\": {\"content\": ".into(),
            ],
            End::Done,
        )]);
        let items = collect(&OpenAiModel::new(&settings(&mock)).unwrap()).await;
        assert_eq!(items.len(), 2, "{items:?}");
        assert_eq!(items[0], Ok("Hi".into()));
        assert!(matches!(items[1], Err(LlmError::Malformed(_))), "{items:?}");

        // Before any token too, and it is not retried: the server means it.
        let mock = MockLlm::start(vec![stream_of(
            vec![r#"{"choices": [{"index": 0, "delta": {"content": 42}}]}"#.into()],
            End::Done,
        )]);
        let items = collect(&OpenAiModel::new(&settings(&mock)).unwrap()).await;
        assert!(
            matches!(items[..], [Err(LlmError::Malformed(_))]),
            "{items:?}"
        );
        assert_eq!(mock.request_count(), 1);
    }

    #[tokio::test]
    async fn dropping_the_stream_closes_the_connection() {
        let mock = MockLlm::start(vec![Reply::Stream {
            events: vec![mock::chunk("a"), mock::chunk("b")],
            gap: Duration::from_millis(20),
            end: End::Endless,
        }]);
        let model = OpenAiModel::new(&settings(&mock)).unwrap();
        let mut stream = model.stream(request()).await.unwrap();
        assert_eq!(stream.next().await, Some(Ok("a".into())));
        assert_eq!(stream.next().await, Some(Ok("b".into())));
        assert_eq!(mock.client_gone(), 0);
        drop(stream);
        assert!(
            mock.client_gone_within(1, Duration::from_secs(5)).await,
            "the server kept streaming to nobody"
        );
    }

    #[tokio::test]
    async fn a_server_that_does_not_stream_still_answers() {
        // Some servers ignore `stream: true` and send one chat.completion.
        let body = serde_json::json!({
            "id": "x", "object": "chat.completion", "model": "mock",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Whole [1]."}, "finish_reason": "stop"}]
        })
        .to_string();
        let mock = MockLlm::start(vec![Reply::Status { code: 200, body }]);
        let items = collect(&OpenAiModel::new(&settings(&mock)).unwrap()).await;
        assert_eq!(items, vec![Ok("Whole [1].".into())]);
    }

    #[tokio::test]
    async fn nothing_listening_is_retried_then_reported() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let s = LlmSettings {
            base_url: format!("http://127.0.0.1:{port}/v1/"),
            model: "mock".into(),
            api_key: String::new(),
            request_timeout_secs: 30,
            first_token_timeout_secs: 1,
            max_retries: 1,
            context_window: 4096,
        };
        let model = OpenAiModel::new(&s).unwrap();
        assert_eq!(
            model.url(),
            format!("http://127.0.0.1:{port}/v1/chat/completions")
        );
        let items = collect(&model).await;
        match &items[..] {
            [Err(LlmError::Upstream(m))] => assert!(m.contains("cannot reach"), "{m}"),
            other => panic!("expected one upstream error, got {other:?}"),
        }
    }

    #[test]
    fn settings_are_checked() {
        let good = LlmSettings {
            base_url: "http://127.0.0.1:11434/v1".into(),
            model: "llama3".into(),
            ..LlmSettings::default()
        };
        assert!(OpenAiModel::new(&good).is_ok());
        for bad in [
            LlmSettings {
                base_url: "127.0.0.1:11434".into(),
                ..good.clone()
            },
            LlmSettings {
                base_url: "ftp://host/v1".into(),
                ..good.clone()
            },
            LlmSettings {
                model: " ".into(),
                ..good.clone()
            },
            LlmSettings {
                api_key: "line\nbreak".into(),
                ..good.clone()
            },
        ] {
            assert!(
                matches!(OpenAiModel::new(&bad), Err(LlmError::Unavailable(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn token_estimate_does_not_undercount_english() {
        assert_eq!(estimate_tokens(""), 0);
        // Short words: the word rule wins (4 words → 6).
        assert_eq!(estimate_tokens("a b c d"), 6);
        // Typical prose, ~4.7 characters per word plus spaces: chars / 3.
        let prose = "The pressure, density and temperature rise abruptly across a normal shock wave, while the Mach number falls below one.";
        let chars = prose.chars().count();
        let words = prose.split_whitespace().count();
        let n = estimate_tokens(prose);
        // GPT-style tokenizers spend ~chars/4 and ~words/0.75 on such text.
        assert!(
            n >= chars.div_ceil(4) && n >= (words * 4).div_ceil(3),
            "{n}"
        );
        assert_eq!(n, chars.div_ceil(3));
        // Non-ASCII characters count one each.
        assert_eq!(estimate_tokens("日本語"), 3);
    }

    fn read_all(pieces: &[&[u8]]) -> Vec<SseEvent> {
        let mut r = SseReader::default();
        let mut out = Vec::new();
        for p in pieces {
            out.extend(r.feed(p).unwrap());
        }
        out.extend(r.finish().unwrap());
        out
    }

    fn data(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn sse_events_survive_any_split() {
        let text = ": keep-alive\r\n\r\ndata: {\"a\": \"é\"}\r\n\r\nevent: error\ndata: line 1\ndata:line 2\n\ndata: [DONE]\n\n";
        let whole = read_all(&[text.as_bytes()]);
        assert_eq!(data(&whole), ["{\"a\": \"é\"}", "line 1\nline 2", "[DONE]"]);
        assert_eq!(whole[1].event, "error");
        assert_eq!(whole[0].event, "");
        // Byte by byte, splitting the two-byte `é` and every CRLF.
        let bytes: Vec<&[u8]> = text.as_bytes().chunks(1).collect();
        assert_eq!(read_all(&bytes), whole);
        // A last event without its blank line still counts.
        assert_eq!(data(&read_all(&[b"data: x\n\ndata: y"])), ["x", "y"]);
    }

    #[test]
    fn sse_lines_are_bounded() {
        let mut r = SseReader::default();
        let big = vec![b'x'; MAX_LINE_BYTES + 1];
        assert!(matches!(r.feed(&big), Err(LlmError::Malformed(_))));
    }

    #[test]
    fn chunks_are_read_leniently_but_not_blindly() {
        let ev = |data: &str| SseEvent {
            event: String::new(),
            data: data.into(),
        };
        // Ollama and llama.cpp omit or add fields; a usage-only chunk has no choices.
        match decode(&ev(r#"{"choices":[{"delta":{"content":"hi"}}]}"#)) {
            Decoded::Delta { text, finished } => {
                assert_eq!((text.as_str(), finished), ("hi", false))
            }
            _ => panic!("delta expected"),
        }
        match decode(&ev(r#"{"choices":[],"usage":{"prompt_tokens":3}}"#)) {
            Decoded::Delta { text, .. } => assert_eq!(text, ""),
            _ => panic!("empty delta expected"),
        }
        match decode(&ev(
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#,
        )) {
            Decoded::Delta { finished, .. } => assert!(finished),
            _ => panic!("finish expected"),
        }
        for (data, want) in [
            (r#"{"error":"model not loaded"}"#, "model not loaded"),
            (
                r#"{"object":"error","message":"too long","code":400}"#,
                "too long",
            ),
        ] {
            match decode(&ev(data)) {
                Decoded::Error(LlmError::Upstream(m)) => assert_eq!(m, want),
                _ => panic!("upstream error expected for {data}"),
            }
        }
        for data in ["not json", r#"{"choices":"x"}"#, "[1, 2]"] {
            assert!(
                matches!(decode(&ev(data)), Decoded::Error(LlmError::Malformed(_))),
                "{data}"
            );
        }
    }
}
