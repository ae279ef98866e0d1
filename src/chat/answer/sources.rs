//! The retrieval step of an answer: the history, the search (again with the
//! previous question when the question alone finds nothing), and the sources
//! the prompt and the client get.

use std::collections::HashMap;
use std::sync::Arc;

use super::grounding::Grounding;
use super::{Ask, SourceItem, Thread};
use crate::app::App;
use crate::auth::Access;
use crate::db::conversations;
use crate::db::documents;
use crate::error::Result;
use crate::ids::ChunkId;
use crate::llm::{ChatMessage, Role, Source};
use crate::retrieve::{self, SearchRequest, MAX_QUERY_CHARS};

/// What retrieval found for a question.
pub(super) struct Found {
    /// What the prompt cites, numbered from 1.
    pub sources: Vec<Source>,
    /// The same sources as the client sees them.
    pub items: Vec<SourceItem>,
    /// What decides whether to answer.
    pub grounding: Grounding,
    /// The query that found them: the question, or the question with the
    /// previous one in front.
    pub query: String,
}

/// The conversation so far, oldest first.
pub(super) async fn history(app: &Arc<App>, thread: &Thread) -> Result<Vec<ChatMessage>> {
    Ok(match thread {
        Thread::Stored(c) => conversations::recent_messages(
            &app.db,
            &c.id,
            app.settings.chat.history_messages as i64,
        )
        .await?
        .into_iter()
        .filter_map(|m| match m.role.as_str() {
            "user" => Some(ChatMessage::user(m.content)),
            "assistant" => Some(ChatMessage::assistant(m.content)),
            _ => None,
        })
        .collect(),
        Thread::Given(h) => h.clone(),
    })
}

/// Search over what `access` allows and load the texts of the results.
pub(super) async fn find(
    app: &Arc<App>,
    access: &Access,
    ask: &Ask,
    question: &str,
    history: &[ChatMessage],
) -> Result<Found> {
    let settings = &app.settings.chat;
    let top_k = ask.top_k.unwrap_or(settings.default_top_k as i64);
    // Questions may be longer than a search query; search with their start.
    let first: String = question.chars().take(MAX_QUERY_CHARS).collect();
    let mut search = retrieve_for(app, &first, ask, top_k, access).await?;
    // A follow-up such as "how thick does it get?" means little alone. When
    // the question by itself finds nothing relevant, ask again with the
    // previous question in front of it; keep that only if it does better.
    let mut query = question.to_string();
    if best_similarity(&search) < settings.refusal_threshold {
        if let Some(prev) = history.iter().rev().find(|m| m.role == Role::User) {
            // Keep the end: the question itself, then as much context as fits.
            let joined = format!("{} {}", prev.content, question);
            let skip = joined.chars().count().saturating_sub(MAX_QUERY_CHARS);
            let contextual: String = joined.chars().skip(skip).collect();
            let second = retrieve_for(app, &contextual, ask, top_k, access).await?;
            if best_similarity(&second) > best_similarity(&search) {
                search = second;
                query = contextual;
            }
        }
    }
    let (sources, items) = sources_of(app, &search).await?;
    let grounding = if sources.is_empty() {
        Grounding::NOTHING
    } else {
        // The question's own terms, not the contextual query's: a follow-up
        // that borrows the previous question's words to find passages must
        // still be about something those passages say.
        let texts: Vec<String> = sources.iter().map(|s| s.text.clone()).collect();
        let q = first.clone();
        let evidence = crate::index::lexical::blocking(app.lexical()?, move |l| {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            l.term_evidence(&q, &refs)
        })
        .await?;
        Grounding {
            best_similarity: best_similarity(&search),
            term_share: if evidence.terms == 0 {
                1.0
            } else {
                evidence.idf_share
            },
            query_terms: evidence.terms,
        }
    };
    Ok(Found {
        sources,
        items,
        grounding,
        query,
    })
}

/// The results whose chunks still exist, as prompt sources and as items.
async fn sources_of(
    app: &Arc<App>,
    search: &retrieve::SearchResponse,
) -> Result<(Vec<Source>, Vec<SourceItem>)> {
    let ids: Vec<ChunkId> = search.results.iter().map(|r| r.chunk_id.clone()).collect();
    let texts: HashMap<String, String> = documents::chunks_by_ids(&app.db, &ids)
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
            text: text.clone(),
            score: r.score,
        });
    }
    Ok((sources, items))
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
            ..SearchRequest::default()
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
