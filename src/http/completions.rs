//! `POST /v1/chat/completions`: ragchat behind the OpenAI wire format, so any
//! OpenAI client can use it. The answer is grounded like every chat answer
//! (retrieval over the caller's collections, refusal, checked citations); the
//! sources come back in an extra `sources` field. Stateless: the client sends
//! the history and nothing is stored.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessageContent, ChatCompletionRequestAssistantMessageContentPart,
    ChatCompletionRequestDeveloperMessageContent, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessageContent, ChatCompletionRequestUserMessageContent,
    ChatCompletionRequestUserMessageContentPart, ChatCompletionStreamResponseDelta,
    CreateChatCompletionRequest, Role,
};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use super::extract::rate_limit_caller;
use super::middleware::{client_closed, ClientGone};
use super::views::{ChunkView, CompletionView, StreamError, StreamErrorView};
use crate::app::App;
use crate::auth::{Caller, Scope};
use crate::chat::answer::{self, Ask, Event, Thread};
use crate::chat::collect::collect_unless;
use crate::error::Error;
use crate::llm::ChatMessage;
use crate::ratelimit::Bucket;
use crate::telemetry::request_id;

/// The request: OpenAI's (async-openai's type) plus ragchat's extensions.
/// Sampling knobs (temperature, top_p, …) are accepted and ignored: OpenAI
/// clients send them routinely, and the grounding rules, not sampling,
/// decide what ragchat answers. Tools, audio and images are not supported;
/// their parts are ignored, and a tool or function message is refused.
/// `model` may be left out: there is one model here.
#[derive(Debug)]
pub struct CompletionRequest {
    openai: CreateChatCompletionRequest,
    collections: Option<Vec<String>>,
    top_k: Option<i64>,
}

#[derive(Deserialize)]
struct Extensions {
    #[serde(default)]
    collections: Option<Vec<String>>,
    #[serde(default)]
    top_k: Option<i64>,
}

impl<'de> Deserialize<'de> for CompletionRequest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut v = serde_json::Value::deserialize(d)?;
        if let Some(fields) = v.as_object_mut() {
            fields.entry("model").or_insert_with(|| "".into());
        }
        let ext: Extensions = serde_json::from_value(v.clone()).map_err(D::Error::custom)?;
        let openai = serde_json::from_value(v).map_err(D::Error::custom)?;
        Ok(Self {
            openai,
            collections: ext.collections,
            top_k: ext.top_k,
        })
    }
}

fn joined<'a>(parts: impl Iterator<Item = &'a str>) -> String {
    parts.collect::<Vec<_>>().join("\n")
}

/// A message's role (the `ChatMessage` it becomes; None for system and
/// developer messages, which are dropped) and its text.
fn text_of(m: &ChatCompletionRequestMessage) -> Result<(Option<&'static str>, String), Error> {
    Ok(match m {
        ChatCompletionRequestMessage::User(u) => (
            Some("user"),
            match &u.content {
                ChatCompletionRequestUserMessageContent::Text(t) => t.clone(),
                ChatCompletionRequestUserMessageContent::Array(parts) => {
                    joined(parts.iter().filter_map(|p| match p {
                        ChatCompletionRequestUserMessageContentPart::Text(t) => {
                            Some(t.text.as_str())
                        }
                        _ => None,
                    }))
                }
            },
        ),
        ChatCompletionRequestMessage::Assistant(a) => (
            Some("assistant"),
            match &a.content {
                None => String::new(),
                Some(ChatCompletionRequestAssistantMessageContent::Text(t)) => t.clone(),
                Some(ChatCompletionRequestAssistantMessageContent::Array(parts)) => {
                    joined(parts.iter().filter_map(|p| match p {
                        ChatCompletionRequestAssistantMessageContentPart::Text(t) => {
                            Some(t.text.as_str())
                        }
                        _ => None,
                    }))
                }
            },
        ),
        ChatCompletionRequestMessage::System(s) => (
            None,
            match &s.content {
                ChatCompletionRequestSystemMessageContent::Text(t) => t.clone(),
                ChatCompletionRequestSystemMessageContent::Array(_) => String::new(),
            },
        ),
        ChatCompletionRequestMessage::Developer(d) => (
            None,
            match &d.content {
                ChatCompletionRequestDeveloperMessageContent::Text(t) => t.clone(),
                ChatCompletionRequestDeveloperMessageContent::Array(_) => String::new(),
            },
        ),
        ChatCompletionRequestMessage::Tool(_) => {
            return Err(Error::field("messages", "unsupported role `tool`"))
        }
        ChatCompletionRequestMessage::Function(_) => {
            return Err(Error::field("messages", "unsupported role `function`"))
        }
    })
}

