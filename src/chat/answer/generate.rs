//! The generation step of an answer: the refusal when nothing relevant was
//! found, else the prompt, the model's stream through the citation filter,
//! and what is stored and reported at the end.

use futures::StreamExt;
use serde_json::json;
use tokio::sync::watch;

use super::grounding::Grounding;
use super::sources::Found;
use super::{ms, save, Answering, Event, SourceItem, Timings, REFUSAL};
use crate::app::App;
use crate::chat::prompt::{build_prompt_for, Prompt, PromptError, DEFAULT_SYSTEM_RULES};
use crate::error::{Error, ErrorCode, Result};
use crate::llm::{ChatMessage, ChatModel, ChatRequest, LlmError, Role, Usage};
use crate::telemetry::request_id;
use crate::text::citations::{CitationFilter, CitationReport};

/// Answer with [`REFUSAL`] and store that.
pub(super) async fn refuse(a: &mut Answering<'_>, grounding: Grounding) -> Result<()> {
    let metrics = &a.app.metrics.chat;
    metrics.answers.inc();
    metrics.refusals.inc();
    a.sink
        .send(Event::Delta {
            text: REFUSAL.to_string(),
        })
        .await;
    a.timings.total_ms = ms(a.started);
    let timings = a.timings;
    let id = save(
        a.app,
        a.conv,
        Role::Assistant,
        REFUSAL,
        json!({
            "refused": true, "sources": [], "citations": [], "dropped_citations": 0,
            "model": null, "usage": Usage::default(), "timings": timings,
            "best_similarity": grounding.best_similarity.max(-1.0),
            "grounding": grounding,
        }),
    )
    .await?;
    a.sink
        .send(Event::Done {
            message_id: id,
            citations: Vec::new(),
            dropped_citations: 0,
            refused: true,
            cancelled: false,
            model: "none".into(),
            usage: Usage::default(),
            timings,
            grounding,
        })
        .await;
    Ok(())
}

/// What the model said, as far as it got.
struct Streamed {
    /// Everything the model produced, for counting tokens.
    raw: String,
    /// What passed the citation filter, i.e. what the client got.
    answer: String,
    report: CitationReport,
    failure: Option<LlmError>,
    cancelled: bool,
}

/// Prompt the model with `found`, stream its answer to `sink`, store it.
pub(super) async fn reply(
    a: &mut Answering<'_>,
    cancel: &mut watch::Receiver<bool>,
    found: Found,
    history: &[ChatMessage],
    question: &str,
) -> Result<()> {
    let app = a.app;
    let model = app.chat_model.clone();
    let grounding = found.grounding;
    let prompt = prompt_for(app, model.as_ref(), &found, history, question)?;
    let filter = CitationFilter::new(&prompt.source_numbers());
    let prompt_tokens = prompt.prompt_tokens;
    let mut request = prompt.into_request();
    // Models that read the prompt see the history; the extractive one reads
    // only `question`, so it gets the question retrieval actually used.
    request.question = found.query;
    let out = stream(a, model.as_ref(), request, filter, cancel).await;
    let usage = Usage {
        prompt_tokens,
        completion_tokens: model.count_tokens(&out.raw),
    };
    a.timings.total_ms = ms(a.started);
    let timings = a.timings;
    record(
        &app.metrics.chat,
        &timings,
        &usage,
        out.report.dropped,
        out.cancelled,
        out.failure.is_some(),
    );
    let items = found.items;
    let cited: Vec<&SourceItem> = items
        .iter()
        .filter(|s| out.report.cited.contains(&s.n))
        .collect();
    let id = save(
        app,
        a.conv,
        Role::Assistant,
        &out.answer,
        json!({
            "refused": false, "cancelled": out.cancelled,
            "error": out.failure.as_ref().map(|e| json!({
                "code": e.code(), "message": e.public_message(), "request_id": request_id::current(),
            })),
            "sources": items, "cited_sources": cited, "citations": out.report.cited,
            "dropped_citations": out.report.dropped, "model": model.name(),
            "usage": usage, "timings": timings,
        }),
    )
    .await?;
    if let Some(e) = out.failure {
        // The detail stays in the log (under the request id in the span);
        // the stored message and the client get the kind of failure.
        tracing::warn!(code = e.code(), error = %e, "the chat model failed");
        a.sink
            .send(Event::failure(e.code(), e.public_message()))
            .await;
        return Ok(());
    }
    a.sink
        .send(Event::Done {
            message_id: id,
            citations: out.report.cited,
            dropped_citations: out.report.dropped,
            refused: false,
            cancelled: out.cancelled,
            model: model.name().to_string(),
            usage,
            timings,
            grounding,
        })
        .await;
    Ok(())
}

/// The prompt for `question` with the sources found, within the model's window.
fn prompt_for(
    app: &App,
    model: &dyn ChatModel,
    found: &Found,
    history: &[ChatMessage],
    question: &str,
) -> Result<Prompt> {
    build_prompt_for(
        model,
        DEFAULT_SYSTEM_RULES,
        &found.sources,
        history,
        question,
        app.settings.chat.answer_reserve_tokens,
    )
    .map_err(|e| match e {
        // The reserve not fitting the window is a setting, not the caller's fault.
        PromptError::ReserveTooLarge { .. } => Error::Internal(e.to_string()),
        _ => Error::new(ErrorCode::PromptTooLong, e.to_string()),
    })
}

/// Run the model, passing its deltas through `filter` to `sink` until it
/// ends, fails, or `cancel` fires (or the client goes away).
#[tracing::instrument(name = "model call", skip_all)]
async fn stream(
    a: &mut Answering<'_>,
    model: &dyn ChatModel,
    request: ChatRequest,
    mut filter: CitationFilter,
    cancel: &mut watch::Receiver<bool>,
) -> Streamed {
    let mut raw = String::new();
    let mut answer = String::new();
    let mut failure = None;
    let mut cancelled = false;
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
                        if a.timings.first_token_ms.is_none() {
                            a.timings.first_token_ms = Some(ms(a.started));
                        }
                        raw.push_str(&delta);
                        let out = filter.push(&delta);
                        if !out.is_empty() {
                            answer.push_str(&out);
                            a.sink.send(Event::Delta { text: out }).await;
                            if a.sink.gone {
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
            a.sink.send(Event::Delta { text: rest }).await;
        }
    }
    Streamed {
        raw,
        answer,
        report,
        failure,
        cancelled,
    }
}

fn record(
    m: &crate::metrics::ChatMetrics,
    timings: &Timings,
    usage: &Usage,
    dropped: usize,
    cancelled: bool,
    failed: bool,
) {
    m.answers.inc();
    m.dropped_citations.inc_by(dropped as u64);
    if cancelled {
        m.cancelled.inc();
    }
    if failed {
        m.errors.inc();
    }
    if let Some(first) = timings.first_token_ms {
        m.first_token.observe(first / 1000.0);
        let generating = (timings.total_ms - first) / 1000.0;
        if generating > 0.0 && usage.completion_tokens > 1 {
            m.tokens_per_second
                .observe(usage.completion_tokens as f64 / generating);
        }
    }
}
