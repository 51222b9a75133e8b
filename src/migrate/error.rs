//! `MigrateError`: why a schema could not be brought to its target version.

use super::plan::Problem;
use super::source::{Migration, SourceError};
use super::split::Statement;
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
    /// `create` found the schema already there, not made by this tool (no history of it, and
    /// objects no migration creates, or no catalog row of an earlier `create`): it is never
    /// migrated into.
    #[error(
        "schema {schema} already exists and was not made by tenant-migrator ({}); nothing was changed: choose another name, or adopt the schema on purpose (`adopt`)",
        if .tables.is_empty() { "it has no tenant-migrator history".to_owned() } else { format!("it holds tables no migration creates: {}", .tables.join(", ")) }
    )]
    Foreign {
        schema: String,
        /// Its tables that no migration creates (empty when it holds none, or only those of
        /// the migrations but without a catalog row of an earlier `create`).
        tables: Vec<String>,
    },
    /// A statement of a migration failed.
    #[error(
        "migration {version:04}_{name} failed at statement {statement} (line {line}): {message}{}",
        if *.resumable { "; it stays `running` with its statements counted, and the next run resumes it" } else if *.partial { "; earlier statements of it were committed, so the schema is dirty until `repair`" } else { "" }
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
        /// The migration stays `running` with its progress: the next run resumes it.
        resumable: bool,
        /// The server called the failure temporary (deadlock, lock wait timeout, lost connection).
        transient: bool,
    },
    /// A resumed migration's statement in doubt cannot be checked in the live schema.
    #[error(
        "migration {version:04}_{name} was interrupted at statement {statement} (line {line}: {sql}), which may or may not have run: {reason}; check by hand, then `repair`"
    )]
    InDoubt {
        version: i64,
        name: String,
        statement: usize,
        line: usize,
        /// The statement's first line.
        sql: String,
        reason: String,
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
    /// Statement `i` (0-based) of migration `m` failed with `e`: `partial` when statements of it
    /// committed, `resumable` when the next run picks up where it stopped.
    pub(crate) fn statement(
        m: &Migration,
        i: usize,
        stmt: &Statement,
        e: &DbError,
        partial: bool,
        resumable: bool,
    ) -> Self {
        MigrateError::Statement {
            version: m.version,
            name: m.name.clone(),
            statement: i + 1,
            line: stmt.line,
            message: e.server_message(),
            partial,
            resumable,
            transient: e.is_transient(),
        }
    }

    /// True when running the whole schema again may succeed and cannot double-apply anything:
    /// a temporary failure before any statement of the failing migration committed.
    pub fn is_retryable(&self) -> bool {
        match self {
            MigrateError::Db(e) => e.is_transient(),
            MigrateError::Statement {
                transient,
                partial,
                resumable,
                ..
            } => *transient && (!*partial || *resumable),
            _ => false,
        }
    }

    /// True when the failure left the schema dirty (needs `repair`).
    pub fn is_dirty(&self) -> bool {
        match self {
            MigrateError::Statement {
                partial, resumable, ..
            } => *partial && !*resumable,
            MigrateError::InDoubt { .. } => true,
            MigrateError::Blocked(p) => p.iter().any(Problem::is_dirty),
            _ => false,
        }
    }
}
