//! `adopt alembic`: taking over a fleet of tenants that Alembic built, on MariaDB and
//! PostgreSQL.
//!
//! The fleet is real: `tests/fixtures/alembic` is an Alembic project (three revisions of a
//! salon booking platform's tenant schema, one of them with a foreign key into the
//! application's public database/schema), run with the pinned Alembic toolchain of
//! `.ci/alembic-venv.sh` (env `ALEMBIC_VENV`, or its default cache path). Its ported SQL
//! migrations (`tests/fixtures/alembic/migrations/tenant`) and `alembic-map.toml` are what a
//! team switching to tenant-migrator writes. `alembic_fixtures_match_the_ported_sql` proves
//! that both build the same structure; everything else relies on it.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{Admin, Backend, CliRun, MYSQL_URL, POSTGRES_URL, TestEnv, tenant_of, versions_of};
use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection, Row};

/// Instantiates each listed `async fn name(b: Backend)` for the two servers (Alembic does
/// not manage the SQLite default).
macro_rules! server_tests {
    ($($name:ident),* $(,)?) => {
        mod mysql {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::MySql).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Postgres).await })*
        }
    };
}

server_tests!(
    alembic_fixtures_match_the_ported_sql,
    adopting_an_alembic_fleet,
    an_unmapped_revision_is_refused,
    a_schema_without_alembic_version_is_refused,
    discover_leaves_out_the_catalog_and_the_tenants_database,
    a_bad_map_or_selection_is_a_usage_error,
    upgrade_public_refuses_the_applications_own_tables,
);

/// The fixture project's revisions, oldest first, and the versions `alembic-map.toml` maps
/// them to.
const R1: &str = "1f2e3d4c5b6a";
const R2: &str = "a9b8c7d6e5f4";
const R3: &str = "5c6d7e8f9a0b";
const HEAD: &str = R3;

/// Tables of a tenant at version 3 (without bookkeeping tables).
const TENANT_TABLES: [&str; 3] = ["appointments", "clients", "services"];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/alembic")
}

fn map_file() -> String {
    fixtures().join("alembic-map.toml").display().to_string()
}

// --- the Alembic toolchain -------------------------------------------------------------------

