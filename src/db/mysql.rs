//! MySQL 8 / MariaDB 10.11: a tenant is a database on the server.
//!
//! Tenants are reached over one bounded pool (`TENANT_ENGINE_POOL_SIZE`) with no default
//! database; a session `USE`s its schema. Every engine query names its schema in full, or is
//! sent unprepared, because a prepared statement keeps the database it was prepared in and
//! sqlx caches statements per connection (after `USE b`, a cached `SELECT … FROM
//! _tenant_migrations` would still read `a`). The per-schema lock is `GET_LOCK` on a name
//! derived from the schema, a session lock the server drops with the connection. DDL commits
//! implicitly, so a migration is bracketed by a `running` history row that becomes `applied`
//! or `failed`, and the row counts the statements done (each DDL statement is followed by
//! the count; a data change commits in one transaction with it). A
//! crash mid-migration leaves the row `running` with its count: the next run resumes it,
//! checking the one statement in doubt against `information_schema` (`observe`).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::{AssertSqlSafe, Executor, MySqlPool, Row};

use super::history::{HistoryTable, RowState, Stmt};
use super::history_read::{self, BatchSql};
use super::lock::mysql_lock_name;
use super::{
    ACQUIRE_TIMEOUT, AppliedRow, Backend, Conn, DbError, DbPool, Dialect, Fact, FreshSession,
    HISTORY_TABLE, MigrationRef, Opened, RunningInfo, SchemaSession, SchemaState, StepError,
    Target,
};
use crate::config::{Config, ConfigError, DbLocation, TenantLocation, redact_url};

pub struct MySqlDialect {
    catalog: MySqlPool,
    tenants: MySqlPool,
    /// How a fresh tenant connection is made (reachability checks bypass the pool).
    tenant_opts: MySqlConnectOptions,
    catalog_db: String,
    label: String,
    pool_size: u32,
}

