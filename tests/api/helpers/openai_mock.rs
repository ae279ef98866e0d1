//! A small OpenAI-compatible chat completions server for tests. It speaks
//! the real wire format (HTTP/1.1, a chunked `text/event-stream` body of
//! `data: {chat.completion.chunk}` events ending in `data: [DONE]`), records
//! every request, and can misbehave on cue: error statuses, an error or a
//! dropped connection mid-stream, a stalled first token, malformed chunks.
//!
//! It runs on its own thread with its own Tokio runtime, so the black-box
//! tests (blocking) and the unit tests in `src/llm/openai.rs` (async, which
//! include this file with `#[path]`) use the same server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server does with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// `200 text/event-stream`: each payload as one `data:` event, `gap`
    /// apart, then `end`. Payloads are sent as given (so they may be broken).
    Stream {
        events: Vec<String>,
        gap: Duration,
        end: End,
    },
    /// Any status with a JSON body and `Content-Length`.
    #[allow(dead_code, reason = "only the unit tests in src/llm/openai.rs use it")]
    Status { code: u16, body: String },
}

/// How a streamed reply ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// `data: [DONE]` and the end of the chunked body, as real servers do.
    Done,
    /// Drop the connection in the middle of the body.
    Close,
    /// Keep the response open without sending anything more, until the
    /// client goes away.
    #[allow(dead_code, reason = "only the unit tests in src/llm/openai.rs use it")]
    Hang,
    /// Keep sending content, `gap` apart, until the client goes away.
    #[allow(dead_code, reason = "only the unit tests in src/llm/openai.rs use it")]
    Endless,
}

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Recorded {
    #[allow(dead_code, reason = "only the unit tests in src/llm/openai.rs use it")]
    pub method: String,
    pub path: String,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

struct State {
    script: Vec<Reply>,
    requests: Mutex<Vec<Recorded>>,
    /// Responses the client abandoned (closed the connection) before they
    /// were complete.
    client_gone: AtomicUsize,
}

pub struct MockLlm {
    /// Such as `http://127.0.0.1:41234/v1`, for `llm.base_url`.
    pub base_url: String,
    state: Arc<State>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl MockLlm {
    /// Serve request `i` with `script[i]`, the last entry repeating.
    pub fn start(script: Vec<Reply>) -> Self {
        assert!(!script.is_empty(), "a mock needs at least one reply");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind mock LLM");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().expect("mock address").port();
        let state = Arc::new(State {
            script,
            requests: Mutex::new(Vec::new()),
            client_gone: AtomicUsize::new(0),
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        let shared = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("mock runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("tokio listener");
                tokio::select! {
                    _ = accept_loop(listener, shared) => {}
                    _ = rx => {}
                }
            });
        });
        Self {
            base_url: format!("http://127.0.0.1:{port}/v1"),
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn request_count(&self) -> usize {
        self.requests().len()
    }

    #[allow(dead_code, reason = "only the unit tests in src/llm/openai.rs use it")]
    pub fn client_gone(&self) -> usize {
        self.state.client_gone.load(Ordering::SeqCst)
    }

    /// Wait until at least `n` responses were abandoned by the client. Async:
    /// it must not block the thread, since the client's connection tasks
    /// (which do the closing) may run on it.
    #[allow(dead_code, reason = "only the unit tests in src/llm/openai.rs use it")]
    pub async fn client_gone_within(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.client_gone() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.client_gone() >= n
    }
}

impl Drop for MockLlm {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A `chat.completion.chunk` carrying `text`, as OpenAI sends it.
pub fn chunk(text: &str) -> String {
    chunk_with(json!({"content": text}), Value::Null)
}

/// The first chunk real servers send: the role, no content.
pub fn role_chunk() -> String {
    chunk_with(json!({"role": "assistant", "content": ""}), Value::Null)
}

/// The last chunk before `[DONE]`: an empty delta with the finish reason.
pub fn finish_chunk() -> String {
    chunk_with(json!({}), json!("stop"))
}

fn chunk_with(delta: Value, finish_reason: Value) -> String {
    json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "mock",
        "system_fingerprint": "fp_mock",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
    })
    .to_string()
}

/// An error event as OpenAI sends one inside a stream.
pub fn error_event(message: &str) -> String {
    json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}})
        .to_string()
}