/// The virtualenv holding the pinned Alembic: `ALEMBIC_VENV`, else the default cache path
/// `.ci/alembic-venv.sh` installs into. Missing, the test fails (it never skips).
fn alembic_venv() -> PathBuf {
    let nonempty = |v: std::ffi::OsString| (!v.is_empty()).then_some(v);
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .and_then(nonempty)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache")
        });
    let candidates: Vec<PathBuf> = std::env::var_os("ALEMBIC_VENV")
        .and_then(nonempty)
        .map(PathBuf::from)
        .into_iter()
        .chain([cache.join("tenant-migrator/alembic-venv")])
        .collect();
    for venv in &candidates {
        if venv.join("bin/alembic").is_file() {
            return venv.clone();
        }
    }
    panic!(
        "no Alembic toolchain: none of {} has bin/alembic. Run `bash .ci/alembic-venv.sh` once \
         (it installs the pinned Alembic, SQLAlchemy, PyMySQL and pg8000 into the default \
         path; `export ALEMBIC_VENV=$(bash .ci/alembic-venv.sh)` for another place)",
        candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// SQLAlchemy URL of a tenant: MySQL names the tenant database; PostgreSQL the database
/// that holds the tenant schemas (env.py sets the search_path).
fn alembic_url(b: Backend, tenant: &str) -> String {
    match b {
        Backend::MySql => format!("mysql+pymysql://root@127.0.0.1:3306/{tenant}"),
        Backend::Postgres => "postgresql+pg8000://postgres@127.0.0.1:5432/test".into(),
        Backend::Sqlite => unreachable!("Alembic manages the servers only here"),
    }
}

/// Alembic runs under way (each is a Python process, about a second of start-up).
struct AlembicRuns(Vec<(String, Command, Child)>);

/// Starts `alembic upgrade <revision>` for each `(tenant, revision)`, all at once.
fn alembic_start(env: &TestEnv, app: &str, runs: &[(&str, &str)]) -> AlembicRuns {
    let bin = alembic_venv().join("bin/alembic");
    let ini = fixtures().join("alembic.ini");
    let mut out = Vec::new();
    for (tenant, revision) in runs {
        let mut cmd = Command::new(&bin);
        cmd.arg("-c")
            .arg(&ini)
            .arg("-x")
            .arg(format!("url={}", alembic_url(env.backend, tenant)))
            .arg("-x")
            .arg(format!("schema={tenant}"))
            .arg("-x")
            .arg(format!("app_public={app}"))
            .args(["upgrade", revision])
            .current_dir(env.dir.path())
            // No __pycache__ in the fixture folder.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        out.push((format!("{tenant} to {revision}"), cmd, child));
    }
    AlembicRuns(out)
}

impl AlembicRuns {
    /// Waits for every run; any failure fails the test with Alembic's output.
    fn finish(self) {
        for (what, cmd, child) in self.0 {
            let out = child.wait_with_output().expect("alembic runs");
            assert!(
                out.status.success(),
                "alembic upgrade of {what} failed ({}):\n{cmd:?}\nstdout:\n{}\nstderr:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Creates each tenant database/schema (as the application does) and brings it to its
/// revision with Alembic, all at once.
async fn alembic_tenants(env: &TestEnv, app: &str, runs: &[(&str, &str)]) {
    let mut admin = env.admin().await;
    for (tenant, _) in runs {
        admin.exec(&create_schema_sql(env.backend, tenant)).await;
    }
    alembic_start(env, app, runs).finish();
}

// --- the application's side ------------------------------------------------------------------

fn q(b: Backend, name: &str) -> String {
    match b {
        Backend::MySql => format!("`{name}`"),
        _ => format!("\"{name}\""),
    }
}

/// A tenant database as the application (and the tool) creates them.
fn create_schema_sql(b: Backend, name: &str) -> String {
    match b {
        Backend::MySql => {
            format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        }
        _ => format!("CREATE SCHEMA \"{name}\""),
    }
}

/// The application's public database/schema. Its name sorts after every tenant's, so the
/// shared cleanup (in name order) drops it last: MariaDB refuses to drop a database whose
/// tables other databases' foreign keys still reference.
fn app_name(env: &TestEnv) -> String {
    env.tenant("webapp")
}

/// The application's public database/schema: `salons` (referenced by every tenant's
/// appointments) with a few rows, and its own `tenants` table (schema name → salon name).
async fn create_app_public(env: &TestEnv, app: &str, tenants: &[(&str, &str)]) {
    let b = env.backend;
    let a = q(b, app);
    let (id, text) = match b {
        Backend::MySql => ("INT NOT NULL AUTO_INCREMENT PRIMARY KEY", "VARCHAR(255)"),
        _ => ("SERIAL PRIMARY KEY", "VARCHAR(255)"),
    };
    let mut sql = vec![
        create_schema_sql(b, app),
        format!("CREATE TABLE {a}.salons (id {id}, name VARCHAR(100) NOT NULL)"),
        format!(
            "INSERT INTO {a}.salons (name) VALUES ('Bella Hair'), ('Rosa Nails'), ('Studio Torri')"
        ),
        format!(
            "CREATE TABLE {a}.tenants (id {id}, schema_name VARCHAR(64) NOT NULL UNIQUE, \
             name {text} NOT NULL, plan VARCHAR(20) NOT NULL DEFAULT 'basic')"
        ),
    ];
    for (schema, name) in tenants {
        sql.push(format!(
            "INSERT INTO {a}.tenants (schema_name, name) VALUES ('{schema}', '{}')",
            name.replace('\'', "''")
        ));
    }
    env.admin().await.exec(&sql.join(";\n")).await;
}

/// `SELECT schema_name, name FROM <app>.tenants` for `--tenants-query`.
fn tenants_query(b: Backend, app: &str) -> String {
    format!("SELECT schema_name, name FROM {}.tenants", q(b, app))
}

/// A few clients, services and appointments, as a salon in business has.
async fn add_business_rows(env: &TestEnv, tenant: &str) {
    env.admin()
        .await
        .exec_in(
            env,
            tenant,
            "INSERT INTO clients (email, full_name, phone, notes) VALUES \
               ('ana@example.com', 'Ana Souza', '+55 11 91234-5678', 'prefers mornings'), \
               ('bia@example.com', 'Beatriz Lima', NULL, NULL), \
               ('caio@example.com', 'Caio Alves', '+55 21 99876-5432', NULL); \
             INSERT INTO services (name, description, duration_minutes, price) VALUES \
               ('Haircut', 'Wash, cut and dry', 45, 80.00), \
               ('Manicure', NULL, 30, 45.50); \
             INSERT INTO appointments (client_id, service_id, salon_id, starts_at, ends_at, status, price_charged) VALUES \
               (1, 1, 1, '2025-05-02 10:00:00', '2025-05-02 10:45:00', 'done', 80.00), \
               (2, 2, 1, '2025-05-02 11:00:00', '2025-05-02 11:30:00', 'scheduled', NULL), \
               (3, 1, 1, '2025-05-03 09:30:00', '2025-05-03 10:15:00', 'cancelled', NULL)",
        )
        .await;
}

// --- the tool's side -------------------------------------------------------------------------

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for entry in std::fs::read_dir(src).expect("read dir") {
        let entry = entry.expect("entry");
        let to = dst.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).expect("copy");
        }
    }
}

/// A migrations folder of this env's own: the shipped catalog migrations with the ported
/// tenant migrations of the fixture (mysql and postgres only), as MIGRATIONS_DIR.
fn ported_migrations(env: &mut TestEnv) -> PathBuf {
    let dst = env.dir.path().join("migrations");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/public"),
        &dst.join("public"),
    );
    copy_dir(&fixtures().join("migrations/tenant"), &dst.join("tenant"));
    env.migrations_dir = Some(dst.clone());
    dst
}

/// Runs the binary with the env's variables and `${app_public}` set to the app's schema.
fn tm(env: &TestEnv, app: &str, args: &[&str]) -> CliRun {
    env.cli_with(args, &[("PLACEHOLDER_APP_PUBLIC", app)])
}

/// The report's line of every schema, by name (and no other).
fn lines(report: &Value) -> BTreeMap<String, Value> {
    report["tenants"]
        .as_array()
        .unwrap_or_else(|| panic!("no tenants array:\n{report:#}"))
        .iter()
        .map(|t| (t["schema"].as_str().expect("schema").to_owned(), t.clone()))
        .collect()
}

fn expect_verdict(report: &Value, schema: &str, verdict: &str, revision: &str, version: i64) {
    let line = tenant_of(report, schema);
    assert_eq!(
        (
            line["verdict"].as_str(),
            line["revision"].as_str(),
            line["version"].as_i64()
        ),
        (Some(verdict), Some(revision), Some(version)),
        "{schema}'s line in:\n{report:#}"
    );
}

/// The four counts of the contract; any further count the tool reports must be 0.
fn expect_counts(report: &Value, adopted: i64, would: i64, already: i64, refused: i64) {
    let mut counts: BTreeMap<String, Value> = report["counts"]
        .as_object()
        .unwrap_or_else(|| panic!("no counts object:\n{report:#}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let expected = [
        ("adopted", adopted),
        ("would_adopt", would),
        ("already_adopted", already),
        ("refused", refused),
    ];
    for (k, n) in expected {
        assert_eq!(
            counts.remove(k).and_then(|v| v.as_i64()),
            Some(n),
            "counts.{k} of:\n{report:#}"
        );
    }
    for (k, v) in counts {
        assert_eq!(v, 0, "counts.{k} of:\n{report:#}");
    }
}

fn differences(line: &Value) -> Vec<String> {
    line["differences"]
        .as_array()
        .unwrap_or_else(|| panic!("no differences array: {line:#}"))
        .iter()
        .map(|d| d.as_str().expect("difference is a string").to_owned())
        .collect()
}

async fn has_history_table(env: &TestEnv, schema: &str) -> bool {
    env.admin()
        .await
        .tables(env, schema)
        .await
        .iter()
        .any(|t| t == "_tenant_migrations")
}

/// The catalog's tenant rows, or None when there is no catalog (yet).
async fn catalog_rows(env: &TestEnv) -> Option<Vec<String>> {
    let mut admin = env.admin().await;
    if !admin
        .tables(env, &env.catalog)
        .await
        .iter()
        .any(|t| t == "tenants")
    {
        return None;
    }
    Some(admin.rows(env, &env.catalog, "tenants").await)
}

/// `(1, "baselined"), …, (n, "baselined")`.
fn baselined_up_to(n: i64) -> Vec<(i64, String)> {
    (1..=n).map(|v| (v, "baselined".to_owned())).collect()
}

// --- structure dumps -------------------------------------------------------------------------

/// Lines of text of one query's first column, with `$1`/`?` bound to `schema`.
async fn text_lines(b: Backend, sql: &str, schema: &str) -> Vec<String> {
    match b {
        Backend::MySql => {
            let mut c = sqlx::MySqlConnection::connect(MYSQL_URL)
                .await
                .expect("mysql up");
            let v = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql.to_owned()))
                .bind(schema)
                .fetch_all(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let _ = c.close().await;
            v
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(POSTGRES_URL)
                .await
                .expect("postgres up");
            let v = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql.to_owned()))
                .bind(schema)
                .fetch_all(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let _ = c.close().await;
            v
        }
        Backend::Sqlite => unreachable!(),
    }
}

