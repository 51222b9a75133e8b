//! PostgreSQL 15+: tenants are schemas inside one database (the `TENANT_URL_TEMPLATE`'s, or
//! the catalog's when unset); the catalog lives in its own schema (`CATALOG_SCHEMA`, default
//! `public`).
//!
//! One bounded pool serves every tenant. A session holds `pg_advisory_lock` keyed by a hash
//! of the *schema* name (never the database: two tenants in one database must not serialise),
//! and runs each migration in one transaction with `SET LOCAL search_path` and its history
//! row, so a failure leaves the schema exactly at its previous version and a connection goes
//! back to the pool with its default search path.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Executor, PgPool};

use super::history::{HistoryTable, RowState};
use super::history_read::{self, BatchSql};
use super::lock::postgres_lock_key;
use super::{
    ACQUIRE_TIMEOUT, AppliedRow, Backend, Conn, DbError, DbPool, Dialect, FreshSession,
    HISTORY_TABLE, MigrationRef, Opened, SchemaSession, SchemaState, Target,
};
use crate::config::{Config, ConfigError, DbLocation, TenantLocation, redact_url};

pub struct PgDialect {
    catalog: PgPool,
    tenants: PgPool,
    /// How a fresh tenant connection is made (reachability checks bypass the pool).
    tenant_opts: PgConnectOptions,
    catalog_schema: String,
    label: String,
    pool_size: u32,
}

fn options(url: &url::Url, var: &'static str) -> Result<PgConnectOptions, ConfigError> {
    url.as_str()
        .parse::<PgConnectOptions>()
        .map_err(|e| ConfigError::new(var, format!("is not usable ({})", redact_error(&e))))
}

