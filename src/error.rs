//! The library's error type. The HTTP layer maps it to a status and a JSON
//! body in exactly one place (`http::error`).

use crate::config::ConfigError;
use crate::db::DbError;
use crate::embed::EmbedError;
use crate::index::IndexError;
use crate::ingest::chunk::ChunkError;
use crate::ingest::formats::FormatError;
use crate::ingest::load::LoadError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input from a caller; `code` is a stable machine-readable name.
    #[error("{message}")]
    InvalidInput { code: &'static str, message: String },
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// No or bad credentials.
    #[error("{message}")]
    Unauthorized { code: &'static str, message: String },
    /// Known caller, not allowed.
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
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
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidInput {
            code,
            message: message.into(),
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Error::NotFound {
            code,
            message: message.into(),
        }
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Error::Unauthorized {
            code,
            message: message.into(),
        }
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Error::Forbidden {
            code,
            message: message.into(),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Error::Conflict {
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

pub type Result<T, E = Error> = std::result::Result<T, E>;