/// Everything the server says about a tenant's own tables (not `alembic_version` nor
/// `_tenant_migrations`), one line per fact, the schema's name replaced by `TENANT`, sorted.
async fn structure_dump(b: Backend, schema: &str) -> Vec<String> {
    let queries: &[&str] = match b {
        Backend::MySql => &[
            "SELECT CAST(CONCAT_WS('|', 'table', TABLE_NAME, TABLE_TYPE, IFNULL(ENGINE, 'NULL'), \
               IFNULL(TABLE_COLLATION, 'NULL')) AS CHAR) \
             FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? \
               AND TABLE_NAME NOT IN ('alembic_version', '_tenant_migrations')",
            "SELECT CAST(CONCAT_WS('|', 'column', TABLE_NAME, ORDINAL_POSITION, COLUMN_NAME, \
               COLUMN_TYPE, IS_NULLABLE, IFNULL(COLUMN_DEFAULT, 'NULL'), EXTRA, \
               IFNULL(CHARACTER_SET_NAME, 'NULL'), IFNULL(COLLATION_NAME, 'NULL')) AS CHAR) \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? \
               AND TABLE_NAME NOT IN ('alembic_version', '_tenant_migrations')",
            "SELECT CAST(CONCAT_WS('|', 'index', TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, \
               NON_UNIQUE, INDEX_TYPE, IFNULL(SUB_PART, 'NULL')) AS CHAR) \
             FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? \
               AND TABLE_NAME NOT IN ('alembic_version', '_tenant_migrations')",
            "SELECT CAST(CONCAT_WS('|', 'key', TABLE_NAME, CONSTRAINT_NAME, ORDINAL_POSITION, \
               COLUMN_NAME, IFNULL(REFERENCED_TABLE_SCHEMA, 'NULL'), \
               IFNULL(REFERENCED_TABLE_NAME, 'NULL'), IFNULL(REFERENCED_COLUMN_NAME, 'NULL')) AS CHAR) \
             FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = ? \
               AND TABLE_NAME NOT IN ('alembic_version', '_tenant_migrations')",
            "SELECT CAST(CONCAT_WS('|', 'foreign key', TABLE_NAME, CONSTRAINT_NAME, \
               REFERENCED_TABLE_NAME, UNIQUE_CONSTRAINT_SCHEMA, IFNULL(UNIQUE_CONSTRAINT_NAME, 'NULL'), \
               MATCH_OPTION, UPDATE_RULE, DELETE_RULE) AS CHAR) \
             FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ? \
               AND TABLE_NAME NOT IN ('alembic_version', '_tenant_migrations')",
            "SELECT CAST(CONCAT_WS('|', 'constraint', TABLE_NAME, CONSTRAINT_NAME, CONSTRAINT_TYPE) AS CHAR) \
             FROM information_schema.TABLE_CONSTRAINTS WHERE TABLE_SCHEMA = ? \
               AND TABLE_NAME NOT IN ('alembic_version', '_tenant_migrations')",
        ],
        Backend::Postgres => &[
            "SELECT concat_ws('|', 'relation', c.relname, c.relkind, coalesce(am.amname, '-')) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_am am ON am.oid = c.relam \
             WHERE n.nspname = $1 AND c.relname NOT LIKE 'alembic\\_version%' \
               AND c.relname NOT LIKE '\\_tenant\\_migrations%'",
            "SELECT concat_ws('|', 'column', c.relname, a.attnum, a.attname, \
               format_type(a.atttypid, a.atttypmod), a.attnotnull, \
               coalesce(pg_get_expr(d.adbin, d.adrelid), 'NULL'), a.attidentity, a.attgenerated, \
               coalesce(co.collname, 'NULL')) \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             LEFT JOIN pg_collation co ON co.oid = a.attcollation \
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0 \
               AND NOT a.attisdropped \
               AND c.relname NOT IN ('alembic_version', '_tenant_migrations')",
            "SELECT concat_ws('|', 'index', tablename, indexname, indexdef) FROM pg_indexes \
             WHERE schemaname = $1 AND tablename NOT IN ('alembic_version', '_tenant_migrations')",
            "SELECT concat_ws('|', 'constraint', t.relname, c.conname, c.contype, \
               c.condeferrable, pg_get_constraintdef(c.oid)) \
             FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid \
             JOIN pg_namespace n ON n.oid = t.relnamespace \
             WHERE n.nspname = $1 AND t.relname NOT IN ('alembic_version', '_tenant_migrations')",
            "SELECT concat_ws('|', 'sequence', sequencename, data_type, start_value, \
               increment_by, max_value, cycle) FROM pg_sequences WHERE schemaname = $1",
        ],
        Backend::Sqlite => unreachable!(),
    };
    let mut out = Vec::new();
    for sql in queries {
        for line in text_lines(b, sql, schema).await {
            out.push(
                line.replace(&format!("\"{schema}\""), "TENANT")
                    .replace(schema, "TENANT"),
            );
        }
    }
    out.sort();
    out
}