fn options(url: &url::Url, var: &'static str) -> Result<MySqlConnectOptions, ConfigError> {
    let mut o = MySqlConnectOptions::new()
        .host(url.host_str().unwrap_or("localhost"))
        .port(url.port().unwrap_or(3306))
        .username(&percent_decode(url.username()))
        // Migrations must mean what they mean in the mysql client: `||` is OR there.
        .pipes_as_concat(false)
        .statement_cache_capacity(32);
    if let Some(p) = url.password() {
        o = o.password(&percent_decode(p));
    }
    for (k, v) in url.query_pairs() {
        o = match k.as_ref() {
            "ssl-mode" | "sslmode" | "ssl_mode" => o.ssl_mode(
                v.parse()
                    .map_err(|_| ConfigError::new(var, format!("unknown ssl-mode {v:?}")))?,
            ),
            "ssl-ca" | "sslca" | "ssl_ca" => o.ssl_ca(v.as_ref()),
            "charset" => o.charset(&v),
            "socket" | "unix_socket" => o.socket(v.as_ref()),
            _ => o,
        };
    }
    Ok(o)
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn server_label(url: &url::Url) -> String {
    let full = redact_url(url);
    match full.rfind('/') {
        Some(i) if i > "mysql://".len() => full[..i].to_owned(),
        _ => full,
    }
}

impl MySqlDialect {
    pub async fn connect(config: &Config, mode: super::ConnectMode) -> Result<Self, ConfigError> {
        let (DbLocation::MySql { url, database }, TenantLocation::MySql { server }) =
            (&config.catalog, &config.tenants)
        else {
            return Err(ConfigError::new("DATABASE_URL", "not a MySQL URL"));
        };
        let catalog_opts = options(url, "DATABASE_URL")?;
        let tenant_opts = options(server, "TENANT_URL_TEMPLATE")?;
        let pool_size = config.pool_size;
        let tenant_var = if server == url {
            "DATABASE_URL"
        } else {
            "TENANT_URL_TEMPLATE"
        };
        let tenants = MySqlPoolOptions::new()
            .max_connections(pool_size)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(Duration::from_secs(60))
            .connect_lazy_with(tenant_opts.clone());
        let catalog = MySqlPoolOptions::new()
            .max_connections(config.catalog_pool_size)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(Duration::from_secs(60))
            .connect_lazy_with(catalog_opts.clone().database(database));
        let same_server = server_label(url) == server_label(server);
        let strict = mode.strict_tenants || same_server;
        let probes = async {
            tokio::try_join!(
                super::tenant_probe(
                    strict,
                    super::probe::<sqlx::MySqlConnection>(&tenant_opts, tenant_var, server)
                ),
                async {
                    if !same_server && mode.probe_catalog {
                        // The catalog's server too; its database may not exist yet.
                        super::probe::<sqlx::MySqlConnection>(&catalog_opts, "DATABASE_URL", url)
                            .await
                    } else {
                        Ok(())
                    }
                }
            )
            .map(|_| ())
        };
        if strict {
            // Only the tenants' pool is warmed: the catalog's database may not exist yet.
            super::reach(probes, async {
                let _ = tenants.acquire().await;
            })
            .await?;
        } else {
            probes.await?;
        }
        Ok(Self {
            catalog,
            tenants,
            tenant_opts,
            catalog_db: database.clone(),
            label: server_label(server),
            pool_size,
        })
    }

    /// A session holding `target`'s migration lock, waiting at most `lock_timeout` for
    /// another run to finish with it; not yet in the schema (which need not exist).
    async fn locked(
        &self,
        target: &Target,
        lock_timeout: Duration,
    ) -> Result<MySqlSession, DbError> {
        let schema = self.schema_of(target).to_owned();
        let pool = match target {
            Target::Catalog => &self.catalog,
            Target::Tenant(_) => &self.tenants,
        };
        let conn = pool
            .acquire()
            .await
            .map_err(|e| DbError::sqlx(ctx("connecting for", &schema), e))?;
        let mut session = MySqlSession {
            history: HistoryTable::new(Backend::MySql, Some(&schema), HISTORY_TABLE),
            conn: Conn::MySql(conn),
            lock: mysql_lock_name(&schema),
            schema: schema.clone(),
            released: false,
            pending: None,
        };
        let lock = session.lock.clone();
        let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, ?)")
            .bind(&lock)
            .bind(lock_timeout.as_secs_f64())
            .fetch_one(session.conn())
            .await
            .map_err(|e| DbError::sqlx(ctx("locking", &schema), e))?;
        if got != Some(1) {
            let holder: Option<i64> = sqlx::query_scalar("SELECT IS_USED_LOCK(?)")
                .bind(&lock)
                .fetch_one(session.conn())
                .await
                .ok()
                .flatten();
            session.released = true;
            return Err(DbError::LockTimeout {
                schema,
                waited: lock_timeout,
                holder: holder.map(|id| format!("connection {id}")),
            });
        }
        Ok(session)
    }

    fn schema_of<'a>(&'a self, target: &'a Target) -> &'a str {
        match target {
            Target::Catalog => &self.catalog_db,
            Target::Tenant(s) => s.as_str(),
        }
    }
}

/// The fleet's history reads (`history_read`): MariaDB's catalog tables.
impl BatchSql for MySqlDialect {
    const BACKEND: Backend = Backend::MySql;
    const NAME_CAST: &'static str = "";
    const EXISTING: &'static str =
        "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN";
    const WITH_TABLE: &'static str = "SELECT TABLE_SCHEMA FROM information_schema.TABLES WHERE TABLE_NAME = ? AND TABLE_SCHEMA IN";
}

fn ctx(what: &str, schema: &str) -> String {
    format!("{what} {schema}")
}

#[async_trait]
impl Dialect for MySqlDialect {
    fn backend(&self) -> Backend {
        Backend::MySql
    }

    fn server_label(&self) -> String {
        self.label.clone()
    }

    fn catalog_pool(&self) -> DbPool {
        DbPool::MySql(self.catalog.clone())
    }

    fn tenant_pool_size(&self) -> u32 {
        self.pool_size
    }

