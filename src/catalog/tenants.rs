//! The `tenants` table: one row per customer schema, with its provisioning status and the
//! version its schema was last seen at.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Catalog, col, now, uuid_of};
use crate::db::{DbError, placeholders, with_pool};
use crate::domain::TenantCursor;

/// Life cycle of a tenant row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    /// Row written, schema being created or migrated.
    Provisioning,
    /// Schema created and migrated.
    Active,
    /// Provisioning or the last upgrade failed; `last_error` says why.
    Failed,
    /// Kept for the record; no longer migrated.
    Archived,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Provisioning => "provisioning",
            TenantStatus::Active => "active",
            TenantStatus::Failed => "failed",
            TenantStatus::Archived => "archived",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "provisioning" => Some(TenantStatus::Provisioning),
            "active" => Some(TenantStatus::Active),
            "failed" => Some(TenantStatus::Failed),
            "archived" => Some(TenantStatus::Archived),
            _ => None,
        }
    }

    pub const ALL: [TenantStatus; 4] = [
        TenantStatus::Provisioning,
        TenantStatus::Active,
        TenantStatus::Failed,
        TenantStatus::Archived,
    ];
}

/// One row of `tenants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TenantRow {
    pub id: Uuid,
    pub schema_name: String,
    pub display_name: String,
    pub status: TenantStatus,
    /// Database server holding the schema (a name of `TENANT_SERVERS`; `default` without it).
    pub server: String,
    /// Newest migration version applied, as last recorded.
    pub schema_version: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Which tenants to list.
#[derive(Debug, Clone, Default)]
pub struct TenantFilter {
    pub status: Option<TenantStatus>,
    /// Only names after this one (cursor paging).
    pub after: Option<TenantCursor>,
    pub offset: u64,
    /// At most this many rows (`None`: all).
    pub limit: Option<u64>,
    /// Only names starting with this (its `_` matched literally, not as `LIKE` wildcard).
    pub name_prefix: Option<String>,
}

/// A page of tenants and how many match in all.
#[derive(Debug, Clone)]
pub struct TenantPage {
    pub tenants: Vec<TenantRow>,
    pub total: i64,
}

/// How long a page's `total` may be reused. Tenant rows themselves are always read fresh; a
/// count is stale at once when this process writes a tenant row (the generation moves), and
/// shows other processes' writes within this time.
const COUNT_TTL: std::time::Duration = std::time::Duration::from_secs(1);

type CountMap = std::collections::HashMap<Option<TenantStatus>, (std::time::Instant, u64, i64)>;

/// Recent tenant counts per status filter (the page total of `GET /tenants`), and the
/// generation of the tenant rows: it moves on every write this process makes to them.
#[derive(Debug, Default)]
pub struct CountCache {
    generation: std::sync::atomic::AtomicU64,
    entries: std::sync::Mutex<CountMap>,
}

