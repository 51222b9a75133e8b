//! The tool under test (the built CLI over a private server) and what the suite observes of a
//! fleet afterwards: what the tool says (`status --output json`, the last run's report) and
//! what the database holds (structure read from `information_schema` / `pg_catalog`, and every
//! row). Each tenant is then **converged** (the tool says fine, and structure and rows equal a
//! reference tenant migrated without faults), **dirty** (the tool reports a problem) or
//! **silent** (the tool says fine, but structure or rows differ). **Double-applied DML** is
//! counted apart: an event kind with more rows than any state of the migrations has, or
//! points that no state of the migrations has (an UPDATE that ran twice).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection, Row};

use crate::common::CliRun;
use crate::migrations::{self, LATEST, LOG_KIND_MAX, LOG_TABLES, POINTS_STAGES};
use crate::servers::{MariaDb, Postgres};

/// The catalog's database (MariaDB) or schema (PostgreSQL) on every private server.
pub const CATALOG: &str = "tm_catalog";
/// `SECRET_KEY` of every run (`serve` needs one; 64 hex characters, not a repetition).
pub const SECRET: &str = "9f3c2a7be14d8605c3f1e2d4b6a8907e5d1c3b2a4f6e8d0c1b3a5f7e9d2c4b6a";
/// Tenants worked on at once, and the tenant pool.
pub const CONCURRENCY: usize = 4;
/// The tenant migrated without faults that every other is compared with.
pub const REFERENCE: &str = "ref_base";

/// `tenant_0001`, `tenant_0002`, …
pub fn tenant_names(n: usize) -> Vec<String> {
    (1..=n).map(tenant_name).collect()
}