    async fn schema_exists(&self, target: &Target) -> Result<bool, DbError> {
        let schema = self.schema_of(target);
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
        )
        .bind(schema)
        .fetch_one(&self.tenants)
        .await
        .map_err(|e| DbError::sqlx(ctx("checking schema", schema), e))?;
        Ok(n > 0)
    }

    async fn create_schema(&self, target: &Target) -> Result<(), DbError> {
        let schema = self.schema_of(target);
        let sql = format!(
            "CREATE DATABASE IF NOT EXISTS {} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
            Backend::MySql.quote(schema)
        );
        self.tenants
            .execute(AssertSqlSafe(sql))
            .await
            .map(|_| ())
            .map_err(|e| DbError::sqlx(ctx("creating schema", schema), e))
    }

    async fn drop_schema(&self, target: &Target) -> Result<(), DbError> {
        let schema = self.schema_of(target);
        let sql = format!("DROP DATABASE IF EXISTS {}", Backend::MySql.quote(schema));
        self.tenants
            .execute(AssertSqlSafe(sql))
            .await
            .map(|_| ())
            .map_err(|e| DbError::sqlx(ctx("dropping schema", schema), e))
    }

    async fn read_states(&self, targets: &[Target]) -> Result<Vec<SchemaState>, DbError> {
        history_read::read_states::<Self>(
            targets,
            async { self.tenants.acquire().await.map(Conn::MySql) },
            async { self.catalog.acquire().await.map(Conn::MySql) },
            &self.catalog_db,
        )
        .await
    }

    async fn open_session(
        &self,
        target: &Target,
        lock_timeout: Duration,
    ) -> Result<Box<dyn SchemaSession>, DbError> {
        let session = self.locked(target, lock_timeout).await?;
        session
            .enter()
            .await
            .map(|s| Box::new(s) as Box<dyn SchemaSession>)
    }

    async fn create_fresh(
        &self,
        target: &Target,
        lock_timeout: Duration,
    ) -> Result<Opened, DbError> {
        let mut session = self.locked(target, lock_timeout).await?;
        let schema = self.schema_of(target);
        let sql = format!(
            "CREATE DATABASE {} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
            Backend::MySql.quote(schema)
        );
        match session.raw(&sql).await {
            Ok(()) => {
                let session = session.enter().await?;
                Ok(Opened::Fresh(Box::new(MySqlFresh(session))))
            }
            Err(e) => {
                let err = DbError::sqlx(ctx("creating schema", schema), e);
                if matches!(&err, DbError::Sqlx { code: Some(c), .. } if c == DB_CREATE_EXISTS) {
                    let session = session.enter().await?;
                    Ok(Opened::Existing(Box::new(session)))
                } else {
                    let _ = Box::new(session).release().await;
                    Err(err)
                }
            }
        }
    }

    async fn structure(&self, target: &Target) -> Result<crate::schema::Schema, DbError> {
        super::describe::mysql::describe(&self.tenants, self.schema_of(target)).await
    }

    async fn schemas_with_table(
        &self,
        table: &str,
        like: Option<&str>,
    ) -> Result<Vec<String>, DbError> {
        sqlx::query_scalar(
            "SELECT TABLE_SCHEMA FROM information_schema.TABLES \
             WHERE TABLE_NAME = ? AND TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA LIKE ? \
             ORDER BY TABLE_SCHEMA",
        )
        .bind(table)
        .bind(like.unwrap_or("%"))
        .fetch_all(&self.tenants)
        .await
        .map_err(|e| DbError::sqlx(format!("looking for {table} tables"), e))
    }

    async fn running_info(&self, target: &Target, version: i64) -> Result<RunningInfo, DbError> {
        let schema = self.schema_of(target);
        let holder: Option<i64> = sqlx::query_scalar("SELECT IS_USED_LOCK(?)")
            .bind(mysql_lock_name(schema))
            .fetch_one(&self.tenants)
            .await
            .map_err(|e| DbError::sqlx(ctx("inspecting", schema), e))?;
        let sql = format!(
            "SELECT statements_done FROM {}.{} WHERE version = {version}",
            Backend::MySql.quote(schema),
            Backend::MySql.quote(HISTORY_TABLE)
        );
        let done: Option<i64> = match sqlx::raw_sql(AssertSqlSafe(sql))
            .fetch_optional(&self.tenants)
            .await
        {
            Ok(row) => row.and_then(|r| r.try_get::<Option<i64>, _>(0).ok().flatten()),
            // A history table from an older version has no progress column.
            Err(e) => {
                let e = DbError::sqlx(ctx("inspecting", schema), e);
                if super::history::is_missing_column(&e) {
                    None
                } else {
                    return Err(e);
                }
            }
        };
        Ok(RunningInfo {
            holder: holder.map(|id| format!("connection {id}")),
            statements_done: done,
        })
    }

    async fn ping(&self) -> Result<(), DbError> {
        super::ping_with::<sqlx::MySqlConnection>(&self.tenant_opts).await
    }

    async fn close(&self) {
        self.catalog.close().await;
        self.tenants.close().await;
    }
}