/// The question (the last message, which must be the user's) and the
/// history before it. Client system messages are dropped: ragchat's own rules
/// are what keep answers grounded.
fn split(messages: &[ChatCompletionRequestMessage]) -> Result<(String, Vec<ChatMessage>), Error> {
    let Some((last, earlier)) = messages.split_last() else {
        return Err(Error::field("messages", "must not be empty"));
    };
    let (Some("user"), question) = text_of(last)? else {
        return Err(Error::field(
            "messages",
            "the last message must be the user's",
        ));
    };
    let mut history = Vec::new();
    for m in earlier {
        match text_of(m)? {
            (Some("user"), text) => history.push(ChatMessage::user(text)),
            (Some(_), text) => history.push(ChatMessage::assistant(text)),
            (None, _) => {}
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
    created: u32,
    model: String,
}

/// OpenAI's chat completions, grounded like every chat answer.
#[utoipa::path(
    post,
    path = "/v1/chat/completions",
    tag = "openai",
    operation_id = "chat_completions",
    request_body = super::openapi::CompletionRequestSchema,
    responses(
        (status = 200, description = "One `chat.completion`, or with `\"stream\": true` `chat.completion.chunk` events and `data: [DONE]`", content(
            (super::openapi::CompletionSchema = "application/json"),
            (String = "text/event-stream"),
        )),
        (status = 400, description = "`invalid_body`, `empty_query`, `query_too_long`, `invalid_top_k`", body = super::views::ErrorBody),
        (status = 403, description = "`insufficient_scope`: a key without `chat`", body = super::views::ErrorBody),
        (status = 404, description = "`collection_not_found`", body = super::views::ErrorBody),
        (status = 422, description = "`invalid_field`: `messages`", body = super::views::ErrorBody),
        (status = 429, description = "`rate_limited`", body = super::views::ErrorBody),
        (status = 503, description = "`unavailable`: the answer failed", body = super::views::ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["chat"])),
)]
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
    let (question, history) = split(&b.openai.messages)?;
    let ask = Ask {
        conversation_id: None,
        message: question,
        collections: b.collections,
        top_k: b.top_k,
    };
    answer::validate(&app, &ask)?;
    let header = Header {
        id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
        created: u32::try_from(chrono::Utc::now().timestamp()).unwrap_or(u32::MAX),
        model: if b.openai.model.trim().is_empty() {
            app.chat_model.name().to_string()
        } else {
            b.openai.model.clone()
        },
    };
    let (rx, cancel) = spawn_answer(app, caller, history, ask);
    if b.openai.stream == Some(true) {
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
            ..base(ChatCompletionStreamResponseDelta {
                role: Some(Role::Assistant),
                content: Some(String::new()),
                ..Default::default()
            })
        }),
        Event::Delta { text } => serde_json::to_string(&base(ChatCompletionStreamResponseDelta {
            content: Some(text.clone()),
            ..Default::default()
        })),
        Event::Done {
            usage, citations, ..
        } => serde_json::to_string(
            &base(ChatCompletionStreamResponseDelta::default()).finish(*usage, citations),
        ),
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
    use serde_json::{json, Value};

    fn messages(v: Value) -> Vec<ChatCompletionRequestMessage> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn question_is_the_last_user_message_and_history_keeps_turns() {
        let (q, h) = split(&messages(json!([
            {"role": "system", "content": "be terse"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "answer"},
            {"role": "user", "content": [{"type": "text", "text": "second"}]},
        ])))
        .unwrap();
        assert_eq!(q, "second");
        assert_eq!(
            h,
            vec![ChatMessage::user("first"), ChatMessage::assistant("answer")]
        );
        assert!(split(&[]).is_err());
        assert!(split(&messages(json!([{"role": "assistant", "content": "x"}]))).is_err());
        assert!(split(&messages(json!([
            {"role": "tool", "content": "x", "tool_call_id": "t"},
            {"role": "user", "content": "q"},
        ])))
        .is_err());
    }

    #[test]
    fn the_request_is_openais_with_ragchats_extensions() {
        let r: CompletionRequest = serde_json::from_value(json!({
            "model": "ragchat", "temperature": 0.2, "stream": true,
            "messages": [{"role": "user", "content": "q"}],
            "collections": ["guide"], "top_k": 3,
        }))
        .unwrap();
        assert_eq!(r.openai.stream, Some(true));
        assert_eq!(r.collections, Some(vec!["guide".to_string()]));
        assert_eq!(r.top_k, Some(3));
        let bad = json!({"model": "m", "messages": [{"role": "user", "content": 42}]});
        assert!(serde_json::from_value::<CompletionRequest>(bad).is_err());
        let bare: CompletionRequest =
            serde_json::from_value(json!({"messages": [{"role": "user", "content": "q"}]}))
                .unwrap();
        assert_eq!(bare.openai.model, "");
        assert!(serde_json::from_value::<CompletionRequest>(json!({"model": "m"})).is_err());
    }
}
