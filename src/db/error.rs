//! `DbError`: what went wrong talking to a database server, and whether trying again can help.

use std::time::Duration;

use sqlx::error::DatabaseError;

/// An error from the database layer. The message never contains a password or a full DSN:
/// contexts name the schema and the operation, servers are named by host:port only.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The server (or driver) refused an operation.
    #[error("{context}: {message}")]
    Sqlx {
        context: String,
        message: String,
        transient: bool,
        /// The server's own error code (MySQL error number, SQLSTATE, SQLite result code).
        code: Option<String>,
        #[source]
        source: Box<sqlx::Error>,
    },
    /// Another process held the schema's migration lock for longer than we were willing to wait.
    #[error(
        "schema {schema} is locked by another migration run (waited {}s{}); try again later",
        waited.as_secs(),
        holder.as_deref().map(|h| format!(", held by {h}")).unwrap_or_default()
    )]
    LockTimeout {
        schema: String,
        waited: Duration,
        holder: Option<String>,
    },
    /// The schema (database, PostgreSQL schema, SQLite file) does not exist.
    #[error("schema {0} does not exist")]
    SchemaMissing(String),
    /// A file-system operation (SQLite files) failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The database answered something the program cannot interpret.
    #[error("{0}")]
    Unexpected(String),
}

impl DbError {
    /// Wraps a driver error with what we were doing (`"reading history of salon_a"`).
    pub fn sqlx(context: impl Into<String>, source: sqlx::Error) -> Self {
        let transient = is_transient(&source);
        // MySQL's error number says more than its SQLSTATE; the others only have a code.
        let (message, code) = match source.as_database_error() {
            Some(db) => (
                db.message().to_owned(),
                mysql_number(db).or_else(|| db.code().map(|c| c.into_owned())),
            ),
            None => (source.to_string(), None),
        };
        DbError::Sqlx {
            context: context.into(),
            message,
            transient,
            code,
            source: Box::new(source),
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        DbError::Io {
            context: context.into(),
            source,
        }
    }

    /// True when the same operation may succeed if tried again on a fresh connection:
    /// connection lost or refused, too many connections, deadlock, lock wait timeout,
    /// serialization failure, a busy SQLite file.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Sqlx { transient, .. } => *transient,
            // Waiting once for the lock's whole timeout is enough; waiting three times is not
            // what an operator asked for.
            DbError::LockTimeout { .. }
            | DbError::SchemaMissing(_)
            | DbError::Io { .. }
            | DbError::Unexpected(_) => false,
        }
    }

    /// The server's message without our context (what a human needs to fix a migration).
    pub fn server_message(&self) -> String {
        match self {
            DbError::Sqlx { message, code, .. } => match code {
                Some(c) => format!("{c}: {message}"),
                None => message.clone(),
            },
            other => other.to_string(),
        }
    }

    /// True for "the table or schema does not exist" answers.
    pub fn is_missing_object(&self) -> bool {
        let DbError::Sqlx { code, source, .. } = self else {
            return false;
        };
        if source.as_database_error().is_none() {
            return false;
        }
        matches!(
            code.as_deref(),
            // MySQL: unknown database, no such table; PostgreSQL: undefined table/schema.
            Some("1049" | "1146" | "42P01" | "3F000")
        ) || source
            .as_database_error()
            .is_some_and(|d| d.message().starts_with("no such table"))
    }

    /// True for unique-key violations (two processes inserting the same catalog row).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, DbError::Sqlx { source, .. }
            if source.as_database_error().is_some_and(|d| d.is_unique_violation()))
    }
}

fn mysql_number(db: &dyn DatabaseError) -> Option<String> {
    db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
        .map(|e| e.number().to_string())
}

/// Classifies a driver error as worth retrying.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Protocol(m) => m.contains("closed") || m.contains("EOF"),
        sqlx::Error::Database(db) => {
            if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                // 1040 too many connections, 1053 server shutdown, 1205 lock wait timeout,
                // 1213 deadlock, 1927 connection killed, 1158-1161 network read/write errors,
                // 2006/2013 server gone away / lost connection.
                return matches!(
                    my.number(),
                    1040 | 1053 | 1158 | 1159 | 1160 | 1161 | 1205 | 1213 | 1927 | 2006 | 2013
                );
            }
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                let code = pg.code();
                // 40001 serialization failure, 40P01 deadlock, 08xxx connection exceptions,
                // 53300 too many connections, 57P01-57P03 shutdown / cannot connect now,
                // 55P03 lock not available.
                return matches!(code, "40001" | "40P01" | "53300" | "55P03")
                    || code.starts_with("08")
                    || matches!(code, "57P01" | "57P02" | "57P03");
            }
            if let Some(code) = db.code() {
                // SQLite: BUSY (5) and LOCKED (6), with their extended codes.
                if let Ok(n) = code.parse::<i64>() {
                    return matches!(n & 0xff, 5 | 6);
                }
            }
            false
        }
        _ => false,
    }
}
