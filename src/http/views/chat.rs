//! Conversations and their messages, a chat answer in one body, and the
//! OpenAI wire format of `/v1/chat/completions`.

use serde::Serialize;
use serde_json::Value;

use super::{parsed, Time};
use crate::chat::answer::SourceItem;
use crate::chat::collect::{Collected, Finished};
use crate::db::conversations::{Conversation, Message};
use crate::llm::Usage;

#[derive(Debug, Serialize)]
pub struct ConversationView<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub created_at: Time,
    pub updated_at: Time,
}

impl<'a> From<&'a Conversation> for ConversationView<'a> {
    fn from(c: &'a Conversation) -> Self {
        ConversationView {
            id: &c.id,
            title: &c.title,
            created_at: Time(c.created_at),
            updated_at: Time(c.updated_at),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct MessageView<'a> {
    pub id: &'a str,
    pub role: &'a str,
    pub content: &'a str,
    pub metadata: Value,
    pub created_at: Time,
}

impl<'a> From<&'a Message> for MessageView<'a> {
    fn from(m: &'a Message) -> Self {
        MessageView {
            id: &m.id,
            role: &m.role,
            content: &m.content,
            metadata: parsed(&m.metadata),
            created_at: Time(m.created_at),
        }
    }
}

/// A whole answer as one JSON body: what the events carried, with the
/// `done` fields at the top level. Members whose event never came are absent.
#[derive(Debug, Serialize)]
pub struct AnswerView<'a> {
    pub answer: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sources: Option<&'a [SourceItem]>,
    #[serde(flatten)]
    pub done: Option<&'a Finished>,
}

impl<'a> From<&'a Collected> for AnswerView<'a> {
    fn from(c: &'a Collected) -> Self {
        AnswerView {
            answer: &c.answer,
            conversation_id: c.conversation_id.as_deref(),
            sources: c.sources.as_deref(),
            done: c.done.as_ref(),
        }
    }
}

/// OpenAI's token counts.
#[derive(Debug, Serialize)]
pub struct UsageView {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

impl From<Usage> for UsageView {
    fn from(u: Usage) -> Self {
        UsageView {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens(),
        }
    }
}

/// `chat.completion`: the whole answer, plus ragchat's `sources`,
/// `citations` and `refused`.
#[derive(Debug, Serialize)]
pub struct CompletionView<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: i64,
    pub model: &'a str,
    pub choices: [Choice<'a>; 1],
    pub usage: UsageView,
    pub sources: &'a [SourceItem],
    pub citations: &'a [usize],
    pub refused: bool,
}

#[derive(Debug, Serialize)]
pub struct Choice<'a> {
    pub index: u32,
    pub message: Delta<'a>,
    pub finish_reason: &'static str,
}

/// A message or a streamed piece of one; absent members were not sent.
#[derive(Debug, Default, Serialize)]
pub struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
}

impl<'a> CompletionView<'a> {
    pub fn new(
        id: &'a str,
        created: i64,
        model: &'a str,
        c: &'a Collected,
        done: &'a Finished,
    ) -> Self {
        CompletionView {
            id,
            object: "chat.completion",
            created,
            model,
            choices: [Choice {
                index: 0,
                message: Delta {
                    role: Some("assistant"),
                    content: Some(&c.answer),
                },
                finish_reason: "stop",
            }],
            usage: done.usage.into(),
            sources: c.sources.as_deref().unwrap_or_default(),
            citations: &done.citations,
            refused: done.refused,
        }
    }
}

/// `chat.completion.chunk`: one streamed piece; the first carries the
/// sources, the last the usage and citations.
#[derive(Debug, Serialize)]
pub struct ChunkView<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: i64,
    pub model: &'a str,
    pub choices: [ChunkChoice<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sources: Option<&'a [SourceItem]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub citations: Option<&'a [usize]>,
}

#[derive(Debug, Serialize)]
pub struct ChunkChoice<'a> {
    pub index: u32,
    pub delta: Delta<'a>,
    pub finish_reason: Option<&'static str>,
}

impl<'a> ChunkView<'a> {
    pub fn new(id: &'a str, created: i64, model: &'a str, delta: Delta<'a>) -> Self {
        ChunkView {
            id,
            object: "chat.completion.chunk",
            created,
            model,
            choices: [ChunkChoice {
                index: 0,
                delta,
                finish_reason: None,
            }],
            sources: None,
            usage: None,
            citations: None,
        }
    }
}

/// An error in the middle of a stream, in OpenAI's shape.
#[derive(Debug, Serialize)]
pub struct StreamErrorView<'a> {
    pub error: StreamError<'a>,
}

#[derive(Debug, Serialize)]
pub struct StreamError<'a> {
    pub code: &'a str,
    pub message: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<&'a str>,
}
