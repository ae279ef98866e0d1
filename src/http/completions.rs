//! `POST /v1/chat/completions`: ragchat behind the OpenAI wire format, so any
//! OpenAI client can use it. The answer is grounded like every chat answer
//! (retrieval over the caller's collections, refusal, checked citations); the
//! sources come back in an extra `sources` field. Stateless: the client sends
//! the history and nothing is stored.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use super::extract::rate_limit_caller;
use super::middleware::{client_closed, ClientGone};
use super::views::{ChunkView, CompletionView, Delta, StreamError, StreamErrorView};
use crate::app::App;
use crate::auth::{Caller, Scope};
use crate::chat::answer::{self, Ask, Event, Thread};
use crate::chat::collect::collect_unless;
use crate::error::Error;
use crate::llm::ChatMessage;
use crate::ratelimit::Bucket;
use crate::telemetry::request_id;

/// The request. Unknown members (temperature, top_p, user, …) are accepted
/// and ignored: OpenAI clients send them routinely, and the grounding rules,
/// not sampling knobs, decide what ragchat answers.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<InMessage>,
    #[serde(default)]
    stream: bool,
    /// ragchat extensions.
    #[serde(default)]
    collections: Option<Vec<String>>,
    #[serde(default)]
    top_k: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct InMessage {
    role: String,
    /// A string, or OpenAI's array of parts (`{"type": "text", "text"}`).
    content: Value,
}

fn text_of(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter(|p| p["type"] == "text")
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        _ => None,
    }
}

/// The question (the last message, which must be the user's) and the
/// history before it. Client system messages are dropped: ragchat's own rules
/// are what keep answers grounded.
fn split(messages: &[InMessage]) -> Result<(String, Vec<ChatMessage>), Error> {
    let Some((last, earlier)) = messages.split_last() else {
        return Err(Error::field("messages", "must not be empty"));
    };
    if last.role != "user" {
        return Err(Error::field(
            "messages",
            "the last message must be the user's",
        ));
    }
    let question = text_of(&last.content)
        .ok_or_else(|| Error::field("messages", "content must be a string or text parts"))?;
    let mut history = Vec::new();
    for m in earlier {
        let text = text_of(&m.content)
            .ok_or_else(|| Error::field("messages", "content must be a string or text parts"))?;
        match m.role.as_str() {
            "user" => history.push(ChatMessage::user(text)),
            "assistant" => history.push(ChatMessage::assistant(text)),
            "system" | "developer" => {}
            other => {
                return Err(Error::field(
                    "messages",
                    format!("unsupported role `{other}`"),
                ))
            }
        }
    }
    Ok((question, history))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/chat/completions", web::post().to(completions));
}

/// One completion's identity, repeated in every chunk.
struct Header {
    id: String,
    created: i64,
    model: String,
}

pub async fn completions(
    caller: Caller,
    gone: ClientGone,
    req: HttpRequest,
    app: web::Data<App>,
    body: web::Json<CompletionRequest>,
) -> Result<HttpResponse, Error> {
    caller.require_scope(Scope::Chat)?;
    let app: Arc<App> = app.into_inner();
    rate_limit_caller(&req, &app, Bucket::Chat, &caller).await?;
    let b = body.into_inner();
    let (question, history) = split(&b.messages)?;
    let ask = Ask {
        conversation_id: None,
        message: question,
        collections: b.collections,
        top_k: b.top_k,
    };
    answer::validate(&app, &ask)?;
    let header = Header {
        id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
        created: chrono::Utc::now().timestamp(),
        model: b.model.unwrap_or_else(|| app.chat_model.name().to_string()),
    };
    let (rx, cancel) = spawn_answer(app, caller, history, ask);
    if b.stream {
        Ok(stream(rx, cancel, header))
    } else {
        whole(rx, cancel, header, gone).await
    }
}

