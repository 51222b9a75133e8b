//! `MigrateError`: why a schema could not be brought to its target version.

use super::plan::Problem;
use super::source::SourceError;
use crate::db::DbError;

/// A failed migration run on one schema.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The migration files are unusable.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Talking to the database failed before or between migrations.
    #[error(transparent)]
    Db(DbError),
    /// The schema's history forbids running anything (dirty, checksum mismatch, …).
    #[error("{}", .0.iter().map(Problem::describe).collect::<Vec<_>>().join("; "))]
    Blocked(Vec<Problem>),
    /// The schema does not exist.
    #[error("schema {0} does not exist")]
    SchemaMissing(String),
    /// A statement of a migration failed.
    #[error(
        "migration {version:04}_{name} failed at statement {statement} (line {line}): {message}{}",
        if *.partial { "; earlier statements of it were committed, so the schema is dirty until `repair`" } else { "" }
    )]
    Statement {
        version: i64,
        name: String,
        /// 1-based statement number within the file.
        statement: usize,
        /// Line of the file where that statement starts.
        line: usize,
        /// The server's message.
        message: String,
        /// Some statements of this migration committed (non-transactional DDL).
        partial: bool,
        /// The server called the failure temporary (deadlock, lock wait timeout, lost connection).
        transient: bool,
    },
}

impl From<DbError> for MigrateError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::SchemaMissing(s) => MigrateError::SchemaMissing(s),
            other => MigrateError::Db(other),
        }
    }
}

impl MigrateError {
    /// True when running the whole schema again may succeed and cannot double-apply anything:
    /// a temporary failure before any statement of the failing migration committed.
    pub fn is_retryable(&self) -> bool {
        match self {
            MigrateError::Db(e) => e.is_transient(),
            MigrateError::Statement {
                transient, partial, ..
            } => *transient && !*partial,
            _ => false,
        }
    }

    /// True when the failure left the schema dirty (needs `repair`).
    pub fn is_dirty(&self) -> bool {
        match self {
            MigrateError::Statement { partial, .. } => *partial,
            MigrateError::Blocked(p) => p.iter().any(Problem::is_dirty),
            _ => false,
        }
    }
}
