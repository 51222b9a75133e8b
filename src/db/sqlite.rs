//! SQLite, the embedded default: the catalog is one file and each tenant is its own file
//! (`<dir>/tenants/<schema>.db`).
//!
//! Tenant files are opened per session (a file open, not a server connection); a semaphore of
//! `TENANT_ENGINE_POOL_SIZE` bounds how many are open at once. The lock is the file's own
//! write lock: a session starts with `BEGIN IMMEDIATE` (waiting up to the lock timeout for
//! another writer) and holds it until released; each migration runs inside a savepoint with
//! its history row, so a failure rolls back exactly that migration, and a crash rolls back
//! whatever was not committed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt, stream};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Connection, Executor, SqliteConnection, SqlitePool};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::history::{HistoryTable, RowState};
use super::{
    AppliedRow, Backend, Conn, DbError, DbPool, Dialect, FreshSession, HISTORY_TABLE, MigrationRef,
    Opened, SchemaSession, SchemaState, Target,
};
use crate::config::{Config, ConfigError, DbLocation, TenantLocation};

/// How long catalog queries wait for the catalog file's write lock.
const CATALOG_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct SqliteDialect {
    catalog: SqlitePool,
    catalog_path: PathBuf,
    template: String,
    permits: Arc<Semaphore>,
    pool_size: u32,
}

impl SqliteDialect {
    pub async fn connect(config: &Config) -> Result<Self, ConfigError> {
        let (DbLocation::Sqlite { path }, TenantLocation::Sqlite { path_template }) =
            (&config.catalog, &config.tenants)
        else {
            return Err(ConfigError::new("DATABASE_URL", "not a SQLite URL"));
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && parent.exists()
            && !parent.is_dir()
        {
            return Err(ConfigError::new(
                "DATABASE_URL",
                format!("{} is not a directory", parent.display()),
            ));
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(CATALOG_BUSY_TIMEOUT)
            .foreign_keys(true);
        // Lazy: a dry run against a machine with no catalog yet must not create one.
        let catalog = SqlitePoolOptions::new()
            .max_connections(config.catalog_pool_size)
            .min_connections(0)
            .connect_lazy_with(opts);
        Ok(Self {
            catalog,
            catalog_path: path.clone(),
            template: path_template.clone(),
            permits: Arc::new(Semaphore::new(config.pool_size as usize)),
            pool_size: config.pool_size,
        })
    }

    fn path_of(&self, target: &Target) -> PathBuf {
        match target {
            Target::Catalog => self.catalog_path.clone(),
            Target::Tenant(s) => PathBuf::from(self.template.replace("{schema}", s.as_str())),
        }
    }

    /// Removes a database file with its journal files.
    fn remove_files(path: &Path) -> Result<(), DbError> {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = path.to_path_buf().into_os_string();
            p.push(suffix);
            remove_if_present(Path::new(&p))?;
        }
        Ok(())
    }

    fn label_of(target: &Target) -> String {
        match target {
            Target::Catalog => "catalog".into(),
            Target::Tenant(s) => s.to_string(),
        }
    }

    async fn open(path: &Path, busy: Duration) -> Result<SqliteConnection, sqlx::Error> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            .busy_timeout(busy)
            .foreign_keys(true);
        SqliteConnection::connect_with(&opts).await
    }

    /// A session on `target`'s file holding its write lock (`BEGIN IMMEDIATE`), waiting at
    /// most `lock_timeout` for another writer; `create` makes the file when it is missing.
    async fn locked(
        &self,
        target: &Target,
        lock_timeout: Duration,
        create: bool,
    ) -> Result<SqliteSession, DbError> {
        let path = self.path_of(target);
        let label = Self::label_of(target);
        let permit = self.permits.clone().acquire_owned().await.map_err(closed)?;
        // Migrations run with foreign key enforcement off, as SQLite's table rebuild needs
        // (dropping a parent table would otherwise delete or refuse its children's rows);
        // every migration's keys are checked before it commits (see `commit`).
        let opts = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(create)
            .busy_timeout(lock_timeout)
            .foreign_keys(false);
        let mut conn = SqliteConnection::connect_with(&opts)
            .await
            .map_err(|e| DbError::sqlx(format!("opening {label}"), e))?;
        if let Err(e) = conn.execute("BEGIN IMMEDIATE").await {
            let err = DbError::sqlx(format!("locking {label}"), e);
            return Err(if err.is_transient() {
                DbError::LockTimeout {
                    schema: label,
                    waited: lock_timeout,
                    holder: Some("another writer of the file".into()),
                }
            } else {
                err
            });
        }
        Ok(SqliteSession {
            conn: Conn::Sqlite(Box::new(conn)),
            history: HistoryTable::new(Backend::Sqlite, None, HISTORY_TABLE),
            label,
            path,
            broken_before: Some(0),
            _permit: permit,
        })
    }

