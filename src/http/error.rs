//! The single mapping from library errors to HTTP status and the JSON error
//! body `{"error": {"code", "message"}}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::embed::EmbedError;
use crate::error::Error;

impl Error {
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidInput { code, .. } | Error::NotFound { code, .. } => code,
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
        HttpResponse::build(status).json(json!({
            "error": { "code": self.code(), "message": message }
        }))
    }
}
