//! One answer's events folded into one value, for the transports that answer
//! with a single response instead of a stream (the messages endpoint without
//! SSE, and `/v1/chat/completions` without `stream`).

use serde::Serialize;
use tokio::sync::mpsc;

use super::answer::{error_of, Event, SourceItem, Timings};
use crate::error::Result;
use crate::llm::Usage;

/// Everything an answer reported, in one piece.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Collected {
    /// The answer text: all deltas joined.
    pub answer: String,
    /// None for stateless answers, which send no `conversation` event.
    pub conversation_id: Option<String>,
    pub sources: Option<Vec<SourceItem>>,
    /// None when the events ended without `done`.
    pub done: Option<Finished>,
}

/// What the `done` event carries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finished {
    pub message_id: Option<String>,
    pub citations: Vec<usize>,
    pub dropped_citations: usize,
    pub refused: bool,
    pub cancelled: bool,
    pub model: String,
    pub usage: Usage,
    pub timings: Timings,
}

/// Read events until the answer ends; an `error` event becomes the error.
pub async fn collect(rx: &mut mpsc::Receiver<Event>) -> Result<Collected> {
    let mut out = Collected::default();
    while let Some(e) = rx.recv().await {
        match e {
            Event::Conversation { id, .. } => out.conversation_id = Some(id),
            Event::Sources { items } => out.sources = Some(items),
            Event::Delta { text } => out.answer.push_str(&text),
            Event::Done {
                message_id,
                citations,
                dropped_citations,
                refused,
                cancelled,
                model,
                usage,
                timings,
            } => {
                out.done = Some(Finished {
                    message_id,
                    citations,
                    dropped_citations,
                    refused,
                    cancelled,
                    model,
                    usage,
                    timings,
                });
                // `done` is the last event.
                break;
            }
            Event::Error { code, message } => return Err(error_of(&code, message)),
        }
    }
    Ok(out)
}
