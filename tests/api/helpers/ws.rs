//! The chat WebSocket from the client side, shared by the chat test suites.

use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use super::client::{collection_id, expect};
use super::TestApp;

pub type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

pub fn ws_url(s: &TestApp) -> String {
    format!(
        "{}/api/v1/chat/ws",
        s.server.base.replacen("http://", "ws://", 1)
    )
}

/// Connect with the token in the `Authorization` header.
pub fn connect(s: &TestApp, token: &str) -> Ws {
    try_connect(&ws_url(s), Some(token))
        .unwrap_or_else(|status| panic!("websocket handshake refused with {status}"))
}

/// Open a WebSocket at `url` (credentials in the URL, or `token` in the
/// `Authorization` header); the HTTP status when the upgrade is refused.
pub fn try_connect(url: &str, token: Option<&str>) -> Result<Ws, u16> {
    let mut req = url.into_client_request().expect("ws request");
    if let Some(token) = token {
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
    }
    match tungstenite::connect(req) {
        Ok((ws, _)) => {
            if let MaybeTlsStream::Plain(tcp) = ws.get_ref() {
                tcp.set_read_timeout(Some(Duration::from_secs(60)))
                    .expect("timeout");
            }
            Ok(ws)
        }
        Err(tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("websocket handshake failed: {e}"),
    }
}

/// Read until the server closes the socket: its close code and reason. Any
/// frame of an answer on the way fails the test.
#[track_caller]
pub fn expect_close(ws: &mut Ws) -> (u16, String) {
    // The server's pings keep the read timeout from firing, so a socket that
    // is never closed would otherwise keep the test waiting for ever.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "expected the socket to close within 120 s; it is still open"
        );
        match ws.read() {
            Ok(Message::Close(Some(frame))) => {
                return (u16::from(frame.code), frame.reason.as_str().to_string())
            }
            Ok(Message::Close(None)) => panic!("closed without a close code"),
            Ok(Message::Text(t)) => panic!("expected the socket to close, got a frame: {t}"),
            Ok(_) => continue,
            Err(e) => panic!("expected a close frame, got {e}"),
        }
    }
}

pub fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string()))
        .expect("send frame");
}

/// The next JSON frame (pings are answered by the library).
pub fn next(ws: &mut Ws) -> Value {
    // Pings alone would keep a silent socket's read from timing out.
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no frame within 300 s (only pings)"
        );
        match ws.read().expect("read frame") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("JSON frame"),
            Message::Close(c) => panic!("server closed the socket: {c:?}"),
            _ => continue,
        }
    }
}

/// Frames up to and including `done` or `error`.
pub fn answer_frames(ws: &mut Ws) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let f = next(ws);
        let end = matches!(f["type"].as_str(), Some("done" | "error"));
        frames.push(f);
        if end {
            return frames;
        }
    }
}

/// An admin marks the ingested collection `name` public.
pub fn make_public(s: &TestApp, name: &str) {
    let (admin, _) = s.login("admin");
    let id = collection_id(&s.api, &admin, name);
    expect(
        s.api.patch(
            &format!("/api/v1/collections/{id}"),
            Some(&admin),
            Some(json!({"public": true})),
        ),
        200,
        "make the collection public",
    );
}

/// The stored messages of a conversation.
pub fn messages(s: &TestApp, token: &str, conversation: &str) -> Value {
    expect(
        s.api.get(
            &format!("/api/v1/conversations/{conversation}/messages"),
            Some(token),
        ),
        200,
        "messages",
    )
}