fn assert_same_lines(what: &str, a_name: &str, a: &[String], b_name: &str, b: &[String]) {
    let only_a: Vec<&String> = a.iter().filter(|l| !b.contains(l)).collect();
    let only_b: Vec<&String> = b.iter().filter(|l| !a.contains(l)).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty() && a.len() == b.len(),
        "{what} differ.\nonly in {a_name}:\n  {}\nonly in {b_name}:\n  {}\n(all of {a_name}:\n  {})",
        only_a
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  "),
        only_b
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  "),
        a.join("\n  ")
    );
}

/// What must not move when a tenant is adopted: every row of its own tables (including
/// `alembic_version`), and the traces any DDL leaves. MariaDB: each table's CREATE_TIME and
/// SHOW CREATE TABLE. PostgreSQL: each relation's pg_class xmin (any DDL on a table rewrites
/// its pg_class row) and relfilenode, and the number of pg_attribute rows.
async fn untouchable(env: &TestEnv, tenant: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut admin = env.admin().await;
    let tables: Vec<String> = admin
        .tables(env, tenant)
        .await
        .into_iter()
        .filter(|t| t != "_tenant_migrations")
        .collect();
    for t in &tables {
        for row in admin.rows(env, tenant, t).await {
            out.push(format!("row|{t}|{row}"));
        }
    }
    match &mut admin {
        Admin::MySql(c) => {
            for t in &tables {
                let create: String =
                    sqlx::raw_sql(AssertSqlSafe(format!("SHOW CREATE TABLE `{tenant}`.`{t}`")))
                        .fetch_one(&mut *c)
                        .await
                        .expect("show create table")
                        .get(1);
                out.push(format!("create|{t}|{create}"));
            }
            out.extend(
                text_lines(
                    Backend::MySql,
                    "SELECT CAST(CONCAT_WS('|', 'created', TABLE_NAME, \
                       IFNULL(CREATE_TIME, 'NULL')) AS CHAR) \
                     FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? \
                       AND TABLE_NAME <> '_tenant_migrations'",
                    tenant,
                )
                .await,
            );
        }
        Admin::Postgres(_) => {
            out.extend(
                text_lines(
                    Backend::Postgres,
                    "SELECT concat_ws('|', 'pg_class', c.relname, c.relkind, c.xmin::text, \
                       c.relfilenode) \
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = $1 AND c.relname NOT LIKE '\\_tenant\\_migrations%'",
                    tenant,
                )
                .await,
            );
            out.extend(
                text_lines(
                    Backend::Postgres,
                    "SELECT concat_ws('|', 'pg_attribute rows', count(*)) \
                     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
                     JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = $1 AND c.relname NOT LIKE '\\_tenant\\_migrations%'",
                    tenant,
                )
                .await,
            );
        }
        Admin::Sqlite(..) => unreachable!(),
    }
    out.sort();
    out
}

// --- the tests -------------------------------------------------------------------------------

