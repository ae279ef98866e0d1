//! The library's error type. The HTTP layer maps it to a status and a JSON
//! body in exactly one place (`http::error`), with the status its code
//! names in the table in `codes`.

mod codes;

pub use codes::ErrorCode;

use crate::config::ConfigError;
use crate::db::DbError;
use crate::embed::EmbedError;
use crate::index::lexical::follow::FollowError;
use crate::index::IndexError;
use crate::ingest::chunk::ChunkError;
use crate::ingest::formats::FormatError;
use crate::ingest::load::LoadError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request refused with a code from the table in `codes`, which also
    /// names its HTTP status.
    #[error("{message}")]
    Rejected { code: ErrorCode, message: String },
    /// A well-formed body whose `field` fails validation.
    #[error("`{field}`: {message}")]
    InvalidField { field: String, message: String },
    #[error("too many requests; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Follow(#[from] FollowError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    #[error(transparent)]
    Load(#[from] LoadError),
    /// An uploaded file we cannot or will not read.
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// A refusal with `code`; its status comes from the code table.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Rejected {
            code,
            message: message.into(),
        }
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Error::InvalidField {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

impl Error {
    /// The code clients see, for every kind of error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Rejected { code, .. } => *code,
            Error::InvalidField { .. } => ErrorCode::InvalidField,
            Error::RateLimited { .. } => ErrorCode::RateLimited,
            Error::PayloadTooLarge(_) | Error::Format(FormatError::LimitExceeded { .. }) => {
                ErrorCode::PayloadTooLarge
            }
            Error::Format(FormatError::Unsupported { .. } | FormatError::Mismatch { .. }) => {
                ErrorCode::UnsupportedMediaType
            }
            Error::Format(FormatError::UnsafePath { .. }) => ErrorCode::UnsafeArchive,
            Error::Format(
                FormatError::Malformed { .. }
                | FormatError::NoText { .. }
                | FormatError::ExtractionLimit { .. },
            ) => ErrorCode::UnreadableFile,
            Error::Embed(EmbedError::Missing { .. }) => ErrorCode::ModelsMissing,
            Error::Unavailable(_) => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        }
    }

    /// The HTTP status, from the code table.
    pub fn status(&self) -> u16 {
        self.code().status()
    }

    /// What the client is told. A refusal (`Error::new`) and any 4xx are
    /// written for the caller and say what to fix; a failure on our side
    /// carries backend detail (addresses, paths, OS errors) that belongs in
    /// the log under the request id, so the client gets a fixed sentence.
    pub fn client_message(&self) -> String {
        match self {
            Error::Rejected { message, .. } => message.clone(),
            e if e.status() < 500 => e.to_string(),
            e => generic_message(e.code()).to_string(),
        }
    }
}

/// The sentence a client sees for a failure on the server's side.
pub fn generic_message(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Unavailable => "the service is temporarily unavailable; try again later",
        ErrorCode::ModelsMissing => "the embedding model is not installed on the server",
        _ => "internal error; quote the request id when reporting it",
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_side_detail_stays_out_of_client_messages() {
        let detail = "connection refused: 10.1.2.3:5432 (os error 111)";
        for e in [
            Error::Internal(detail.into()),
            Error::Unavailable(detail.into()),
        ] {
            let shown = e.client_message();
            assert!(
                !shown.contains("10.1.2.3") && !shown.contains("os error"),
                "{shown}"
            );
            assert_eq!(shown, generic_message(e.code()));
        }
        // The caller's own mistakes and explicit refusals are told as written.
        assert_eq!(
            Error::field("top_k", "must be between 1 and 50").client_message(),
            "`top_k`: must be between 1 and 50"
        );
        assert_eq!(
            Error::new(ErrorCode::Unavailable, "the model did not answer in time").client_message(),
            "the model did not answer in time"
        );
    }
}
