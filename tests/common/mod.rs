//! Shared test harness: one test body runs against MariaDB, PostgreSQL and SQLite.
//!
//! Every test gets a `TestEnv` with its own uniquely named catalog and tenant prefix (and, for
//! SQLite, its own directory), so tests run in parallel and twice in a row; dropping the env
//! removes every schema it created, even when the test panicked.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{AssertSqlSafe, Connection, Executor, Row};
use tenant_migrator::{Config, Engine, Settings};

/// The servers every machine of this project runs (see README).
pub const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306";
pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    MySql,
    Postgres,
    Sqlite,
}

/// Instantiates each listed `async fn name(b: Backend)` once per backend, as
/// `mysql::name`, `postgres::name` and `sqlite::name`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod mysql {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::common::Backend::MySql).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::common::Backend::Postgres).await })*
        }
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::common::Backend::Sqlite).await })*
        }
    };
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique lowercase prefix for this test's schemas (`t<8 hex>_`).
fn unique_prefix() -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let seed = format!("{}-{}-{}", std::process::id(), n, uuid::Uuid::new_v4());
    let digest = tenant_migrator::migrate::source::checksum(seed.as_bytes());
    format!("t{}_", &digest[..8])
}

/// One test's private world.
pub struct TestEnv {
    pub backend: Backend,
    /// Prefix of every schema this test creates (`t1a2b3c4d_`).
    pub prefix: String,
    /// The catalog's own schema (MySQL database, PostgreSQL schema) or file stem.
    pub catalog: String,
    /// Working directory for CLI runs (and SQLite files).
    pub dir: tempfile::TempDir,
    /// Extra settings for this env (migrations dir, pool size…).
    pub migrations_dir: Option<PathBuf>,
    pub pool_size: Option<u32>,
    /// Replaces the URL user (connection-limit tests).
    pub user: Option<String>,
    /// Password of `user`, written into the URLs.
    pub password: Option<String>,
    /// `TENANT_SERVERS`, replacing `TENANT_URL_TEMPLATE` (several database servers).
    pub tenant_servers: Option<String>,
    /// Replaces `DATABASE_URL` (a catalog on a private server).
    pub catalog_url: Option<String>,
    /// `DRAINING_SERVERS`.
    pub draining_servers: Option<String>,
}

impl TestEnv {
    pub fn new(backend: Backend) -> Self {
        let prefix = unique_prefix();
        let catalog = format!("{prefix}cat");
        Self {
            backend,
            catalog,
            prefix,
            dir: tempfile::tempdir().expect("temp dir"),
            migrations_dir: None,
            pool_size: None,
            user: None,
            password: None,
            tenant_servers: None,
            catalog_url: None,
            draining_servers: None,
        }
    }

    /// A tenant name owned by this test.
    pub fn tenant(&self, short: &str) -> String {
        format!("{}{short}", self.prefix)
    }

    fn server_url(&self) -> String {
        let base = match self.backend {
            Backend::MySql => MYSQL_URL,
            Backend::Postgres => POSTGRES_URL,
            Backend::Sqlite => unreachable!("SQLite has no server"),
        };
        let login = match (&self.user, &self.password) {
            (Some(u), Some(p)) => format!("{u}:{p}@"),
            (Some(u), None) => format!("{u}@"),
            (None, _) => return base.to_owned(),
        };
        base.replacen("root@", &login, 1)
            .replacen("postgres@", &login, 1)
    }

    /// The environment a user would set for this env (also used to build `Config`).
    pub fn vars(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = match self.backend {
            Backend::MySql => vec![
                (
                    "DATABASE_URL".into(),
                    format!("{}/{}", self.server_url(), self.catalog),
                ),
                (
                    "TENANT_URL_TEMPLATE".into(),
                    format!("{}/{{schema}}", self.server_url()),
                ),
            ],
            Backend::Postgres => vec![
                ("DATABASE_URL".into(), self.server_url()),
                ("CATALOG_SCHEMA".into(), self.catalog.clone()),
            ],
            Backend::Sqlite => vec![(
                "DATABASE_URL".into(),
                format!("sqlite://{}/{}.db", self.dir.path().display(), self.catalog),
            )],
        };
        if let Some(servers) = &self.tenant_servers {
            v.retain(|(k, _)| k != "TENANT_URL_TEMPLATE");
            v.push(("TENANT_SERVERS".into(), servers.clone()));
        }
        if let Some(draining) = &self.draining_servers {
            v.push(("DRAINING_SERVERS".into(), draining.clone()));
        }
        if let Some(url) = &self.catalog_url {
            v.retain(|(k, _)| k != "DATABASE_URL");
            v.push(("DATABASE_URL".into(), url.clone()));
        }
        if let Some(d) = &self.migrations_dir {
            v.push(("MIGRATIONS_DIR".into(), d.display().to_string()));
        }
        if let Some(p) = self.pool_size {
            v.push(("TENANT_ENGINE_POOL_SIZE".into(), p.to_string()));
        }
        v
    }