/// A complete, well-behaved streamed answer made of `parts`.
pub fn answer(parts: &[&str]) -> Reply {
    let mut events = vec![role_chunk()];
    events.extend(parts.iter().map(|p| chunk(p)));
    events.push(finish_chunk());
    Reply::Stream {
        events,
        gap: Duration::from_millis(5),
        end: End::Done,
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(connection(sock, state.clone()));
    }
}

/// Requests on one connection (clients reuse connections after a complete
/// response).
async fn connection(mut sock: TcpStream, state: Arc<State>) {
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut sock, &mut buf).await {
        let reply = {
            let mut requests = state.requests.lock().unwrap_or_else(|e| e.into_inner());
            requests.push(req);
            let i = (requests.len() - 1).min(state.script.len() - 1);
            state.script[i].clone()
        };
        let outcome = match reply {
            Reply::Status { code, body } => match status(&mut sock, code, &body).await {
                Ok(()) => Outcome::Complete,
                Err(_) => Outcome::ClientGone,
            },
            Reply::Stream { events, gap, end } => stream(&mut sock, &events, gap, end).await,
        };
        match outcome {
            Outcome::Complete => continue,
            Outcome::ClientGone => {
                state.client_gone.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Outcome::Dropped => return,
        }
    }
}

enum Outcome {
    Complete,
    /// The client closed the connection before the reply was complete.
    ClientGone,
    /// The script dropped the connection mid-reply.
    Dropped,
}

async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Recorded> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i;
        }
        let mut tmp = [0u8; 4096];
        match sock.read(&mut tmp).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < len {
        let mut tmp = [0u8; 4096];
        match sock.read(&mut tmp).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
    let body: Vec<u8> = buf.drain(..len).collect();
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    Some(Recorded {
        method,
        path,
        headers,
        body,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn status(sock: &mut TcpStream, code: u16, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {code} Mock\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body.as_bytes()).await?;
    sock.flush().await
}

async fn write_chunk(sock: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
    sock.write_all(format!("{:x}\r\n", data.len()).as_bytes())
        .await?;
    sock.write_all(data).await?;
    sock.write_all(b"\r\n").await?;
    sock.flush().await
}

async fn event(sock: &mut TcpStream, payload: &str) -> std::io::Result<()> {
    write_chunk(sock, format!("data: {payload}\n\n").as_bytes()).await
}

async fn stream(sock: &mut TcpStream, events: &[String], gap: Duration, end: End) -> Outcome {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";
    if sock.write_all(head.as_bytes()).await.is_err() {
        return Outcome::ClientGone;
    }
    for payload in events {
        tokio::time::sleep(gap).await;
        if event(sock, payload).await.is_err() {
            return Outcome::ClientGone;
        }
    }
    let mut tmp = [0u8; 1024];
    match end {
        End::Done => match event(sock, "[DONE]").await {
            Ok(()) if write_chunk(sock, b"").await.is_ok() => Outcome::Complete,
            _ => Outcome::ClientGone,
        },
        End::Close => {
            let _ = sock.shutdown().await;
            Outcome::Dropped
        }
        // The client sends nothing more: a read returns when it closes.
        End::Hang => loop {
            if let Ok(0) | Err(_) = sock.read(&mut tmp).await {
                return Outcome::ClientGone;
            }
        },
        End::Endless => loop {
            tokio::select! {
                r = sock.read(&mut tmp) => {
                    if let Ok(0) | Err(_) = r {
                        return Outcome::ClientGone;
                    }
                }
                _ = tokio::time::sleep(gap) => {
                    if event(sock, &chunk("more ")).await.is_err() {
                        return Outcome::ClientGone;
                    }
                }
            }
        },
    }
}
