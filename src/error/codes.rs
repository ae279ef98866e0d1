//! The one table of error codes clients see. Each row names the code's
//! string and the HTTP status it is answered with; the HTTP layer reads the
//! status from here and nowhere else. Codes are part of the API: never rename
//! one, only add.

use serde::{Serialize, Serializer};

macro_rules! error_codes {
    ($($(#[$doc:meta])* $name:ident = $code:literal, $status:literal;)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $name,)*
        }

        impl ErrorCode {
            /// Every row, for checks over the whole table.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name),*];

            /// The stable machine-readable name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $code,)*
                }
            }

            /// The HTTP status an error with this code is answered with.
            pub const fn status(self) -> u16 {
                match self {
                    $(ErrorCode::$name => $status,)*
                }
            }
        }
    };
}

error_codes! {
    // 400: the request itself is wrong.
    BadDataset = "bad_dataset", 400;
    BadRunFile = "bad_run_file", 400;
    EmptyQuery = "empty_query", 400;
    InvalidBody = "invalid_body", 400;
    InvalidCollection = "invalid_collection", 400;
    InvalidCrawl = "invalid_crawl", 400;
    InvalidCursor = "invalid_cursor", 400;
    InvalidFusion = "invalid_fusion", 400;
    InvalidMultipart = "invalid_multipart", 400;
    InvalidQueryString = "invalid_query_string", 400;
    InvalidTopK = "invalid_top_k", 400;
    InvalidWeights = "invalid_weights", 400;
    NoFiles = "no_files", 400;
    NotAWebsocket = "not_a_websocket", 400;
    PasswordRequired = "password_required", 400;
    PromptTooLong = "prompt_too_long", 400;
    QueryTooLong = "query_too_long", 400;
    UnknownCollection = "unknown_collection", 400;
    UnknownMode = "unknown_mode", 400;
    /// An archive member whose path would leave the upload directory.
    UnsafeArchive = "unsafe_archive", 400;
    // 401: no or bad credentials.
    Unauthorized = "unauthorized", 401;
    InvalidCredentials = "invalid_credentials", 401;
    InvalidRefreshToken = "invalid_refresh_token", 401;
    RefreshTokenReused = "refresh_token_reused", 401;
    TokenExpired = "token_expired", 401;
    /// An API key past the expiry it was created with.
    ApiKeyExpired = "api_key_expired", 401;
    /// A WebSocket ticket that is unknown, expired or already used.
    InvalidTicket = "invalid_ticket", 401;
    // 403: a known caller, not allowed.
    Forbidden = "forbidden", 403;
    InsufficientScope = "insufficient_scope", 403;
    RegistrationClosed = "registration_closed", 403;
    SessionRequired = "session_required", 403;
    // 404
    NotFound = "not_found", 404;
    ApiKeyNotFound = "api_key_not_found", 404;
    CollectionNotFound = "collection_not_found", 404;
    ConversationNotFound = "conversation_not_found", 404;
    DocumentNotFound = "document_not_found", 404;
    JobNotFound = "job_not_found", 404;
    UserNotFound = "user_not_found", 404;
    MethodNotAllowed = "method_not_allowed", 405;
    // 409: the request clashes with the current state.
    CannotModifySelf = "cannot_modify_self", 409;
    CollectionExists = "collection_exists", 409;
    EmailTaken = "email_taken", 409;
    JobFinished = "job_finished", 409;
    UsernameTaken = "username_taken", 409;
    PayloadTooLarge = "payload_too_large", 413;
    UnsupportedMediaType = "unsupported_media_type", 415;
    // 422: well-formed, but the content fails validation.
    InvalidField = "invalid_field", 422;
    /// An uploaded file that cannot be read as its type.
    UnreadableFile = "unreadable_file", 422;
    RateLimited = "rate_limited", 429;
    /// Too many open WebSockets for the user or the client address.
    TooManyConnections = "too_many_connections", 429;
    Internal = "internal", 500;
    Unavailable = "unavailable", 503;
    /// The embedding model files are not installed.
    ModelsMissing = "models_missing", 503;
    // Chat WebSocket frames only: sent in an `error` frame on an open
    // connection, so the status is never on the wire.
    InvalidFrame = "invalid_frame", 400;
    Busy = "busy", 409;
    NothingToCancel = "nothing_to_cancel", 409;
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_with_error_statuses() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{s}");
            assert!((400..600).contains(&code.status()), "{s}");
        }
    }
}