/// The fixtures' own check: at each revision, the tenant Alembic builds and the one
/// `tenant-migrator create` builds from the ported SQL (to the mapped version) have the same
/// tables, columns (types with MariaDB's display widths, nullability, defaults as the server
/// reports them, collations), indexes, keys and foreign keys (names included).
async fn alembic_fixtures_match_the_ported_sql(b: Backend) {
    let mut env = TestEnv::new(b);
    ported_migrations(&mut env);
    let app = app_name(&env);
    create_app_public(&env, &app, &[]).await;
    let levels = [(1, R1), (2, R2), (3, R3)];
    let alembic: Vec<String> = levels
        .iter()
        .map(|(v, _)| env.tenant(&format!("a{v}")))
        .collect();
    let ported: Vec<String> = levels
        .iter()
        .map(|(v, _)| env.tenant(&format!("m{v}")))
        .collect();

    let mut admin = env.admin().await;
    for t in &alembic {
        admin.exec(&create_schema_sql(b, t)).await;
    }
    let runs: Vec<(&str, &str)> = alembic
        .iter()
        .zip(levels)
        .map(|(t, (_, r))| (t.as_str(), r))
        .collect();
    let running = alembic_start(&env, &app, &runs);
    // Meanwhile, the tool builds the same levels from the ported SQL.
    for ((v, _), t) in levels.iter().zip(&ported) {
        tm(&env, &app, &["--target", &v.to_string(), "create", t]).expect_code(0);
    }
    running.finish();

    for (((v, rev), a), m) in levels.iter().zip(&alembic).zip(&ported) {
        let from_alembic = structure_dump(b, a).await;
        let from_sql = structure_dump(b, m).await;
        assert!(
            from_alembic.iter().any(|l| l.contains("clients"))
                && from_alembic.iter().any(|l| l.contains("services")),
            "nothing described for {a}: {from_alembic:#?}"
        );
        assert_same_lines(
            &format!("structures at version {v} (Alembic revision {rev})"),
            "Alembic",
            &from_alembic,
            "the ported SQL",
            &from_sql,
        );
        let version: Vec<String> = admin
            .strings(&env, a, "SELECT version_num FROM alembic_version")
            .await;
        assert_eq!(version, [*rev], "alembic_version of {a}");
        assert_eq!(
            admin.history(&env, m).await,
            common::applied_up_to(*v),
            "history of {m}"
        );
    }
    // The cross-database/schema foreign key points at the application's salons.
    let head = structure_dump(b, &alembic[2]).await;
    assert!(
        head.iter()
            .any(|l| l.contains("salon_id") && l.contains(&app) && l.contains("salons")),
        "no foreign key into {app}.salons: {head:#?}"
    );
    env.cleanup().await;
}

