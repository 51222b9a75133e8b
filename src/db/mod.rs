//! The `Dialect` seam: everything that differs between MySQL/MariaDB, PostgreSQL and SQLite —
//! what a tenant *is* (database, schema, file), how a schema is locked, how a migration is
//! made atomic, how many histories are read in one round trip — lives behind [`Dialect`] and
//! [`SchemaSession`], with one implementation per backend in `mysql.rs`, `postgres.rs` and
//! `sqlite.rs`. SQL that is the same on all three (history rows, catalog rows) is written once
//! over [`Conn`] / [`DbPool`] with `with_conn!` / `with_pool!`, which instantiate the same code
//! for each driver.

mod conn;
pub(crate) mod describe;
mod error;
mod fact;
pub mod history;
mod history_read;
pub mod lock;
pub mod mysql;
pub mod postgres;
pub mod servers;
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use crate::backend::Backend;
pub use conn::{Conn, DbPool, placeholders};
pub(crate) use conn::{with_conn, with_pool};
pub use error::{DbError, is_transient};
pub use fact::Fact;
pub use servers::{Servers, TenantServer};

use history::{HistoryRow, HistoryTable};

use crate::config::Config;
use crate::domain::SchemaName;

/// Name of the history table in every schema (catalog and tenants).
pub const HISTORY_TABLE: &str = "_tenant_migrations";

/// Which schema an operation is about: the catalog itself or one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Catalog,
    Tenant(SchemaName),
}

impl Target {
    pub fn tenant(&self) -> Option<&SchemaName> {
        match self {
            Target::Catalog => None,
            Target::Tenant(s) => Some(s),
        }
    }
}

/// What a schema's history table says, read without taking its lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaState {
    /// The schema (database, PostgreSQL schema, SQLite file) does not exist.
    Missing,
    /// The schema exists but was never migrated (no history table).
    Uninitialised,
    /// The history rows, ordered by version.
    History(Vec<HistoryRow>),
    /// The schema exists but its history cannot be read (a corrupt SQLite file, say): that
    /// schema's problem, named, while the rest of the fleet goes on. Holds the reason.
    Unreadable(String),
}

/// What the engine needs to know about a migration while applying it.
#[derive(Debug, Clone, Copy)]
pub struct MigrationRef<'a> {
    pub version: i64,
    pub name: &'a str,
    pub checksum: &'a str,
}

/// Tables no structure comparison looks at: the engine's own history and Alembic's version
/// table (an adopted tenant keeps it, untouched).
pub const BOOKKEEPING_TABLES: [&str; 2] = [HISTORY_TABLE, "alembic_version"];

/// A referenced schema as [`crate::schema::ForeignKey::ref_schema`] keeps it: `None` for `own`.
pub(crate) fn foreign_schema(referenced: String, own: &str) -> Option<String> {
    (referenced != own).then_some(referenced)
}

