//! The catalog: repository functions over the public schema's tables (`tenants`,
//! `admin_master_users`, `migration_jobs`, `migration_job_tenants`, `audit_log`). Each query is
//! written once and runs on any backend through `with_pool!`; UUIDs bind natively on
//! PostgreSQL and as hyphenated text elsewhere, timestamps come from the application clock —
//! except job heartbeats and lease expiries, written and compared on the database server's
//! clock (MySQL, PostgreSQL) so replicas with skewed clocks agree on whose lease has expired.

mod admins;
mod audit;
mod jobs;
mod tenants;

use chrono::{DateTime, Utc};
use sqlx::Row;

pub use admins::{AdminPatch, AdminRow, AdminUpdate};
pub use audit::{AuditEntry, AuditQuery};
pub use jobs::{
    Beat, ExpiredJob, HaltReason, JobCounts, JobFilter, JobRow, JobState, JobTenantRow, JobWaves,
    NewJob, StartJobError, WaveReport,
};
pub use tenants::{TenantFilter, TenantPage, TenantRow, TenantStatus};

use crate::db::{DbError, DbPool};

/// Repository over the catalog's tables.
#[derive(Clone, Debug)]
pub struct Catalog {
    pool: DbPool,
    counts: std::sync::Arc<tenants::CountCache>,
}

impl Catalog {
    pub fn new(pool: DbPool) -> Self {
        Self {
            pool,
            counts: std::sync::Arc::default(),
        }
    }

    pub fn pool(&self) -> &DbPool {
        &self.pool
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), DbError> {
        crate::db::with_pool!(&self.pool, |p, _b, _Id| {
            // Executed, not decoded: `SELECT 1` is a 32-bit integer on PostgreSQL and a 64-bit
            // one elsewhere.
            sqlx::query("SELECT 1")
                .execute(p)
                .await
                .map(|_| ())
                .map_err(|e| DbError::sqlx("pinging the catalog", e))
        })
    }
}

/// Reads column `i` of `row`, naming the column in the error.
pub(crate) fn col<'r, R, T>(row: &'r R, i: usize) -> Result<T, DbError>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    T: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    row.try_get(i)
        .map_err(|e| DbError::sqlx("decoding a catalog row", e))
}

/// A UUID column's value, whichever way the driver decodes it (native or hyphenated text).
pub(crate) fn uuid_of(v: impl Into<uuid::Uuid>) -> uuid::Uuid {
    v.into()
}

/// The current time, truncated to microseconds (what every backend stores).
pub(crate) fn now() -> DateTime<Utc> {
    let t = Utc::now();
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}