    pub fn settings(&self) -> Settings {
        let get = |k: &str| {
            self.vars()
                .into_iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v)
        };
        Settings {
            database_url: get("DATABASE_URL"),
            tenant_url_template: get("TENANT_URL_TEMPLATE"),
            tenant_servers: get("TENANT_SERVERS"),
            draining_servers: get("DRAINING_SERVERS"),
            pool_size: self.pool_size,
            migrations_dir: self.migrations_dir.clone(),
            catalog_schema: get("CATALOG_SCHEMA"),
            lock_timeout_secs: Some(60),
            ..Settings::default()
        }
    }

    pub fn config(&self) -> Config {
        Config::from_settings(self.settings()).expect("test config is valid")
    }

    pub async fn engine(&self) -> Engine {
        Engine::connect(self.config())
            .await
            .expect("engine connects")
    }

    /// Runs the binary with this env's variables (and nothing of the caller's environment).
    pub fn cli(&self, args: &[&str]) -> CliRun {
        self.cli_with(args, &[])
    }

    pub fn cli_with(&self, args: &[&str], extra: &[(&str, &str)]) -> CliRun {
        let mut cmd = self.cli_command(args);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        CliRun(cmd.output().expect("binary runs"))
    }

    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tenant-migrator"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LOG_FORMAT", "json")
            .current_dir(self.dir.path())
            .args(args);
        for (k, v) in self.vars() {
            cmd.env(k, v);
        }
        cmd
    }

    /// Copies the shipped migrations into this env's own folder (so a test can add files)
    /// and points MIGRATIONS_DIR at it.
    pub fn own_migrations(&mut self) -> PathBuf {
        let dst = self.dir.path().join("migrations");
        copy_tree(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations"),
            &dst,
        );
        self.migrations_dir = Some(dst.clone());
        dst
    }

    /// Writes `sql` as migration `file` of the tenant scope for every dialect (same text).
    pub fn add_tenant_migration(&self, file: &str, sql_for: impl Fn(Backend) -> String) {
        let root = self
            .migrations_dir
            .as_ref()
            .expect("call own_migrations first");
        for (b, folder) in [
            (Backend::MySql, "mysql"),
            (Backend::Postgres, "postgres"),
            (Backend::Sqlite, "sqlite"),
        ] {
            let path = root.join("tenant").join(folder).join(file);
            std::fs::write(&path, sql_for(b)).expect("write migration");
        }
    }

    /// A connection to the server (or the SQLite catalog) for assertions.
    pub async fn admin(&self) -> Admin {
        match self.backend {
            Backend::MySql => Admin::MySql(
                sqlx::MySqlConnection::connect(MYSQL_URL)
                    .await
                    .expect("mysql up"),
            ),
            Backend::Postgres => Admin::Postgres(
                sqlx::PgConnection::connect(POSTGRES_URL)
                    .await
                    .expect("postgres up"),
            ),
            Backend::Sqlite => Admin::Sqlite(self.dir.path().to_owned(), self.catalog.clone()),
        }
    }

    /// Path of a tenant's SQLite file.
    pub fn sqlite_file(&self, schema: &str) -> PathBuf {
        self.dir.path().join("tenants").join(format!("{schema}.db"))
    }

    /// Schemas (databases, PostgreSQL schemas, SQLite files) this test created, sorted.
    pub async fn schemas(&self) -> Vec<String> {
        self.admin().await.schemas_like(&self.prefix).await
    }

    /// Drops everything this test created.
    pub async fn cleanup(&self) {
        if self.backend == Backend::Sqlite {
            return; // the temp dir goes with the env
        }
        let mut admin = self.admin().await;
        for s in admin.schemas_like(&self.prefix).await {
            admin.drop_schema(&s).await;
        }
        if let (Some(user), Admin::MySql(c)) = (&self.user, &mut admin) {
            let _ = c
                .execute(AssertSqlSafe(format!("DROP USER IF EXISTS '{user}'@'%'")))
                .await;
            let _ = c
                .execute(AssertSqlSafe(format!(
                    "DROP USER IF EXISTS '{user}'@'localhost'"
                )))
                .await;
        }
        if let (Some(user), Admin::Postgres(c)) = (&self.user, &mut admin) {
            let exists: Option<i64> =
                sqlx::query_scalar("SELECT 1::int8 FROM pg_roles WHERE rolname = $1")
                    .bind(user)
                    .fetch_optional(&mut *c)
                    .await
                    .unwrap_or(None);
            if exists.is_some() {
                let _ = c
                    .execute(AssertSqlSafe(format!("DROP OWNED BY \"{user}\" CASCADE")))
                    .await;
                let _ = c
                    .execute(AssertSqlSafe(format!("DROP ROLE IF EXISTS \"{user}\"")))
                    .await;
            }
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if self.backend == Backend::Sqlite {
            return;
        }
        let env = TestEnv {
            backend: self.backend,
            prefix: self.prefix.clone(),
            catalog: self.catalog.clone(),
            dir: tempfile::tempdir().expect("temp dir"),
            migrations_dir: None,
            pool_size: None,
            user: self.user.clone(),
            password: None,
            tenant_servers: None,
            catalog_url: None,
            draining_servers: None,
        };
        // Cleanup is async; run it on a runtime of its own so it also happens after a panic.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(env.cleanup());
            }
            std::mem::forget(env);
        })
        .join();
    }
}

fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for entry in std::fs::read_dir(src).expect("read migrations") {
        let entry = entry.expect("entry");
        let to = dst.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).expect("copy");
        }
    }
}

/// A finished CLI run.
pub struct CliRun(pub Output);

impl CliRun {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    /// stdout parsed as the JSON document of `--output json`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout()).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            )
        })
    }
    /// Asserts the exit code, showing the output when it differs.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// A privileged connection for assertions and cleanup.
pub enum Admin {
    MySql(sqlx::MySqlConnection),
    Postgres(sqlx::PgConnection),
    Sqlite(PathBuf, String),
}

impl Admin {
    pub async fn schemas_like(&mut self, prefix: &str) -> Vec<String> {
        let mut v: Vec<String> = match self {
            Admin::MySql(c) => sqlx::query_scalar(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE CONCAT(?, '%')",
            )
            .bind(prefix)
            .fetch_all(&mut *c)
            .await
            .expect("list schemas"),
            Admin::Postgres(c) => sqlx::query_scalar(
                "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1 || '%'",
            )
            .bind(prefix)
            .fetch_all(&mut *c)
            .await
            .expect("list schemas"),
            Admin::Sqlite(dir, catalog) => {
                let mut v = Vec::new();
                if dir.join(format!("{catalog}.db")).exists() {
                    v.push(catalog.clone());
                }
                if let Ok(entries) = std::fs::read_dir(dir.join("tenants")) {
                    for e in entries.flatten() {
                        let name = e.file_name().to_string_lossy().into_owned();
                        if let Some(stem) = name.strip_suffix(".db") {
                            v.push(stem.to_owned());
                        }
                    }
                }
                v.retain(|s| s.starts_with(prefix));
                v
            }
        };
        v.sort();
        v
    }

