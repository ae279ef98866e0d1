//! One answer, end to end: retrieve over what the caller may read, refuse when
//! nothing relevant was found, fit the prompt, stream the model through the
//! citation filter, persist both messages, report sources, usage and timings.
//! The same events drive the WebSocket and the SSE/JSON endpoints.

mod generate;
pub mod grounding;
mod sources;

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use crate::app::App;
use crate::auth::Caller;
use crate::db::conversations;
use crate::db::conversations::{Conversation, Message};
use crate::db::now;
use crate::error::{Error, ErrorCode, Result};
use crate::ids::MessageId;
use crate::llm::{ChatMessage, Role, Usage};
use crate::telemetry::request_id;

/// What the knowledge base says when it has nothing relevant.
pub const REFUSAL: &str = "The knowledge base does not cover this question: none of the documents you can access contain a relevant passage.";

/// A question, as the WebSocket `ask` frame and the messages endpoint carry it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ask {
    pub conversation_id: Option<String>,
    pub message: String,
    pub collections: Option<Vec<String>>,
    pub top_k: Option<i64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SourceItem {
    pub n: usize,
    pub document_id: String,
    pub chunk_id: String,
    pub collection: String,
    pub title: String,
    pub source: String,
    pub snippet: String,
    /// The whole passage as the model was given it: what a citation points
    /// at, so a reader can check the claim against all of it.
    pub text: String,
    pub score: f32,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Timings {
    pub retrieval_ms: f64,
    /// None when the model produced nothing (refusal, error, cancel).
    pub first_token_ms: Option<f64>,
    pub total_ms: f64,
}

/// Server events, in order: conversation, sources, delta*, then done or error.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Conversation {
        id: String,
        title: String,
    },
    Sources {
        items: Vec<SourceItem>,
    },
    Delta {
        text: String,
    },
    Done {
        /// None for stateless answers (`/v1/chat/completions`).
        message_id: Option<String>,
        citations: Vec<usize>,
        dropped_citations: usize,
        refused: bool,
        cancelled: bool,
        model: String,
        usage: Usage,
        timings: Timings,
        /// The evidence the refusal decision was made on.
        grounding: grounding::Grounding,
    },
    /// `message` is for the client: never a backend's own error text,
    /// which is logged under `request_id`.
    Error {
        code: String,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
    },
}

impl Event {
    /// The error event for `e`, as the client may see it.
    pub fn error(e: &Error) -> Self {
        Event::failure(e.code().as_str(), e.client_message())
    }

