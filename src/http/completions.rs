//! `POST /v1/chat/completions`: ragchat behind the OpenAI wire format, so any
//! OpenAI client can use it. The answer is grounded like every chat answer
//! (retrieval over the caller's collections, refusal, checked citations); the
//! sources come back in an extra `sources` field. Stateless: the client sends
//! the history and nothing is stored.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use super::extract::{client_ip, rate_limit};
use crate::app::App;
use crate::auth::{Caller, Scope};
use crate::chat::answer::{self, Ask, Event, Thread};
use crate::error::Error;
use crate::llm::ChatMessage;
use crate::ratelimit::Bucket;

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

pub async fn completions(
    caller: Caller,
    req: HttpRequest,
    app: web::Data<App>,
    body: web::Json<CompletionRequest>,
) -> Result<HttpResponse, Error> {
    caller.require_scope(Scope::Chat)?;
    let app: Arc<App> = app.into_inner();
    rate_limit(
        &app,
        Bucket::Chat,
        &client_ip(&req, &app),
        Some(&caller.user.id),
    )
    .await?;
    let b = body.into_inner();
    let (question, history) = split(&b.messages)?;
    let ask = Ask {
        conversation_id: None,
        message: question,
        collections: b.collections,
        top_k: b.top_k,
    };
    answer::validate(&app, &ask)?;
    let model = b.model.unwrap_or_else(|| app.chat_model.name().to_string());
    let (tx, rx) = mpsc::channel(64);
    let (cancel_tx, cancel_rx) = watch::channel(false);
    actix_web::rt::spawn(answer::run(
        app.clone(),
        caller,
        Thread::Given(history),
        ask,
        tx,
        cancel_rx,
    ));
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = chrono::Utc::now().timestamp();
    if b.stream {
        let chunks = futures::stream::unfold(
            (rx, cancel_tx, id, model, false),
            move |(mut rx, cancel, id, model, finished)| async move {
                if finished {
                    return None;
                }
                let (data, last) = match rx.recv().await {
                    Some(e) => match chunk(&e, &id, created, &model) {
                        Some(c) => (c.to_string(), matches!(e, Event::Error { .. })),
                        None => (String::new(), false),
                    },
                    None => ("[DONE]".to_string(), true),
                };
                let bytes = if data.is_empty() {
                    web::Bytes::new()
                } else {
                    web::Bytes::from(format!("data: {data}\n\n"))
                };
                Some((
                    Ok::<_, actix_web::Error>(bytes),
                    (rx, cancel, id, model, last),
                ))
            },
        );
        return Ok(HttpResponse::Ok()
            .content_type("text/event-stream")
            .insert_header(("Cache-Control", "no-cache"))
            .streaming(chunks));
    }
    let mut rx = rx;
    let mut content = String::new();
    let mut sources = json!([]);
    while let Some(e) = rx.recv().await {
        match e {
            Event::Sources { items } => sources = json!(items),
            Event::Delta { text } => content.push_str(&text),
            Event::Done {
                usage,
                citations,
                refused,
                ..
            } => {
                drop(cancel_tx);
                return Ok(HttpResponse::Ok().json(json!({
                    "id": id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [{
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }],
                    "usage": {
                        "prompt_tokens": usage.prompt_tokens,
                        "completion_tokens": usage.completion_tokens,
                        "total_tokens": usage.total_tokens(),
                    },
                    "sources": sources,
                    "citations": citations,
                    "refused": refused,
                })));
            }
            Event::Error { code, message } => return Err(answer::error_of(&code, message)),
            Event::Conversation { .. } => {}
        }
    }
    Err(Error::Internal("the answer ended without a result".into()))
}

/// One streamed chunk in OpenAI's format for an answer event.
fn chunk(e: &Event, id: &str, created: i64, model: &str) -> Option<Value> {
    let base = |delta: Value, finish: Value| {
        json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    };
    match e {
        Event::Conversation { .. } => None,
        // The role opens the message; the sources ride along as an extension.
        Event::Sources { items } => {
            let mut c = base(json!({"role": "assistant", "content": ""}), Value::Null);
            c["sources"] = json!(items);
            Some(c)
        }
        Event::Delta { text } => Some(base(json!({"content": text}), Value::Null)),
        Event::Done {
            usage, citations, ..
        } => {
            let mut c = base(json!({}), json!("stop"));
            c["usage"] = json!({
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens(),
            });
            c["citations"] = json!(citations);
            Some(c)
        }
        Event::Error { code, message } => Some(json!({
            "error": {"code": code, "message": message, "type": "server_error"}
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