/// One backend: the catalog's connections, the tenants' connections, and the operations on
/// whole schemas.
#[async_trait]
pub trait Dialect: Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// The server as it may be logged: `mysql://root@127.0.0.1:3306`, never a password.
    fn server_label(&self) -> String;

    /// The pool the catalog repository uses (`CATALOG_POOL_SIZE` connections).
    fn catalog_pool(&self) -> DbPool;

    /// Upper bound of tenant connections this backend opens.
    fn tenant_pool_size(&self) -> u32;

    /// True when the schema exists.
    async fn schema_exists(&self, target: &Target) -> Result<bool, DbError>;

    /// Creates the schema if it does not exist (idempotent).
    async fn create_schema(&self, target: &Target) -> Result<(), DbError>;

    /// Drops the schema and everything in it (idempotent).
    async fn drop_schema(&self, target: &Target) -> Result<(), DbError>;

    /// Reads the history of many schemas in few round trips, without locks: one state per
    /// target, in the order asked.
    async fn read_states(&self, targets: &[Target]) -> Result<Vec<SchemaState>, DbError>;

    /// Opens a session on one schema holding its migration lock, waiting at most
    /// `lock_timeout` for another run to finish with it.
    async fn open_session(
        &self,
        target: &Target,
        lock_timeout: Duration,
    ) -> Result<Box<dyn SchemaSession>, DbError>;

    /// Provisioning in one piece: creates the schema under its migration lock and opens a
    /// [`FreshSession`] in which everything of the new tenant is built (one transaction on
    /// PostgreSQL and SQLite). When the schema already exists nothing is created: the
    /// session returned is an ordinary locked one on it, for the caller to decide whether it
    /// may be resumed.
    async fn create_fresh(
        &self,
        target: &Target,
        lock_timeout: Duration,
    ) -> Result<Opened, DbError>;

    /// Reads a schema's tables into the model (drift checks, `diff`, `dump`).
    async fn structure(&self, target: &Target) -> Result<crate::schema::Schema, DbError>;

    /// The schemas on the tenant server holding a table named `table` (`alembic_version`),
    /// whose names match the SQL `LIKE` pattern `like` when given, sorted.
    async fn schemas_with_table(
        &self,
        table: &str,
        like: Option<&str>,
    ) -> Result<Vec<String>, DbError>;

    /// Who holds the migration lock of a schema whose history shows `version` running, and
    /// how far that migration got, read without taking the lock (`status`). Backends whose
    /// migrations commit in one transaction never show a `running` row to others.
    async fn running_info(&self, _target: &Target, _version: i64) -> Result<RunningInfo, DbError> {
        Ok(RunningInfo::default())
    }

    /// Checks that the tenant server answers now: a fresh connection outside the pool (a
    /// pool would wait its whole acquire timeout for a server that is gone), at most
    /// [`PING_TIMEOUT`]; on SQLite, that the tenants' folder can be used.
    async fn ping(&self) -> Result<(), DbError>;

    /// Closes every pooled connection.
    async fn close(&self);
}

/// What `status` can tell about a `running` history row without the lock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunningInfo {
    /// The session holding the schema's lock (`connection 42`), `None` when it is free.
    pub holder: Option<String>,
    /// Statements of the migration recorded as done.
    pub statements_done: Option<i64>,
}

/// Why one statement of a migration did not complete normally.
#[derive(Debug)]
pub enum StepError {
    /// The statement failed (the server refused it, or the connection broke while it ran).
    Statement(DbError),
    /// The statement completed but its progress could not be recorded.
    Progress(DbError),
}

/// Runs a read again while it fails for a transient reason (a server restarting, a
/// connection reset): up to 6 attempts over about 6 seconds, so a brief outage at the start of
/// a fleet run costs a pause instead of the run. Only for reads, which repeat harmlessly.
pub async fn retry_read<T, F, Fut>(what: &str, read: F) -> Result<T, DbError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, DbError>>,
{
    use backon::{ExponentialBuilder, Retryable};
    read.retry(
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(2))
            .with_max_times(5)
            .with_jitter(),
    )
    .when(DbError::is_transient)
    .notify(|e, delay| {
        tracing::warn!(read = what, error = %e, retry_in_ms = delay.as_millis() as u64, "read failed, retrying");
    })
    .await
}

/// A connection that holds one schema's migration lock.
///
/// Dropping a session without [`SchemaSession::release`] (a cancelled task, a panic) closes
/// its connection instead of returning it to the pool, so the server frees the lock and no
/// pooled connection carries it.
#[async_trait]
pub trait SchemaSession: Send {
    /// True when a migration's statements and its history row commit together.
    fn transactional(&self) -> bool;

    /// The session's connection and its schema's history table.
    fn parts(&mut self) -> (&mut Conn, &HistoryTable);

    /// Sends anything the session deferred, before the history is read or changed.
    async fn settle(&mut self) -> Result<(), DbError> {
        Ok(())
    }

    /// The history rows, or `None` when the history table does not exist yet. A table made
    /// by an older version gets its progress columns first.
    async fn history(&mut self) -> Result<Option<Vec<HistoryRow>>, DbError> {
        self.settle().await?;
        let (conn, table) = self.parts();
        match table.read(conn).await {
            Ok(rows) => Ok(Some(rows)),
            Err(e) if e.is_missing_object() => Ok(None),
            Err(e) if history::is_missing_column(&e) => {
                table.add_progress_columns(conn).await?;
                table.read(conn).await.map(Some)
            }
            Err(e) => Err(e),
        }
    }