    /// An error event of the current request.
    pub fn failure(code: &str, message: impl Into<String>) -> Self {
        Event::Error {
            code: code.to_string(),
            message: message.into(),
            request_id: request_id::current(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Event::Conversation { .. } => "conversation",
            Event::Sources { .. } => "sources",
            Event::Delta { .. } => "delta",
            Event::Done { .. } => "done",
            Event::Error { .. } => "error",
        }
    }
}

/// The HTTP error for an `error` event, for transports that answer with one
/// response instead of a stream of events.
pub fn error_of(code: &str, message: String) -> Error {
    // A refusal of the request keeps its code and status; any failure on
    // our side is `unavailable`. The event's message is already the
    // client's (see `Event::Error`).
    match ErrorCode::ALL.iter().find(|c| c.as_str() == code) {
        Some(&c) if c.status() < 500 => Error::new(c, message),
        _ => Error::new(ErrorCode::Unavailable, message),
    }
}

/// Check the question and find or start its conversation. Everything that
/// can be refused is refused here, before any event is sent.
pub async fn prepare(app: &App, caller: &Caller, ask: &Ask) -> Result<(Conversation, bool)> {
    validate(app, ask)?;
    if let Some(names) = &ask.collections {
        // A name the caller cannot search is refused before the question is
        // stored or a conversation started for it.
        let access = crate::auth::Access::of(&app.db, caller).await?;
        crate::retrieve::resolve_collections(app, Some(names), &access).await?;
    }
    let message = ask.message.trim();
    match &ask.conversation_id {
        Some(id) => {
            let conv = conversations::get(&app.db, &caller.user.id, id)
                .await?
                .ok_or_else(|| {
                    Error::new(ErrorCode::ConversationNotFound, "no such conversation")
                })?;
            Ok((conv, false))
        }
        None => {
            let conv = conversations::create(&app.db, &caller.user.id, &title_of(message)).await?;
            Ok((conv, true))
        }
    }
}

/// The question's own checks (length, `top_k`).
pub fn validate(app: &App, ask: &Ask) -> Result<()> {
    let c = &app.settings.chat;
    let message = ask.message.trim();
    if message.is_empty() || message.chars().count() > c.max_question_chars {
        return Err(Error::field(
            "message",
            format!("must be 1 to {} characters", c.max_question_chars),
        ));
    }
    if let Some(k) = ask.top_k {
        if k < 1 || k as u64 > c.max_top_k as u64 {
            return Err(Error::field(
                "top_k",
                format!("must be between 1 and {}", c.max_top_k),
            ));
        }
    }
    if ask
        .collections
        .iter()
        .flatten()
        .any(|n| n.trim().is_empty())
    {
        return Err(Error::field(
            "collections",
            "collection names must not be empty",
        ));
    }
    Ok(())
}

/// A conversation title from its first question: the first words, at most
/// 60 characters.
fn title_of(question: &str) -> String {
    let words: Vec<&str> = question.split_whitespace().collect();
    let mut title = String::new();
    for w in words {
        if title.chars().count() + w.chars().count() + 1 > 60 {
            if title.is_empty() {
                title = w.chars().take(59).collect();
            }
            title.push('…');
            return title;
        }
        if !title.is_empty() {
            title.push(' ');
        }
        title.push_str(w);
    }
    title
}

/// Sends events; a send failing means the client is gone, which cancels.
struct Sink {
    tx: mpsc::Sender<Event>,
    gone: bool,
}

impl Sink {
    async fn send(&mut self, e: Event) {
        if !self.gone && self.tx.send(e).await.is_err() {
            self.gone = true;
        }
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// Where an answer's history comes from and where it is stored.
#[derive(Debug, Clone)]
pub enum Thread {
    /// A stored conversation: history from it, both messages saved to it.
    Stored(Conversation),
    /// A stateless exchange (`/v1/chat/completions`): the client sends the
    /// history; nothing is stored.
    Given(Vec<ChatMessage>),
}

/// Answer `ask` in `thread`, sending events to `tx` until done or error.
/// `cancel` turning true (or the receiver going away) stops generation: the
/// model stream is dropped and the partial answer is kept, marked cancelled.
pub async fn run(
    app: Arc<App>,
    caller: Caller,
    thread: Thread,
    ask: Ask,
    tx: mpsc::Sender<Event>,
    mut cancel: watch::Receiver<bool>,
) {
    let mut sink = Sink { tx, gone: false };
    let result = async {
        let access = crate::auth::Access::of(&app.db, &caller).await?;
        answer(&app, &access, &thread, &ask, &mut sink, &mut cancel).await
    }
    .await;
    if let Err(e) = result {
        if e.status() >= 500 {
            tracing::error!(code = %e.code(), error = %e, "chat answer failed");
        }
        sink.send(Event::error(&e)).await;
    }
}

/// Answer a stateless question over what `access` allows, as `run` does for
/// a caller: the evaluation's way in (`ragchat eval-answers`).
pub async fn run_with_access(
    app: Arc<App>,
    access: crate::auth::Access,
    ask: Ask,
    tx: mpsc::Sender<Event>,
    mut cancel: watch::Receiver<bool>,
) {
    let mut sink = Sink { tx, gone: false };
    let thread = Thread::Given(Vec::new());
    if let Err(e) = answer(&app, &access, &thread, &ask, &mut sink, &mut cancel).await {
        sink.send(Event::error(&e)).await;
    }
}

/// One answer in progress: where its events and messages go, and how long
/// it has taken.
struct Answering<'a> {
    app: &'a Arc<App>,
    conv: Option<&'a Conversation>,
    sink: &'a mut Sink,
    started: Instant,
    timings: Timings,
}

async fn answer(
    app: &Arc<App>,
    access: &crate::auth::Access,
    thread: &Thread,
    ask: &Ask,
    sink: &mut Sink,
    cancel: &mut watch::Receiver<bool>,
) -> Result<()> {
    let started = Instant::now();
    let settings = &app.settings.chat;
    let question = ask.message.trim().to_string();
    let conv = match thread {
        Thread::Stored(c) => Some(c),
        Thread::Given(_) => None,
    };
    if let Some(c) = conv {
        sink.send(Event::Conversation {
            id: c.id.to_string(),
            title: c.title.clone(),
        })
        .await;
    }

    // History first, so the question being asked is not part of it.
    let history = sources::history(app, thread).await?;
    save(
        app,
        conv,
        Role::User,
        &question,
        json!({ "collections": ask.collections, "top_k": ask.top_k }),
    )
    .await?;

    let found = sources::find(app, access, ask, &question, &history).await?;
    let timings = Timings {
        retrieval_ms: ms(started),
        ..Timings::default()
    };
    app.metrics
        .chat
        .retrieval
        .observe(timings.retrieval_ms / 1000.0);
    let refused = found.sources.is_empty() || found.grounding.refuse(settings);
    sink.send(Event::Sources {
        items: if refused {
            Vec::new()
        } else {
            found.items.clone()
        },
    })
    .await;

    let mut a = Answering {
        app,
        conv,
        sink,
        started,
        timings,
    };
    if refused {
        return generate::refuse(&mut a, found.grounding).await;
    }
    generate::reply(&mut a, cancel, found, &history, &question).await
}

/// Store a message in the conversation, if there is one; its id.
async fn save(
    app: &App,
    conversation: Option<&Conversation>,
    role: Role,
    content: &str,
    metadata: serde_json::Value,
) -> Result<Option<String>> {
    let Some(conversation) = conversation else {
        return Ok(None);
    };
    let m = conversations::add_message(
        &app.db,
        Message {
            id: MessageId::random(),
            conversation_id: conversation.id.clone(),
            role: role.as_str().to_string(),
            content: content.to_string(),
            metadata: metadata.to_string(),
            created_at: now(),
        },
    )
    .await?;
    Ok(Some(m.id.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_short_and_cut_at_words() {
        assert_eq!(title_of("What is a shock wave?"), "What is a shock wave?");
        let long = "How does the boundary layer thickness grow along a flat plate in laminar flow at high Reynolds numbers";
        let t = title_of(long);
        assert!(t.chars().count() <= 61 && t.ends_with('…'), "{t}");
        assert!(long.starts_with(t.trim_end_matches('…')));
        assert!(title_of(&"x".repeat(200)).chars().count() <= 60);
    }

    #[test]
    fn events_serialize_as_tagged_frames() {
        let e = Event::Delta { text: "hi".into() };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"type": "delta", "text": "hi"})
        );
        let e = Event::Error {
            code: "busy".into(),
            message: "m".into(),
            request_id: None,
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"type": "error", "code": "busy", "message": "m"})
        );
    }

    #[tokio::test]
    async fn error_events_carry_the_request_id_not_the_detail() {
        let e = Error::Unavailable("database at 10.0.0.7:5432: connection refused".into());
        let frame = request_id::scope("req-42", async { Event::error(&e) }).await;
        let v = serde_json::to_value(&frame).unwrap();
        assert_eq!(v["code"], "unavailable");
        assert_eq!(v["request_id"], "req-42");
        let message = v["message"].as_str().unwrap();
        assert!(
            !message.contains("10.0.0.7") && !message.contains("refused"),
            "{v}"
        );
    }
}