struct MySqlSession {
    conn: Conn,
    history: HistoryTable,
    /// The schema (database) the session is for.
    schema: String,
    lock: String,
    released: bool,
    /// The `applied` update of the last migration, sent together with the next migration's
    /// `running` row (one commit instead of two) or before the lock is released.
    pending: Option<Stmt>,
}

impl MySqlSession {
    fn conn(&mut self) -> &mut sqlx::MySqlConnection {
        match &mut self.conn {
            Conn::MySql(c) => c,
            _ => unreachable!("a MySQL session holds a MySQL connection"),
        }
    }

    /// `USE`s the session's schema; a schema that does not exist releases the lock and says
    /// so.
    async fn enter(mut self) -> Result<Self, DbError> {
        let use_sql = format!("USE {}", Backend::MySql.quote(&self.schema));
        if let Err(e) = self.raw(&use_sql).await {
            let schema = self.schema.clone();
            let _ = Box::new(self).release().await;
            let err = DbError::sqlx(ctx("opening schema", &schema), e);
            return Err(if err.is_missing_object() {
                DbError::SchemaMissing(schema)
            } else {
                err
            });
        }
        Ok(self)
    }

    /// Sends a deferred `applied` update, if any.
    async fn flush(&mut self) -> Result<(), DbError> {
        match self.pending.take() {
            Some(stmt) => self
                .history
                .write(&mut self.conn, "updating", stmt)
                .await
                .map(|_| ()),
            None => Ok(()),
        }
    }

    /// Sends `sql` unprepared (text protocol).
    async fn raw(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        self.conn()
            .execute(AssertSqlSafe(sql.to_owned()))
            .await
            .map(|_| ())
    }
}

impl Drop for MySqlSession {
    fn drop(&mut self) {
        if !self.released
            && let Conn::MySql(c) = &mut self.conn
        {
            // Dropped mid-way (cancelled, panicked): never hand a lock-holding connection back.
            c.close_on_drop();
        }
    }
}

#[async_trait]
impl SchemaSession for MySqlSession {
    fn parts(&mut self) -> (&mut Conn, &HistoryTable) {
        (&mut self.conn, &self.history)
    }

    async fn settle(&mut self) -> Result<(), DbError> {
        self.flush().await
    }

    fn transactional(&self) -> bool {
        false
    }

    async fn create_history_table(&mut self) -> Result<(), DbError> {
        let sql = history_ddl(&self.history.qualified);
        let label = self.history.label.clone();
        self.raw(&sql)
            .await
            .map_err(|e| DbError::sqlx(ctx("creating history table in", &label), e))
    }

    async fn begin(&mut self, m: MigrationRef<'_>, started: DateTime<Utc>) -> Result<(), DbError> {
        let insert = self
            .history
            .insert_sql(m, RowState::Running, started, None, None);
        match self.pending.take() {
            None => self
                .history
                .write(&mut self.conn, "writing", insert)
                .await
                .map(|_| ()),
            Some(applied) => {
                let written = async {
                    let label = self.history.label.clone();
                    self.raw("START TRANSACTION")
                        .await
                        .map_err(|e| DbError::sqlx(format!("writing history of {label}"), e))?;
                    self.history
                        .write(&mut self.conn, "updating", applied)
                        .await?;
                    self.history
                        .write(&mut self.conn, "writing", insert)
                        .await?;
                    self.raw("COMMIT")
                        .await
                        .map_err(|e| DbError::sqlx(format!("writing history of {label}"), e))
                }
                .await;
                if written.is_err() {
                    let _ = self.raw("ROLLBACK").await;
                }
                written
            }
        }
    }

    async fn execute(&mut self, sql: &str) -> Result<(), DbError> {
        let label = self.history.label.clone();
        self.raw(sql)
            .await
            .map_err(|e| DbError::sqlx(ctx("migrating", &label), e))
    }