    async fn read_one(&self, target: &Target) -> Result<SchemaState, DbError> {
        let path = self.path_of(target);
        if !path.exists() {
            return Ok(SchemaState::Missing);
        }
        let _permit = self.permits.acquire().await.map_err(closed)?;
        let label = Self::label_of(target);
        let conn = Self::open(&path, CATALOG_BUSY_TIMEOUT)
            .await
            .map_err(|e| DbError::sqlx(format!("opening {label}"), e))?;
        let mut conn = Conn::Sqlite(Box::new(conn));
        let table = HistoryTable::new(Backend::Sqlite, None, HISTORY_TABLE);
        let state = match table.read(&mut conn).await {
            Ok(rows) => SchemaState::History(rows),
            Err(e) if e.is_missing_object() => SchemaState::Uninitialised,
            Err(e) => return Err(e),
        };
        if let Conn::Sqlite(c) = conn {
            let _ = c.close().await;
        }
        Ok(state)
    }
}

fn closed(_: tokio::sync::AcquireError) -> DbError {
    DbError::Unexpected("the tenant connection limiter was closed".into())
}

fn remove_if_present(path: &Path) -> Result<(), DbError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(DbError::io(format!("removing {}", path.display()), e)),
    }
}

#[async_trait]
impl Dialect for SqliteDialect {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    fn server_label(&self) -> String {
        format!("sqlite://{}", self.catalog_path.display())
    }

    fn catalog_pool(&self) -> DbPool {
        DbPool::Sqlite(self.catalog.clone())
    }

    fn tenant_pool_size(&self) -> u32 {
        self.pool_size
    }

    async fn schema_exists(&self, target: &Target) -> Result<bool, DbError> {
        Ok(self.path_of(target).exists())
    }

