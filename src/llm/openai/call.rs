//! One answer's requests: sending, retrying before the first token, and
//! reading the streamed response into deltas.

use std::collections::VecDeque;
use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use tokio::time::{timeout_at, Instant};

use super::sse::{SseEvent, SseReader};
use super::wire::{decode, error_message, whole_answer, Decoded};
use super::Endpoint;
use crate::llm::LlmError;

/// First retry waits about this long, doubling per retry (with jitter).
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// A `Retry-After` or backoff longer than this is capped.
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Error bodies (and non-streamed answers) are read up to this size.
const MAX_BODY_BYTES: usize = 1 << 20;

/// What one request of a call produced, in order.
pub(super) enum Item {
    Delta(String),
    End,
    Fail(Failure),
}

pub(super) struct Failure {
    error: LlmError,
    /// Worth another request if no token was handed out yet.
    retryable: bool,
    /// The server's `Retry-After`, if any.
    retry_after: Option<Duration>,
}

impl Failure {
    pub(super) fn fatal(error: LlmError) -> Self {
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
pub(super) struct Call {
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
    pub(super) fn new(endpoint: Arc<Endpoint>, body: String) -> Self {
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
    pub(super) async fn next(&mut self) -> Option<Result<String, LlmError>> {
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
