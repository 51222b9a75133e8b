//! `TestApp`: the service started on 127.0.0.1:0 over a `TestEnv`, with helpers to create
//! admins of each role and call the API. Its fleet jobs hold a lease of
//! [`TEST_JOB_LEASE_SECS`] (`JOB_LEASE`), so takeovers happen within seconds.
#![allow(dead_code)]

use std::net::SocketAddr;

use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use tenant_migrator::Engine;
use tenant_migrator::auth::{TokenSettings, hash_password};
use tenant_migrator::domain::{Email, Role, SchemaName};
use tenant_migrator::http::{Application, HttpSettings};
use tenant_migrator::jobs::NoProgress;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::common::{Backend, TestEnv};

/// The signing key of every test server.
pub const SECRET: &str = "test-secret-key-with-at-least-32-bytes!!";
/// `JOB_LEASE` of every test service (and of CLI jobs the tests start next to one).
pub const TEST_JOB_LEASE_SECS: u64 = 3;

/// The engine a test service runs on: the env's configuration with [`TEST_JOB_LEASE_SECS`].
pub async fn service_engine(env: &TestEnv) -> Engine {
    let mut settings = env.settings();
    settings.job_lease_secs = Some(TEST_JOB_LEASE_SECS);
    let config = tenant_migrator::Config::from_settings(settings).expect("test config is valid");
    // Boxed: the engine's start-up future is large in a debug build, and a test that starts
    // services twice would otherwise hold it inline twice on the test thread's 2 MiB stack.
    Box::pin(Engine::connect(config))
        .await
        .expect("engine connects")
}