fn redact_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Configuration(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

impl PgDialect {
    pub async fn connect(config: &Config, mode: super::ConnectMode) -> Result<Self, ConfigError> {
        let (
            DbLocation::Postgres { url, .. },
            TenantLocation::Postgres {
                database_url: tenant_url,
                ..
            },
        ) = (&config.catalog, &config.tenants)
        else {
            return Err(ConfigError::new("DATABASE_URL", "not a PostgreSQL URL"));
        };
        let tenant_var = if tenant_url == url {
            "DATABASE_URL"
        } else {
            "TENANT_URL_TEMPLATE"
        };
        let tenant_opts = options(tenant_url, tenant_var)?;
        let catalog_opts = options(url, "DATABASE_URL")?
            .options([("search_path", config.catalog_schema.as_str())]);
        let tenants = PgPoolOptions::new()
            .max_connections(config.pool_size)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(Duration::from_secs(60))
            .connect_lazy_with(tenant_opts.clone());
        let catalog = PgPoolOptions::new()
            .max_connections(config.catalog_pool_size)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(Duration::from_secs(60))
            .connect_lazy_with(catalog_opts.clone());
        let same_server = tenant_url == url;
        let strict = mode.strict_tenants || same_server;
        let probes = async {
            tokio::try_join!(
                super::tenant_probe(
                    strict,
                    super::probe::<sqlx::PgConnection>(&tenant_opts, tenant_var, tenant_url)
                ),
                async {
                    if !same_server && mode.probe_catalog {
                        super::probe::<sqlx::PgConnection>(&catalog_opts, "DATABASE_URL", url).await
                    } else {
                        Ok(())
                    }
                }
            )
            .map(|_| ())
        };
        if strict {
            // Two catalog connections: a connection goes back to its pool asynchronously, so
            // the second catalog query of a run would otherwise open one more.
            super::reach(probes, async {
                let _ = tokio::join!(tenants.acquire(), async {
                    if mode.probe_catalog {
                        let _ = tokio::join!(catalog.acquire(), catalog.acquire());
                    }
                });
            })
            .await?;
        } else {
            probes.await?;
        }
        Ok(Self {
            catalog,
            tenants,
            tenant_opts,
            catalog_schema: config.catalog_schema.clone(),
            label: redact_url(tenant_url),
            pool_size: config.pool_size,
        })
    }

    /// A session on `target`'s schema holding its advisory lock, waiting at most
    /// `lock_timeout` for another run to finish with it (the schema need not exist).
    async fn locked(&self, target: &Target, lock_timeout: Duration) -> Result<PgSession, DbError> {
        let mut session = self.session(target).await?;
        session.lock(lock_timeout).await?;
        Ok(session)
    }

    /// A session on `target`'s schema holding no lock yet.
    async fn session(&self, target: &Target) -> Result<PgSession, DbError> {
        let schema = self.schema_of(target).to_owned();
        let conn = self
            .pool_of(target)
            .acquire()
            .await
            .map_err(|e| DbError::sqlx(ctx("connecting for", &schema), e))?;
        Ok(PgSession {
            history: HistoryTable::new(Backend::Postgres, Some(&schema), HISTORY_TABLE),
            quoted: Backend::Postgres.quote(&schema),
            conn: Conn::Postgres(conn),
            key: postgres_lock_key(&schema),
            schema,
            released: false,
            session_lock: false,
            create_history: None,
        })
    }

    fn schema_of<'a>(&'a self, target: &'a Target) -> &'a str {
        match target {
            Target::Catalog => &self.catalog_schema,
            Target::Tenant(s) => s.as_str(),
        }
    }

    fn pool_of(&self, target: &Target) -> &PgPool {
        match target {
            Target::Catalog => &self.catalog,
            Target::Tenant(_) => &self.tenants,
        }
    }
}

/// The fleet's history reads (`history_read`): PostgreSQL's catalogs.
impl BatchSql for PgDialect {
    const BACKEND: Backend = Backend::Postgres;
    const NAME_CAST: &'static str = "::text";
    const EXISTING: &'static str = "SELECT nspname::text FROM pg_namespace WHERE nspname IN";
    const WITH_TABLE: &'static str = "SELECT table_schema::text FROM information_schema.tables \
         WHERE table_name = ? AND table_schema IN";
}

fn ctx(what: &str, schema: &str) -> String {
    format!("{what} {schema}")
}

#[async_trait]
impl Dialect for PgDialect {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn server_label(&self) -> String {
        self.label.clone()
    }

    fn catalog_pool(&self) -> DbPool {
        DbPool::Postgres(self.catalog.clone())
    }

    fn tenant_pool_size(&self) -> u32 {
        self.pool_size
    }

    async fn schema_exists(&self, target: &Target) -> Result<bool, DbError> {
        let schema = self.schema_of(target);
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_namespace WHERE nspname = $1")
            .bind(schema)
            .fetch_one(self.pool_of(target))
            .await
            .map_err(|e| DbError::sqlx(ctx("checking schema", schema), e))?;
        Ok(n > 0)
    }

    async fn create_schema(&self, target: &Target) -> Result<(), DbError> {
        let schema = self.schema_of(target);
        let sql = format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            Backend::Postgres.quote(schema)
        );
        match self.pool_of(target).execute(AssertSqlSafe(sql)).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = DbError::sqlx(ctx("creating schema", schema), e);
                if err.is_unique_violation() && self.schema_exists(target).await? {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    async fn drop_schema(&self, target: &Target) -> Result<(), DbError> {
        let schema = self.schema_of(target);
        let sql = format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            Backend::Postgres.quote(schema)
        );
        self.pool_of(target)
            .execute(AssertSqlSafe(sql))
            .await
            .map(|_| ())
            .map_err(|e| DbError::sqlx(ctx("dropping schema", schema), e))
    }

    async fn read_states(&self, targets: &[Target]) -> Result<Vec<SchemaState>, DbError> {
        history_read::read_states::<Self>(
            targets,
            async { self.tenants.acquire().await.map(Conn::Postgres) },
            async { self.catalog.acquire().await.map(Conn::Postgres) },
            &self.catalog_schema,
        )
        .await
    }

    async fn open_session(
        &self,
        target: &Target,
        lock_timeout: Duration,
    ) -> Result<Box<dyn SchemaSession>, DbError> {
        let mut session = self.locked(target, lock_timeout).await?;
        match session.exists().await {
            Ok(true) => Ok(Box::new(session)),
            Ok(false) => {
                let schema = session.schema.clone();
                let _ = Box::new(session).release().await;
                Err(DbError::SchemaMissing(schema))
            }
            Err(e) => Err(e),
        }
    }

    /// One round trip opens the build: the transaction takes the schema's advisory lock
    /// (released by its own end), creates the schema and points the search path at it.
    async fn create_fresh(
        &self,
        target: &Target,
        lock_timeout: Duration,
    ) -> Result<Opened, DbError> {
        let mut session = self.session(target).await?;
        let created = session
            .raw(format!(
                "BEGIN; SET LOCAL lock_timeout = {ms}; SELECT pg_advisory_xact_lock({key}); \
                 SET LOCAL lock_timeout TO DEFAULT; CREATE SCHEMA {q}; SET LOCAL search_path TO {q}",
                ms = lock_timeout.as_millis().max(1),
                key = session.key,
                q = session.quoted
            ))
            .await;
        match created {
            Ok(()) => Ok(Opened::Fresh(Box::new(PgFresh(session)))),
            Err(e) => {
                // Never leave an aborted transaction open on a connection going back to the pool.
                session.raw("ROLLBACK".into()).await?;
                if matches!(&e, DbError::Sqlx { code: Some(c), .. } if c == DUPLICATE_SCHEMA) {
                    // Not this run's to build: what follows holds the lock for the session.
                    session.lock(lock_timeout).await?;
                    Ok(Opened::Existing(Box::new(session)))
                } else {
                    session.released = true;
                    Err(lock_error(e, &session.schema, lock_timeout))
                }
            }
        }
    }

    async fn schemas_with_table(
        &self,
        table: &str,
        like: Option<&str>,
    ) -> Result<Vec<String>, DbError> {
        sqlx::query_scalar(
            "SELECT n.nspname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relname = $1 AND c.relkind IN ('r', 'p') AND n.nspname LIKE $2 ORDER BY 1",
        )
        .bind(table)
        .bind(like.unwrap_or("%"))
        .fetch_all(&self.tenants)
        .await
        .map_err(|e| DbError::sqlx(format!("looking for {table} tables"), e))
    }

    async fn structure(&self, target: &Target) -> Result<crate::schema::Schema, DbError> {
        super::describe::postgres::describe(self.pool_of(target), self.schema_of(target)).await
    }

    async fn ping(&self) -> Result<(), DbError> {
        super::ping_with::<sqlx::PgConnection>(&self.tenant_opts).await
    }

    async fn close(&self) {
        self.catalog.close().await;
        self.tenants.close().await;
    }
}

struct PgSession {
    conn: Conn,
    history: HistoryTable,
    quoted: String,
    schema: String,
    key: i64,
    released: bool,
    /// The advisory lock is held at session level (unlocked by `release`); otherwise by the
    /// open transaction, which ends it.
    session_lock: bool,
    /// The history table's DDL, run inside the first migration's transaction (DDL is
    /// transactional here, so one commit covers both).
    create_history: Option<String>,
}

impl PgSession {
    fn conn(&mut self) -> &mut sqlx::PgConnection {
        match &mut self.conn {
            Conn::Postgres(c) => c,
            _ => unreachable!("a PostgreSQL session holds a PostgreSQL connection"),
        }
    }

    /// Takes the schema's advisory lock for the session, waiting at most `lock_timeout`.
    async fn lock(&mut self, lock_timeout: Duration) -> Result<(), DbError> {
        let set_timeout = format!("SET lock_timeout = {}", lock_timeout.as_millis().max(1));
        self.conn()
            .execute(AssertSqlSafe(set_timeout))
            .await
            .map_err(|e| DbError::sqlx(ctx("locking", &self.schema), e))?;
        let key = self.key;
        let locked = sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(key)
            .execute(self.conn())
            .await;
        let reset = self.conn().execute("RESET lock_timeout").await;
        if let Err(e) = locked {
            let err = lock_error(
                DbError::sqlx(ctx("locking", &self.schema), e),
                &self.schema,
                lock_timeout,
            );
            if matches!(err, DbError::LockTimeout { .. }) {
                self.released = reset.is_ok();
            }
            return Err(err);
        }
        reset.map_err(|e| DbError::sqlx(ctx("locking", &self.schema), e))?;
        self.session_lock = true;
        Ok(())
    }

    /// True when the session's schema exists.
    async fn exists(&mut self) -> Result<bool, DbError> {
        let schema = self.schema.clone();
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM pg_namespace WHERE nspname = $1")
            .bind(&schema)
            .fetch_one(self.conn())
            .await
            .map(|n| n > 0)
            .map_err(|e| DbError::sqlx(ctx("opening schema", &schema), e))
    }

    async fn raw(&mut self, sql: String) -> Result<(), DbError> {
        let schema = self.schema.clone();
        self.conn()
            .execute(AssertSqlSafe(sql))
            .await
            .map(|_| ())
            .map_err(|e| DbError::sqlx(ctx("migrating", &schema), e))
    }
}

impl Drop for PgSession {
    fn drop(&mut self) {
        if !self.released
            && let Conn::Postgres(c) = &mut self.conn
        {
            // Dropped mid-way: closing ends any open transaction and frees the advisory lock.
            c.close_on_drop();
        }
    }
}

#[async_trait]
impl SchemaSession for PgSession {
    fn parts(&mut self) -> (&mut Conn, &HistoryTable) {
        (&mut self.conn, &self.history)
    }

    fn transactional(&self) -> bool {
        true
    }

    /// Creates the history table now when its creation was deferred to the next migration's
    /// transaction and something else (a baseline) writes to it first.
    async fn settle(&mut self) -> Result<(), DbError> {
        match self.create_history.take() {
            Some(sql) => self.raw(sql).await,
            None => Ok(()),
        }
    }

    async fn create_history_table(&mut self) -> Result<(), DbError> {
        let sql = history_ddl(&self.history.qualified);
        self.create_history = Some(sql);
        Ok(())
    }

    async fn begin(
        &mut self,
        _m: MigrationRef<'_>,
        _started: DateTime<Utc>,
    ) -> Result<(), DbError> {
        let create = self
            .create_history
            .take()
            .map(|c| format!("{c}; "))
            .unwrap_or_default();
        let began = self
            .raw(format!(
                "BEGIN; {create}SET LOCAL search_path TO {}",
                self.quoted
            ))
            .await;
        if began.is_err() {
            // Never leave an aborted transaction open on a connection going back to the pool.
            let _ = self.raw("ROLLBACK".into()).await;
        }
        began
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
        self.raw("COMMIT".into()).await
    }

    async fn abort(
        &mut self,
        _m: MigrationRef<'_>,
        _started: DateTime<Utc>,
        _dirty: Option<&str>,
    ) -> Result<(), DbError> {
        self.raw("ROLLBACK".into()).await
    }

    fn into_fresh(self: Box<Self>) -> Result<Box<dyn FreshSession>, Box<dyn SchemaSession>> {
        Err(self)
    }

    async fn drop_own_schema(&mut self) -> Result<(), DbError> {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.quoted);
        self.raw(sql).await
    }

    async fn release(mut self: Box<Self>) -> Result<(), DbError> {
        if !self.session_lock {
            self.released = true;
            return Ok(());
        }
        let key = self.key;
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(key)
            .execute(self.conn())
            .await;
        match unlocked {
            Ok(_) => {
                self.released = true;
                Ok(())
            }
            Err(e) => Err(DbError::sqlx(ctx("unlocking", &self.schema), e)),
        }
    }
}

