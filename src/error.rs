//! The library's error type. The HTTP layer maps it to a status and a JSON
//! body in exactly one place (`http::error`), with the status its code
//! names in the table in `codes`.

mod codes;

pub use codes::ErrorCode;

use crate::config::ConfigError;
use crate::db::DbError;
use crate::embed::EmbedError;
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
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