/// Password of the admins `TestApp::token` creates.
pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestApp {
    pub env: TestEnv,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub engine: Engine,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    pub async fn spawn(b: Backend) -> Self {
        Self::spawn_env(TestEnv::new(b)).await
    }

    pub async fn spawn_env(env: TestEnv) -> Self {
        Self::spawn_with(env, |_| {}).await
    }

    /// Starts the server over `env` with settings changed by `change`.
    pub async fn spawn_with(env: TestEnv, change: impl FnOnce(&mut HttpSettings)) -> Self {
        let engine = Box::pin(service_engine(&env)).await;
        let mut settings = HttpSettings {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            secret_key: Some(SECRET.into()),
            token: TokenSettings::default(),
            ..HttpSettings::default()
        };
        // Tests log in many times from one address; the tests of the throttle turn it on.
        settings.login.rate_per_minute = 0;
        change(&mut settings);
        let app = Box::pin(Application::build(engine.clone(), settings))
            .await
            .expect("service starts");
        let addr = app.local_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = rx.await;
        }));
        Self {
            env,
            addr,
            client: reqwest::Client::new(),
            engine,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let r = self.client.request(method, self.url(path));
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.request(Method::GET, path, Some(token))
            .send()
            .await
            .expect("request")
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Response {
        self.request(Method::POST, path, Some(token))
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    /// Creates an admin user with `role` (unique e-mail) and returns its e-mail.
    pub async fn admin(&self, role: Role) -> String {
        let email = format!(
            "{}{}@example.com",
            self.env.prefix,
            uuid::Uuid::new_v4().simple()
        );
        let hash = hash_password(PASSWORD).expect("hash");
        self.engine
            .catalog()
            .insert_admin(&Email::parse(&email).expect("email"), &hash, role)
            .await
            .expect("insert admin")
            .expect("new admin");
        email
    }

    /// Logs in as `email` and returns the access token.
    pub async fn login(&self, email: &str) -> String {
        let res = self
            .request(Method::POST, "/auth/login", None)
            .json(&serde_json::json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .expect("login");
        assert_eq!(res.status(), 200, "login of {email}");
        let body: Value = res.json().await.expect("json");
        body["access_token"].as_str().expect("token").to_owned()
    }

    /// A token of a new admin with `role`.
    pub async fn token(&self, role: Role) -> String {
        let email = self.admin(role).await;
        self.login(&email).await
    }

    /// Sends the shutdown signal (SIGTERM's equivalent) without waiting for the server.
    pub fn request_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits until the server has stopped (after `request_shutdown`).
    pub async fn wait_stopped(&mut self) {
        if let Some(s) = self.server.take() {
            let stopped = tokio::time::timeout(std::time::Duration::from_secs(120), s).await;
            let served = stopped
                .expect("server stops within 120 s")
                .expect("server task");
            served.expect("server ran without an I/O error");
        }
    }

    /// Stops the server gracefully and starts a new one over the same catalog (a restart).
    pub async fn restart(mut self) -> Self {
        self.request_shutdown();
        self.wait_stopped().await;
        let TestApp { env, .. } = self;
        Self::spawn_env(env).await
    }

    /// Stops the server gracefully and returns its env (a process that went away, leaving the
    /// catalog and tenants as they are).
    pub async fn shut_down(mut self) -> TestEnv {
        self.request_shutdown();
        self.wait_stopped().await;
        let TestApp { env, .. } = self;
        env
    }

    /// Stops the server gracefully and cleans the env.
    pub async fn stop(mut self) {
        self.request_shutdown();
        self.wait_stopped().await;
        self.env.cleanup().await;
    }

    /// `PATCH path` with a JSON body.
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Response {
        self.request(Method::PATCH, path, Some(token))
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    /// `GET path` parsed as JSON, asserting 200.
    pub async fn get_json(&self, path: &str, token: &str) -> Value {
        let res = self.get(path, token).await;
        let status = res.status();
        let body = res.text().await.expect("body");
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).expect("JSON body")
    }

    /// Starts a fleet upgrade (asserting 202) and returns the job's id.
    pub async fn start_upgrade_all(&self, token: &str, body: Value) -> String {
        let res = self.post("/migrations/upgrade-all", token, body).await;
        let status = res.status();
        let location = res
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = res.text().await.expect("body");
        assert_eq!(status, 202, "upgrade-all: {text}");
        let job: Value = serde_json::from_str(&text).expect("job JSON");
        let id = job["id"].as_str().expect("job id").to_owned();
        assert_eq!(
            location,
            Some(format!("/migrations/jobs/{id}")),
            "Location of the job"
        );
        id
    }

    /// `GET /migrations/jobs/{id}` (`{job, tenants}`).
    pub async fn job(&self, token: &str, id: &str) -> Value {
        self.get_json(&format!("/migrations/jobs/{id}"), token)
            .await
    }

    /// Polls a job until `done` holds for its detail, failing after 60 s.
    pub async fn wait_job(
        &self,
        token: &str,
        id: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let detail = self.job(token, id).await;
            if done(&detail) {
                return detail;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}: {detail:#}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Polls a job until it is in a final state, and returns its detail.
    pub async fn wait_job_finished(&self, token: &str, id: &str) -> Value {
        self.wait_job(token, id, "the job to finish", |d| {
            !matches!(d["job"]["state"].as_str(), Some("running" | "queued"))
        })
        .await
    }

    /// Runs `sql` (with `?` placeholders, bound in order as text) on the catalog through the
    /// server's own pool.
    pub async fn catalog_exec(&self, sql: &str, args: &[CatalogArg]) {
        catalog_exec(&self.engine, sql, args).await;
    }
}

/// Runs `sql` (with `?` placeholders, bound in order as text) on the catalog through
/// `engine`'s pool.
pub async fn catalog_exec(engine: &Engine, sql: &str, args: &[CatalogArg]) {
    {
        use tenant_migrator::db::{DbPool, placeholders};
        macro_rules! run {
            ($p:expr, $b:expr, $uuid:ty) => {{
                let mut q = sqlx::query(placeholders($b, sql));
                for a in args {
                    q = match a {
                        CatalogArg::Text(t) => q.bind(t.clone()),
                        CatalogArg::Time(t) => q.bind(*t),
                        CatalogArg::Id(u) => q.bind(<$uuid>::from(*u)),
                    };
                }
                q.execute($p).await.expect("catalog statement");
            }};
        }
        use tenant_migrator::db::Backend as B;
        match engine.catalog().pool() {
            DbPool::MySql(p) => run!(p, B::MySql, uuid::fmt::Hyphenated),
            DbPool::Postgres(p) => run!(p, B::Postgres, uuid::Uuid),
            DbPool::Sqlite(p) => run!(p, B::Sqlite, uuid::fmt::Hyphenated),
        }
    }
}

/// A bound parameter of [`TestApp::catalog_exec`].
pub enum CatalogArg {
    Text(String),
    Time(chrono::DateTime<chrono::Utc>),
    Id(uuid::Uuid),
}

/// Strings that must never reach a client in an error body: SQL, paths, traces, driver text
/// (matched case-sensitively: SQL keywords as the server writes them).
const INTERNALS: &[&str] = &[
    "SELECT ",
    "INSERT ",
    "UPDATE ",
    "CREATE TABLE",
    "ALTER TABLE",
    "SQL syntax",
    "syntax error",
    "sqlx",
    "SQLSTATE",
    "error returned from database",
    "/work",
    "/tmp/",
    "/home/",
    ".rs:",
    "src/",
    "panicked",
    "backtrace",
    "RUST_",
];

/// Asserts an error body reveals nothing of the server's internals.
pub fn assert_no_internals(body: &str) {
    for needle in INTERNALS {
        assert!(
            !body.contains(needle),
            "an error body reveals internals ({needle:?}): {body}"
        );
    }
}

/// Asserts `res` is a problem document with `status`; returns its body.
pub async fn expect_problem(res: Response, status: u16) -> Value {
    assert_eq!(res.status().as_u16(), status, "status");
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        ct.starts_with("application/problem+json"),
        "content-type {ct}"
    );
    let text = res.text().await.expect("problem body");
    assert_no_internals(&text);
    let body: Value = serde_json::from_str(&text).expect("problem body is JSON");
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["title"].is_string() && body["type"].is_string(),
        "{body}"
    );
    assert!(
        body["request_id"].is_string(),
        "problem without request_id: {body}"
    );
    body
}

/// A fourth tenant migration (same text on every backend): a new table and a new column.
pub const LOYALTY: &str = "CREATE TABLE loyalty_cards (\n    id CHAR(36) NOT NULL PRIMARY KEY,\n    points INTEGER NOT NULL DEFAULT 0\n);\nALTER TABLE users_tenant ADD COLUMN loyalty_tier VARCHAR(20) NULL;\n";

/// An env with its own migrations plus `0004_loyalty.sql`, and tenants provisioned (before any
/// server starts) at the given versions: `(short name, target)`, `None` = newest. Returns the
/// env and the full schema names, in the order given.
pub async fn fleet_env(b: Backend, tenants: &[(&str, Option<i64>)]) -> (TestEnv, Vec<String>) {
    let mut env = TestEnv::new(b);
    env.own_migrations();
    env.add_tenant_migration("0004_loyalty.sql", |_| LOYALTY.into());
    let engine = env.engine().await;
    let mut names = Vec::new();
    for (short, target) in tenants {
        let name = SchemaName::parse(&env.tenant(short)).expect("valid name");
        let opts = engine.fleet_options(false, *target);
        let report = engine
            .create_tenants(std::slice::from_ref(&name), None, &opts, &NoProgress)
            .await
            .expect("provisioning");
        assert_eq!(report.failed, 0, "provisioning {name}: {report:?}");
        names.push(name.to_string());
    }
    engine.close().await;
    (env, names)
}

/// Where a tenant stands: its history and whether the 0004 table exists.
pub async fn tenant_version(env: &TestEnv, schema: &str) -> (Vec<(i64, String)>, bool) {
    let mut admin = env.admin().await;
    let history = admin.history(env, schema).await;
    let has_loyalty = admin
        .tables(env, schema)
        .await
        .iter()
        .any(|t| t == "loyalty_cards");
    (history, has_loyalty)
}

/// A lock taken from the test on the side, released by `release` (or by dropping the
/// connection).
pub enum Hold {
    MySql(sqlx::MySqlConnection),
    Postgres(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

impl Hold {
    /// Takes the per-tenant migration lock the migrator takes (MySQL `GET_LOCK`, PostgreSQL
    /// advisory lock, SQLite write lock of the tenant file): a job reaching this tenant waits.
    pub async fn tenant_lock(env: &TestEnv, schema: &str) -> Hold {
        use sqlx::{Connection, Executor};
        if env.backend == Backend::Sqlite {
            let url = format!("sqlite://{}", env.sqlite_file(schema).display());
            let mut c = sqlx::SqliteConnection::connect(&url)
                .await
                .expect("open tenant file");
            c.execute("BEGIN IMMEDIATE").await.expect("write lock");
            return Hold::Sqlite(c);
        }
        let mut admin = env.admin().await;
        admin.take_lock(schema).await;
        match admin {
            crate::common::Admin::MySql(c) => Hold::MySql(c),
            crate::common::Admin::Postgres(c) => Hold::Postgres(c),
            crate::common::Admin::Sqlite(..) => unreachable!("handled above"),
        }
    }

    /// Keeps everyone else from reading a tenant's history table (MySQL `LOCK TABLES … WRITE`,
    /// PostgreSQL `ACCESS EXCLUSIVE`, SQLite an exclusive-mode write lock on the file): even a
    /// dry run reaching this tenant waits.
    pub async fn history_read_block(env: &TestEnv, schema: &str) -> Hold {
        use sqlx::{Connection, Executor};
        match env.backend {
            Backend::MySql => {
                let mut c = sqlx::MySqlConnection::connect(crate::common::MYSQL_URL)
                    .await
                    .expect("mysql up");
                let sql = format!("LOCK TABLES `{schema}`.`_tenant_migrations` WRITE");
                c.execute(sqlx::AssertSqlSafe(sql))
                    .await
                    .expect("lock tables");
                Hold::MySql(c)
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(crate::common::POSTGRES_URL)
                    .await
                    .expect("postgres up");
                let sql = format!(
                    "BEGIN; LOCK TABLE \"{schema}\".\"_tenant_migrations\" IN ACCESS EXCLUSIVE MODE"
                );
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut c)
                    .await
                    .expect("lock table");
                Hold::Postgres(c)
            }
            Backend::Sqlite => {
                let url = format!("sqlite://{}", env.sqlite_file(schema).display());
                let mut c = sqlx::SqliteConnection::connect(&url)
                    .await
                    .expect("open tenant file");
                c.execute("PRAGMA locking_mode = EXCLUSIVE")
                    .await
                    .expect("exclusive mode");
                c.execute("BEGIN EXCLUSIVE").await.expect("exclusive lock");
                c.execute("DELETE FROM _tenant_migrations WHERE version < 0")
                    .await
                    .expect("take the write lock");
                Hold::Sqlite(c)
            }
        }
    }

    pub async fn release(self) {
        use sqlx::{Connection, Executor};
        match self {
            Hold::MySql(c) => c.close().await.expect("close"),
            Hold::Postgres(c) => c.close().await.expect("close"),
            Hold::Sqlite(mut c) => {
                c.execute("ROLLBACK").await.expect("rollback");
                c.close().await.expect("close");
            }
        }
    }
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub data: Value,
}

/// Reads an SSE response to its end (at most 60 s) and parses its events (comments and
/// keep-alives skipped).
pub async fn read_sse(mut res: Response) -> Vec<SseEvent> {
    assert_eq!(res.status(), 200, "events status");
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(ct.starts_with("text/event-stream"), "content-type {ct}");
    let mut raw = Vec::new();
    let read = async {
        while let Some(chunk) = res.chunk().await.expect("event stream") {
            raw.extend_from_slice(&chunk);
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), read)
        .await
        .expect("the event stream ends within 60 s");
    let text = String::from_utf8(raw).expect("UTF-8 events");
    let mut events = Vec::new();
    for block in text.split("\n\n") {
        let mut event = None;
        let mut data = String::new();
        for line in block.lines() {
            if let Some(e) = line.strip_prefix("event:") {
                event = Some(e.trim().to_owned());
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push_str(d.strip_prefix(' ').unwrap_or(d));
            }
        }
        if let Some(event) = event {
            let data = serde_json::from_str(&data)
                .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {data}"));
            events.push(SseEvent { event, data });
        }
    }
    events
}

/// Nothing but the catalog exists, and the catalog lists no tenant.
pub async fn assert_nothing_created(app: &TestApp, what: &str) {
    assert_eq!(
        app.env.schemas().await,
        vec![app.env.catalog.clone()],
        "{what}: a schema was created"
    );
    let mut admin = app.env.admin().await;
    let rows = admin.rows(&app.env, &app.env.catalog, "tenants").await;
    assert!(rows.is_empty(), "{what}: the catalog has tenants {rows:?}");
    if app.env.backend == Backend::Sqlite {
        let dir = app.env.dir.path().join("tenants");
        let files: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(files.is_empty(), "{what}: tenant files {files:?}");
    }
}
