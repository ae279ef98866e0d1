//! One answer's events folded into one value, for the transports that answer
//! with a single response instead of a stream (the messages endpoint without
//! SSE, and `/v1/chat/completions` without `stream`).

use std::future::Future;

use serde::Serialize;
use tokio::sync::{mpsc, watch};

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
                ..
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
            Event::Error { code, message, .. } => return Err(error_of(&code, message)),
        }
    }
    Ok(out)
}

/// [`collect`], unless `stop` comes first (the client went away): then the
/// answer is cancelled, which drops the model's stream and stops generating,
/// and there is nothing to return.
pub async fn collect_unless(
    rx: &mut mpsc::Receiver<Event>,
    cancel: watch::Sender<bool>,
    stop: impl Future<Output = ()>,
) -> Option<Result<Collected>> {
    let collected = tokio::select! {
        r = collect(rx) => Some(r),
        () = stop => {
            let _ = cancel.send(true);
            None
        }
    };
    // The answer is over (or cancelled); only now may the cancel switch go.
    drop(cancel);
    collected
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_client_leaving_cancels_the_answer() {
        let (tx, mut rx) = mpsc::channel(4);
        let (cancel_tx, mut cancel_rx) = watch::channel(false);
        // An answer that streams until it is cancelled.
        let answer = tokio::spawn(async move {
            tx.send(Event::Delta {
                text: "so far".into(),
            })
            .await
            .unwrap();
            cancel_rx.changed().await.unwrap();
            *cancel_rx.borrow()
        });
        let out = collect_unless(&mut rx, cancel_tx, async {}).await;
        assert!(out.is_none());
        assert!(
            answer.await.unwrap(),
            "the answer saw the cancel switch flip"
        );
    }

    #[tokio::test]
    async fn an_answer_that_ends_is_collected() {
        let (tx, mut rx) = mpsc::channel(4);
        let (cancel_tx, _cancel_rx) = watch::channel(false);
        tx.send(Event::Delta { text: "all".into() }).await.unwrap();
        drop(tx);
        let out = collect_unless(&mut rx, cancel_tx, std::future::pending()).await;
        assert_eq!(out.unwrap().unwrap().answer, "all");
    }
}