/// Start the answer; its events arrive on the receiver, and dropping the
/// sender cancels it.
fn spawn_answer(
    app: Arc<App>,
    caller: Caller,
    history: Vec<ChatMessage>,
    ask: Ask,
) -> (mpsc::Receiver<Event>, watch::Sender<bool>) {
    let (tx, rx) = mpsc::channel(64);
    let (cancel_tx, cancel_rx) = watch::channel(false);
    actix_web::rt::spawn(request_id::in_request(answer::run(
        app,
        caller,
        Thread::Given(history),
        ask,
        tx,
        cancel_rx,
    )));
    (rx, cancel_tx)
}

/// The answer as `chat.completion.chunk` server-sent events, then `[DONE]`
/// (or an error chunk, which ends the stream).
fn stream(rx: mpsc::Receiver<Event>, cancel: watch::Sender<bool>, header: Header) -> HttpResponse {
    // The cancel switch lives as long as the response body: a client that
    // goes away drops the body and the answer stops.
    let chunks = futures::stream::unfold(
        (rx, cancel, header, false),
        |(mut rx, cancel, header, finished)| async move {
            if finished {
                return None;
            }
            let (data, last) = match rx.recv().await {
                Some(e) => (chunk(&e, &header), matches!(e, Event::Error { .. })),
                None => (Some("[DONE]".to_string()), true),
            };
            let bytes = match data {
                Some(data) => web::Bytes::from(format!("data: {data}\n\n")),
                None => web::Bytes::new(),
            };
            Some((Ok::<_, actix_web::Error>(bytes), (rx, cancel, header, last)))
        },
    );
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(chunks)
}

/// The whole answer as one `chat.completion`; none if the client leaves
/// first, which stops the answer.
async fn whole(
    mut rx: mpsc::Receiver<Event>,
    cancel: watch::Sender<bool>,
    header: Header,
    gone: ClientGone,
) -> Result<HttpResponse, Error> {
    let Some(answer) = collect_unless(&mut rx, cancel, gone.wait()).await else {
        return Ok(client_closed());
    };
    let answer = answer?;
    let done = answer
        .done
        .as_ref()
        .ok_or_else(|| Error::Internal("the answer ended without a result".into()))?;
    Ok(HttpResponse::Ok().json(CompletionView::new(
        &header.id,
        header.created,
        &header.model,
        &answer,
        done,
    )))
}

/// One streamed chunk in OpenAI's format for an answer event, as JSON text.
fn chunk(e: &Event, h: &Header) -> Option<String> {
    let base = |delta| ChunkView::new(&h.id, h.created, &h.model, delta);
    let text = match e {
        Event::Conversation { .. } => return None,
        // The role opens the message; the sources ride along as an extension.
        Event::Sources { items } => serde_json::to_string(&ChunkView {
            sources: Some(items),
            ..base(Delta {
                role: Some("assistant"),
                content: Some(""),
            })
        }),
        Event::Delta { text } => serde_json::to_string(&base(Delta {
            role: None,
            content: Some(text),
        })),
        Event::Done {
            usage, citations, ..
        } => {
            let mut c = base(Delta::default());
            c.choices[0].finish_reason = Some("stop");
            c.usage = Some((*usage).into());
            c.citations = Some(citations);
            serde_json::to_string(&c)
        }
        Event::Error {
            code,
            message,
            request_id,
        } => serde_json::to_string(&StreamErrorView {
            error: StreamError {
                code,
                message,
                kind: "server_error",
                request_id: request_id.as_deref(),
            },
        }),
    };
    text.ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(role: &str, content: Value) -> InMessage {
        InMessage {
            role: role.into(),
            content,
        }
    }

    #[test]
    fn question_is_the_last_user_message_and_history_keeps_turns() {
        let (q, h) = split(&[
            msg("system", json!("be terse")),
            msg("user", json!("first")),
            msg("assistant", json!("answer")),
            msg("user", json!([{"type": "text", "text": "second"}])),
        ])
        .unwrap();
        assert_eq!(q, "second");
        assert_eq!(
            h,
            vec![ChatMessage::user("first"), ChatMessage::assistant("answer")]
        );
        assert!(split(&[]).is_err());
        assert!(split(&[msg("assistant", json!("x"))]).is_err());
        assert!(split(&[msg("tool", json!("x")), msg("user", json!("q"))]).is_err());
        assert!(split(&[msg("user", json!(42))]).is_err());
    }
}
