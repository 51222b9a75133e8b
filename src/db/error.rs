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

    /// True when no connection could be had because a connection limit was reached, so that
    /// fewer connections at once (not more tries) is the cure: the server refused a new one
    /// (MySQL/MariaDB 1040 too many connections, 1203 and 1226 `max_user_connections`;
    /// PostgreSQL 53300 too many connections, for the server or the role) or the pool timed
    /// out waiting for one (sqlx retries PostgreSQL's 53300 until then). 1226 also answers the
    /// hourly limits (`max_connections_per_hour`, `max_questions`…), which no lower
    /// concurrency cures: those are not counted.
    pub fn is_connection_refused_by_limit(&self) -> bool {
        let DbError::Sqlx {
            code,
            message,
            source,
            ..
        } = self
        else {
            return false;
        };
        if matches!(**source, sqlx::Error::PoolTimedOut) {
            return true;
        }
        source.as_database_error().is_some()
            && match code.as_deref() {
                Some("1040" | "1203" | "53300") => true,
                Some("1226") => message.contains("'max_user_connections'"),
                _ => false,
            }
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

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    /// A server error with a code, as a driver would hand it over.
    #[derive(Debug)]
    struct ServerSaid {
        code: &'static str,
        message: &'static str,
    }

    impl std::fmt::Display for ServerSaid {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.message)
        }
    }

    impl std::error::Error for ServerSaid {}

    impl DatabaseError for ServerSaid {
        fn message(&self) -> &str {
            self.message
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.code))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn server(code: &'static str, message: &'static str) -> DbError {
        DbError::sqlx(
            "connecting for salon_a",
            sqlx::Error::Database(Box::new(ServerSaid { code, message })),
        )
    }

    #[test]
    fn connection_limits_are_told_apart_from_other_refusals() {
        for (code, message) in [
            ("1040", "Too many connections"),
            (
                "1203",
                "User tm already has more than 'max_user_connections' active connections",
            ),
            (
                "1226",
                "User 'tm' has exceeded the 'max_user_connections' resource (current value: 4)",
            ),
            ("53300", "too many connections for role \"tm\""),
            ("53300", "sorry, too many clients already"),
        ] {
            assert!(
                server(code, message).is_connection_refused_by_limit(),
                "{code} {message}"
            );
        }
        assert!(DbError::sqlx("x", sqlx::Error::PoolTimedOut).is_connection_refused_by_limit());
        for e in [
            // An hourly quota: fewer connections at once do not help.
            server(
                "1226",
                "User 'tm' has exceeded the 'max_connections_per_hour' resource (current value: 10)",
            ),
            server("1045", "Access denied for user 'tm'@'localhost'"),
            server("1213", "Deadlock found when trying to get lock"),
            DbError::sqlx("x", sqlx::Error::PoolClosed),
            DbError::SchemaMissing("salon_a".into()),
            DbError::LockTimeout {
                schema: "salon_a".into(),
                waited: Duration::from_secs(1),
                holder: None,
            },
        ] {
            assert!(!e.is_connection_refused_by_limit(), "{e}");
        }
    }
}
