//! The single mapping from library errors to HTTP responses: the status from
//! the code table (`error::ErrorCode`) and the JSON error body
//! `{"error": {"code", "message"}}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use super::views::{ErrorBody, ErrorDetail};
use crate::error::Error;

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
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
        let field = match self {
            Error::InvalidField { field, .. } => Some(field.as_str()),
            _ => None,
        };
        let mut response = HttpResponse::build(status);
        if status == StatusCode::UNAUTHORIZED {
            response.insert_header(("WWW-Authenticate", "Bearer realm=\"ragchat\""));
        }
        if let Error::RateLimited { retry_after_secs } = self {
            response.insert_header(("Retry-After", retry_after_secs.to_string()));
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: &message,
                field,
            },
        })
    }
}