    pub async fn drop_schema(&mut self, schema: &str) {
        match self {
            Admin::MySql(c) => {
                c.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS `{schema}`")))
                    .await
                    .expect("drop database");
            }
            Admin::Postgres(c) => {
                c.execute(AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                )))
                .await
                .expect("drop schema");
            }
            Admin::Sqlite(..) => {}
        }
    }

    /// Runs `sql` inside `schema` (tenant SQL as the application would run it).
    pub async fn exec_in(&mut self, env: &TestEnv, schema: &str, sql: &str) {
        match self {
            Admin::MySql(c) => {
                c.execute(AssertSqlSafe(format!("USE `{schema}`")))
                    .await
                    .expect("use");
                sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
                    .execute(&mut *c)
                    .await
                    .expect("exec");
            }
            Admin::Postgres(c) => {
                let full = format!("SET search_path TO \"{schema}\"; {sql}; RESET search_path");
                sqlx::raw_sql(AssertSqlSafe(full))
                    .execute(&mut *c)
                    .await
                    .expect("exec");
            }
            Admin::Sqlite(..) => {
                let path = env.sqlite_path(schema);
                let url = format!("sqlite://{}?mode=rwc", path.display());
                let mut c = sqlx::SqliteConnection::connect(&url)
                    .await
                    .expect("open tenant file");
                sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
                    .execute(&mut c)
                    .await
                    .expect("exec");
                let _ = c.close().await;
            }
        }
    }

    /// Creates an empty schema (without the migrator).
    pub async fn create_schema(&mut self, env: &TestEnv, schema: &str) {
        match self {
            Admin::MySql(c) => {
                c.execute(AssertSqlSafe(format!("CREATE DATABASE `{schema}`")))
                    .await
                    .expect("create");
            }
            Admin::Postgres(c) => {
                c.execute(AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
                    .await
                    .expect("create");
            }
            Admin::Sqlite(..) => {
                std::fs::create_dir_all(env.dir.path().join("tenants")).expect("mkdir");
                let url = format!("sqlite://{}?mode=rwc", env.sqlite_file(schema).display());
                let c = sqlx::SqliteConnection::connect(&url)
                    .await
                    .expect("create file");
                let _ = c.close().await;
            }
        }
    }

    /// Takes `schema`'s migration lock on this connection, as another run of the tool would
    /// (MySQL `GET_LOCK`, PostgreSQL `pg_advisory_lock`), and keeps it until the connection
    /// goes away. SQLite has no such lock to take.
    pub async fn take_lock(&mut self, schema: &str) {
        use tenant_migrator::migrate::lock::{mysql_lock_name, postgres_lock_key};
        match self {
            Admin::MySql(c) => {
                let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 0)")
                    .bind(mysql_lock_name(schema))
                    .fetch_one(&mut *c)
                    .await
                    .expect("get_lock");
                assert_eq!(got, Some(1), "lock of {schema} taken");
            }
            Admin::Postgres(c) => {
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(postgres_lock_key(schema))
                    .execute(&mut *c)
                    .await
                    .expect("advisory lock");
            }
            Admin::Sqlite(..) => unreachable!("SQLite locks are file locks"),
        }
    }

    /// Table names of a schema (history table included), sorted.
    pub async fn tables(&mut self, env: &TestEnv, schema: &str) -> Vec<String> {
        let mut v: Vec<String> = match self {
            Admin::MySql(c) => sqlx::query_scalar(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
            )
            .bind(schema)
            .fetch_all(&mut *c)
            .await
            .expect("tables"),
            Admin::Postgres(c) => sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
            )
            .bind(schema)
            .fetch_all(&mut *c)
            .await
            .expect("tables"),
            Admin::Sqlite(..) => {
                let path = if schema == env.catalog {
                    env.dir.path().join(format!("{schema}.db"))
                } else {
                    env.sqlite_file(schema)
                };
                if !path.exists() {
                    return Vec::new();
                }
                let url = format!("sqlite://{}?mode=ro", path.display());
                let mut c = sqlx::SqliteConnection::connect(&url).await.expect("open");
                let v = sqlx::query_scalar(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
                )
                .fetch_all(&mut c)
                .await
                .expect("tables");
                let _ = c.close().await;
                v
            }
        };
        v.sort();
        v
    }

    /// `(version, state)` rows of a schema's history table.
    pub async fn history(&mut self, env: &TestEnv, schema: &str) -> Vec<(i64, String)> {
        let sql = match self {
            Admin::MySql(_) => format!(
                "SELECT version, state FROM `{schema}`.`_tenant_migrations` ORDER BY version"
            ),
            Admin::Postgres(_) => format!(
                "SELECT version, state FROM \"{schema}\".\"_tenant_migrations\" ORDER BY version"
            ),
            Admin::Sqlite(..) => {
                "SELECT version, state FROM _tenant_migrations ORDER BY version".into()
            }
        };
        let rows: Vec<(i64, String)> = match self {
            Admin::MySql(c) => sqlx::query(AssertSqlSafe(sql))
                .fetch_all(&mut *c)
                .await
                .expect("history")
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect(),
            Admin::Postgres(c) => sqlx::query(AssertSqlSafe(sql))
                .fetch_all(&mut *c)
                .await
                .expect("history")
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect(),
            Admin::Sqlite(..) => {
                let path = if schema == env.catalog {
                    env.dir.path().join(format!("{schema}.db"))
                } else {
                    env.sqlite_file(schema)
                };
                let url = format!("sqlite://{}?mode=ro", path.display());
                let mut c = sqlx::SqliteConnection::connect(&url).await.expect("open");
                let v = sqlx::query(AssertSqlSafe(sql))
                    .fetch_all(&mut c)
                    .await
                    .expect("history")
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect();
                let _ = c.close().await;
                v
            }
        };
        rows
    }
}

