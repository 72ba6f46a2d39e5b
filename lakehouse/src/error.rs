//! The lakehouse error type. Variants say whose fault an error is, so the gateway can map
//! each to the right protocol status in one place.

use std::time::Duration;

/// Result with the lakehouse [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The lakehouse is full for now (memory or WAL bound reached): try again later.
    #[error("busy, retry after {retry_after:?}: {reason}")]
    Busy {
        reason: String,
        retry_after: Duration,
    },
    /// The catalog database failed or is unreachable.
    #[error("catalog: {0}")]
    Catalog(String),
    /// The object store or a Delta commit failed.
    #[error("storage: {0}")]
    Storage(String),
    /// A query was refused or failed because of what it asks (bad SQL, forbidden statement).
    #[error("{0}")]
    Query(String),
    /// A query ran out of its time, memory or row budget.
    #[error("query limit: {0}")]
    QueryLimit(String),
    /// Data that does not fit the table it was sent to: a bug in the caller.
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    /// Bad configuration (URLs, options).
    #[error("configuration: {0}")]
    Config(String),
}

impl Error {
    pub fn catalog(message: impl Into<String>) -> Error {
        crate::metrics::catalog_error();
        Error::Catalog(message.into())
    }

    pub fn storage(message: impl Into<String>) -> Error {
        Error::Storage(message.into())
    }

    pub fn query(message: impl Into<String>) -> Error {
        Error::Query(message.into())
    }

    /// Whether a client should retry the operation later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Busy { .. } | Error::Catalog(_) | Error::Storage(_)
        )
    }
}

impl From<deltalake::DeltaTableError> for Error {
    fn from(error: deltalake::DeltaTableError) -> Error {
        Error::Storage(error.to_string())
    }
}

impl From<object_store::Error> for Error {
    fn from(error: object_store::Error) -> Error {
        Error::Storage(error.to_string())
    }
}

impl From<parquet::errors::ParquetError> for Error {
    fn from(error: parquet::errors::ParquetError) -> Error {
        Error::Storage(error.to_string())
    }
}

impl From<arrow::error::ArrowError> for Error {
    fn from(error: arrow::error::ArrowError) -> Error {
        Error::InvalidBatch(error.to_string())
    }
}
