//! Reports of fleet runs: one `TenantReport` per schema and a `FleetReport` summing them —
//! the JSON document `--output json` prints and the API returns.

use serde::Serialize;
use uuid::Uuid;

use super::waves::{self, HaltReason, WaveReport};
use crate::migrate::{Scope, StepReport, TargetResult};

/// What happened to one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeStatus {
    /// Provisioned now (schema created or resumed, then migrated).
    Created,
    /// Pending migrations were applied.
    Migrated,
    /// Nothing to do.
    UpToDate,
    /// `create` of a tenant that is already active.
    Exists,
    /// Dry run: these migrations would run.
    Planned,
    /// A migration failed; the schema is at its previous version.
    Failed,
    /// A migration failed half-way (or earlier, and was never repaired): needs `repair`.
    Dirty,
    /// An applied migration's file changed or vanished: nothing was run.
    ChecksumMismatch,
    /// The catalog lists the tenant but its schema does not exist.
    Missing,
    /// Not started because an earlier tenant failed (without `--continue-on-error`) or the
    /// job was cancelled.
    NotAttempted,
    /// Left alone on purpose (being provisioned by `create`, or archived).
    Skipped,
    /// `create` of a name whose schema exists and was not made by this tool: refused,
    /// nothing changed.
    Foreign,
}

impl OutcomeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeStatus::Created => "created",
            OutcomeStatus::Migrated => "migrated",
            OutcomeStatus::UpToDate => "up_to_date",
            OutcomeStatus::Exists => "exists",
            OutcomeStatus::Planned => "planned",
            OutcomeStatus::Failed => "failed",
            OutcomeStatus::Dirty => "dirty",
            OutcomeStatus::ChecksumMismatch => "checksum_mismatch",
            OutcomeStatus::Missing => "missing",
            OutcomeStatus::NotAttempted => "not_attempted",
            OutcomeStatus::Skipped => "skipped",
            OutcomeStatus::Foreign => "foreign",
        }
    }

    /// Counts as a failure for the exit code and the `failed` total.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            OutcomeStatus::Failed
                | OutcomeStatus::Dirty
                | OutcomeStatus::ChecksumMismatch
                | OutcomeStatus::Missing
                | OutcomeStatus::Foreign
        )
    }
}

/// One tenant's line in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TenantReport {
    pub schema: String,
    /// Version before the run (`null`: never migrated).
    pub from: Option<i64>,
    /// Version after the run (in a dry run: the version it would reach).
    pub to: Option<i64>,
    pub status: OutcomeStatus,
    pub duration_ms: i64,
    pub error: Option<String>,
    /// Attempts made (more than 1 when transient errors were retried).
    pub attempts: u32,
    /// Migrations applied (or, in a dry run, planned), in order.
    pub migrations: Vec<StepReport>,
}

impl TenantReport {
    /// The line of a schema a run brought to `res`, with `status`.
    pub fn from_result(schema: &str, res: TargetResult, status: OutcomeStatus) -> Self {
        Self {
            from: res.from,
            to: res.to,
            attempts: res.attempts,
            migrations: res.steps,
            ..Self::new(schema, status)
        }
    }

    /// `when_work` when the run applied (or planned) migrations, `up_to_date` otherwise.
    pub fn worked(res: &TargetResult, when_work: OutcomeStatus) -> OutcomeStatus {
        if res.steps.is_empty() {
            OutcomeStatus::UpToDate
        } else {
            when_work
        }
    }

    pub fn new(schema: &str, status: OutcomeStatus) -> Self {
        Self {
            schema: schema.to_owned(),
            from: None,
            to: None,
            status,
            duration_ms: 0,
            error: None,
            attempts: 0,
            migrations: Vec::new(),
        }
    }
}

/// A whole run over one or many schemas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FleetReport {
    pub scope: Scope,
    pub dry_run: bool,
    /// `--target` when given.
    pub target: Option<i64>,
    /// Newest migration version available for the scope.
    pub latest: Option<i64>,
    /// Tenants migrated or created successfully.
    pub successful_migrations: usize,
    /// Tenants that failed (failed, dirty, checksum mismatch, missing schema).
    pub failed: usize,
    /// Tenants with nothing to do (up to date, already existing, left alone on purpose).
    pub skipped: usize,
    /// Tenants not started because of an earlier failure or a cancel.
    pub not_attempted: usize,
    /// Dry run: tenants that have migrations to run.
    pub planned: usize,
    /// Migrations applied over all tenants.
    pub migrations_applied: usize,
    pub duration_ms: i64,
    /// The job that recorded this run, when one did.
    pub job_id: Option<Uuid>,
    pub tenants: Vec<TenantReport>,
    /// The run's waves in the order they ran: `canary` then `fleet` with a canary, else one
    /// `fleet` wave of every tenant.
    pub waves: Vec<WaveReport>,
    /// Why the run stopped starting tenants early, when a canary or the failure budget did.
    pub halted: Option<HaltReason>,
}

impl FleetReport {
    /// Sums `tenants` (sorted by schema name) into a report.
    pub fn from_tenants(
        scope: Scope,
        dry_run: bool,
        target: Option<i64>,
        latest: Option<i64>,
        mut tenants: Vec<TenantReport>,
        duration_ms: i64,
    ) -> Self {
        tenants.sort_by(|a, b| a.schema.cmp(&b.schema));
        let count =
            |f: &dyn Fn(OutcomeStatus) -> bool| tenants.iter().filter(|t| f(t.status)).count();
        Self {
            scope,
            dry_run,
            target,
            latest,
            successful_migrations: count(&|s| {
                matches!(s, OutcomeStatus::Created | OutcomeStatus::Migrated)
            }),
            failed: count(&|s| s.is_failure()),
            skipped: count(&|s| {
                matches!(
                    s,
                    OutcomeStatus::UpToDate | OutcomeStatus::Exists | OutcomeStatus::Skipped
                )
            }),
            not_attempted: count(&|s| s == OutcomeStatus::NotAttempted),
            planned: count(&|s| s == OutcomeStatus::Planned),
            migrations_applied: if dry_run {
                0
            } else {
                tenants.iter().map(|t| t.migrations.len()).sum()
            },
            duration_ms,
            job_id: None,
            waves: waves::summarize(&tenants, None),
            halted: None,
            tenants,
        }
    }

    /// True when no tenant failed and none was left unattempted.
    pub fn all_good(&self) -> bool {
        self.failed == 0 && self.not_attempted == 0
    }
}