    async fn create_schema(&self, target: &Target) -> Result<(), DbError> {
        let path = self.path_of(target);
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| DbError::io(format!("creating {}", dir.display()), e))?;
        }
        // Another process may be creating the same file (two `create` runs on a new fleet).
        // Switching a new file to WAL needs it alone, and two processes doing so at once get
        // SQLITE_BUSY without waiting (SQLite's deadlock avoidance): try again shortly.
        let mut opts = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .busy_timeout(CATALOG_BUSY_TIMEOUT);
        if *target == Target::Catalog {
            // Readers (the HTTP service) and the writer (a fleet job) share the catalog.
            opts = opts.journal_mode(SqliteJournalMode::Wal);
        }
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(10))
            .with_max_delay(Duration::from_millis(500))
            .with_max_times(20)
            .with_jitter()
            .build();
        loop {
            match SqliteConnection::connect_with(&opts).await {
                Ok(conn) => {
                    let _ = conn.close().await;
                    return Ok(());
                }
                Err(e) => {
                    let err = DbError::sqlx(format!("creating {}", Self::label_of(target)), e);
                    match delays.next() {
                        Some(delay) if err.is_transient() => tokio::time::sleep(delay).await,
                        _ => return Err(err),
                    }
                }
            }
        }
    }

    async fn drop_schema(&self, target: &Target) -> Result<(), DbError> {
        Self::remove_files(&self.path_of(target))
    }

    async fn read_states(&self, targets: &[Target]) -> Result<Vec<SchemaState>, DbError> {
        stream::iter(targets.to_vec())
            .map(|t| async move {
                match self.read_one(&t).await {
                    // One damaged file is its tenant's problem, not the fleet's.
                    Err(e) if !e.is_transient() => Ok(SchemaState::Unreadable(format!(
                        "{} ({})",
                        e,
                        self.path_of(&t).display()
                    ))),
                    other => other,
                }
            })
            .buffered(self.pool_size as usize)
            .try_collect()
            .await
    }

    async fn open_session(
        &self,
        target: &Target,
        lock_timeout: Duration,
    ) -> Result<Box<dyn SchemaSession>, DbError> {
        let path = self.path_of(target);
        if !path.exists() {
            return Err(DbError::SchemaMissing(Self::label_of(target)));
        }
        let session = self.locked(target, lock_timeout, false).await?;
        // A build that failed removes its file while it still holds the write lock: a session
        // that waited for that lock finds the file gone.
        if !path.exists() {
            return Err(DbError::SchemaMissing(session.label.clone()));
        }
        Ok(Box::new(session))
    }

    async fn create_fresh(
        &self,
        target: &Target,
        lock_timeout: Duration,
    ) -> Result<Opened, DbError> {
        let path = self.path_of(target);
        if path.exists() {
            match self.open_session(target, lock_timeout).await {
                // Removed by a build that failed while this one waited for its lock: the
                // name is free again.
                Err(DbError::SchemaMissing(_)) => {}
                other => return other.map(Opened::Existing),
            }
        }
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| DbError::io(format!("creating {}", dir.display()), e))?;
        }
        let mut session = self.locked(target, lock_timeout, true).await?;
        // Another `create` of the same name may have made the file first: then it is not
        // this session's to build.
        let objects: Result<i64, sqlx::Error> =
            sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master")
                .fetch_one(session.conn())
                .await;
        match objects {
            Ok(0) => Ok(Opened::Fresh(Box::new(SqliteFresh { session }))),
            Ok(_) => Ok(Opened::Existing(Box::new(session))),
            Err(e) => {
                let _ = session.raw("ROLLBACK".into()).await;
                Err(DbError::sqlx(format!("opening {}", session.label), e))
            }
        }
    }

    async fn schemas_with_table(
        &self,
        table: &str,
        like: Option<&str>,
    ) -> Result<Vec<String>, DbError> {
        // Tenants are the files the path template names: list its folder.
        let (head, tail) = self
            .template
            .split_once("{schema}")
            .unwrap_or((self.template.as_str(), ""));
        let head = Path::new(head);
        let (dir, stem_prefix) = if head.as_os_str().is_empty() || self.template.ends_with('/') {
            (PathBuf::from("."), String::new())
        } else if head.to_string_lossy().ends_with('/') {
            (head.to_path_buf(), String::new())
        } else {
            (
                head.parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from(".")),
                head.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            )
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(DbError::io(format!("listing {}", dir.display()), e)),
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let Some(schema) = file
                .strip_prefix(stem_prefix.as_str())
                .and_then(|f| f.strip_suffix(tail))
            else {
                continue;
            };
            if schema.is_empty() || !like.is_none_or(|p| super::like_matches(p, schema)) {
                continue;
            }
            let mut conn = match Self::open(&entry.path(), CATALOG_BUSY_TIMEOUT).await {
                Ok(c) => c,
                Err(_) => continue,
            };
            let has: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?")
                    .bind(table)
                    .fetch_optional(&mut conn)
                    .await
                    .map_err(|e| DbError::sqlx(format!("looking for {table} in {schema}"), e))?;
            let _ = conn.close().await;
            if has.is_some() {
                found.push(schema.to_owned());
            }
        }
        found.sort();
        Ok(found)
    }

    async fn structure(&self, target: &Target) -> Result<crate::schema::Schema, DbError> {
        let path = self.path_of(target);
        let label = Self::label_of(target);
        let mut conn = Self::open(&path, CATALOG_BUSY_TIMEOUT)
            .await
            .map_err(|e| DbError::sqlx(format!("describing {label}"), e))?;
        let described = super::describe::sqlite::describe(&mut conn, &label).await;
        let _ = conn.close().await;
        described
    }

    async fn ping(&self) -> Result<(), DbError> {
        // Tenants' files are made on demand; their folder must be there (or creatable).
        let probe = PathBuf::from(self.template.replace("{schema}", "x"));
        match probe.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(dir) if dir.exists() && !dir.is_dir() => Err(DbError::Unexpected(format!(
                "{} is not a directory",
                dir.display()
            ))),
            _ => Ok(()),
        }
    }

    async fn close(&self) {
        self.catalog.close().await;
    }
}

