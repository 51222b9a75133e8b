//! The history table (`_tenant_migrations`) every migrated schema carries: its row type and
//! the row-level SQL, written once for all backends. Table DDL is each dialect's own.
//!
//! Rows are written with their values bound ([`Stmt`]), as prepared statements the connection
//! does not keep: the texts name their schema, and a cached statement must neither pile up
//! per schema nor serve another schema (on MySQL a prepared statement keeps its database).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{AssertSqlSafe, Row};

use crate::db::{AppliedRow, Backend, Conn, DbError, MigrationRef, placeholders, with_conn};

/// The state a history row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RowState {
    /// The migration completed.
    Applied,
    /// A statement failed after others may have committed (MySQL): needs a human, then repair.
    Failed,
    /// The migration started and never finished (the process died mid-way, MySQL): as dirty as
    /// `failed`.
    Running,
    /// Recorded by `adopt` for a schema another tool (Alembic) migrated: its structure was
    /// verified against this version, and the migration itself never ran here. Counts as
    /// applied everywhere.
    Baselined,
}

impl RowState {
    pub fn as_str(self) -> &'static str {
        match self {
            RowState::Applied => "applied",
            RowState::Failed => "failed",
            RowState::Running => "running",
            RowState::Baselined => "baselined",
        }
    }

    /// True for a migration whose effects are in the schema (applied or baselined).
    pub fn is_applied(self) -> bool {
        matches!(self, RowState::Applied | RowState::Baselined)
    }

    fn parse(s: &str) -> Self {
        match s {
            "applied" => RowState::Applied,
            "running" => RowState::Running,
            "baselined" => RowState::Baselined,
            // Anything unknown is treated as the most cautious state.
            _ => RowState::Failed,
        }
    }
}

/// One row of a history table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryRow {
    pub version: i64,
    pub name: String,
    pub checksum: String,
    pub state: RowState,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    /// Statements of the migration known to have completed (MySQL progress; `None` when the
    /// row was read without it or written by an older version).
    pub statements_done: Option<i64>,
    /// When a run resumed this migration after a crash: the number of its statements that
    /// were already done then (it resumed after that statement).
    pub resumed_after: Option<i64>,
}

/// Columns every history table has had since the first version: what fleet-wide reads
/// select, so they work on tables not upgraded yet.
pub const COLUMNS: &str =
    "version, name, checksum, state, started_at, finished_at, duration_ms, error";

/// [`COLUMNS`] and the progress columns: what a run holding the schema's lock reads (it
/// upgrades an older table first).
pub const FULL_COLUMNS: &str = "version, name, checksum, state, started_at, finished_at, duration_ms, error, statements_done, resumed_after";

/// Decodes a history row selected with [`COLUMNS`] (after `offset` leading columns).
pub fn decode_row<R>(row: &R, offset: usize) -> Result<HistoryRow, sqlx::Error>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    DateTime<Utc>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let state: String = row.try_get(offset + 3)?;
    Ok(HistoryRow {
        version: row.try_get(offset)?,
        name: row.try_get(offset + 1)?,
        checksum: row.try_get(offset + 2)?,
        state: RowState::parse(&state),
        started_at: row.try_get(offset + 4)?,
        finished_at: row.try_get(offset + 5)?,
        duration_ms: row.try_get(offset + 6)?,
        error: row.try_get(offset + 7)?,
        statements_done: None,
        resumed_after: None,
    })
}

/// Decodes a history row selected with [`FULL_COLUMNS`].
pub fn decode_full_row<R>(row: &R) -> Result<HistoryRow, sqlx::Error>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    DateTime<Utc>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let mut r = decode_row(row, 0)?;
    r.statements_done = row.try_get(8)?;
    r.resumed_after = row.try_get(9)?;
    Ok(r)
}

/// True when `e` says a selected column does not exist: a history table made by a version
/// without the progress columns.
pub fn is_missing_column(e: &DbError) -> bool {
    let DbError::Sqlx { code, source, .. } = e else {
        return false;
    };
    let Some(db) = source.as_database_error() else {
        return false;
    };
    // MySQL ER_BAD_FIELD_ERROR, PostgreSQL undefined_column, SQLite's message.
    matches!(code.as_deref(), Some("1054" | "42703")) || db.message().starts_with("no such column")
}

/// A value bound to a history statement's parameter (`None` binds `NULL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
    Time(Option<DateTime<Utc>>),
}