    /// The schema's tables and views other than the bookkeeping ones, read through this
    /// session's connection.
    async fn tables(&mut self) -> Result<Vec<String>, DbError> {
        let (conn, table) = self.parts();
        table.neighbours(conn).await
    }

    /// Creates the history table.
    async fn create_history_table(&mut self) -> Result<(), DbError>;

    /// Starts a migration: a transaction, or (MySQL) a `running` history row.
    async fn begin(&mut self, m: MigrationRef<'_>, started: DateTime<Utc>) -> Result<(), DbError>;

    /// Runs one statement of the migration.
    async fn execute(&mut self, sql: &str) -> Result<(), DbError>;

    /// Runs statement `index` (0-based) of migration `version` and, with `count`, records
    /// that `index + 1` statements are done. Where DDL commits on its own (MySQL) the count is
    /// written right after the statement, and a data change (`dml`, always counted) commits
    /// in one transaction with it; transactional backends just run the statement.
    async fn execute_step(
        &mut self,
        _version: i64,
        _index: usize,
        sql: &str,
        _dml: bool,
        _count: bool,
    ) -> Result<(), StepError> {
        self.execute(sql).await.map_err(StepError::Statement)
    }

    /// Records that `done` statements of `version` are complete (a resumed run that found the
    /// statement in doubt done in the live schema).
    async fn record_progress(&mut self, _version: i64, _done: usize) -> Result<(), DbError> {
        Ok(())
    }

    /// For each fact, whether the object exists in the live schema (MySQL resume checks).
    async fn observe(&mut self, _facts: &[Fact]) -> Result<Vec<bool>, DbError> {
        Err(DbError::Unexpected(
            "this backend has no statement-level progress to check".into(),
        ))
    }

    /// Records the migration as applied (and commits it where DDL is transactional).
    /// `resumed_after`: the run resumed this migration after that many statements.
    async fn commit(
        &mut self,
        m: MigrationRef<'_>,
        started: DateTime<Utc>,
        duration_ms: i64,
        resumed_after: Option<usize>,
    ) -> Result<(), DbError>;

    /// Ends a failed migration. Transactional backends roll it back. MySQL records it as
    /// `failed` with `dirty` when statements of it committed, and forgets its `running` row
    /// when `dirty` is `None` (nothing of it ran), so a retry starts clean.
    async fn abort(
        &mut self,
        m: MigrationRef<'_>,
        started: DateTime<Utc>,
        dirty: Option<&str>,
    ) -> Result<(), DbError>;

    /// Deletes history rows (repair of failed or interrupted migrations).
    async fn delete_rows(&mut self, versions: &[i64]) -> Result<u64, DbError> {
        self.settle().await?;
        let (conn, table) = self.parts();
        table.delete(conn, versions).await
    }

    /// Marks a row applied with the given checksum (repair after a manual fix).
    async fn mark_applied(&mut self, version: i64, checksum: &str) -> Result<u64, DbError> {
        self.settle().await?;
        let (conn, table) = self.parts();
        table.mark_applied(conn, version, checksum).await
    }

    /// Drops the session's schema and everything in it, on the session's own connection and
    /// under its lock (an unfinished build that `create` replaces). The lock stays held.
    async fn drop_own_schema(&mut self) -> Result<(), DbError>;

    /// Turns a session on a schema that holds nothing at all into a build of it in place, where
    /// the backend cannot drop and make the schema again without letting another process in
    /// between (SQLite: the file stays, and the build runs in the session's transaction).
    /// Elsewhere the session comes back unchanged: drop the schema and create it afresh.
    fn into_fresh(self: Box<Self>) -> Result<Box<dyn FreshSession>, Box<dyn SchemaSession>>;

    /// Releases the lock and returns the connection to the pool.
    async fn release(self: Box<Self>) -> Result<(), DbError>;
}

/// What [`Dialect::create_fresh`] found.
pub enum Opened {
    /// The schema was made now, by this session.
    Fresh(Box<dyn FreshSession>),
    /// The schema existed: a locked session on it, nothing changed.
    Existing(Box<dyn SchemaSession>),
}

/// One history row of a migration applied while a new tenant was built.
#[derive(Debug, Clone, Copy)]
pub struct AppliedRow<'a> {
    pub migration: MigrationRef<'a>,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub duration_ms: i64,
}

