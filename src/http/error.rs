//! The single mapping from library errors to HTTP responses: the status from
//! the code table (`error::ErrorCode`) and the JSON error body
//! `{"error": {"code", "message", "field"?, "request_id"}}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use super::views::ErrorBody;
use crate::error::Error;

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        // The detail of a failure on our side goes to the log, inside the
        // request's span (so under its request id); the client gets the code,
        // a fixed sentence and the id to quote.
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(code = %self.code(), error = %self, "request failed");
        } else if status.is_server_error() {
            tracing::error!(code = %self.code(), error = %self, "request failed");
        } else {
            // The client's mistake: nothing for an operator to do.
            tracing::debug!(code = %self.code(), error = %self, "request refused");
        }
        let message = self.client_message();
        let mut body = ErrorBody::new(self.code(), &message);
        if let Error::InvalidField { field, .. } = self {
            body.error.field = Some(field);
        }
        let mut response = HttpResponse::build(status);
        if status == StatusCode::UNAUTHORIZED {
            response.insert_header(("WWW-Authenticate", "Bearer realm=\"ragchat\""));
        }
        if let Error::RateLimited { retry_after_secs } = self {
            response.insert_header(("Retry-After", retry_after_secs.to_string()));
        }
        response.json(body)
    }
}