/// One history statement: its text, with a `?` for each of its `args` in order (numbered
/// for PostgreSQL when it is sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stmt {
    pub sql: String,
    pub args: Vec<Arg>,
}

/// The parameters of one row: [`COLUMNS`] and `statements_done`.
const ROW_PARAMS: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// One history row's values, in the order of [`COLUMNS`] and `statements_done` (0 for a
/// `running` row, which counts its statements; `NULL` otherwise).
fn row_values(
    m: MigrationRef<'_>,
    state: RowState,
    started: DateTime<Utc>,
    finished: Option<DateTime<Utc>>,
    duration_ms: Option<i64>,
    error: Option<&str>,
) -> Vec<Arg> {
    let done = (state == RowState::Running).then_some(0);
    vec![
        Arg::Int(Some(m.version)),
        Arg::Text(Some(m.name.to_owned())),
        Arg::Text(Some(m.checksum.to_owned())),
        Arg::Text(Some(state.as_str().to_owned())),
        Arg::Time(Some(started)),
        Arg::Time(finished),
        Arg::Int(duration_ms),
        Arg::Text(error.map(clip)),
        Arg::Int(done),
    ]
}

/// A schema's history table, addressed by its qualified name.
pub struct HistoryTable {
    /// `` `schema`.`_tenant_migrations` `` / `"schema"."_tenant_migrations"` / `_tenant_migrations`.
    pub qualified: String,
    pub label: String,
    backend: Backend,
    schema: Option<String>,
}

/// Longest error text kept in a history row.
const MAX_ERROR_LEN: usize = 4000;

