//! Conversations and their messages, a chat answer in one body, and the
//! OpenAI wire format of `/v1/chat/completions`.

use async_openai::types::chat::{
    ChatChoice, ChatChoiceStream, ChatCompletionResponseMessage, ChatCompletionStreamResponseDelta,
    CompletionUsage, CreateChatCompletionResponse, CreateChatCompletionStreamResponse,
    FinishReason, Role,
};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{parsed, Time};
use crate::chat::answer::SourceItem;
use crate::chat::collect::{Collected, Finished};
use crate::db::conversations::{Conversation, Message};
use crate::llm::Usage;

#[derive(Debug, Serialize, ToSchema)]
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

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageView<'a> {
    pub id: &'a str,
    /// `user` or `assistant`.
    #[schema(example = "assistant")]
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
fn usage(u: Usage) -> CompletionUsage {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    CompletionUsage {
        prompt_tokens: count(u.prompt_tokens),
        completion_tokens: count(u.completion_tokens),
        total_tokens: count(u.total_tokens()),
        ..Default::default()
    }
}

/// `chat.completion` (async-openai's type), plus ragchat's `sources`,
/// `citations` and `refused`.
#[derive(Debug, Serialize)]
pub struct CompletionView<'a> {
    #[serde(flatten)]
    pub completion: CreateChatCompletionResponse,
    pub sources: &'a [SourceItem],
    pub citations: &'a [usize],
    pub refused: bool,
}

impl<'a> CompletionView<'a> {
    pub fn new(id: &str, created: u32, model: &str, c: &'a Collected, done: &'a Finished) -> Self {
        CompletionView {
            completion: CreateChatCompletionResponse {
                id: id.to_string(),
                object: "chat.completion".into(),
                created,
                model: model.to_string(),
                choices: vec![ChatChoice {
                    index: 0,
                    message: ChatCompletionResponseMessage {
                        role: Role::Assistant,
                        content: Some(c.answer.clone()),
                        ..Default::default()
                    },
                    finish_reason: Some(FinishReason::Stop),
                    logprobs: None,
                }],
                usage: Some(usage(done.usage)),
                ..Default::default()
            },
            sources: c.sources.as_deref().unwrap_or_default(),
            citations: &done.citations,
            refused: done.refused,
        }
    }
}

/// `chat.completion.chunk` (async-openai's type): one streamed piece; the
/// first carries ragchat's `sources`, the last the usage and `citations`.
#[derive(Debug, Serialize)]
pub struct ChunkView<'a> {
    #[serde(flatten)]
    pub chunk: CreateChatCompletionStreamResponse,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sources: Option<&'a [SourceItem]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub citations: Option<&'a [usize]>,
}

impl<'a> ChunkView<'a> {
    pub fn new(
        id: &str,
        created: u32,
        model: &str,
        delta: ChatCompletionStreamResponseDelta,
    ) -> Self {
        ChunkView {
            chunk: CreateChatCompletionStreamResponse {
                id: id.to_string(),
                object: "chat.completion.chunk".into(),
                created,
                model: model.to_string(),
                choices: vec![ChatChoiceStream {
                    index: 0,
                    delta,
                    finish_reason: None,
                    logprobs: None,
                }],
                ..Default::default()
            },
            sources: None,
            citations: None,
        }
    }

    /// The last chunk: no text, the finish reason, the usage.
    pub fn finish(mut self, u: Usage, citations: &'a [usize]) -> Self {
        if let Some(choice) = self.chunk.choices.first_mut() {
            choice.finish_reason = Some(FinishReason::Stop);
        }
        self.chunk.usage = Some(usage(u));
        self.citations = Some(citations);
        self
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
