//! `EngineError`: the one error type of the Rust API, and how each kind maps to the CLI's
//! exit codes (2: the request or configuration is wrong; 1: the work failed).

use crate::config::ConfigError;
use crate::db::DbError;
use crate::domain::ValidationError;
use crate::migrate::MigrateError;
use crate::migrate::source::SourceError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error("migration files: {0}")]
    Source(#[from] SourceError),
    #[error("{0}")]
    NotFound(String),
    /// The thing to create exists already (an admin's e-mail).
    #[error("{0}")]
    Conflict(String),
    /// The HTTP service stopped with an error.
    #[error("service: {0}")]
    Service(String),
    /// The catalog cannot be used (dirty, checksum mismatch, not migrated in a dry run …).
    #[error("catalog: {0}")]
    Catalog(String),
    #[error("{target}: {source}")]
    Migrate {
        target: String,
        #[source]
        source: MigrateError,
    },
    #[error(transparent)]
    Db(#[from] DbError),
    /// Ctrl-C stopped the command (after it cleaned up what it had made).
    #[error("interrupted: {0}")]
    Interrupted(String),
}

impl EngineError {
    /// Exit code for the CLI: 2 for usage, configuration and validation problems, 130 after
    /// Ctrl-C, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            EngineError::Config(_)
            | EngineError::Validation(_)
            | EngineError::Source(_)
            | EngineError::NotFound(_) => 2,
            EngineError::Interrupted(_) => 130,
            _ => 1,
        }
    }
}
