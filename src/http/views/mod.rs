//! The JSON the API answers with, as typed views over the domain structs.
//! A view decides field names and what is null; handlers build one and hand
//! it to actix, so no handler writes a JSON literal.

mod accounts;
mod chat;
mod library;

pub use accounts::{KeyView, NewKeyView, RoleName, ScopeName, SessionView, TicketView, UserView};
pub use chat::{
    AnswerView, ChunkView, CompletionView, ConversationView, MessageView, StreamError,
    StreamErrorView,
};
pub use library::{
    CollectionView, DocumentSummaryView, DocumentView, GrantView, JobAccepted, JobFrame,
    JobStateName, JobView,
};

use chrono::NaiveDateTime;
use serde::{Serialize, Serializer};
use serde_json::Value;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::error::ErrorCode;

/// The API's timestamp format: RFC 3339, UTC, microseconds.
pub fn rfc3339(t: NaiveDateTime) -> String {
    t.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A timestamp serialised as [`rfc3339`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Time(pub NaiveDateTime);

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&rfc3339(self.0))
    }
}

impl PartialSchema for Time {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("RFC 3339, UTC, microseconds"))
            .examples(["2026-12-01T19:20:11.123456Z"])
            .into()
    }
}

impl ToSchema for Time {}

/// Every code clients can see, so a client can match on them.
impl PartialSchema for ErrorCode {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
            .into()
    }
}

impl ToSchema for ErrorCode {}

fn time(t: Option<NaiveDateTime>) -> Option<Time> {
    t.map(Time)
}

/// A JSON column's text as JSON; null when it does not parse.
fn parsed(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or(Value::Null)
}

/// One page of a list, with the cursor of the next (null on the last).
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A whole list, not paged.
#[derive(Debug, Serialize, ToSchema)]
pub struct Items<T> {
    pub items: Vec<T>,
}

/// `{"error": {"code", "message", "field"?, "request_id"?}}`: every error
/// response of the API.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail<'a> {
    pub code: ErrorCode,
    pub message: &'a str,
    /// Only for `invalid_field`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
    /// The request's `X-Request-Id`, which also marks its log lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl<'a> ErrorBody<'a> {
    /// An error of the request being served.
    pub fn new(code: ErrorCode, message: &'a str) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code,
                message,
                field: None,
                request_id: crate::telemetry::request_id::current(),
            },
        }
    }
}

/// `GET /health` and the overall state of `GET /ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status<T: Serialize> {
    /// `ok` (health), `ready` or `not_ready`.
    #[schema(value_type = String, example = "ready")]
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<T>,
}

/// The readiness checks, each `{"ok": true, "detail"}` or `{"ok": false, "error"}`
/// (for admins; others see `{"ok"}` alone).
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyChecks {
    pub database: Check,
    pub vector_index: Check,
    pub lexical_index: Check,
    /// How far the lexical index is behind the database's change log.
    pub lexical_log: Check,
    pub embedding_model: Check,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ReadyChecks {
    /// Whether each check passed, and nothing more.
    pub fn without_detail(self) -> Self {
        ReadyChecks {
            database: self.database.without_detail(),
            vector_index: self.vector_index.without_detail(),
            lexical_index: self.lexical_index.without_detail(),
            lexical_log: self.lexical_log.without_detail(),
            embedding_model: self.embedding_model.without_detail(),
        }
    }
}

impl Check {
    fn without_detail(self) -> Self {
        Check {
            ok: self.ok,
            detail: None,
            error: None,
        }
    }
}

impl From<Result<String, String>> for Check {
    fn from(r: Result<String, String>) -> Self {
        match r {
            Ok(detail) => Check {
                ok: true,
                detail: Some(detail),
                error: None,
            },
            Err(error) => Check {
                ok: false,
                detail: None,
                error: Some(error),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::chat::collect::Collected;

    #[test]
    fn error_body_names_field_only_when_there_is_one() {
        let body = serde_json::to_value(ErrorBody::new(ErrorCode::NotFound, "no such route"));
        assert_eq!(
            body.unwrap(),
            json!({"error": {"code": "not_found", "message": "no such route"}})
        );
    }

    #[test]
    fn answer_leaves_out_what_its_events_never_said() {
        let c = Collected {
            answer: "hi".into(),
            ..Collected::default()
        };
        let v = serde_json::to_value(AnswerView::from(&c)).unwrap();
        assert_eq!(v, json!({"answer": "hi"}));
    }

    #[test]
    fn checks_show_detail_or_error() {
        let ok = serde_json::to_value(Check::from(Ok("sqlite".to_string()))).unwrap();
        assert_eq!(ok, json!({"ok": true, "detail": "sqlite"}));
        let bad = serde_json::to_value(Check::from(Err("down".to_string()))).unwrap();
        assert_eq!(bad, json!({"ok": false, "error": "down"}));
        let checks = ReadyChecks {
            database: Check::from(Err("could not connect to 10.0.0.5:5432".to_string())),
            vector_index: Check::from(Ok("3 points".to_string())),
            lexical_index: Check::from(Ok("3 documents".to_string())),
            lexical_log: Check::from(Ok("position 7 of 9: 2 behind (0.4 s)".to_string())),
            embedding_model: Check::from(Ok("384 dimensions".to_string())),
        };
        assert_eq!(
            serde_json::to_value(checks.without_detail()).unwrap(),
            json!({
                "database": {"ok": false}, "vector_index": {"ok": true},
                "lexical_index": {"ok": true}, "lexical_log": {"ok": true},
                "embedding_model": {"ok": true},
            })
        );
        let t = chrono::DateTime::from_timestamp(0, 0).unwrap().naive_utc();
        assert_eq!(
            serde_json::to_value(Time(t)).unwrap(),
            json!("1970-01-01T00:00:00.000000Z")
        );
    }
}