    async fn execute_step(
        &mut self,
        version: i64,
        index: usize,
        sql: &str,
        dml: bool,
        count: bool,
    ) -> Result<(), StepError> {
        if !dml && !count {
            return self.execute(sql).await.map_err(StepError::Statement);
        }
        // The count is bound, in a round trip of its own: measured against joining it to the
        // statement's text as literals (300 tenants provisioned, best of 4 alternating runs:
        // 4.03 s bound, 4.01 s joined), the join saved nothing measurable.
        let progress = self.history.progress_sql(version, index + 1);
        let label = self.history.label.clone();
        let err = |e| DbError::sqlx(ctx("migrating", &label), e);
        if dml {
            // A data change and its count commit together: nothing of the transaction stays
            // when either fails, and the count says whether it committed.
            let done = async {
                self.raw("START TRANSACTION").await.map_err(err)?;
                self.raw(sql).await.map_err(err)?;
                self.history
                    .write(&mut self.conn, "updating", progress)
                    .await?;
                self.raw("COMMIT").await.map_err(err)
            }
            .await;
            if done.is_err() {
                let _ = self.raw("ROLLBACK").await;
            }
            return done.map_err(StepError::Statement);
        }
        // DDL commits on its own; the count follows it.
        self.raw(sql)
            .await
            .map_err(|e| StepError::Statement(err(e)))?;
        self.history
            .write(&mut self.conn, "updating", progress)
            .await
            .map(|_| ())
            .map_err(StepError::Progress)
    }

    async fn record_progress(&mut self, version: i64, done: usize) -> Result<(), DbError> {
        let stmt = self.history.progress_sql(version, done);
        self.history
            .write(&mut self.conn, "updating", stmt)
            .await
            .map(|_| ())
    }

    async fn observe(&mut self, facts: &[Fact]) -> Result<Vec<bool>, DbError> {
        let mut seen = Vec::with_capacity(facts.len());
        for fact in facts {
            // Constant texts with the schema bound (or the session's own), so the cached
            // prepared statements are right in any schema.
            let (sql, schema, binds): (&str, &Option<String>, Vec<String>) = match fact {
                Fact::Table { schema, table } => (
                    "SELECT COUNT(*) FROM information_schema.TABLES \
                     WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?",
                    schema,
                    vec![table.clone()],
                ),
                Fact::Column {
                    schema,
                    table,
                    column,
                } => (
                    "SELECT COUNT(*) FROM information_schema.COLUMNS \
                     WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? AND COLUMN_NAME = ?",
                    schema,
                    vec![table.clone(), column.clone()],
                ),
                Fact::Index {
                    schema,
                    table,
                    index,
                } => (
                    "SELECT COUNT(*) FROM information_schema.STATISTICS \
                     WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? AND INDEX_NAME = ?",
                    schema,
                    vec![table.clone(), index.clone()],
                ),
                Fact::Constraint {
                    schema,
                    table,
                    constraint,
                } => (
                    "SELECT COUNT(*) FROM information_schema.TABLE_CONSTRAINTS \
                     WHERE CONSTRAINT_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? \
                     AND CONSTRAINT_NAME = ?",
                    schema,
                    vec![table.clone(), constraint.clone()],
                ),
                Fact::ForeignKeyOn {
                    schema,
                    table,
                    columns,
                    referenced,
                } => (
                    "SELECT COUNT(*) FROM (SELECT LOWER(GROUP_CONCAT(COLUMN_NAME ORDER BY ORDINAL_POSITION \
                     SEPARATOR ',')) AS cols FROM information_schema.KEY_COLUMN_USAGE \
                     WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? \
                     AND REFERENCED_TABLE_NAME = ? GROUP BY CONSTRAINT_NAME) k WHERE k.cols = ?",
                    schema,
                    vec![
                        table.clone(),
                        referenced.clone(),
                        columns.join(",").to_lowercase(),
                    ],
                ),
                Fact::Trigger { schema, trigger } => (
                    "SELECT COUNT(*) FROM information_schema.TRIGGERS \
                     WHERE TRIGGER_SCHEMA = COALESCE(?, DATABASE()) AND TRIGGER_NAME = ?",
                    schema,
                    vec![trigger.clone()],
                ),
                Fact::Routine { schema, routine } => (
                    "SELECT COUNT(*) FROM information_schema.ROUTINES \
                     WHERE ROUTINE_SCHEMA = COALESCE(?, DATABASE()) AND ROUTINE_NAME = ?",
                    schema,
                    vec![routine.clone()],
                ),
            };
            let mut q = sqlx::query_scalar::<_, i64>(sql).bind(schema.as_deref());
            for b in binds {
                q = q.bind(b);
            }
            let n = q
                .fetch_one(self.conn())
                .await
                .map_err(|e| DbError::sqlx(ctx("inspecting", &self.history.label), e))?;
            seen.push(n > 0);
        }
        Ok(seen)
    }

