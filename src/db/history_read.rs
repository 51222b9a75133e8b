//! The fleet's history reader of the server backends (MySQL/MariaDB and PostgreSQL), written
//! once over [`Conn`]: the histories of [`READ_BATCH`] schemas in one `UNION ALL`, without
//! locks. When a schema of the batch has no history table (or does not exist), the union fails;
//! two catalog queries then tell which schemas exist and which hold the table, and one
//! `UNION ALL` reads the rest. Each backend gives its SQL through [`BatchSql`].

use std::collections::HashMap;

use sqlx::{AssertSqlSafe, Row};

use super::history::{COLUMNS, HistoryRow, decode_row};
use super::{Backend, Conn, DbError, HISTORY_TABLE, SchemaState, Target, placeholders, with_conn};

/// Schemas read per `UNION ALL` query when checking a fleet's histories.
pub(crate) const READ_BATCH: usize = 500;

/// The SQL one backend reads histories with.
pub(crate) trait BatchSql {
    /// The backend the texts are written for.
    const BACKEND: Backend;
    /// The schema's name as a text column of the union (PostgreSQL types a bare literal
    /// `unknown`, which a `UNION` cannot decode).
    const NAME_CAST: &'static str;
    /// Names of existing schemas among the `IN` list that follows the text.
    const EXISTING: &'static str;
    /// Schemas holding the table named by the first parameter, among the `IN` list that
    /// follows the text.
    const WITH_TABLE: &'static str;
}

/// The state of every target, in order: the tenants' histories batched through the connection
/// `tenants` resolves to, the catalog's through the one `catalog` resolves to (each awaited
/// only when a target needs it). A catalog whose database does not exist yet is `Missing`.
pub(crate) async fn read_states<S: BatchSql>(
    targets: &[Target],
    tenants: impl Future<Output = Result<Conn, sqlx::Error>>,
    catalog: impl Future<Output = Result<Conn, sqlx::Error>>,
    catalog_name: &str,
) -> Result<Vec<SchemaState>, DbError> {
    let mut found: HashMap<String, SchemaState> = HashMap::with_capacity(targets.len());
    let names: Vec<&str> = targets
        .iter()
        .filter_map(Target::tenant)
        .map(|s| s.as_str())
        .collect();
    if !names.is_empty() {
        let mut conn = tenants
            .await
            .map_err(|e| DbError::sqlx("reading histories", e))?;
        read_into::<S>(&mut conn, &names, &mut found).await?;
    }
    let mut catalog_state = SchemaState::Missing;
    if targets.contains(&Target::Catalog) {
        match catalog.await {
            Ok(mut conn) => {
                let mut one = HashMap::new();
                read_into::<S>(&mut conn, &[catalog_name], &mut one).await?;
                catalog_state = one.remove(catalog_name).unwrap_or(SchemaState::Missing);
            }
            Err(e) => {
                let e = DbError::sqlx("reading catalog history", e);
                if !e.is_missing_object() {
                    return Err(e);
                }
            }
        }
    }
    Ok(targets
        .iter()
        .map(|t| match t {
            Target::Catalog => catalog_state.clone(),
            Target::Tenant(s) => found.remove(s.as_str()).unwrap_or(SchemaState::Missing),
        })
        .collect())
}

/// Reads the histories of `schemas` into `found`, [`READ_BATCH`] at a time.
pub(crate) async fn read_into<S: BatchSql>(
    conn: &mut Conn,
    schemas: &[&str],
    found: &mut HashMap<String, SchemaState>,
) -> Result<(), DbError> {
    for chunk in schemas.chunks(READ_BATCH) {
        read_batch::<S>(conn, chunk, found).await?;
    }
    Ok(())
}

/// Reads one batch of schemas into `found`: one `UNION ALL` when every schema has its
/// history table, and when some do not, two catalog queries to find out which, then one
/// `UNION ALL` over the rest.
async fn read_batch<S: BatchSql>(
    conn: &mut Conn,
    schemas: &[&str],
    found: &mut HashMap<String, SchemaState>,
) -> Result<(), DbError> {
    let rows = match union_read::<S>(conn, schemas).await {
        Ok(rows) => {
            for s in schemas {
                found.insert((*s).to_owned(), SchemaState::History(Vec::new()));
            }
            rows
        }
        Err(e) if e.is_missing_object() => {
            let existing =
                names_in::<S>(conn, S::EXISTING, None, schemas, "listing schemas").await?;
            let with_table = names_in::<S>(
                conn,
                S::WITH_TABLE,
                Some(HISTORY_TABLE),
                schemas,
                "listing history tables",
            )
            .await?;
            super::classify(schemas, &existing, &with_table, found);
            let readable: Vec<&str> = with_table.iter().map(String::as_str).collect();
            union_read::<S>(conn, &readable).await?
        }
        Err(e) => return Err(e),
    };
    for (schema, history) in rows {
        found.insert(schema, SchemaState::History(history));
    }
    Ok(())
}

/// One `UNION ALL` over the history tables of `schemas` (all of which must have one), sent
/// unprepared: the text names the schemas, and differs from batch to batch.
async fn union_read<S: BatchSql>(
    conn: &mut Conn,
    schemas: &[&str],
) -> Result<HashMap<String, Vec<HistoryRow>>, DbError> {
    let mut out: HashMap<String, Vec<HistoryRow>> = HashMap::new();
    if schemas.is_empty() {
        return Ok(out);
    }
    let b = S::BACKEND;
    let sql = schemas
        .iter()
        .map(|s| {
            // A schema name is a plain identifier (no quote can occur); doubled anyway.
            format!(
                "SELECT '{}'{} AS s, {COLUMNS} FROM {}.{}",
                s.replace('\'', "''"),
                S::NAME_CAST,
                b.quote(s),
                b.quote(HISTORY_TABLE)
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    with_conn!(conn, |c, _b| {
        let rows = sqlx::raw_sql(AssertSqlSafe(sql))
            .fetch_all(&mut *c)
            .await
            .map_err(|e| DbError::sqlx("reading histories", e))?;
        for r in &rows {
            let schema: String = r
                .try_get(0)
                .map_err(|e| DbError::sqlx("decoding histories", e))?;
            let row = decode_row(r, 1).map_err(|e| DbError::sqlx("decoding histories", e))?;
            out.entry(schema).or_default().push(row);
        }
    });
    for rows in out.values_mut() {
        rows.sort_by_key(|r| r.version);
    }
    Ok(out)
}

/// Runs `head (?, ?, …)` with `first` (when given) and then `schemas` bound, and returns the
/// names it selects. Not kept in the statement cache: the text differs with the batch's size.
async fn names_in<S: BatchSql>(
    conn: &mut Conn,
    head: &str,
    first: Option<&str>,
    schemas: &[&str],
    what: &'static str,
) -> Result<Vec<String>, DbError> {
    let marks = vec!["?"; schemas.len()].join(", ");
    let sql = placeholders(S::BACKEND, &format!("{head} ({marks})"));
    with_conn!(conn, |c, _b| {
        let mut q = sqlx::query_scalar::<_, String>(sql).persistent(false);
        if let Some(first) = first {
            q = q.bind(first);
        }
        for s in schemas {
            q = q.bind(*s);
        }
        q.fetch_all(&mut *c)
            .await
            .map_err(|e| DbError::sqlx(what, e))
    })
}