struct SqliteSession {
    conn: Conn,
    history: HistoryTable,
    label: String,
    /// The tenant's file.
    path: PathBuf,
    /// Rows with broken foreign keys when the current migration began (`None`: they could
    /// not be counted, the database's keys were already unusable).
    broken_before: Option<i64>,
    _permit: OwnedSemaphorePermit,
}

impl SqliteSession {
    async fn raw(&mut self, sql: String) -> Result<(), DbError> {
        let Conn::Sqlite(c) = &mut self.conn else {
            unreachable!("a SQLite session holds a SQLite connection")
        };
        c.execute(AssertSqlSafe(sql))
            .await
            .map(|_| ())
            .map_err(|e| DbError::sqlx(format!("migrating {}", self.label), e))
    }
}

impl SqliteSession {
    fn conn(&mut self) -> &mut SqliteConnection {
        match &mut self.conn {
            Conn::Sqlite(c) => c,
            _ => unreachable!("a SQLite session holds a SQLite connection"),
        }
    }

    /// How many rows have foreign keys that point nowhere.
    async fn count_broken(&mut self) -> Result<i64, DbError> {
        let label = self.label.clone();
        sqlx::query_scalar("SELECT count(*) FROM pragma_foreign_key_check")
            .fetch_one(self.conn())
            .await
            .map_err(|e| DbError::sqlx(format!("checking foreign keys of {label}"), e))
    }

    /// Why the work since `broken_before` was counted cannot commit: rows whose keys point
    /// nowhere that were not there before (the first 3 named, `table row N -> parent`), or
    /// keys the database can no longer check. `None` when it can.
    async fn new_broken_keys(&mut self) -> Result<Option<String>, DbError> {
        let after = self.count_broken().await;
        let before = self.broken_before;
        let added = match (before, after) {
            (_, Ok(0)) => return Ok(None),
            (Some(b), Ok(n)) if n > b => n - b,
            // As many as before (or none countable before): nothing this work made.
            (_, Ok(_)) | (None, Err(_)) => return Ok(None),
            (Some(_), Err(e)) => {
                return Ok(Some(format!(
                    "its foreign keys can no longer be checked ({e})"
                )));
            }
        };
        let label = self.label.clone();
        let rows: Vec<(String, Option<i64>, String)> =
            sqlx::query_as("SELECT \"table\", rowid, parent FROM pragma_foreign_key_check LIMIT 3")
                .fetch_all(self.conn())
                .await
                .map_err(|e| DbError::sqlx(format!("checking foreign keys of {label}"), e))?;
        let sample: Vec<String> = rows
            .into_iter()
            .map(|(table, row, parent)| match row {
                Some(r) => format!("{table} row {r} -> {parent}"),
                None => format!("{table} -> {parent}"),
            })
            .collect();
        Ok(Some(format!(
            "it leaves {added} more row(s) whose foreign keys point nowhere (for example {})",
            sample.join(", ")
        )))
    }
}

/// The history table's DDL.
fn history_ddl() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} (
            version INTEGER NOT NULL PRIMARY KEY,
            name TEXT NOT NULL,
            checksum TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('applied', 'failed', 'running', 'baselined')),
            started_at TEXT NOT NULL,
            finished_at TEXT NULL,
            duration_ms INTEGER NULL,
            error TEXT NULL,
            statements_done INTEGER NULL,
            resumed_after INTEGER NULL
        )"
    )
}

/// A tenant file this session created, built in one transaction: a failure removes the
/// file (while the write lock is still held), and a crash leaves an empty file, which the
/// next `create` recognises as an unfinished build.
struct SqliteFresh {
    session: SqliteSession,
}

#[async_trait]
impl FreshSession for SqliteFresh {
    fn atomic(&self) -> bool {
        true
    }