/// Everything a test's schemas hold: schema → table → every row rendered as text, sorted.
pub type Snapshot =
    std::collections::BTreeMap<String, std::collections::BTreeMap<String, Vec<String>>>;

/// A catalog `tenants` row as the assertions need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogTenant {
    pub status: String,
    pub schema_version: Option<i64>,
    pub last_error: Option<String>,
}

impl TestEnv {
    /// Runs the binary in this env's directory with only `vars` set (no env settings).
    pub fn cli_bare(&self, args: &[&str], vars: &[(&str, &str)]) -> CliRun {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tenant-migrator"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LOG_FORMAT", "json")
            .current_dir(self.dir.path())
            .args(args);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        CliRun(cmd.output().expect("binary runs"))
    }

    /// Starts the binary without waiting for it (stdout and stderr captured).
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.cli_command(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("binary starts")
    }

    /// Path of a schema's SQLite file (the catalog or a tenant).
    pub fn sqlite_path(&self, schema: &str) -> PathBuf {
        if schema == self.catalog {
            self.dir.path().join(format!("{schema}.db"))
        } else {
            self.sqlite_file(schema)
        }
    }

    /// A migration file of this env's own migrations folder.
    pub fn migration_file(&self, scope: &str, backend: Backend, file: &str) -> PathBuf {
        let folder = match backend {
            Backend::MySql => "mysql",
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        };
        self.migrations_dir
            .as_ref()
            .expect("call own_migrations first")
            .join(scope)
            .join(folder)
            .join(file)
    }

    /// Every schema this test owns, with every table and every row (catalog and history rows
    /// included): equal snapshots mean nothing was written.
    pub async fn snapshot(&self) -> Snapshot {
        let mut admin = self.admin().await;
        let mut out = Snapshot::new();
        for schema in admin.schemas_like(&self.prefix).await {
            let mut tables = std::collections::BTreeMap::new();
            for table in admin.tables(self, &schema).await {
                let rows = admin.rows(self, &schema, &table).await;
                tables.insert(table, rows);
            }
            out.insert(schema, tables);
        }
        out
    }

    /// Creates a login of this test's own (MySQL user / PostgreSQL role) that the server
    /// refuses more than `max_connections` connections at once, with what the migrator needs
    /// on this test's schemas, and makes every URL of the env use it.
    pub async fn use_limited_user(&mut self, max_connections: u32) {
        self.create_user(max_connections, None).await;
    }

    /// Like [`TestEnv::use_limited_user`], with a password the URLs carry.
    pub async fn use_user_with_password(&mut self, password: &str) {
        self.create_user(50, Some(password)).await;
    }

    async fn create_user(&mut self, max_connections: u32, password: Option<&str>) {
        let user = format!("{}u", self.prefix);
        let mut admin = self.admin().await;
        match &mut admin {
            Admin::MySql(c) => {
                let pattern = self.prefix.replace('_', "\\_");
                let auth = password
                    .map(|p| format!(" IDENTIFIED BY '{p}'"))
                    .unwrap_or_default();
                for sql in [
                    format!(
                        "CREATE USER '{user}'@'%'{auth} WITH MAX_USER_CONNECTIONS {max_connections}"
                    ),
                    format!("GRANT ALL PRIVILEGES ON `{pattern}%`.* TO '{user}'@'%'"),
                ] {
                    c.execute(AssertSqlSafe(sql))
                        .await
                        .expect("create mysql user");
                }
            }
            Admin::Postgres(c) => {
                let auth = password
                    .map(|p| format!(" PASSWORD '{p}'"))
                    .unwrap_or_default();
                for sql in [
                    format!(
                        "CREATE ROLE \"{user}\" LOGIN{auth} CONNECTION LIMIT {max_connections}"
                    ),
                    format!("GRANT CREATE ON DATABASE test TO \"{user}\""),
                ] {
                    c.execute(AssertSqlSafe(sql))
                        .await
                        .expect("create postgres role");
                }
            }
            Admin::Sqlite(..) => panic!("SQLite has no users"),
        }
        self.user = Some(user);
        self.password = password.map(str::to_owned);
    }
}