/// The `i`-th fleet tenant (from 1).
pub fn tenant_name(i: usize) -> String {
    format!("tenant_{i:04}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    MariaDb,
    Postgres,
}

/// The built CLI, set up for one private server: its environment, a working folder holding
/// the suite's `MIGRATIONS_DIR` and the logs of spawned runs.
pub struct Tool {
    pub kind: Kind,
    pub work: tempfile::TempDir,
    env: Vec<(String, String)>,
    /// Where the suite's own inspection connects.
    admin_url: String,
}

impl Tool {
    pub fn mariadb(server: &MariaDb) -> Self {
        Self::new(
            Kind::MariaDb,
            server.url(""),
            vec![
                ("DATABASE_URL".into(), server.url(CATALOG)),
                ("TENANT_URL_TEMPLATE".into(), server.url("{schema}")),
            ],
        )
    }

    pub fn postgres(server: &Postgres) -> Self {
        Self::new(
            Kind::Postgres,
            server.url(),
            vec![
                ("DATABASE_URL".into(), server.url()),
                ("CATALOG_SCHEMA".into(), CATALOG.into()),
            ],
        )
    }

    fn new(kind: Kind, admin_url: String, mut env: Vec<(String, String)>) -> Self {
        let mut work = tempfile::tempdir().expect("work dir");
        if std::env::var_os("FAULT_KEEP").is_some() {
            // Keep the runs' logs for a look afterwards.
            work.disable_cleanup(true);
            println!(
                "FAULT_KEEP: logs of the runs stay in {}",
                work.path().display()
            );
        }
        let dir = work.path().join("migrations");
        migrations::write(&dir);
        env.extend([
            ("MIGRATIONS_DIR".into(), dir.display().to_string()),
            ("SECRET_KEY".into(), SECRET.into()),
            ("TENANT_ENGINE_POOL_SIZE".into(), CONCURRENCY.to_string()),
            ("LOCK_TIMEOUT".into(), "30".into()),
            ("LOG_FORMAT".into(), "json".into()),
        ]);
        Self {
            kind,
            work,
            env,
            admin_url,
        }
    }

    /// The binary with this tool's environment (and nothing of the caller's). `FAULT_BIN`
    /// names another build to put under the same faults (e.g. an older commit's, to compare).
    pub fn command(&self, args: &[&str]) -> Command {
        let bin = std::env::var_os("FAULT_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_tenant-migrator")));
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .current_dir(self.work.path())
            .args(args)
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs a command to its end.
    pub fn run(&self, args: &[&str]) -> CliRun {
        CliRun(self.command(args).output().expect("the CLI runs"))
    }

    /// Runs a command that must succeed (exit 0); fails the test with its output otherwise.
    pub fn ok(&self, args: &[&str]) -> CliRun {
        let r = self.run(args);
        r.expect_code(0);
        r
    }

    /// Starts a command in the background; its stdout and stderr go to `<log>.out` and
    /// `<log>.err` in the working folder (a pipe could fill up and stall it).
    pub fn spawn(&self, args: &[&str], log: &str) -> Child {
        let out = std::fs::File::create(self.log(&format!("{log}.out"))).expect("log file");
        let err = std::fs::File::create(self.log(&format!("{log}.err"))).expect("log file");
        self.command(args)
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn the CLI")
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    pub async fn probe(&self) -> Probe {
        match self.kind {
            Kind::MariaDb => Probe::My(
                sqlx::MySqlConnection::connect(&self.admin_url)
                    .await
                    .expect("inspection connection to MariaDB"),
            ),
            Kind::Postgres => Probe::Pg(
                sqlx::PgConnection::connect(&self.admin_url)
                    .await
                    .expect("inspection connection to PostgreSQL"),
            ),
        }
    }

    /// Tenants of the catalog named `tenant_…` that are active at the newest version.
    pub fn done_count(&self) -> usize {
        crate::block_on(async {
            let mut p = self.probe().await;
            p.done_count().await
        })
    }

    /// What `status --output json` says of every tenant.
    pub fn status(&self) -> HashMap<String, ToolView> {
        let r = self.run(&["--output", "json", "status"]);
        assert!(
            matches!(r.code(), 0 | 1),
            "status failed ({}):\n{}\n{}",
            r.code(),
            r.stdout(),
            r.stderr()
        );
        r.json()["tenants"]
            .as_array()
            .expect("status lists tenants")
            .iter()
            .map(|t| {
                (
                    t["schema"].as_str().unwrap_or_default().to_owned(),
                    ToolView::of(t),
                )
            })
            .collect()
    }
}

/// What the tool says of one tenant.
#[derive(Debug, Clone)]
pub struct ToolView {
    pub healthy: bool,
    pub summary: String,
}

impl ToolView {
    fn of(t: &Value) -> Self {
        let problems: Vec<String> = t["problems"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| {
                        format!(
                            "{} {} {}",
                            p["kind"].as_str().unwrap_or("?"),
                            p["version"],
                            p["state"].as_str().unwrap_or_default()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let pending = t["pending"].as_array().map_or(0, Vec::len);
        let healthy = t["exists"] == true
            && t["dirty"] == false
            && problems.is_empty()
            && pending == 0
            && t["version"].as_i64() == Some(LATEST)
            && t["catalog_status"] == "active";
        Self {
            healthy,
            summary: format!(
                "catalog {} version {} pending {} dirty {} problems [{}]",
                t["catalog_status"],
                t["version"],
                t["pending"],
                t["dirty"],
                problems.join("; ")
            ),
        }
    }
}

/// Tenants a run's JSON report (`--output json`) lists as not done, with their status.
pub fn report_failures(report: &Value) -> HashMap<String, String> {
    report["tenants"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|t| {
                    matches!(
                        t["status"].as_str(),
                        Some(
                            "failed"
                                | "dirty"
                                | "checksum_mismatch"
                                | "missing"
                                | "not_attempted"
                                | "skipped"
                        )
                    )
                })
                .map(|t| {
                    (
                        t["schema"].as_str().unwrap_or_default().to_owned(),
                        format!(
                            "{}: {}",
                            t["status"].as_str().unwrap_or_default(),
                            t["error"].as_str().unwrap_or_default()
                        ),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A schema's structure: one line per table, view, column, index and constraint, with the
/// schema's own name removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    pub lines: BTreeSet<String>,
    /// Base tables and their columns, in order.
    pub tables: BTreeMap<String, Vec<String>>,
}

/// Every row of every base table (log tables without their generated id), sorted.
pub type Rows = BTreeMap<String, (Vec<String>, Vec<Vec<String>>)>;

/// What the database holds for one tenant.
#[derive(Debug, Clone)]
pub struct Observed {
    pub shape: Shape,
    pub rows: Result<Rows, String>,
}

/// The suite's own connection for inspection.
pub enum Probe {
    My(sqlx::MySqlConnection),
    Pg(sqlx::PgConnection),
}

fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("'{}'", n.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn mysql_text(row: &sqlx::mysql::MySqlRow, i: usize) -> String {
    row.try_get::<String, _>(i)
        .or_else(|_| {
            row.try_get::<Vec<u8>, _>(i)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        })
        .unwrap_or_else(|e| format!("<undecodable: {e}>"))
}

impl Probe {
    async fn pairs(&mut self, sql: String) -> Result<Vec<(String, String)>, String> {
        match self {
            Probe::My(c) => sqlx::raw_sql(AssertSqlSafe(sql))
                .fetch_all(&mut *c)
                .await
                .map(|rows| {
                    rows.iter()
                        .map(|r| (mysql_text(r, 0), mysql_text(r, 1)))
                        .collect()
                })
                .map_err(|e| e.to_string()),
            Probe::Pg(c) => sqlx::raw_sql(AssertSqlSafe(sql))
                .fetch_all(&mut *c)
                .await
                .map(|rows| {
                    rows.iter()
                        .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
                        .collect()
                })
                .map_err(|e| e.to_string()),
        }
    }

    fn quote(&self, ident: &str) -> String {
        match self {
            Probe::My(_) => format!("`{ident}`"),
            Probe::Pg(_) => format!("\"{ident}\""),
        }
    }

    /// Tenants named `tenant_…` that the catalog lists as active at the newest version.
    pub async fn done_count(&mut self) -> usize {
        let sql = format!(
            "SELECT COUNT(*) FROM {}.tenants WHERE status = 'active' AND schema_version = {LATEST} \
             AND schema_name LIKE 'tenant%'",
            self.quote(CATALOG)
        );
        let n: Result<i64, sqlx::Error> = match self {
            Probe::My(c) => {
                sqlx::query_scalar(AssertSqlSafe(sql))
                    .fetch_one(&mut *c)
                    .await
            }
            Probe::Pg(c) => {
                sqlx::query_scalar(AssertSqlSafe(sql))
                    .fetch_one(&mut *c)
                    .await
            }
        };
        n.map(|n| n as usize).unwrap_or(0)
    }

    /// Structure and rows of `schemas` (structure in a few batched queries).
    pub async fn observe(&mut self, schemas: &[String]) -> HashMap<String, Observed> {
        let list = quoted_list(schemas);
        let (shape_sql, columns_sql) = match self {
            Probe::My(_) => {
                let filter = |a: &str| {
                    format!("{a}TABLE_SCHEMA IN ({list}) AND {a}TABLE_NAME <> '_tenant_migrations'")
                };
                let f = filter("");
                (
                    format!(
                        "SELECT TABLE_SCHEMA, CONCAT('table ', TABLE_NAME, ' ', TABLE_TYPE) \
                           FROM information_schema.TABLES WHERE {f} \
                         UNION ALL \
                         SELECT TABLE_SCHEMA, CONCAT('column ', TABLE_NAME, '.', COLUMN_NAME, ' #', \
                                ROW_NUMBER() OVER (PARTITION BY TABLE_SCHEMA, TABLE_NAME ORDER BY ORDINAL_POSITION), \
                                ' ', COLUMN_TYPE, IF(IS_NULLABLE = 'YES', ' null', ' not null'), \
                                ' default ', IFNULL(COLUMN_DEFAULT, '-'), ' ', EXTRA) \
                           FROM information_schema.COLUMNS WHERE {f} \
                         UNION ALL \
                         SELECT TABLE_SCHEMA, CONCAT(IF(NON_UNIQUE = 0, 'unique ', ''), 'index ', TABLE_NAME, '.', \
                                INDEX_NAME, ' (', GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX), ')') \
                           FROM information_schema.STATISTICS WHERE {f} \
                           GROUP BY TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, NON_UNIQUE \
                         UNION ALL \
                         SELECT TABLE_SCHEMA, CONCAT('foreign key ', TABLE_NAME, '.', CONSTRAINT_NAME, ' (', \
                                GROUP_CONCAT(COLUMN_NAME ORDER BY ORDINAL_POSITION), ') references ', \
                                REFERENCED_TABLE_NAME, ' (', \
                                GROUP_CONCAT(REFERENCED_COLUMN_NAME ORDER BY ORDINAL_POSITION), ')') \
                           FROM information_schema.KEY_COLUMN_USAGE \
                          WHERE {f} AND REFERENCED_TABLE_NAME IS NOT NULL \
                          GROUP BY TABLE_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, REFERENCED_TABLE_NAME \
                         UNION ALL \
                         SELECT TABLE_SCHEMA, CONCAT('view ', TABLE_NAME, ' ', VIEW_DEFINITION) \
                           FROM information_schema.VIEWS WHERE {f}"
                    ),
                    format!(
                        "SELECT c.TABLE_SCHEMA, CONCAT(c.TABLE_NAME, '.', c.COLUMN_NAME) \
                           FROM information_schema.COLUMNS c JOIN information_schema.TABLES t \
                             ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
                          WHERE t.TABLE_TYPE = 'BASE TABLE' AND {} \
                          ORDER BY c.TABLE_SCHEMA, c.TABLE_NAME, c.ORDINAL_POSITION",
                        filter("c.")
                    ),
                )
            }
            Probe::Pg(_) => {
                let filter = |a: &str| {
                    format!("{a}table_schema IN ({list}) AND {a}table_name <> '_tenant_migrations'")
                };
                let f = filter("");
                (
                    format!(
                        "SELECT table_schema::text, 'table ' || table_name || ' ' || table_type \
                           FROM information_schema.tables WHERE {f} \
                         UNION ALL \
                         SELECT table_schema::text, 'column ' || table_name || '.' || column_name || ' #' || \
                                (row_number() OVER (PARTITION BY table_schema, table_name ORDER BY ordinal_position))::text || \
                                ' ' || data_type || coalesce('(' || character_maximum_length::text || ')', '') || \
                                ' nullable ' || is_nullable || ' default ' || coalesce(column_default, '-') || \
                                ' identity ' || is_identity \
                           FROM information_schema.columns WHERE {f} \
                         UNION ALL \
                         SELECT schemaname::text, 'index ' || tablename || '.' || indexname || ' ' || indexdef \
                           FROM pg_indexes \
                          WHERE schemaname IN ({list}) AND tablename <> '_tenant_migrations' \
                         UNION ALL \
                         SELECT n.nspname::text, 'constraint ' || cl.relname || '.' || c.conname || ' ' || \
                                pg_get_constraintdef(c.oid) \
                           FROM pg_constraint c JOIN pg_class cl ON cl.oid = c.conrelid \
                           JOIN pg_namespace n ON n.oid = c.connamespace \
                          WHERE n.nspname IN ({list}) AND cl.relname <> '_tenant_migrations' \
                         UNION ALL \
                         SELECT schemaname::text, 'view ' || viewname || ' ' || definition \
                           FROM pg_views WHERE schemaname IN ({list})"
                    ),
                    format!(
                        "SELECT c.table_schema::text, (c.table_name || '.' || c.column_name)::text \
                           FROM information_schema.columns c JOIN information_schema.tables t \
                             ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
                          WHERE t.table_type = 'BASE TABLE' AND {} \
                          ORDER BY c.table_schema, c.table_name, c.ordinal_position",
                        filter("c.")
                    ),
                )
            }
        };
        let mut shapes: HashMap<String, Shape> = schemas
            .iter()
            .map(|s| (s.clone(), Shape::default()))
            .collect();
        let lines = self.pairs(shape_sql).await.expect("structure query");
        for (schema, line) in lines {
            let cleaned = line
                .replace(&format!("`{schema}`."), "")
                .replace(&format!("\"{schema}\"."), "")
                .replace(&format!("{schema}."), "");
            // Whitespace of view definitions is not structure.
            let cleaned = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
            if let Some(s) = shapes.get_mut(&schema) {
                s.lines.insert(cleaned);
            }
        }
        for (schema, col) in self.pairs(columns_sql).await.expect("columns query") {
            if let (Some(s), Some((table, column))) = (shapes.get_mut(&schema), col.split_once('.'))
            {
                s.tables
                    .entry(table.to_owned())
                    .or_default()
                    .push(column.to_owned());
            }
        }
        let mut out = HashMap::with_capacity(schemas.len());
        for (schema, shape) in shapes {
            let rows = self.rows(&schema, &shape).await;
            out.insert(schema, Observed { shape, rows });
        }
        out
    }

    /// Every row of every base table of `schema`, in one query.
    async fn rows(&mut self, schema: &str, shape: &Shape) -> Result<Rows, String> {
        let (cast, sep) = match self {
            Probe::My(_) => ("CHAR", "'|'"),
            Probe::Pg(_) => ("TEXT", "'|'"),
        };
        let mut parts = Vec::new();
        let mut rows: Rows = BTreeMap::new();
        for (table, columns) in &shape.tables {
            let kept: Vec<String> = columns
                .iter()
                .filter(|c| !(LOG_TABLES.contains(&table.as_str()) && c.as_str() == "id"))
                .cloned()
                .collect();
            if kept.is_empty() {
                continue;
            }
            let exprs = kept
                .iter()
                .map(|c| format!("COALESCE(CAST({} AS {cast}), 'NULL')", self.quote(c)))
                .collect::<Vec<_>>()
                .join(", ");
            parts.push(format!(
                "SELECT CAST('{table}' AS {cast}), CONCAT_WS({sep}, {exprs}) FROM {}.{}",
                self.quote(schema),
                self.quote(table)
            ));
            rows.insert(table.clone(), (kept, Vec::new()));
        }
        if parts.is_empty() {
            return Ok(rows);
        }
        for (table, line) in self.pairs(parts.join(" UNION ALL ")).await? {
            if let Some((_, r)) = rows.get_mut(&table) {
                r.push(line.split('|').map(str::to_owned).collect());
            }
        }
        for (_, r) in rows.values_mut() {
            r.sort();
        }
        Ok(rows)
    }

    /// Runs one statement (the self-check tampers with tenants this way).
    pub async fn exec(&mut self, sql: &str) {
        let r = match self {
            Probe::My(c) => sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
                .execute(&mut *c)
                .await
                .map(drop),
            Probe::Pg(c) => sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
                .execute(&mut *c)
                .await
                .map(drop),
        };
        r.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// MariaDB: how many of `schemas` have a migration that a run resumed after an
    /// interruption (`resumed_after` in the history); `None` where the history has no such
    /// column (PostgreSQL, older builds).
    pub async fn resumed(&mut self, schemas: &[String]) -> Option<usize> {
        if !matches!(self, Probe::My(_)) {
            return None;
        }
        let mut n = 0;
        for chunk in schemas.chunks(100) {
            let sql = chunk
                .iter()
                .map(|s| {
                    format!(
                        "SELECT '{s}', CAST(COUNT(*) AS CHAR) FROM `{s}`.`_tenant_migrations` \
                         WHERE resumed_after IS NOT NULL"
                    )
                })
                .collect::<Vec<_>>()
                .join(" UNION ALL ");
            n += self
                .pairs(sql)
                .await
                .ok()?
                .iter()
                .filter(|(_, c)| c != "0")
                .count();
        }
        Some(n)
    }

    pub async fn close(self) {
        match self {
            Probe::My(c) => {
                let _ = c.close().await;
            }
            Probe::Pg(c) => {
                let _ = c.close().await;
            }
        }
    }
}

/// Values of `column` in `table` (by row), when both exist.
fn column_values<'a>(rows: &'a Rows, table: &str, column: &str) -> Vec<(&'a [String], &'a str)> {
    let Some((cols, data)) = rows.get(table) else {
        return Vec::new();
    };
    let Some(i) = cols.iter().position(|c| c == column) else {
        return Vec::new();
    };
    data.iter()
        .filter_map(|r| r.get(i).map(|v| (r.as_slice(), v.as_str())))
        .collect()
}

/// Rows per event kind, over the log table's old and new names.
fn log_kinds(rows: &Rows) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for t in LOG_TABLES {
        for (_, kind) in column_values(rows, t, "kind") {
            *m.entry(kind.to_owned()).or_default() += 1;
        }
    }
    m
}

/// Points per customer id.
fn points(rows: &Rows) -> BTreeMap<String, i64> {
    let Some((cols, data)) = rows.get("customers") else {
        return BTreeMap::new();
    };
    let (Some(id), Some(p)) = (
        cols.iter().position(|c| c == "id"),
        cols.iter().position(|c| c == "points"),
    ) else {
        return BTreeMap::new();
    };
    data.iter()
        .filter_map(|r| Some((r.get(id)?.clone(), r.get(p)?.parse().ok()?)))
        .collect()
}

/// Why `rows` shows DML that ran more often than the migrations say, if it does. Judged
/// against every state the migrations pass through, so that a tenant stopped half-way (whose
/// later DELETE has not run yet) is not taken for one whose INSERT ran twice.
fn doubled(rows: &Rows) -> Option<String> {
    for (kind, n) in log_kinds(rows) {
        if let Some((_, max)) = LOG_KIND_MAX.iter().find(|(k, _)| *k == kind)
            && n > *max
        {
            return Some(format!(
                "{n} event rows of kind {kind:?}, at most {max} expected"
            ));
        }
    }
    for (id, p) in points(rows) {
        if !POINTS_STAGES.contains(&p) {
            return Some(format!(
                "customer {id} has {p} points, expected one of {POINTS_STAGES:?}"
            ));
        }
    }
    None
}

/// Lines in one set and not the other, for failure notes.
fn shape_diff(actual: &Shape, reference: &Shape) -> String {
    let extra: Vec<&String> = actual.lines.difference(&reference.lines).take(4).collect();
    let missing: Vec<&String> = reference.lines.difference(&actual.lines).take(4).collect();
    format!("unexpected {extra:?}, missing {missing:?}")
}

fn rows_diff(actual: &Rows, reference: &Rows) -> String {
    let mut out = Vec::new();
    for (table, (cols, data)) in reference {
        match actual.get(table) {
            None => out.push(format!("{table}: table missing")),
            Some((c, d)) if c != cols || d != data => {
                out.push(format!("{table}: {c:?} {d:?} ≠ expected {cols:?} {data:?}"))
            }
            _ => {}
        }
    }
    for table in actual.keys().filter(|t| !reference.contains_key(*t)) {
        out.push(format!("{table}: unexpected table"));
    }
    out.join("; ")
}

/// The classification of a fleet after a scenario.
#[derive(Debug, Default)]
pub struct Tally {
    pub tenants: usize,
    pub converged: usize,
    pub dirty: usize,
    pub silent: usize,
    pub double: usize,
    /// A few examples of each kind of non-converged tenant.
    pub notes: Vec<String>,
    /// How many dirty tenants per reason the tool gave.
    pub dirty_reasons: BTreeMap<String, usize>,
    /// Tenants whose history shows a migration resumed after an interruption (MariaDB).
    pub resumed: Option<usize>,
}

/// Classifies `fleet` from what the tool says (`status`, plus the failures of the last
/// ordinary run) and what the database holds.
pub fn classify(
    fleet: &[String],
    reference: &Observed,
    observed: &HashMap<String, Observed>,
    status: &HashMap<String, ToolView>,
    last_run_failures: &HashMap<String, String>,
) -> Tally {
    let reference_rows = reference
        .rows
        .as_ref()
        .expect("the reference tenant's rows are readable");
    let mut t = Tally {
        tenants: fleet.len(),
        ..Tally::default()
    };
    let mut examples: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut note = |t: &mut Tally, class: &'static str, text: String| {
        let n = examples.entry(class).or_default();
        *n += 1;
        if *n <= 4 {
            t.notes.push(format!("{class}: {text}"));
        }
    };
    for name in fleet {
        let Some(obs) = observed.get(name) else {
            continue;
        };
        let view = status.get(name);
        let failure = last_run_failures.get(name);
        if let Ok(rows) = &obs.rows
            && let Some(why) = doubled(rows)
        {
            t.double += 1;
            note(&mut t, "double-applied DML", format!("{name}: {why}"));
        }
        let tool_ok = view.is_some_and(|v| v.healthy) && failure.is_none();
        if !tool_ok {
            t.dirty += 1;
            let reason = match (view, failure) {
                (None, _) => "not listed by status".to_owned(),
                (Some(v), _) if !v.healthy => v
                    .summary
                    .split(" problems ")
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
                (_, Some(f)) => format!("last run: {}", f.split(':').next().unwrap_or_default()),
                _ => "?".to_owned(),
            };
            *t.dirty_reasons.entry(reason).or_default() += 1;
            note(
                &mut t,
                "dirty",
                format!(
                    "{name}: {}{}",
                    view.map_or("not in status".to_owned(), |v| v.summary.clone()),
                    failure
                        .map(|f| format!("; last run {f}"))
                        .unwrap_or_default()
                ),
            );
            continue;
        }
        let same_shape = obs.shape == reference.shape;
        let same_rows = obs.rows.as_ref().is_ok_and(|r| r == reference_rows);
        if same_shape && same_rows {
            t.converged += 1;
        } else {
            t.silent += 1;
            let mut why = Vec::new();
            if !same_shape {
                why.push(shape_diff(&obs.shape, &reference.shape));
            }
            match &obs.rows {
                Err(e) => why.push(format!("rows unreadable: {e}")),
                Ok(r) if r != reference_rows => why.push(rows_diff(r, reference_rows)),
                Ok(_) => {}
            }
            note(&mut t, "silent", format!("{name}: {}", why.join(" | ")));
        }
    }
    t
}
