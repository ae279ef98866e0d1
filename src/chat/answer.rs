//! One answer, end to end: retrieve over what the caller may read, refuse when
//! nothing relevant was found, fit the prompt, stream the model through the
//! citation filter, persist both messages, report sources, usage and timings.
//! The same events drive the WebSocket and the SSE/JSON endpoints.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::citations::CitationFilter;
use super::prompt::{build_prompt_for, PromptError, DEFAULT_SYSTEM_RULES};
use crate::app::App;
use crate::auth::{Access, Caller};
use crate::db::conversations::{self, Conversation, Message};
use crate::db::documents;
use crate::db::now;
use crate::error::{Error, Result};
use crate::ids::{ChunkId, MessageId};
use crate::llm::{ChatMessage, Role, Source, Usage};
use crate::retrieve::{self, SearchRequest, MAX_QUERY_CHARS};

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
    },
    Error {
        code: String,
        message: String,
    },
}

impl Event {
    pub fn error(e: &Error) -> Self {
        Event::Error {
            code: e.code().to_string(),
            message: e.to_string(),
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
    match code {
        "collection_not_found" => Error::not_found("collection_not_found", message),
        _ => Error::Unavailable(format!("{code}: {message}")),
    }
}

/// Check the question and find or start its conversation. Everything that
/// can be refused is refused here, before any event is sent.
pub async fn prepare(app: &App, caller: &Caller, ask: &Ask) -> Result<(Conversation, bool)> {
    validate(app, ask)?;
    let message = ask.message.trim();
    match &ask.conversation_id {
        Some(id) => {
            let conv = conversations::get(&app.db, &caller.user.id, id)
                .await?
                .ok_or_else(|| {
                    Error::not_found("conversation_not_found", "no such conversation")
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
    if let Err(e) = answer(&app, &caller, &thread, &ask, &mut sink, &mut cancel).await {
        if e.code() == "internal" {
            tracing::error!(error = %e, "chat answer failed");
        }
        sink.send(Event::error(&e)).await;
    }
}

async fn answer(
    app: &Arc<App>,
    caller: &Caller,
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
    let history: Vec<ChatMessage> = match thread {
        Thread::Stored(c) => {
            conversations::recent_messages(&app.db, &c.id, settings.history_messages as i64)
                .await?
                .into_iter()
                .filter_map(|m| match m.role.as_str() {
                    "user" => Some(ChatMessage::user(m.content)),
                    "assistant" => Some(ChatMessage::assistant(m.content)),
                    _ => None,
                })
                .collect()
        }
        Thread::Given(h) => h.clone(),
    };
    save(
        app,
        conv,
        Role::User,
        &question,
        json!({ "collections": ask.collections, "top_k": ask.top_k }),
    )
    .await?;

    let access = Access::of(&app.db, caller).await?;
    let top_k = ask.top_k.unwrap_or(settings.default_top_k as i64);
    // Questions may be longer than a search query; search with their start.
    let first: String = question.chars().take(MAX_QUERY_CHARS).collect();
    let mut search = retrieve_for(app, &first, ask, top_k, &access).await?;
    // A follow-up such as "how thick does it get?" means little alone. When
    // the question by itself finds nothing relevant, ask again with the
    // previous question in front of it; keep that only if it does better.
    let mut retrieval_query = question.clone();
    if best_similarity(&search) < settings.refusal_threshold {
        if let Some(prev) = history.iter().rev().find(|m| m.role == Role::User) {
            // Keep the end: the question itself, then as much context as fits.
            let joined = format!("{} {}", prev.content, question);
            let skip = joined.chars().count().saturating_sub(MAX_QUERY_CHARS);
            let contextual: String = joined.chars().skip(skip).collect();
            let second = retrieve_for(app, &contextual, ask, top_k, &access).await?;
            if best_similarity(&second) > best_similarity(&search) {
                search = second;
                retrieval_query = contextual;
            }
        }
    }
    let ids: Vec<ChunkId> = search.results.iter().map(|r| r.chunk_id.clone()).collect();
    let texts: std::collections::HashMap<String, String> = documents::chunks_by_ids(&app.db, &ids)
        .await?
        .into_iter()
        .map(|c| (c.chunk.id.into_string(), c.chunk.text))
        .collect();
    let mut sources = Vec::new();
    let mut items = Vec::new();
    for r in &search.results {
        let Some(text) = texts.get(&r.chunk_id.to_string()) else {
            continue;
        };
        let n = sources.len() + 1;
        sources.push(Source {
            n,
            chunk_id: r.chunk_id.to_string(),
            document_id: r.document_id.to_string(),
            title: r.title.clone(),
            text: text.clone(),
            score: r.score,
        });
        items.push(SourceItem {
            n,
            document_id: r.document_id.to_string(),
            chunk_id: r.chunk_id.to_string(),
            collection: r.collection.clone(),
            title: r.title.clone(),
            source: r.source.clone(),
            snippet: r.snippet.text.clone(),
            score: r.score,
        });
    }
    let best_similarity = best_similarity(&search);
    let mut timings = Timings {
        retrieval_ms: ms(started),
        ..Timings::default()
    };
    let metrics = &app.metrics.chat;
    metrics.retrieval_ms.observe(timings.retrieval_ms);
    let refused = sources.is_empty() || best_similarity < settings.refusal_threshold;
    sink.send(Event::Sources {
        items: if refused { Vec::new() } else { items.clone() },
    })
    .await;

    let model = app.chat_model.clone();
    if refused {
        metrics.answers.fetch_add(1, Ordering::Relaxed);
        metrics.refusals.fetch_add(1, Ordering::Relaxed);
        sink.send(Event::Delta {
            text: REFUSAL.to_string(),
        })
        .await;
        timings.total_ms = ms(started);
        let id = save(
            app,
            conv,
            Role::Assistant,
            REFUSAL,
            json!({
                "refused": true, "sources": [], "citations": [], "dropped_citations": 0,
                "model": null, "usage": Usage::default(), "timings": timings,
                "best_similarity": best_similarity.max(-1.0),
            }),
        )
        .await?;
        sink.send(Event::Done {
            message_id: id,
            citations: Vec::new(),
            dropped_citations: 0,
            refused: true,
            cancelled: false,
            model: "none".into(),
            usage: Usage::default(),
            timings,
        })
        .await;
        return Ok(());
    }

    let prompt = build_prompt_for(
        model.as_ref(),
        DEFAULT_SYSTEM_RULES,
        &sources,
        &history,
        &question,
        settings.answer_reserve_tokens,
    )
    .map_err(|e| match e {
        // The reserve not fitting the window is a setting, not the caller's fault.
        PromptError::ReserveTooLarge { .. } => Error::Internal(e.to_string()),
        _ => Error::invalid("prompt_too_long", e.to_string()),
    })?;
    let sent: Vec<usize> = prompt.source_numbers();
    let prompt_tokens = prompt.prompt_tokens;
    let mut filter = CitationFilter::new(&sent);
    let mut raw = String::new();
    let mut answer = String::new();
    let mut failure = None;
    let mut cancelled = false;
    let mut request = prompt.into_request();
    // Models that read the prompt see the history; the extractive one reads
    // only `question`, so it gets the question retrieval actually used.
    request.question = retrieval_query;
    match model.stream(request).await {
        Err(e) => failure = Some(e),
        Ok(mut stream) => loop {
            tokio::select! {
                biased;
                _ = cancel.changed() => {
                    cancelled = true;
                    break;
                }
                next = stream.next() => match next {
                    Some(Ok(delta)) => {
                        if timings.first_token_ms.is_none() {
                            timings.first_token_ms = Some(ms(started));
                        }
                        raw.push_str(&delta);
                        let out = filter.push(&delta);
                        if !out.is_empty() {
                            answer.push_str(&out);
                            sink.send(Event::Delta { text: out }).await;
                            if sink.gone {
                                cancelled = true;
                                break;
                            }
                        }
                    }
                    Some(Err(e)) => {
                        failure = Some(e);
                        break;
                    }
                    None => break,
                },
            }
        },
    }
    // The stream is gone here, which is what stops the model.
    let (rest, report) = filter.finish();
    if !rest.is_empty() {
        answer.push_str(&rest);
        if failure.is_none() && !cancelled {
            sink.send(Event::Delta { text: rest }).await;
        }
    }
    let usage = Usage {
        prompt_tokens,
        completion_tokens: model.count_tokens(&raw),
    };
    timings.total_ms = ms(started);
    record(
        metrics,
        &timings,
        &usage,
        report.dropped,
        cancelled,
        failure.is_some(),
    );
    let cited: Vec<&SourceItem> = items
        .iter()
        .filter(|s| report.cited.contains(&s.n))
        .collect();
    let id = save(
        app,
        conv,
        Role::Assistant,
        &answer,
        json!({
            "refused": false, "cancelled": cancelled,
            "error": failure.as_ref().map(|e| json!({"code": e.code(), "message": e.to_string()})),
            "sources": items, "cited_sources": cited, "citations": report.cited,
            "dropped_citations": report.dropped, "model": model.name(),
            "usage": usage, "timings": timings,
        }),
    )
    .await?;
    if let Some(e) = failure {
        sink.send(Event::Error {
            code: e.code().to_string(),
            message: e.to_string(),
        })
        .await;
        return Ok(());
    }
    sink.send(Event::Done {
        message_id: id,
        citations: report.cited,
        dropped_citations: report.dropped,
        refused: false,
        cancelled,
        model: model.name().to_string(),
        usage,
        timings,
    })
    .await;
    Ok(())
}

async fn retrieve_for(
    app: &Arc<App>,
    query: &str,
    ask: &Ask,
    top_k: i64,
    access: &Access,
) -> Result<retrieve::SearchResponse> {
    retrieve::search(
        app,
        SearchRequest {
            query: query.to_string(),
            collections: ask.collections.clone(),
            top_k: Some(top_k),
            mode: None,
            dense_weight: None,
            lexical_weight: None,
        },
        access,
    )
    .await
}

/// Cosine similarity of the best source (the dense signal; the fused score is
/// rank-based and says nothing about relevance).
fn best_similarity(search: &retrieve::SearchResponse) -> f32 {
    search
        .results
        .iter()
        .filter_map(|r| r.dense.map(|d| d.score))
        .fold(f32::NEG_INFINITY, f32::max)
}

fn record(
    m: &crate::metrics::ChatMetrics,
    timings: &Timings,
    usage: &Usage,
    dropped: usize,
    cancelled: bool,
    failed: bool,
) {
    m.answers.fetch_add(1, Ordering::Relaxed);
    m.dropped_citations
        .fetch_add(dropped as u64, Ordering::Relaxed);
    if cancelled {
        m.cancelled.fetch_add(1, Ordering::Relaxed);
    }
    if failed {
        m.errors.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(first) = timings.first_token_ms {
        m.first_token_ms.observe(first);
        let generating = (timings.total_ms - first) / 1000.0;
        if generating > 0.0 && usage.completion_tokens > 1 {
            m.tokens_per_second
                .observe(usage.completion_tokens as f64 / generating);
        }
    }
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
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"type": "error", "code": "busy", "message": "m"})
        );
    }
}