/// The "done when" scenario: five Alembic tenants (two at head, one older, one drifted by
/// hand, one with business rows), a dry run, the adoption, a re-run, a new migration for the
/// whole fleet, and a structure check.
async fn adopting_an_alembic_fleet(b: Backend) {
    let mut env = TestEnv::new(b);
    let migrations = ported_migrations(&mut env);
    let app = app_name(&env);
    let t: Vec<String> = (1..=5).map(|i| env.tenant(&format!("t{i}"))).collect();
    let names = [
        "Bella Hair Studio",
        "Rosa Nails & Spa",
        "Barbearia Torri",
        "Salão Aurora",
        "Studio Lumière",
    ];
    let app_tenants: Vec<(&str, &str)> = t.iter().map(String::as_str).zip(names).collect();
    create_app_public(&env, &app, &app_tenants).await;
    alembic_tenants(
        &env,
        &app,
        &[
            (&t[0], HEAD),
            (&t[1], HEAD),
            (&t[2], R2),
            (&t[3], HEAD),
            (&t[4], HEAD),
        ],
    )
    .await;
    let mut admin = env.admin().await;
    admin
        .exec_in(
            &env,
            &t[3],
            "ALTER TABLE clients ADD COLUMN nickname VARCHAR(50)",
        )
        .await;
    add_business_rows(&env, &t[4]).await;
    let like = format!("{}t%", env.prefix);
    let map = map_file();
    let query = tenants_query(b, &app);
    let adopted: [(&String, &str, i64, &str); 4] = [
        (&t[0], HEAD, 3, names[0]),
        (&t[1], HEAD, 3, names[1]),
        (&t[2], R2, 2, names[2]),
        (&t[4], HEAD, 3, names[4]),
    ];

    // 2. (taken first, so the dry run is checked against it too) What adoption must not
    // touch.
    let mut before = BTreeMap::new();
    for s in &t {
        before.insert(s.clone(), untouchable(&env, s).await);
    }
    assert!(
        before[&t[4]].iter().any(|l| l.contains("Ana Souza")),
        "t5's rows are in the snapshot"
    );

    // 1. A dry run: the same verdicts, nothing written.
    let dry = tm(
        &env,
        &app,
        &[
            "--dry-run",
            "--output",
            "json",
            "adopt",
            "alembic",
            "--map",
            &map,
            "--discover",
            "--like",
            &like,
        ],
    );
    dry.expect_code(1);
    let report = dry.json();
    assert_eq!(report["dry_run"], true, "{report:#}");
    assert_eq!(
        lines(&report).into_keys().collect::<Vec<_>>(),
        t,
        "the dry run's tenants:\n{report:#}"
    );
    for (schema, revision, version, _) in adopted {
        expect_verdict(&report, schema, "would_adopt", revision, version);
    }
    let refused = tenant_of(&report, &t[3]);
    assert_eq!(refused["verdict"], "refused", "{report:#}");
    assert!(
        differences(refused)
            .iter()
            .any(|d| d.contains("clients.nickname")),
        "t4's differences do not name clients.nickname:\n{report:#}"
    );
    expect_counts(&report, 0, 4, 0, 1);
    for s in &t {
        assert!(
            !has_history_table(&env, s).await,
            "the dry run created {s}._tenant_migrations"
        );
    }
    assert!(
        catalog_rows(&env).await.unwrap_or_default().is_empty(),
        "the dry run wrote catalog rows: {:?}",
        catalog_rows(&env).await
    );

    for s in &t {
        assert_eq!(
            untouchable(&env, s).await,
            before[s],
            "the dry run changed {s}'s tables or rows"
        );
    }

    // 3. The adoption.
    let run = tm(
        &env,
        &app,
        &[
            "--output",
            "json",
            "--concurrency",
            "2",
            "adopt",
            "alembic",
            "--map",
            &map,
            "--discover",
            "--like",
            &like,
            "--tenants-query",
            &query,
        ],
    );
    run.expect_code(1);
    let report = run.json();
    assert_eq!(report["dry_run"], false, "{report:#}");
    assert_eq!(lines(&report).into_keys().collect::<Vec<_>>(), t);
    for (schema, revision, version, name) in adopted {
        expect_verdict(&report, schema, "adopted", revision, version);
        assert_eq!(
            tenant_of(&report, schema)["display_name"],
            name,
            "display name of {schema}:\n{report:#}"
        );
    }
    let refused = tenant_of(&report, &t[3]);
    assert_eq!(refused["verdict"], "refused", "{report:#}");
    assert_eq!(refused["revision"], HEAD, "{report:#}");
    assert!(
        differences(refused)
            .iter()
            .any(|d| d.contains("clients.nickname")),
        "t4's differences do not name clients.nickname:\n{report:#}"
    );
    expect_counts(&report, 4, 0, 0, 1);

    for (schema, _, version, _) in adopted {
        assert_eq!(
            admin.history(&env, schema).await,
            baselined_up_to(version),
            "history of {schema}"
        );
        let row = admin.catalog_tenant(&env, schema).await;
        assert_eq!(
            row.as_ref().map(|r| (r.status.as_str(), r.schema_version)),
            Some(("active", Some(version))),
            "catalog row of {schema}: {row:?}"
        );
        assert_eq!(
            untouchable(&env, schema).await,
            before[schema],
            "adopting {schema} changed its tables or rows"
        );
    }
    assert!(
        !has_history_table(&env, &t[3]).await,
        "the refused tenant got a history table"
    );
    assert_eq!(admin.catalog_tenant(&env, &t[3]).await, None);
    assert_eq!(untouchable(&env, &t[3]).await, before[&t[3]]);

    let listed = tm(&env, &app, &["--output", "json", "list-tenants"]);
    listed.expect_code(0);
    let listed = listed.json();
    let mut rows: Vec<(String, String, Option<i64>, String)> = listed["tenants"]
        .as_array()
        .expect("tenants array")
        .iter()
        .map(|r| {
            (
                r["schema_name"].as_str().unwrap_or_default().to_owned(),
                r["status"].as_str().unwrap_or_default().to_owned(),
                r["schema_version"].as_i64(),
                r["display_name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    rows.sort();
    let mut expected: Vec<(String, String, Option<i64>, String)> = adopted
        .iter()
        .map(|(s, _, v, n)| ((*s).clone(), "active".into(), Some(*v), (*n).to_owned()))
        .collect();
    expected.sort();
    assert_eq!(rows, expected, "list-tenants:\n{listed:#}");

    let status = tm(&env, &app, &["--output", "json", "status"]);
    status.expect_code(0);
    let status = status.json();
    for (schema, _, version, _) in adopted {
        let line = tenant_of(&status, schema);
        assert_eq!(
            (
                line["exists"].as_bool(),
                line["version"].as_i64(),
                line["latest"].as_i64(),
                line["dirty"].as_bool()
            ),
            (Some(true), Some(version), Some(3), Some(false)),
            "status of {schema}:\n{status:#}"
        );
        assert_eq!(line["problems"], serde_json::json!([]), "{status:#}");
    }

    // 4. Again: nothing left to do for the adopted ones; the drifted one is still refused.
    let history: Vec<Vec<(i64, String)>> = {
        let mut v = Vec::new();
        for (schema, ..) in adopted {
            v.push(admin.history(&env, schema).await);
        }
        v
    };
    let again = tm(
        &env,
        &app,
        &[
            "--output",
            "json",
            "adopt",
            "alembic",
            "--map",
            &map,
            "--discover",
            "--like",
            &like,
            "--tenants-query",
            &query,
        ],
    );
    again.expect_code(1);
    let report = again.json();
    for (schema, revision, version, _) in adopted {
        // The history decides; the revision its alembic_version still shows is reported.
        let line = tenant_of(&report, schema);
        assert_eq!(
            (line["verdict"].as_str(), line["version"].as_i64()),
            (Some("already_adopted"), Some(version)),
            "{schema}'s line in:\n{report:#}"
        );
        assert_eq!(
            line["revision"], revision,
            "{schema}'s line in:\n{report:#}"
        );
    }
    assert_eq!(
        tenant_of(&report, &t[3])["verdict"],
        "refused",
        "{report:#}"
    );
    expect_counts(&report, 0, 0, 4, 1);
    for ((schema, ..), h) in adopted.iter().zip(&history) {
        assert_eq!(&admin.history(&env, schema).await, h, "history of {schema}");
    }

    // 5. The fleet moves on with tenant-migrator: a fourth migration reaches every adopted
    // tenant; the older one runs 3 and 4.
    for (folder, id) in [
        ("mysql", "INT NOT NULL AUTO_INCREMENT PRIMARY KEY"),
        ("postgres", "SERIAL PRIMARY KEY"),
    ] {
        std::fs::write(
            migrations.join("tenant").join(folder).join("0004_gift_cards.sql"),
            format!(
                "CREATE TABLE gift_cards (\n    id {id},\n    client_id INTEGER NOT NULL REFERENCES clients (id),\n    code VARCHAR(32) NOT NULL UNIQUE,\n    balance NUMERIC(10, 2) NOT NULL DEFAULT 0\n);\n"
            ),
        )
        .expect("write 0004");
    }
    let up = tm(&env, &app, &["--output", "json", "upgrade-all"]);
    up.expect_code(0);
    let report = up.json();
    for (schema, _, version, _) in adopted {
        let line = tenant_of(&report, schema);
        assert_eq!(
            (
                line["status"].as_str(),
                line["from"].as_i64(),
                line["to"].as_i64()
            ),
            (Some("migrated"), Some(version), Some(4)),
            "{schema} in:\n{report:#}"
        );
        assert_eq!(
            versions_of(line),
            ((version + 1)..=4).collect::<Vec<_>>(),
            "{schema} in:\n{report:#}"
        );
        let mut expected = baselined_up_to(version);
        expected.extend(((version + 1)..=4).map(|v| (v, "applied".to_owned())));
        assert_eq!(
            admin.history(&env, schema).await,
            expected,
            "history of {schema}"
        );
        assert_eq!(
            admin
                .catalog_tenant(&env, schema)
                .await
                .and_then(|r| r.schema_version),
            Some(4)
        );
        let mut tables = TENANT_TABLES.map(str::to_owned).to_vec();
        tables.extend(["_tenant_migrations", "alembic_version", "gift_cards"].map(String::from));
        tables.sort();
        assert_eq!(
            admin.tables(&env, schema).await,
            tables,
            "tables of {schema}"
        );
    }
    assert!(
        !lines(&report).contains_key(&t[3]),
        "the refused tenant was upgraded:\n{report:#}"
    );
    assert!(!has_history_table(&env, &t[3]).await);
    // The business rows are still there.
    assert_eq!(admin.count(&env, &t[4], "appointments").await, 3);

    // 6. Every adopted tenant has the structure of one migrated from scratch.
    let check = tm(&env, &app, &["--output", "json", "check-structure"]);
    check.expect_code(0);
    let check = check.json();
    assert_eq!(check["drifted"], serde_json::json!([]), "{check:#}");
    assert_eq!(check["checked"], 4, "{check:#}");
    env.cleanup().await;
}

/// A tenant at a revision the map does not list is refused, naming it, and nothing is
/// written for it.
async fn an_unmapped_revision_is_refused(b: Backend) {
    let mut env = TestEnv::new(b);
    ported_migrations(&mut env);
    let app = app_name(&env);
    create_app_public(&env, &app, &[]).await;
    let t1 = env.tenant("t1");
    alembic_tenants(&env, &app, &[(&t1, HEAD)]).await;
    // The team ported the first two revisions only.
    let map = env.dir.path().join("partial-map.toml");
    std::fs::write(&map, format!("[tenant]\n\"{R1}\" = 1\n\"{R2}\" = 2\n")).expect("write map");
    let before = untouchable(&env, &t1).await;

    let run = tm(
        &env,
        &app,
        &[
            "--output",
            "json",
            "adopt",
            "alembic",
            "--map",
            &map.display().to_string(),
            "--schemas",
            &t1,
        ],
    );
    run.expect_code(1);
    let report = run.json();
    let line = tenant_of(&report, &t1);
    assert_eq!(line["verdict"], "refused", "{report:#}");
    assert_eq!(line["revision"], R3, "{report:#}");
    assert_eq!(line["version"], Value::Null, "{report:#}");
    assert!(
        line["reason"].as_str().is_some_and(|r| r.contains(R3)),
        "the reason does not name {R3}:\n{report:#}"
    );
    expect_counts(&report, 0, 0, 0, 1);
    assert!(!has_history_table(&env, &t1).await);
    assert_eq!(catalog_tenant_if_any(&env, &t1).await, None);
    assert_eq!(untouchable(&env, &t1).await, before);
    env.cleanup().await;
}

/// `--schemas` naming a schema that Alembic never managed: refused, nothing written.
async fn a_schema_without_alembic_version_is_refused(b: Backend) {
    let mut env = TestEnv::new(b);
    ported_migrations(&mut env);
    let app = app_name(&env);
    create_app_public(&env, &app, &[]).await;
    let plain = env.tenant("plain");
    let mut admin = env.admin().await;
    admin.exec(&create_schema_sql(b, &plain)).await;
    admin
        .exec_in(
            &env,
            &plain,
            "CREATE TABLE clients (id INTEGER NOT NULL PRIMARY KEY, email VARCHAR(255) NOT NULL)",
        )
        .await;
    let before = untouchable(&env, &plain).await;

    let run = tm(
        &env,
        &app,
        &[
            "--output",
            "json",
            "adopt",
            "alembic",
            "--map",
            &map_file(),
            "--schemas",
            &plain,
        ],
    );
    run.expect_code(1);
    let report = run.json();
    let line = tenant_of(&report, &plain);
    assert_eq!(line["verdict"], "refused", "{report:#}");
    assert_eq!(line["revision"], Value::Null, "{report:#}");
    assert!(
        line["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "no reason:\n{report:#}"
    );
    expect_counts(&report, 0, 0, 0, 1);
    assert!(!has_history_table(&env, &plain).await);
    assert_eq!(catalog_tenant_if_any(&env, &plain).await, None);
    assert_eq!(untouchable(&env, &plain).await, before);
    env.cleanup().await;
}

/// `--discover` finds every database/schema with an `alembic_version` table except the
/// catalog's and the one `--tenants-url` names (the application's public one, whose own
/// Alembic project versions it too).
async fn discover_leaves_out_the_catalog_and_the_tenants_database(b: Backend) {
    let mut env = TestEnv::new(b);
    ported_migrations(&mut env);
    let app = app_name(&env);
    let t1 = env.tenant("t1");
    create_app_public(&env, &app, &[(&t1, "Bella Hair Studio")]).await;
    let mut admin = env.admin().await;
    // The public side is versioned by Alembic too (a project of its own), and the catalog
    // lives where the seed's public Alembic project once ran.
    let version_table = |schema: &str| {
        format!(
            "CREATE TABLE {}.alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY); \
             INSERT INTO {}.alembic_version (version_num) VALUES ('0a1b2c3d4e5f')",
            q(b, schema),
            q(b, schema)
        )
    };
    admin.exec(&create_schema_sql(b, &env.catalog)).await;
    admin.exec(&version_table(&env.catalog)).await;
    admin.exec(&version_table(&app)).await;
    alembic_tenants(&env, &app, &[(&t1, HEAD)]).await;
    let tenants_url = match b {
        Backend::MySql => format!("{MYSQL_URL}/{app}"),
        _ => format!("{POSTGRES_URL}?search_path={app}"),
    };

    let run = tm(
        &env,
        &app,
        &[
            "--dry-run",
            "--output",
            "json",
            "adopt",
            "alembic",
            "--map",
            &map_file(),
            "--discover",
            "--like",
            &format!("{}%", env.prefix),
            "--tenants-url",
            &tenants_url,
            "--tenants-query",
            &tenants_query(b, &app),
        ],
    );
    run.expect_code(0);
    let report = run.json();
    assert_eq!(
        lines(&report).into_keys().collect::<Vec<_>>(),
        vec![t1.clone()],
        "discovered:\n{report:#}"
    );
    expect_verdict(&report, &t1, "would_adopt", HEAD, 3);
    assert_eq!(tenant_of(&report, &t1)["display_name"], "Bella Hair Studio");
    expect_counts(&report, 0, 1, 0, 0);
    assert!(!has_history_table(&env, &t1).await);
    env.cleanup().await;
}

/// A map that is not TOML, a map version the migrations do not have, and neither or both
/// of `--schemas`/`--discover`: exit 2, nothing written anywhere.
async fn a_bad_map_or_selection_is_a_usage_error(b: Backend) {
    let mut env = TestEnv::new(b);
    ported_migrations(&mut env);
    let app = app_name(&env);
    create_app_public(&env, &app, &[]).await;
    let t1 = env.tenant("t1");
    alembic_tenants(&env, &app, &[(&t1, HEAD)]).await;
    let not_toml = env.dir.path().join("not-toml.toml");
    std::fs::write(&not_toml, format!("[tenant\n\"{R1}\" = 1\n")).expect("write");
    let nine = env.dir.path().join("nine.toml");
    std::fs::write(
        &nine,
        format!("[tenant]\n\"{R1}\" = 1\n\"{R2}\" = 2\n\"{R3}\" = 9\n"),
    )
    .expect("write");
    let (not_toml, nine, good) = (
        not_toml.display().to_string(),
        nine.display().to_string(),
        map_file(),
    );
    let like = format!("{}t%", env.prefix);
    let before = env.snapshot().await;

    let cases: [(&str, Vec<&str>); 5] = [
        ("invalid TOML", vec!["--map", &not_toml, "--schemas", &t1]),
        (
            "version 9 not in the migrations",
            vec!["--map", &nine, "--schemas", &t1],
        ),
        (
            "version 9, discovered",
            vec!["--map", &nine, "--discover", "--like", &like],
        ),
        ("neither --schemas nor --discover", vec!["--map", &good]),
        (
            "both --schemas and --discover",
            vec!["--map", &good, "--schemas", &t1, "--discover"],
        ),
    ];
    for (what, extra) in cases {
        let mut args = vec!["--output", "json", "adopt", "alembic"];
        args.extend(extra);
        let run = tm(&env, &app, &args);
        assert_eq!(
            run.code(),
            2,
            "{what}: exit code\nstdout:\n{}\nstderr:\n{}",
            run.stdout(),
            run.stderr()
        );
        assert_eq!(
            env.snapshot().await,
            before,
            "{what}: something was written"
        );
    }
    env.cleanup().await;
}

/// `upgrade-public` pointed at the application's own public database/schema, which already
/// has `tenants` and `admin_master_users` tables of its own: exit 2 naming both, nothing
/// changed there.
async fn upgrade_public_refuses_the_applications_own_tables(b: Backend) {
    let env = TestEnv::new(b);
    let app = app_name(&env);
    create_app_public(&env, &app, &[(&env.tenant("t1"), "Bella Hair Studio")]).await;
    let a = q(b, &app);
    let id = match b {
        Backend::MySql => "INT NOT NULL AUTO_INCREMENT PRIMARY KEY",
        _ => "SERIAL PRIMARY KEY",
    };
    env.admin()
        .await
        .exec(&format!(
            "CREATE TABLE {a}.admin_master_users (id {id}, email VARCHAR(255) NOT NULL UNIQUE, \
               hashed_password VARCHAR(255) NOT NULL, is_superuser BOOLEAN NOT NULL DEFAULT FALSE); \
             INSERT INTO {a}.admin_master_users (email, hashed_password, is_superuser) \
               VALUES ('owner@example.com', '$2b$12$abcdefghijklmnopqrstuv', TRUE)"
        ))
        .await;
    let before = env.snapshot().await;
    let vars: Vec<(String, String)> = match b {
        Backend::MySql => vec![("DATABASE_URL".into(), format!("{MYSQL_URL}/{app}"))],
        _ => vec![("CATALOG_SCHEMA".into(), app.clone())],
    };
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let run = env.cli_with(&["upgrade-public"], &vars);
    run.expect_code(2);
    let stderr = run.stderr();
    for table in ["tenants", "admin_master_users"] {
        assert!(
            stderr.contains(table),
            "stderr does not name {table}:\n{stderr}\nstdout:\n{}",
            run.stdout()
        );
    }
    assert_eq!(
        env.snapshot().await,
        before,
        "upgrade-public wrote something"
    );
    assert!(!has_history_table(&env, &app).await);
    env.cleanup().await;
}

/// The catalog's row of `schema`, or None when there is none or no catalog at all.
async fn catalog_tenant_if_any(env: &TestEnv, schema: &str) -> Option<common::CatalogTenant> {
    let mut admin = env.admin().await;
    if !admin
        .tables(env, &env.catalog)
        .await
        .iter()
        .any(|t| t == "tenants")
    {
        return None;
    }
    admin.catalog_tenant(env, schema).await
}