    async fn commit(
        &mut self,
        m: MigrationRef<'_>,
        _started: DateTime<Utc>,
        duration_ms: i64,
        resumed_after: Option<usize>,
    ) -> Result<(), DbError> {
        self.pending = Some(self.history.finish_sql(
            m.version,
            RowState::Applied,
            duration_ms,
            None,
            resumed_after,
        ));
        Ok(())
    }

    async fn abort(
        &mut self,
        m: MigrationRef<'_>,
        started: DateTime<Utc>,
        dirty: Option<&str>,
    ) -> Result<(), DbError> {
        match dirty {
            Some(error) => {
                let ms = (Utc::now() - started).num_milliseconds();
                self.history
                    .finish(&mut self.conn, m.version, RowState::Failed, ms, Some(error))
                    .await
            }
            None => self
                .history
                .delete(&mut self.conn, &[m.version])
                .await
                .map(|_| ()),
        }
    }

    fn into_fresh(self: Box<Self>) -> Result<Box<dyn FreshSession>, Box<dyn SchemaSession>> {
        Err(self)
    }

    async fn drop_own_schema(&mut self) -> Result<(), DbError> {
        let sql = format!(
            "DROP DATABASE IF EXISTS {}",
            Backend::MySql.quote(&self.schema)
        );
        let schema = self.schema.clone();
        self.raw(&sql)
            .await
            .map_err(|e| DbError::sqlx(ctx("dropping schema", &schema), e))
    }

    async fn release(mut self: Box<Self>) -> Result<(), DbError> {
        // If this fails, Drop closes the connection (freeing the lock) and the migration's row
        // stays `running`: reported dirty, never silently taken as applied.
        self.flush().await?;
        let lock = self.lock.clone();
        let released: Result<Option<i64>, sqlx::Error> =
            sqlx::query_scalar("SELECT RELEASE_LOCK(?)")
                .bind(&lock)
                .fetch_one(self.conn())
                .await;
        match released {
            Ok(_) => {
                self.released = true;
                Ok(())
            }
            // Drop closes the connection, which frees the lock on the server.
            Err(e) => Err(DbError::sqlx(ctx("unlocking", &self.history.label), e)),
        }
    }
}

/// `ER_DB_CREATE_EXISTS`: `CREATE DATABASE` of a database that exists.
const DB_CREATE_EXISTS: &str = "1007";

/// The history table's DDL.
fn history_ddl(qualified: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {qualified} (
            version BIGINT NOT NULL PRIMARY KEY,
            name VARCHAR(255) NOT NULL,
            checksum CHAR(64) NOT NULL,
            state VARCHAR(16) NOT NULL,
            statements_done BIGINT NULL,
            started_at DATETIME(6) NOT NULL,
            finished_at DATETIME(6) NULL,
            duration_ms BIGINT NULL,
            error TEXT NULL,
            resumed_after BIGINT NULL
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
    )
}

/// A database this session created, being built: no `running` markers (it holds nothing to
/// protect). Its history table and rows come last, in one round trip, so a database without
/// them is an unfinished build that the next `create` may drop and build again.
struct MySqlFresh(MySqlSession);

#[async_trait]
impl FreshSession for MySqlFresh {
    async fn execute(&mut self, sql: &str) -> Result<(), DbError> {
        self.0.execute(sql).await
    }

    async fn finish(self: Box<Self>, rows: &[AppliedRow<'_>]) -> Result<(), DbError> {
        let MySqlFresh(mut s) = *self;
        let ddl = history_ddl(&s.history.qualified);
        let label = s.history.label.clone();
        s.raw(&ddl)
            .await
            .map_err(|e| DbError::sqlx(ctx("creating history table in", &label), e))?;
        if let Some(insert) = s.history.insert_applied_sql(rows) {
            s.history.write(&mut s.conn, "writing", insert).await?;
        }
        Box::new(s).release().await
    }

    async fn discard(self: Box<Self>) -> Result<(), DbError> {
        let MySqlFresh(mut s) = *self;
        s.drop_own_schema().await?;
        Box::new(s).release().await
    }
}
