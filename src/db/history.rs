//! The history table (`_tenant_migrations`) every migrated schema carries: its row type and
//! the row-level SQL, written once for all backends. Table DDL is each dialect's own.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{AssertSqlSafe, Row};

use crate::db::{Backend, Conn, DbError, Lit, MigrationRef, with_conn};

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

/// One history row as the `VALUES` tuple of [`COLUMNS`] and `statements_done` (0 for a
/// `running` row, which counts its statements; `NULL` otherwise).
fn row_values(
    b: Backend,
    m: MigrationRef<'_>,
    state: RowState,
    started: DateTime<Utc>,
    finished: Option<DateTime<Utc>>,
    duration_ms: Option<i64>,
    error: Option<&str>,
) -> String {
    let done = (state == RowState::Running).then_some(0);
    let error = error.map(clip);
    let values: Vec<String> = [
        Lit::Int(m.version),
        Lit::Text(m.name),
        Lit::Text(m.checksum),
        Lit::Text(state.as_str()),
        Lit::Time(started),
        finished.map_or(Lit::Null, Lit::Time),
        duration_ms.into(),
        error.as_deref().into(),
        done.into(),
    ]
    .iter()
    .map(|l| l.render(b))
    .collect();
    format!("({})", values.join(", "))
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
        self.write(conn, "upgrading", sql).await.map(|_| ())
    }

    /// The statement recording that `done` statements of `version` have completed.
    pub fn progress_sql(&self, b: Backend, version: i64, done: usize) -> String {
        format!(
            "UPDATE {} SET statements_done = {} WHERE version = {}",
            self.qualified,
            Lit::Int(done as i64).render(b),
            Lit::Int(version).render(b),
        )
    }

    /// Runs one unprepared statement. History writes are sent as text with literals: one round
    /// trip, nothing left in the statement cache, and no one-shot prepared statement whose
    /// unanswered close packet would stall the next query behind Nagle's algorithm.
    pub async fn write(&self, conn: &mut Conn, what: &str, sql: String) -> Result<u64, DbError> {
        with_conn!(conn, |c, _b| {
            sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(&mut *c)
                .await
                .map(|r| r.rows_affected())
                .map_err(|e| DbError::sqlx(self.ctx(what), e))
        })
    }

    /// The statement inserting a row for `m` in `state`.
    pub fn insert_sql(
        &self,
        b: Backend,
        m: MigrationRef<'_>,
        state: RowState,
        started: DateTime<Utc>,
        duration_ms: Option<i64>,
        error: Option<&str>,
    ) -> String {
        let finished = (state != RowState::Running).then(Utc::now);
        let values = row_values(b, m, state, started, finished, duration_ms, error);
        format!(
            "INSERT INTO {} ({COLUMNS}, statements_done) VALUES {values}",
            self.qualified
        )
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
        let sql = self.insert_sql(conn.backend(), m, state, started, duration_ms, error);
        self.write(conn, "writing", sql).await.map(|_| ())
    }

    /// Records `migrations` as [`RowState::Baselined`] in one statement (`adopt`): all of
    /// them or, when it fails, none.
    pub async fn baseline(
        &self,
        conn: &mut Conn,
        migrations: &[MigrationRef<'_>],
        at: DateTime<Utc>,
    ) -> Result<(), DbError> {
        let b = conn.backend();
        let rows: Vec<String> = migrations
            .iter()
            .map(|m| row_values(b, *m, RowState::Baselined, at, Some(at), None, None))
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO {} ({COLUMNS}, statements_done) VALUES {}",
            self.qualified,
            rows.join(", ")
        );
        self.write(conn, "baselining", sql).await.map(|_| ())
    }

    /// The statement moving the row of `version` to `state`, recording when and how it ended
    /// (and, for a resumed migration, after how many statements it resumed).
    pub fn finish_sql(
        &self,
        b: Backend,
        version: i64,
        state: RowState,
        duration_ms: i64,
        error: Option<&str>,
        resumed_after: Option<usize>,
    ) -> String {
        let error = error.map(clip);
        let resumed = resumed_after
            .map(|n| format!(", resumed_after = {}", Lit::Int(n as i64).render(b)))
            .unwrap_or_default();
        format!(
            "UPDATE {} SET state = {}, finished_at = {}, duration_ms = {}, error = {}{resumed} WHERE version = {}",
            self.qualified,
            Lit::Text(state.as_str()).render(b),
            Lit::Time(Utc::now()).render(b),
            Lit::Int(duration_ms).render(b),
            Lit::from(error.as_deref()).render(b),
            Lit::Int(version).render(b),
        )
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
        let sql = self.finish_sql(conn.backend(), version, state, duration_ms, error, None);
        self.write(conn, "updating", sql).await.map(|_| ())
    }

    /// Deletes the rows of `versions`.
    pub async fn delete(&self, conn: &mut Conn, versions: &[i64]) -> Result<u64, DbError> {
        if versions.is_empty() {
            return Ok(0);
        }
        let list = versions
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("DELETE FROM {} WHERE version IN ({list})", self.qualified);
        self.write(conn, "repairing", sql).await
    }

    /// Marks `version` applied with `checksum`, clearing its error (a baselined row stays
    /// baselined: only its checksum is accepted).
    pub async fn mark_applied(
        &self,
        conn: &mut Conn,
        version: i64,
        checksum: &str,
    ) -> Result<u64, DbError> {
        let b = conn.backend();
        let sql = format!(
            "UPDATE {} SET state = CASE WHEN state = 'baselined' THEN 'baselined' ELSE 'applied' END, \
             checksum = {}, error = NULL, finished_at = {} WHERE version = {}",
            self.qualified,
            Lit::Text(checksum).render(b),
            Lit::Time(Utc::now()).render(b),
            Lit::Int(version).render(b),
        );
        self.write(conn, "repairing", sql).await
    }
}
