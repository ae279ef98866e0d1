//! The single mapping from library errors to HTTP status and the JSON error
//! body `{"error": {"code", "message"}}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::embed::EmbedError;
use crate::error::Error;
use crate::ingest::formats::FormatError;

impl Error {
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidInput { code, .. }
            | Error::NotFound { code, .. }
            | Error::Unauthorized { code, .. }
            | Error::Forbidden { code, .. }
            | Error::Conflict { code, .. } => code,
            Error::InvalidField { .. } => "invalid_field",
            Error::RateLimited { .. } => "rate_limited",
            Error::PayloadTooLarge(_) | Error::Format(FormatError::LimitExceeded { .. }) => {
                "payload_too_large"
            }
            Error::Format(FormatError::Unsupported { .. } | FormatError::Mismatch { .. }) => {
                "unsupported_media_type"
            }
            Error::Format(FormatError::UnsafePath { .. }) => "unsafe_archive",
            Error::Format(FormatError::Malformed { .. } | FormatError::NoText { .. }) => {
                "unreadable_file"
            }
            Error::Embed(EmbedError::Missing { .. }) => "models_missing",
            Error::Unavailable(_) => "unavailable",
            _ => "internal",
        }
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        match self {
            Error::InvalidInput { .. } => StatusCode::BAD_REQUEST,
            Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Error::Forbidden { .. } => StatusCode::FORBIDDEN,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::InvalidField { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::PayloadTooLarge(_) | Error::Format(FormatError::LimitExceeded { .. }) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Error::Format(FormatError::Unsupported { .. } | FormatError::Mismatch { .. }) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Error::Format(FormatError::UnsafePath { .. }) => StatusCode::BAD_REQUEST,
            Error::Format(FormatError::Malformed { .. } | FormatError::NoText { .. }) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Error::Unavailable(_) | Error::Embed(EmbedError::Missing { .. }) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        // Internal details go to the log, not to the caller.
        let message = if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(error = %self, "request failed");
            "internal error".to_string()
        } else {
            self.to_string()
        };
        let mut body = json!({ "code": self.code(), "message": message });
        if let Error::InvalidField { field, .. } = self {
            body["field"] = json!(field);
        }
        let mut response = HttpResponse::build(status);
        match self {
            Error::Unauthorized { .. } => {
                response.insert_header(("WWW-Authenticate", "Bearer realm=\"ragchat\""));
            }
            Error::RateLimited { retry_after_secs } => {
                response.insert_header(("Retry-After", retry_after_secs.to_string()));
            }
            _ => {}
        }
        response.json(json!({ "error": body }))
    }
}