impl CountCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, CountMap> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn get(&self, status: Option<TenantStatus>) -> Option<i64> {
        let generation = self.generation();
        self.lock()
            .get(&status)
            .filter(|(at, g, _)| *g == generation && at.elapsed() < COUNT_TTL)
            .map(|(_, _, n)| *n)
    }

    fn put(&self, status: Option<TenantStatus>, generation: u64, n: i64) {
        self.lock()
            .insert(status, (std::time::Instant::now(), generation, n));
    }

    fn bump(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Tenants written per statement by the batch writes.
const BATCH: usize = 500;

const COLUMNS: &str = "id, schema_name, display_name, status, server, schema_version, last_error, created_at, updated_at";

macro_rules! decode_tenant {
    ($r:expr, $Id:ty) => {{
        let r = $r;
        let status: String = col(r, 3)?;
        Ok::<TenantRow, DbError>(TenantRow {
            id: uuid_of(col::<_, $Id>(r, 0)?),
            schema_name: col(r, 1)?,
            display_name: col(r, 2)?,
            status: TenantStatus::parse(&status).unwrap_or(TenantStatus::Failed),
            server: col(r, 4)?,
            schema_version: col(r, 5)?,
            last_error: col(r, 6)?,
            created_at: col(r, 7)?,
            updated_at: col(r, 8)?,
        })
    }};
}

impl Catalog {
    /// The tenant row for `schema`, if any.
    pub async fn get_tenant(&self, schema: &str) -> Result<Option<TenantRow>, DbError> {
        let sql = format!("SELECT {COLUMNS} FROM tenants WHERE schema_name = ?");
        with_pool!(&self.pool, |p, b, Id| {
            let row = sqlx::query(placeholders(b, &sql))
                .bind(schema)
                .fetch_optional(p)
                .await
                .map_err(|e| DbError::sqlx("reading tenant", e))?;
            match row {
                Some(r) => Ok(Some(decode_tenant!(&r, Id)?)),
                None => Ok(None),
            }
        })
    }

    /// Inserts `schema` as `provisioning`. When another process inserted it first, returns
    /// that row instead (`false`: not created by this call).
    pub async fn insert_tenant(
        &self,
        schema: &str,
        display_name: &str,
        server: &str,
    ) -> Result<(TenantRow, bool), DbError> {
        let id = Uuid::new_v4();
        let t = now();
        let sql = format!(
            "INSERT INTO tenants ({COLUMNS}) VALUES (?, ?, ?, 'provisioning', ?, NULL, NULL, ?, ?)"
        );
        self.counts.bump();
        let inserted = with_pool!(&self.pool, |p, b, Id| {
            sqlx::query(placeholders(b, &sql))
                .bind(Id::from(id))
                .bind(schema)
                .bind(display_name)
                .bind(server)
                .bind(t)
                .bind(t)
                .execute(p)
                .await
                .map(|_| ())
                .map_err(|e| DbError::sqlx("inserting tenant", e))
        });
        // Before and after: a reader between the two must not keep what it read.
        self.counts.bump();
        match inserted {
            Ok(_) => Ok((
                TenantRow {
                    id,
                    schema_name: schema.to_owned(),
                    display_name: display_name.to_owned(),
                    status: TenantStatus::Provisioning,
                    server: server.to_owned(),
                    schema_version: None,
                    last_error: None,
                    created_at: t,
                    updated_at: t,
                },
                true,
            )),
            Err(e) if e.is_unique_violation() => {
                let row = self.get_tenant(schema).await?.ok_or_else(|| {
                    DbError::Unexpected(format!(
                        "tenant {schema} vanished after a conflicting insert"
                    ))
                })?;
                Ok((row, false))
            }
            Err(e) => Err(e),
        }
    }

    /// Inserts many tenants (schema, display name, server) as `provisioning`, [`BATCH`] per
    /// statement; a tenant whose row exists keeps it. Returns each one's row and whether this
    /// call inserted it, in the order given.
    pub async fn insert_tenants(
        &self,
        new: &[(&str, &str, &str)],
    ) -> Result<Vec<(TenantRow, bool)>, DbError> {
        let mut out = Vec::with_capacity(new.len());
        for chunk in new.chunks(BATCH) {
            let t = now();
            let ids: Vec<Uuid> = chunk.iter().map(|_| Uuid::new_v4()).collect();
            let values =
                vec!["(?, ?, ?, 'provisioning', ?, NULL, NULL, ?, ?)"; chunk.len()].join(", ");
            self.counts.bump();
            let inserted = with_pool!(&self.pool, |p, b, Id| {
                let conflict = match b {
                    crate::db::Backend::MySql => {
                        "ON DUPLICATE KEY UPDATE schema_name = schema_name"
                    }
                    _ => "ON CONFLICT (schema_name) DO NOTHING",
                };
                let sql = format!("INSERT INTO tenants ({COLUMNS}) VALUES {values} {conflict}");
                let mut q = sqlx::query(placeholders(b, &sql)).persistent(false);
                for ((schema, display, server), id) in chunk.iter().zip(&ids) {
                    q = q
                        .bind(Id::from(*id))
                        .bind(*schema)
                        .bind(*display)
                        .bind(*server)
                        .bind(t)
                        .bind(t);
                }
                q.execute(p)
                    .await
                    .map(|_| ())
                    .map_err(|e| DbError::sqlx("inserting tenants", e))
            });
            self.counts.bump();
            inserted?;
            let names: Vec<&str> = chunk.iter().map(|(s, _, _)| *s).collect();
            let mut rows = self.tenants_named(&names).await?;
            for ((schema, _, _), id) in chunk.iter().zip(&ids) {
                let row = rows.remove(*schema).ok_or_else(|| {
                    DbError::Unexpected(format!("tenant {schema} vanished after its insert"))
                })?;
                let mine = row.id == *id;
                out.push((row, mine));
            }
        }
        Ok(out)
    }

    /// The rows of `names` that exist, by schema name.
    async fn tenants_named(
        &self,
        names: &[&str],
    ) -> Result<std::collections::HashMap<String, TenantRow>, DbError> {
        if names.is_empty() {
            return Ok(Default::default());
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM tenants WHERE schema_name IN ({})",
            in_list(names.len())
        );
        with_pool!(&self.pool, |p, b, Id| {
            let q = sqlx::query(placeholders(b, &sql)).persistent(false);
            let rows = bind_names(q, names)
                .fetch_all(p)
                .await
                .map_err(|e| DbError::sqlx("reading tenants", e))?;
            rows.iter()
                .map(|r| decode_tenant!(r, Id).map(|t| (t.schema_name.clone(), t)))
                .collect()
        })
    }

    /// Removes the rows of `names` that are still `provisioning` (tenants a `create` inserted
    /// but never started), [`BATCH`] per statement.
    pub async fn delete_unstarted(&self, names: &[&str]) -> Result<(), DbError> {
        for chunk in names.chunks(BATCH) {
            let sql = format!(
                "DELETE FROM tenants WHERE status = 'provisioning' AND schema_name IN ({})",
                in_list(chunk.len())
            );
            self.counts.bump();
            let deleted = with_pool!(&self.pool, |p, b, _Id| {
                let q = sqlx::query(placeholders(b, &sql)).persistent(false);
                bind_names(q, chunk)
                    .execute(p)
                    .await
                    .map(|_| ())
                    .map_err(|e| DbError::sqlx("deleting tenants", e))
            });
            self.counts.bump();
            deleted?;
        }
        Ok(())
    }

    /// Marks `tenants` (schema, version) `active` at their versions, clearing their errors,
    /// in one statement per version and [`BATCH`] tenants.
    pub async fn set_tenants_active(&self, tenants: &[(&str, Option<i64>)]) -> Result<(), DbError> {
        let mut by_version: std::collections::BTreeMap<Option<i64>, Vec<&str>> = Default::default();
        for (schema, version) in tenants {
            by_version.entry(*version).or_default().push(schema);
        }
        for (version, names) in by_version {
            for chunk in names.chunks(BATCH) {
                let sql = format!(
                    "UPDATE tenants SET status = 'active', schema_version = ?, last_error = NULL, \
                     updated_at = ? WHERE schema_name IN ({})",
                    in_list(chunk.len())
                );
                self.counts.bump();
                let updated = with_pool!(&self.pool, |p, b, _Id| {
                    let q = sqlx::query(placeholders(b, &sql))
                        .persistent(false)
                        .bind(version)
                        .bind(now());
                    bind_names(q, chunk)
                        .execute(p)
                        .await
                        .map(|_| ())
                        .map_err(|e| DbError::sqlx("updating tenants", e))
                });
                self.counts.bump();
                updated?;
            }
        }
        Ok(())
    }

    /// Records the outcome of provisioning or upgrading `schema`.
    pub async fn set_tenant_outcome(
        &self,
        schema: &str,
        status: TenantStatus,
        schema_version: Option<i64>,
        last_error: Option<&str>,
    ) -> Result<(), DbError> {
        self.counts.bump();
        let sql = "UPDATE tenants SET status = ?, schema_version = ?, last_error = ?, updated_at = ? WHERE schema_name = ?";
        let updated = with_pool!(&self.pool, |p, b, _Id| {
            sqlx::query(placeholders(b, sql))
                .bind(status.as_str())
                .bind(schema_version)
                .bind(last_error)
                .bind(now())
                .bind(schema)
                .execute(p)
                .await
                .map(|_| ())
                .map_err(|e| DbError::sqlx("updating tenant", e))
        });
        self.counts.bump();
        updated
    }

    /// Removes `schema`'s row (tests and rollbacks of failed creates only).
    pub async fn delete_tenant(&self, schema: &str) -> Result<(), DbError> {
        self.counts.bump();
        let deleted = with_pool!(&self.pool, |p, b, _Id| {
            sqlx::query(placeholders(b, "DELETE FROM tenants WHERE schema_name = ?"))
                .bind(schema)
                .execute(p)
                .await
                .map(|_| ())
                .map_err(|e| DbError::sqlx("deleting tenant", e))
        });
        self.counts.bump();
        deleted
    }

    /// Tenants matching `filter`, ordered by schema name (the MySQL table is clustered by it, so
    /// a page is a range read), with the total count (kept for a second, see [`COUNT_TTL`]).
    /// Limit and offset are bound, so every page shares one prepared statement. The whole list
    /// (the fleet) needs no count.
    pub async fn list_tenants(&self, filter: &TenantFilter) -> Result<TenantPage, DbError> {
        let status = filter.status.map(TenantStatus::as_str);
        let paged = filter.limit.is_some() || filter.offset > 0 || filter.after.is_some();
        let mut conds = Vec::new();
        if status.is_some() {
            conds.push("status = ?");
        }
        if filter.after.is_some() {
            conds.push("schema_name > ?");
        }
        // `_` matches any one character in LIKE: escaped, it stands for itself.
        let prefix = filter.name_prefix.as_deref().map(|p| {
            format!(
                "{}%",
                p.replace('!', "!!").replace('_', "!_").replace('%', "!%")
            )
        });
        if prefix.is_some() {
            conds.push("schema_name LIKE ? ESCAPE '!'");
        }
        let where_ = if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        };
        let mut sql = format!("SELECT {COLUMNS} FROM tenants{where_} ORDER BY schema_name");
        if paged {
            sql.push_str(" LIMIT ? OFFSET ?");
        }
        let limit = filter
            .limit
            .map_or(i64::MAX, |l| l.min(i64::MAX as u64) as i64);
        let offset = filter.offset.min(i64::MAX as u64) as i64;
        let tenants = with_pool!(&self.pool, |p, b, Id| {
            let mut q = sqlx::query(placeholders(b, &sql));
            if let Some(s) = status {
                q = q.bind(s);
            }
            if let Some(a) = &filter.after {
                q = q.bind(a.as_str());
            }
            if let Some(pattern) = &prefix {
                q = q.bind(pattern.as_str());
            }
            if paged {
                q = q.bind(limit).bind(offset);
            }
            let rows = q
                .fetch_all(p)
                .await
                .map_err(|e| DbError::sqlx("listing tenants", e))?;
            rows.iter()
                .map(|r| decode_tenant!(r, Id))
                .collect::<Result<Vec<_>, _>>()
        })?;
        let total = if !paged {
            tenants.len() as i64
        } else if let Some(pattern) = &prefix {
            self.count_prefixed(status, pattern).await?
        } else if let Some(n) = self.counts.get(filter.status) {
            n
        } else {
            let generation = self.counts.generation();
            let n = self.count_tenants(status).await?;
            self.counts.put(filter.status, generation, n);
            n
        };
        Ok(TenantPage { tenants, total })
    }

    /// Active and provisioning tenants whose recorded version is older than `latest` (or
    /// none yet), by name, at most `limit`.
    pub async fn tenants_behind(
        &self,
        latest: Option<i64>,
        limit: u64,
    ) -> Result<Vec<TenantRow>, DbError> {
        let Some(latest) = latest else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM tenants WHERE status IN ('active', 'provisioning') \
             AND (schema_version IS NULL OR schema_version < ?) ORDER BY schema_name LIMIT ?"
        );
        let limit = limit.min(i64::MAX as u64) as i64;
        with_pool!(&self.pool, |p, b, Id| {
            let rows = sqlx::query(placeholders(b, &sql))
                .bind(latest)
                .bind(limit)
                .fetch_all(p)
                .await
                .map_err(|e| DbError::sqlx("listing tenants behind", e))?;
            rows.iter()
                .map(|r| decode_tenant!(r, Id))
                .collect::<Result<Vec<_>, _>>()
        })
    }

    /// Tenants (in `status`) whose names match the escaped `LIKE` pattern (not cached).
    async fn count_prefixed(&self, status: Option<&str>, pattern: &str) -> Result<i64, DbError> {
        let sql = if status.is_some() {
            "SELECT COUNT(*) FROM tenants WHERE status = ? AND schema_name LIKE ? ESCAPE '!'"
        } else {
            "SELECT COUNT(*) FROM tenants WHERE schema_name LIKE ? ESCAPE '!'"
        };
        with_pool!(&self.pool, |p, b, _Id| {
            let mut c = sqlx::query_scalar::<_, i64>(placeholders(b, sql));
            if let Some(s) = status {
                c = c.bind(s);
            }
            c.bind(pattern)
                .fetch_one(p)
                .await
                .map_err(|e| DbError::sqlx("counting tenants", e))
        })
    }

    async fn count_tenants(&self, status: Option<&str>) -> Result<i64, DbError> {
        let sql = if status.is_some() {
            "SELECT COUNT(*) FROM tenants WHERE status = ?"
        } else {
            "SELECT COUNT(*) FROM tenants"
        };
        with_pool!(&self.pool, |p, b, _Id| {
            let mut c = sqlx::query_scalar::<_, i64>(placeholders(b, sql));
            if let Some(s) = status {
                c = c.bind(s);
            }
            c.fetch_one(p)
                .await
                .map_err(|e| DbError::sqlx("counting tenants", e))
        })
    }

    /// Moves on every write this process makes to tenant rows: a value derived from the
    /// rows under one generation is still right while the generation is unchanged (up to what
    /// other processes wrote meanwhile).
    pub fn tenant_generation(&self) -> u64 {
        self.counts.generation()
    }

    /// Number of tenants per server and recorded schema version (all statuses).
    pub async fn count_by_server_version(
        &self,
    ) -> Result<Vec<(String, Option<i64>, i64)>, DbError> {
        with_pool!(&self.pool, |p, _b, _Id| {
            let rows: Vec<(String, Option<i64>, i64)> = sqlx::query_as(
                "SELECT server, schema_version, COUNT(*) FROM tenants \
                 GROUP BY server, schema_version ORDER BY server, schema_version",
            )
            .fetch_all(p)
            .await
            .map_err(|e| DbError::sqlx("counting tenants per server", e))?;
            Ok(rows)
        })
    }

    /// Number of tenants per status (for metrics).
    pub async fn count_by_status(&self) -> Result<Vec<(String, i64)>, DbError> {
        with_pool!(&self.pool, |p, _b, _Id| {
            let rows: Vec<(String, i64)> =
                sqlx::query_as("SELECT status, COUNT(*) FROM tenants GROUP BY status")
                    .fetch_all(p)
                    .await
                    .map_err(|e| DbError::sqlx("counting tenants", e))?;
            Ok(rows)
        })
    }
}

/// `?, ?, …`: the placeholders of an `IN` list of `n` values.
fn in_list(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// Binds `names` in turn: the values of an `IN` list written by [`in_list`].
fn bind_names<'q, DB>(
    q: sqlx::query::Query<'q, DB, DB::Arguments>,
    names: &[&'q str],
) -> sqlx::query::Query<'q, DB, DB::Arguments>
where
    DB: sqlx::Database,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    names.iter().fold(q, |q, n| q.bind(*n))
}
