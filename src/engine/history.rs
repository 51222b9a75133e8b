//! One tenant's own migration history, as its `_tenant_migrations` table records it: read
//! without the schema's migration lock (a read never waits for a running migration), each row
//! told whether its recorded checksum still matches the file on disk.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::instrument;

use super::{Engine, EngineError};
use crate::db::{DbError, SchemaState, Target, retry_read};
use crate::domain::SchemaName;
use crate::migrate::Scope;
use crate::migrate::history::{HistoryRow, RowState};

/// A tenant's migration history, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TenantHistory {
    pub schema: String,
    /// The schema exists on its server. A tenant the catalog lists may have none (yet): one
    /// still provisioning, or one whose provisioning failed. Its history is then empty.
    pub exists: bool,
    /// The history rows by ascending version (empty for a schema without a history table).
    pub migrations: Vec<HistoryEntry>,
}

/// One row of a tenant's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    pub version: i64,
    pub name: String,
    /// `applied`, `baselined` (recorded by `adopt`; counts as applied), `failed` or `running`
    /// (failed or interrupted: the schema is dirty until `repair`).
    pub state: RowState,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    /// Why the migration failed.
    pub error: Option<String>,
    /// SHA-256 (hex) of the migration file as it ran.
    pub checksum: String,
    /// True when the migration file on disk still has `checksum`; `null` when no file has
    /// this version any more.
    pub checksum_matches: Option<bool>,
}

impl Engine {
    /// `schema`'s history, read without its migration lock. A tenant the catalog does not list
    /// (the catalog's own schema included) is [`EngineError::NotFound`]; a listed tenant whose
    /// schema does not exist has an empty history (`exists` false).
    #[instrument(skip_all, fields(schema = %schema))]
    pub async fn tenant_history(&self, schema: &SchemaName) -> Result<TenantHistory, EngineError> {
        let Some(row) = self.catalog().get_tenant(schema.as_str()).await? else {
            return Err(EngineError::NotFound(format!(
                "tenant {schema} is not in the catalog"
            )));
        };
        let dialect = self.server_of(&row)?.dialect();
        let targets = [Target::Tenant(schema.clone())];
        let state = retry_read("history", || dialect.read_states(&targets))
            .await?
            .pop()
            .unwrap_or(SchemaState::Missing);
        let (exists, rows) = match state {
            SchemaState::Missing => (false, Vec::new()),
            SchemaState::Uninitialised => (true, Vec::new()),
            SchemaState::History(rows) => (true, rows),
            SchemaState::Unreadable(why) => {
                return Err(DbError::Unexpected(format!(
                    "the history of {schema} cannot be read: {why}"
                ))
                .into());
            }
        };
        let set = self.migrations(Scope::Tenant);
        let mut migrations: Vec<HistoryEntry> = rows
            .into_iter()
            .map(|r: HistoryRow| {
                let checksum_matches = set.get(r.version).map(|f| f.checksum == r.checksum);
                HistoryEntry {
                    version: r.version,
                    name: r.name,
                    state: r.state,
                    started_at: r.started_at,
                    finished_at: r.finished_at,
                    duration_ms: r.duration_ms,
                    error: r.error,
                    checksum: r.checksum,
                    checksum_matches,
                }
            })
            .collect();
        migrations.sort_by_key(|m| m.version);
        Ok(TenantHistory {
            schema: schema.to_string(),
            exists,
            migrations,
        })
    }
}