/// `e`, or [`DbError::LockTimeout`] when it is the server giving up waiting for a lock
/// (SQLSTATE `lock_not_available`).
fn lock_error(e: DbError, schema: &str, waited: Duration) -> DbError {
    match &e {
        DbError::Sqlx { code: Some(c), .. } if c == "55P03" => DbError::LockTimeout {
            schema: schema.to_owned(),
            waited,
            holder: None,
        },
        _ => e,
    }
}

/// SQLSTATE `duplicate_schema`.
const DUPLICATE_SCHEMA: &str = "42P06";

/// The history table's DDL.
fn history_ddl(qualified: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {qualified} (
            version BIGINT NOT NULL PRIMARY KEY,
            name TEXT NOT NULL,
            checksum CHAR(64) NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('applied', 'failed', 'running', 'baselined')),
            started_at TIMESTAMPTZ NOT NULL,
            finished_at TIMESTAMPTZ NULL,
            duration_ms BIGINT NULL,
            error TEXT NULL,
            statements_done BIGINT NULL,
            resumed_after BIGINT NULL
        )"
    )
}

/// A new schema built in the one transaction that created it: a failure or a lost
/// connection leaves nothing of it.
struct PgFresh(PgSession);

#[async_trait]
impl FreshSession for PgFresh {
    fn atomic(&self) -> bool {
        true
    }

    async fn execute(&mut self, sql: &str) -> Result<(), DbError> {
        self.0.raw(sql.to_owned()).await
    }

    async fn finish(self: Box<Self>, rows: &[AppliedRow<'_>]) -> Result<(), DbError> {
        let PgFresh(mut s) = *self;
        let ddl = history_ddl(&s.history.qualified);
        let written = async {
            s.raw(ddl).await?;
            if let Some(insert) = s.history.insert_applied_sql(rows) {
                s.history.write(&mut s.conn, "writing", insert).await?;
            }
            s.raw("COMMIT".into()).await
        }
        .await;
        if let Err(e) = written {
            let _ = s.raw("ROLLBACK".into()).await;
            return Err(e);
        }
        Box::new(s).release().await
    }

    async fn discard(self: Box<Self>) -> Result<(), DbError> {
        let PgFresh(mut s) = *self;
        s.raw("ROLLBACK".into()).await?;
        Box::new(s).release().await
    }
}