fn clip(s: &str) -> String {
    if s.len() <= MAX_ERROR_LEN {
        return s.to_owned();
    }
    let mut end = MAX_ERROR_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl HistoryTable {
    pub fn new(backend: Backend, schema: Option<&str>, table: &str) -> Self {
        let qualified = match schema {
            Some(s) => format!("{}.{}", backend.quote(s), backend.quote(table)),
            None => backend.quote(table),
        };
        Self {
            qualified,
            label: schema.unwrap_or("main").to_owned(),
            backend,
            schema: schema.map(str::to_owned),
        }
    }

    /// Another table of the same schema, qualified as this one is (`alembic_version`).
    pub fn qualify(&self, table: &str) -> String {
        match &self.schema {
            Some(s) => format!("{}.{}", self.backend.quote(s), self.backend.quote(table)),
            None => self.backend.quote(table),
        }
    }

    fn ctx(&self, what: &str) -> String {
        format!("{what} history of {}", self.label)
    }

    /// The names of the tables (and views) beside the history table in its schema, without the
    /// bookkeeping tables ([`super::BOOKKEEPING_TABLES`]). Read through the session's own
    /// connection: a session must never wait on its pool for a second one.
    pub async fn neighbours(&self, conn: &mut Conn) -> Result<Vec<String>, DbError> {
        // The query, and the schema it takes (a SQLite file is its own schema).
        let (sql, schema) = match (self.backend, self.schema.as_deref()) {
            (Backend::Postgres, Some(schema)) => (
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = ?",
                Some(schema),
            ),
            (Backend::MySql, Some(schema)) => (
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
                Some(schema),
            ),
            _ => (
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') \
                 AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
                None,
            ),
        };
        let names: Vec<String> = with_conn!(conn, |c, b| {
            let q = sqlx::query_scalar::<_, String>(placeholders(b, sql)).persistent(false);
            let q = match schema {
                Some(s) => q.bind(s),
                None => q,
            };
            q.fetch_all(&mut *c)
                .await
                .map_err(|e| DbError::sqlx(format!("listing the tables of {}", self.label), e))?
        });
        Ok(names
            .into_iter()
            .filter(|n| !super::BOOKKEEPING_TABLES.contains(&n.as_str()))
            .collect())
    }

    /// All rows with their progress columns, ordered by version. Sent unprepared: the text
    /// names the schema, and a prepared statement must never be reused across schemas.
    pub async fn read(&self, conn: &mut Conn) -> Result<Vec<HistoryRow>, DbError> {
        self.select(conn, true).await
    }

    /// All rows, with their progress when the table has the columns (an older table is read
    /// as it is, and left unchanged).
    pub async fn read_compatible(&self, conn: &mut Conn) -> Result<Vec<HistoryRow>, DbError> {
        match self.select(conn, true).await {
            Err(e) if is_missing_column(&e) => self.select(conn, false).await,
            other => other,
        }
    }

    /// Every row, with the progress columns ([`FULL_COLUMNS`]) or without ([`COLUMNS`]).
    async fn select(&self, conn: &mut Conn, full: bool) -> Result<Vec<HistoryRow>, DbError> {
        let columns = if full { FULL_COLUMNS } else { COLUMNS };
        let sql = format!("SELECT {columns} FROM {} ORDER BY version", self.qualified);
        with_conn!(conn, |c, _b| {
            let rows = sqlx::raw_sql(AssertSqlSafe(sql))
                .fetch_all(&mut *c)
                .await
                .map_err(|e| DbError::sqlx(self.ctx("reading"), e))?;
            rows.iter()
                .map(|r| {
                    if full {
                        decode_full_row(r)
                    } else {
                        decode_row(r, 0)
                    }
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| DbError::sqlx(self.ctx("decoding"), e))
        })
    }

    /// Adds the progress columns to a table made by an older version (run under the
    /// schema's lock, once, when [`HistoryTable::read`] finds them missing).
    pub async fn add_progress_columns(&self, conn: &mut Conn) -> Result<(), DbError> {
        let q = &self.qualified;
        let sql = match conn.backend() {
            Backend::MySql => format!(
                "ALTER TABLE {q} ADD COLUMN statements_done BIGINT NULL AFTER state, ADD COLUMN resumed_after BIGINT NULL"
            ),
            Backend::Postgres => format!(
                "ALTER TABLE {q} ADD COLUMN IF NOT EXISTS statements_done BIGINT NULL, ADD COLUMN IF NOT EXISTS resumed_after BIGINT NULL"
            ),
            Backend::Sqlite => format!(
                "BEGIN; ALTER TABLE {q} ADD COLUMN statements_done INTEGER NULL; ALTER TABLE {q} ADD COLUMN resumed_after INTEGER NULL; COMMIT"
            ),
        };
        with_conn!(conn, |c, _b| {
            sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(&mut *c)
                .await
                .map(|_| ())
                .map_err(|e| DbError::sqlx(self.ctx("upgrading"), e))
        })
    }

    /// The statement recording that `done` statements of `version` have completed.
    pub fn progress_sql(&self, version: i64, done: usize) -> Stmt {
        Stmt {
            sql: format!(
                "UPDATE {} SET statements_done = ? WHERE version = ?",
                self.qualified
            ),
            args: vec![Arg::Int(Some(done as i64)), Arg::Int(Some(version))],
        }
    }

    /// Runs one history statement with its values bound, as a prepared statement the
    /// connection does not keep (see the module's documentation).
    pub async fn write(&self, conn: &mut Conn, what: &str, stmt: Stmt) -> Result<u64, DbError> {
        let sql = placeholders(conn.backend(), &stmt.sql);
        with_conn!(conn, |c, _b| {
            let mut q = sqlx::query(sql).persistent(false);
            for arg in stmt.args {
                q = match arg {
                    Arg::Int(v) => q.bind(v),
                    Arg::Text(v) => q.bind(v),
                    Arg::Time(v) => q.bind(v),
                };
            }
            q.execute(&mut *c)
                .await
                .map(|r| r.rows_affected())
                .map_err(|e| DbError::sqlx(self.ctx(what), e))
        })
    }

    /// The statement inserting a row for `m` in `state`.
    pub fn insert_sql(
        &self,
        m: MigrationRef<'_>,
        state: RowState,
        started: DateTime<Utc>,
        duration_ms: Option<i64>,
        error: Option<&str>,
    ) -> Stmt {
        let finished = (state != RowState::Running).then(Utc::now);
        Stmt {
            sql: format!(
                "INSERT INTO {} ({COLUMNS}, statements_done) VALUES {ROW_PARAMS}",
                self.qualified
            ),
            args: row_values(m, state, started, finished, duration_ms, error),
        }
    }

    /// Inserts a row for `m` in `state`.
    pub async fn insert(
        &self,
        conn: &mut Conn,
        m: MigrationRef<'_>,
        state: RowState,
        started: DateTime<Utc>,
        duration_ms: Option<i64>,
        error: Option<&str>,
    ) -> Result<(), DbError> {
        let stmt = self.insert_sql(m, state, started, duration_ms, error);
        self.write(conn, "writing", stmt).await.map(|_| ())
    }

    /// The statement recording every migration a new tenant was built with as applied, in
    /// one `INSERT` (none when `rows` is empty).
    pub fn insert_applied_sql(&self, rows: &[AppliedRow<'_>]) -> Option<Stmt> {
        if rows.is_empty() {
            return None;
        }
        Some(Stmt {
            sql: format!(
                "INSERT INTO {} ({COLUMNS}, statements_done) VALUES {}",
                self.qualified,
                vec![ROW_PARAMS; rows.len()].join(", ")
            ),
            args: rows
                .iter()
                .flat_map(|r| {
                    row_values(
                        r.migration,
                        RowState::Applied,
                        r.started,
                        Some(r.finished),
                        Some(r.duration_ms),
                        None,
                    )
                })
                .collect(),
        })
    }

    /// Records `migrations` as [`RowState::Baselined`] in one statement (`adopt`): all of
    /// them or, when it fails, none.
    pub async fn baseline(
        &self,
        conn: &mut Conn,
        migrations: &[MigrationRef<'_>],
        at: DateTime<Utc>,
    ) -> Result<(), DbError> {
        if migrations.is_empty() {
            return Ok(());
        }
        let stmt = Stmt {
            sql: format!(
                "INSERT INTO {} ({COLUMNS}, statements_done) VALUES {}",
                self.qualified,
                vec![ROW_PARAMS; migrations.len()].join(", ")
            ),
            args: migrations
                .iter()
                .flat_map(|m| row_values(*m, RowState::Baselined, at, Some(at), None, None))
                .collect(),
        };
        self.write(conn, "baselining", stmt).await.map(|_| ())
    }

    /// The statement moving the row of `version` to `state`, recording when and how it ended
    /// (and, for a resumed migration, after how many statements it resumed).
    pub fn finish_sql(
        &self,
        version: i64,
        state: RowState,
        duration_ms: i64,
        error: Option<&str>,
        resumed_after: Option<usize>,
    ) -> Stmt {
        let mut args = vec![
            Arg::Text(Some(state.as_str().to_owned())),
            Arg::Time(Some(Utc::now())),
            Arg::Int(Some(duration_ms)),
            Arg::Text(error.map(clip)),
        ];
        let resumed = match resumed_after {
            Some(n) => {
                args.push(Arg::Int(Some(n as i64)));
                ", resumed_after = ?"
            }
            None => "",
        };
        args.push(Arg::Int(Some(version)));
        Stmt {
            sql: format!(
                "UPDATE {} SET state = ?, finished_at = ?, duration_ms = ?, error = ?{resumed} WHERE version = ?",
                self.qualified
            ),
            args,
        }
    }

    /// Moves the row of `version` to `state`, recording when and how it ended.
    pub async fn finish(
        &self,
        conn: &mut Conn,
        version: i64,
        state: RowState,
        duration_ms: i64,
        error: Option<&str>,
    ) -> Result<(), DbError> {
        let stmt = self.finish_sql(version, state, duration_ms, error, None);
        self.write(conn, "updating", stmt).await.map(|_| ())
    }

    /// Deletes the rows of `versions`.
    pub async fn delete(&self, conn: &mut Conn, versions: &[i64]) -> Result<u64, DbError> {
        if versions.is_empty() {
            return Ok(0);
        }
        let stmt = Stmt {
            sql: format!(
                "DELETE FROM {} WHERE version IN ({})",
                self.qualified,
                vec!["?"; versions.len()].join(", ")
            ),
            args: versions.iter().map(|v| Arg::Int(Some(*v))).collect(),
        };
        self.write(conn, "repairing", stmt).await
    }

    /// Marks `version` applied with `checksum`, clearing its error (a baselined row stays
    /// baselined: only its checksum is accepted).
    pub async fn mark_applied(
        &self,
        conn: &mut Conn,
        version: i64,
        checksum: &str,
    ) -> Result<u64, DbError> {
        let stmt = Stmt {
            sql: format!(
                "UPDATE {} SET state = CASE WHEN state = 'baselined' THEN 'baselined' ELSE 'applied' END, \
                 checksum = ?, error = NULL, finished_at = ? WHERE version = ?",
                self.qualified,
            ),
            args: vec![
                Arg::Text(Some(checksum.to_owned())),
                Arg::Time(Some(Utc::now())),
                Arg::Int(Some(version)),
            ],
        };
        self.write(conn, "repairing", stmt).await
    }
}