impl Admin {
    /// Runs a statement on the server (no schema selected).
    pub async fn exec(&mut self, sql: &str) {
        match self {
            Admin::MySql(c) => {
                sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
                    .execute(&mut *c)
                    .await
                    .expect("exec");
            }
            Admin::Postgres(c) => {
                sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
                    .execute(&mut *c)
                    .await
                    .expect("exec");
            }
            Admin::Sqlite(..) => panic!("SQLite has no server"),
        }
    }

    /// Every row of `schema.table`, each rendered as one text line, sorted.
    pub async fn rows(&mut self, env: &TestEnv, schema: &str, table: &str) -> Vec<String> {
        let mut v: Vec<String> = match self {
            Admin::MySql(c) => {
                let cols: Vec<String> = sqlx::query_scalar(
                    "SELECT COLUMN_NAME FROM information_schema.COLUMNS \
                     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                )
                .bind(schema)
                .bind(table)
                .fetch_all(&mut *c)
                .await
                .expect("columns");
                let expr = cols
                    .iter()
                    .map(|col| format!("IFNULL(CAST(`{col}` AS CHAR), 'NULL')"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = format!("SELECT CONCAT_WS('|', {expr}) FROM `{schema}`.`{table}`");
                sqlx::raw_sql(AssertSqlSafe(sql))
                    .fetch_all(&mut *c)
                    .await
                    .expect("rows")
                    .iter()
                    .map(|r| r.get::<String, _>(0))
                    .collect()
            }
            Admin::Postgres(c) => {
                let sql = format!("SELECT t::text FROM \"{schema}\".\"{table}\" t");
                sqlx::raw_sql(AssertSqlSafe(sql))
                    .fetch_all(&mut *c)
                    .await
                    .expect("rows")
                    .iter()
                    .map(|r| r.get::<String, _>(0))
                    .collect()
            }
            Admin::Sqlite(..) => {
                let mut c = open_sqlite_ro(&env.sqlite_path(schema)).await;
                let cols: Vec<String> =
                    sqlx::query_scalar("SELECT name FROM pragma_table_info(?) ORDER BY cid")
                        .bind(table)
                        .fetch_all(&mut c)
                        .await
                        .expect("columns");
                let expr = cols
                    .iter()
                    .map(|col| format!("quote(\"{col}\")"))
                    .collect::<Vec<_>>()
                    .join(" || '|' || ");
                let sql = format!("SELECT {expr} FROM \"{table}\"");
                let v = sqlx::raw_sql(AssertSqlSafe(sql))
                    .fetch_all(&mut c)
                    .await
                    .expect("rows")
                    .iter()
                    .map(|r| r.get::<String, _>(0))
                    .collect();
                let _ = c.close().await;
                v
            }
        };
        v.sort();
        v
    }

    /// The catalog's `tenants` row for `schema`.
    pub async fn catalog_tenant(&mut self, env: &TestEnv, schema: &str) -> Option<CatalogTenant> {
        let cat = &env.catalog;
        let row: Option<(String, Option<i64>, Option<String>)> = match self {
            Admin::MySql(c) => sqlx::query_as(AssertSqlSafe(format!(
                "SELECT status, schema_version, last_error FROM `{cat}`.tenants WHERE schema_name = ?"
            )))
            .bind(schema)
            .fetch_optional(&mut *c)
            .await
            .expect("tenant row"),
            Admin::Postgres(c) => sqlx::query_as(AssertSqlSafe(format!(
                "SELECT status::text, schema_version::int8, last_error FROM \"{cat}\".tenants WHERE schema_name = $1"
            )))
            .bind(schema)
            .fetch_optional(&mut *c)
            .await
            .expect("tenant row"),
            Admin::Sqlite(..) => {
                let mut c = open_sqlite_ro(&env.sqlite_path(cat)).await;
                let row = sqlx::query_as(
                    "SELECT status, schema_version, last_error FROM tenants WHERE schema_name = ?",
                )
                .bind(schema)
                .fetch_optional(&mut c)
                .await
                .expect("tenant row");
                let _ = c.close().await;
                row
            }
        };
        row.map(|(status, schema_version, last_error)| CatalogTenant {
            status,
            schema_version,
            last_error,
        })
    }

    /// The first column of `sql` (text) run inside `schema`.
    pub async fn strings(&mut self, env: &TestEnv, schema: &str, sql: &str) -> Vec<String> {
        match self {
            Admin::MySql(c) => {
                c.execute(AssertSqlSafe(format!("USE `{schema}`")))
                    .await
                    .expect("use");
                sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
                    .fetch_all(&mut *c)
                    .await
                    .expect("query")
                    .iter()
                    .map(|r| r.get::<String, _>(0))
                    .collect()
            }
            Admin::Postgres(c) => {
                c.execute(AssertSqlSafe(format!("SET search_path TO \"{schema}\"")))
                    .await
                    .expect("path");
                let v = sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
                    .fetch_all(&mut *c)
                    .await
                    .expect("query")
                    .iter()
                    .map(|r| r.get::<String, _>(0))
                    .collect();
                c.execute("RESET search_path").await.expect("reset");
                v
            }
            Admin::Sqlite(..) => {
                let mut c = open_sqlite_ro(&env.sqlite_path(schema)).await;
                let v = sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
                    .fetch_all(&mut c)
                    .await
                    .expect("query")
                    .iter()
                    .map(|r| r.get::<String, _>(0))
                    .collect();
                let _ = c.close().await;
                v
            }
        }
    }

    /// Number of rows of `schema.table`.
    pub async fn count(&mut self, env: &TestEnv, schema: &str, table: &str) -> i64 {
        self.rows(env, schema, table).await.len() as i64
    }
}

async fn open_sqlite_ro(path: &Path) -> sqlx::SqliteConnection {
    let url = format!("sqlite://{}?mode=ro", path.display());
    sqlx::SqliteConnection::connect(&url)
        .await
        .expect("open sqlite file")
}

/// The line of `schema` in a fleet report.
pub fn tenant_of<'a>(report: &'a serde_json::Value, schema: &str) -> &'a serde_json::Value {
    report["tenants"]
        .as_array()
        .expect("tenants array")
        .iter()
        .find(|t| t["schema"] == schema)
        .unwrap_or_else(|| panic!("{schema} is not in the report:\n{report:#}"))
}

/// Versions of the migrations a report line lists.
pub fn versions_of(line: &serde_json::Value) -> Vec<i64> {
    line["migrations"]
        .as_array()
        .expect("migrations array")
        .iter()
        .map(|m| m["version"].as_i64().expect("version"))
        .collect()
}

/// `(1, "applied"), …, (n, "applied")`.
/// The newest catalog (public) migration version shipped in `migrations/`.
pub fn catalog_latest() -> i64 {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/public/sqlite");
    std::fs::read_dir(&dir)
        .expect("migrations/public/sqlite")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.split('_').next()?.parse::<i64>().ok()
        })
        .max()
        .expect("catalog migrations")
}