    async fn execute(&mut self, sql: &str) -> Result<(), DbError> {
        self.session.raw(sql.to_owned()).await
    }

    async fn finish(self: Box<Self>, rows: &[AppliedRow<'_>]) -> Result<(), DbError> {
        let SqliteFresh { mut session, .. } = *self;
        let written = async {
            if let Some(why) = session.new_broken_keys().await? {
                return Err(DbError::Unexpected(format!(
                    "the build of {} was undone: {why}",
                    session.label
                )));
            }
            session.raw(history_ddl()).await?;
            match session.history.insert_applied_sql(rows) {
                Some(insert) => session
                    .history
                    .write(&mut session.conn, "writing", insert)
                    .await
                    .map(|_| ()),
                None => Ok(()),
            }
        }
        .await;
        if let Err(e) = written {
            let _ = session.raw("ROLLBACK".into()).await;
            return Err(e);
        }
        Box::new(session).release().await
    }

    async fn discard(self: Box<Self>) -> Result<(), DbError> {
        let SqliteFresh { mut session } = *self;
        let removed = session.drop_own_schema().await;
        let rolled_back = session.raw("ROLLBACK".into()).await;
        let SqliteSession { conn, .. } = session;
        if let Conn::Sqlite(c) = conn {
            let _ = c.close().await;
        }
        removed.and(rolled_back)
    }
}

fn savepoint(version: i64) -> String {
    format!("tm_{version}")
}

#[async_trait]
impl SchemaSession for SqliteSession {
    fn parts(&mut self) -> (&mut Conn, &HistoryTable) {
        (&mut self.conn, &self.history)
    }

    fn transactional(&self) -> bool {
        true
    }

    async fn create_history_table(&mut self) -> Result<(), DbError> {
        self.raw(history_ddl()).await
    }

    async fn begin(&mut self, m: MigrationRef<'_>, _started: DateTime<Utc>) -> Result<(), DbError> {
        self.raw(format!("SAVEPOINT {}", savepoint(m.version)))
            .await?;
        // Rows already broken before do not hold this migration back (see `commit`).
        self.broken_before = self.count_broken().await.ok();
        Ok(())
    }

    async fn execute(&mut self, sql: &str) -> Result<(), DbError> {
        self.raw(sql.to_owned()).await
    }

    async fn commit(
        &mut self,
        m: MigrationRef<'_>,
        started: DateTime<Utc>,
        duration_ms: i64,
        _resumed_after: Option<usize>,
    ) -> Result<(), DbError> {
        let done = async {
            if let Some(why) = self.new_broken_keys().await? {
                return Err(DbError::Unexpected(format!(
                    "migration {} ({}) of {} was rolled back: {why}",
                    m.version, m.name, self.label
                )));
            }
            self.history
                .insert(
                    &mut self.conn,
                    m,
                    RowState::Applied,
                    started,
                    Some(duration_ms),
                    None,
                )
                .await?;
            self.raw(format!("RELEASE {}", savepoint(m.version))).await
        }
        .await;
        if done.is_err() {
            // Nothing of a migration that did not commit whole may stay: the session's end
            // commits the file's transaction.
            let _ = self.abort(m, started, None).await;
        }
        done
    }

    async fn abort(
        &mut self,
        m: MigrationRef<'_>,
        _started: DateTime<Utc>,
        _dirty: Option<&str>,
    ) -> Result<(), DbError> {
        let sp = savepoint(m.version);
        self.raw(format!("ROLLBACK TO {sp}")).await?;
        self.raw(format!("RELEASE {sp}")).await
    }

    async fn drop_own_schema(&mut self) -> Result<(), DbError> {
        SqliteDialect::remove_files(&self.path)
    }

    fn into_fresh(self: Box<Self>) -> Result<Box<dyn FreshSession>, Box<dyn SchemaSession>> {
        Ok(Box::new(SqliteFresh { session: *self }))
    }

    async fn release(mut self: Box<Self>) -> Result<(), DbError> {
        self.raw("COMMIT".into()).await?;
        let SqliteSession { conn, .. } = *self;
        if let Conn::Sqlite(c) = conn {
            let _ = c.close().await;
        }
        Ok(())
    }
}