/// A schema being built by [`Dialect::create_fresh`], holding its lock. Nothing of it counts
/// until [`FreshSession::finish`]: its history table and rows are written last, so a schema
/// without them is an unfinished build.
#[async_trait]
pub trait FreshSession: Send {
    /// Runs one statement of a migration, or (when [`FreshSession::atomic`]) a script of
    /// several.
    async fn execute(&mut self, sql: &str) -> Result<(), DbError>;

    /// True when the whole build is one transaction, which a failure leaves nothing of: then
    /// a migration's statements may go to the server as one script.
    fn atomic(&self) -> bool {
        false
    }

    /// Writes the history table with `rows`, makes the schema durable (commits where DDL is
    /// transactional) and releases the lock.
    async fn finish(self: Box<Self>, rows: &[AppliedRow<'_>]) -> Result<(), DbError>;

    /// Undoes the build (a rollback; on MySQL, drops the database this session made) and
    /// releases the lock: nothing of the schema stays.
    async fn discard(self: Box<Self>) -> Result<(), DbError>;
}

/// How [`connect`] checks the servers before handing out the (lazy) pools.
#[derive(Debug, Clone, Copy)]
pub struct ConnectMode {
    /// Probe the catalog's server too (once per process is enough).
    pub probe_catalog: bool,
    /// A tenant server that cannot be reached is an error (the only server), or a warning
    /// (one of several: its tenants fail until it is back, the others proceed), and then its
    /// pool is not warmed.
    pub strict_tenants: bool,
}

impl ConnectMode {
    /// One server: everything must answer.
    pub const STRICT: ConnectMode = ConnectMode {
        probe_catalog: true,
        strict_tenants: true,
    };
}

/// Opens the backend the configuration names, its tenants on `config.tenants`. Fails (as a
/// configuration problem) when the catalog's server, or in [`ConnectMode::STRICT`] the tenant
/// server, cannot be reached.
pub async fn connect(
    config: &Config,
    mode: ConnectMode,
) -> Result<Arc<dyn Dialect>, crate::config::ConfigError> {
    match config.backend() {
        Backend::MySql => Ok(Arc::new(mysql::MySqlDialect::connect(config, mode).await?)),
        Backend::Postgres => Ok(Arc::new(postgres::PgDialect::connect(config, mode).await?)),
        Backend::Sqlite => Ok(Arc::new(sqlite::SqliteDialect::connect(config).await?)),
    }
}

/// A tenant server's probe: its error as is when `strict`, else logged (the server's tenants
/// fail when they are worked on; the configuration stays usable for the other servers).
/// Returns whether the server answered.
pub(crate) async fn tenant_probe(
    strict: bool,
    probe: impl std::future::Future<Output = Result<(), crate::config::ConfigError>>,
) -> Result<bool, crate::config::ConfigError> {
    match probe.await {
        Ok(()) => Ok(true),
        Err(e) if !strict => {
            tracing::warn!(
                error = %e,
                "a tenant server cannot be reached; its tenants fail until it is back"
            );
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Checks that the servers answer (a probe's error is what the user needs to read) while the
/// pools open their first connections alongside: with TLS, setting up a connection costs tens
/// of milliseconds, and doing them side by side keeps a short CLI run short. When a probe
/// fails, the warm-up is abandoned at once.
pub(crate) async fn reach(
    probes: impl std::future::Future<Output = Result<(), crate::config::ConfigError>>,
    warm: impl std::future::Future<Output = ()>,
) -> Result<(), crate::config::ConfigError> {
    tokio::try_join!(probes, async {
        warm.await;
        Ok(())
    })
    .map(|_| ())
}

/// Opens and closes one connection, so that a server that cannot be reached is reported at
/// once with its own error (a pool retries until its acquire timeout and then says only that).
pub(crate) async fn probe<C: sqlx::Connection>(
    opts: &<C as sqlx::Connection>::Options,
    var: &'static str,
    url: &url::Url,
) -> Result<(), crate::config::ConfigError> {
    let conn = tokio::time::timeout(CONNECT_TIMEOUT, C::connect_with(opts))
        .await
        .map_err(|_| {
            crate::config::ConfigError::new(
                var,
                format!(
                    "cannot connect to {}: timed out",
                    crate::config::redact_url(url)
                ),
            )
        })?
        .map_err(|e| unreachable(var, url, &e))?;
    let _ = conn.close().await;
    Ok(())
}

/// How long a reachability check ([`Dialect::ping`]) waits for a server.
pub const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// Opens and closes one connection with `opts`, within [`PING_TIMEOUT`].
pub(crate) async fn ping_with<C: sqlx::Connection>(
    opts: &<C as sqlx::Connection>::Options,
) -> Result<(), DbError> {
    let conn = tokio::time::timeout(PING_TIMEOUT, C::connect_with(opts))
        .await
        .map_err(|_| DbError::Unexpected(format!("no answer within {}s", PING_TIMEOUT.as_secs())))?
        .map_err(|e| DbError::sqlx("connecting", e))?;
    let _ = conn.close().await;
    Ok(())
}

/// A configuration error for a server that refused or could not be reached (never the password).
pub(crate) fn unreachable(
    var: &'static str,
    url: &url::Url,
    e: &sqlx::Error,
) -> crate::config::ConfigError {
    let why = match e.as_database_error() {
        Some(db) => db.message().to_owned(),
        None => e.to_string(),
    };
    crate::config::ConfigError::new(
        var,
        format!(
            "cannot connect to {}: {why}",
            crate::config::redact_url(url)
        ),
    )
}

/// Sorts the schemas of a batch whose history could not be read in one go: with a history
/// table (read next), existing without one, or missing.
pub(crate) fn classify(
    schemas: &[&str],
    existing: &[String],
    with_table: &[String],
    found: &mut std::collections::HashMap<String, SchemaState>,
) {
    for s in schemas {
        let state = if with_table.iter().any(|x| x == s) {
            SchemaState::History(Vec::new())
        } else if existing.iter().any(|x| x == s) {
            SchemaState::Uninitialised
        } else {
            SchemaState::Missing
        };
        found.insert((*s).to_owned(), state);
    }
}

/// SQL `LIKE` matching (`%` any run, `_` one character, `\\` escapes the next), for
/// backends that list schemas without a server.
pub(crate) fn like_matches(pattern: &str, s: &str) -> bool {
    fn go(p: &[char], s: &[char]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some(('%', rest)) => (0..=s.len()).any(|i| go(rest, &s[i..])),
            Some(('_', rest)) => !s.is_empty() && go(rest, &s[1..]),
            Some(('\\', rest)) if !rest.is_empty() => {
                s.first() == rest.first() && go(&rest[1..], &s[1..])
            }
            Some((c, rest)) => s.first() == Some(c) && go(rest, &s[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    go(&p, &s)
}

/// Connection-pool timeouts shared by the server backends.
pub(crate) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn like_patterns_match_as_sql_does() {
        assert!(like_matches("tenant_%", "tenant_a"));
        assert!(like_matches("t%a", "tbca"));
        // `_` is any one character, as on the servers.
        assert!(like_matches("tenant_%", "tenantxa"));
        assert!(like_matches("t_b", "tab"));
        assert!(!like_matches("t_b", "tb"));
        assert!(like_matches("a\\_b", "a_b"));
        assert!(!like_matches("a\\_b", "axb"));
        assert!(!like_matches("abc", "abcd"));
        assert!(like_matches("%", ""));
    }

    #[tokio::test]
    async fn reads_are_retried_through_transient_failures_only() {
        let calls = AtomicU32::new(0);
        let got = retry_read("test", || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(DbError::sqlx("reading", sqlx::Error::PoolTimedOut)),
                _ => Ok(7),
            }
        })
        .await;
        assert_eq!(got.ok(), Some(7));
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let calls = AtomicU32::new(0);
        let got: Result<(), _> = retry_read("test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(DbError::Unexpected("a bug, not an outage".into()))
        })
        .await;
        assert!(got.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "not transient: one try");
    }
}