pub fn applied_up_to(n: i64) -> Vec<(i64, String)> {
    (1..=n).map(|v| (v, "applied".to_owned())).collect()
}

/// A deadline for polling a condition (never a sleep).
pub struct Deadline {
    what: String,
    until: std::time::Instant,
}

impl Deadline {
    pub fn new(what: &str, secs: u64) -> Self {
        Self {
            what: what.to_owned(),
            until: std::time::Instant::now() + std::time::Duration::from_secs(secs),
        }
    }

    /// Fails the test once the deadline has passed; otherwise lets other tasks run.
    pub async fn check(&self) {
        assert!(
            std::time::Instant::now() < self.until,
            "timed out waiting for {}",
            self.what
        );
        tokio::task::yield_now().await;
    }
}

/// A fleet with work to do: `names` (short names, prefixed) created at the shipped versions,
/// then `sql` added as tenant migration `file` in every dialect folder.
pub fn fleet_with_pending(
    b: Backend,
    names: &[&str],
    file: &str,
    sql: &str,
) -> (TestEnv, Vec<String>) {
    let mut env = TestEnv::new(b);
    env.own_migrations();
    let tenants: Vec<String> = names.iter().map(|s| env.tenant(s)).collect();
    let mut args = vec!["create"];
    args.extend(tenants.iter().map(String::as_str));
    env.cli(&args).expect_code(0);
    env.add_tenant_migration(file, |_| sql.to_owned());
    (env, tenants)
}
