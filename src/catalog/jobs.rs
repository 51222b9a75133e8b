//! `migration_jobs` and `migration_job_tenants`: fleet runs and each tenant's outcome, so a
//! job can be followed, inspected after the fact, and resumed after a crash. A job that must
//! be the only one of its kind (an API fleet upgrade) holds `active_slot`, a unique column:
//! the database, not a process, decides who runs.
//!
//! A running job is leased to its `owner` process until `lease_expires_at`: the owner's
//! heartbeat moves `heartbeat_at` and the expiry forward; its heartbeat and its final write
//! apply only while it still holds the job, so a job another process took over is never
//! written back by its former owner (a tenant already in flight still records its own
//! outcome). Once the lease has expired, [`Catalog::take_over_job`] gives the job to another
//! process with one conditional UPDATE (compare-and-swap on id, previous owner, state
//! `running` and the expired lease), so of replicas racing for it exactly one wins; the job is
//! recounted from its per-tenant outcomes as it changes hands and `takeovers` goes up. A
//! graceful shutdown hands a job off ([`Catalog::hand_off_job`]): its lease expires at once
//! and it stays `running`. Unlike the other catalog timestamps, `heartbeat_at` and
//! `lease_expires_at` are written and compared on the *lease clock*: the database server's
//! clock on MySQL and PostgreSQL (replicas' own clocks may disagree), the application's on
//! SQLite (a local file).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Catalog, col, now, uuid_of};
use crate::db::{Backend, DbError, placeholders, with_pool};

/// Life cycle of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    /// Every tenant is at the target (or was skipped as up to date).
    Succeeded,
    /// At least one tenant failed.
    Failed,
    /// Stopped on request at a tenant boundary.
    Cancelled,
    /// Stopped before it finished by a CLI run interrupted with Ctrl-C (a service hands its
    /// jobs off instead, and a dead owner's job is taken over); it can be resumed.
    Interrupted,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            "interrupted" => JobState::Interrupted,
            _ => return None,
        })
    }

    pub fn is_finished(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

/// Tenant counts of a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct JobCounts {
    pub total: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub skipped: i64,
    pub not_attempted: i64,
}

/// Why a fleet run stopped starting tenants before it had tried them all (a cancel, a
/// shutdown and the plain stop at the first failure without `continue_on_error` have no
/// reason here: the job's state and the outcomes say those).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HaltReason {
    /// A tenant of the canary wave failed: the fleet wave was not started.
    CanaryFailed,
    /// The failure budget (`max_failures`) was spent: no tenant started after it.
    MaxFailures,
}

impl HaltReason {
    pub fn as_str(self) -> &'static str {
        match self {
            HaltReason::CanaryFailed => "canary_failed",
            HaltReason::MaxFailures => "max_failures",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "canary_failed" => HaltReason::CanaryFailed,
            "max_failures" => HaltReason::MaxFailures,
            _ => return None,
        })
    }
}

/// One wave of a fleet run (`canary`, then `fleet`) and how its tenants ended. The counts
/// use the run's: `skipped` holds up-to-date and left-alone tenants, `planned` a dry run's
/// tenants with work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WaveReport {
    /// `canary` or `fleet`.
    pub name: String,
    /// Schema names of the wave's tenants, sorted.
    pub tenants: Vec<String>,
    pub succeeded: usize,
    pub failed: usize,
    pub skipped: usize,
    pub planned: usize,
    pub not_attempted: usize,
}

/// How a finished fleet job ran: its waves and why it halted, if it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobWaves {
    pub waves: Vec<WaveReport>,
    pub halted: Option<HaltReason>,
}

/// One row of `migration_jobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct JobRow {
    pub id: Uuid,
    /// `upgrade_all`, `upgrade_public`.
    pub kind: String,
    pub state: JobState,
    pub dry_run: bool,
    pub continue_on_error: bool,
    pub concurrency: i64,
    pub target_version: Option<i64>,
    /// Who asked: an admin's e-mail, or `cli`.
    pub requested_by: Option<String>,
    #[serde(flatten)]
    pub counts: JobCounts,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The canary wave asked for: its first N tenants with work.
    pub canary: Option<i64>,
    /// The canary wave asked for: these tenants.
    pub canary_tenants: Option<Vec<String>>,
    /// The failure budget: no tenant starts once this many have failed.
    pub max_failures: Option<i64>,
    /// Why the run stopped early (set when the job ends).
    pub halted: Option<HaltReason>,
    /// The run's waves with their counts (set when the job ends).
    pub waves: Option<Vec<WaveReport>>,
    /// A cancel was asked (on any replica); the running replica stops at the next tenant
    /// boundary and the job ends as `cancelled`.
    pub cancel_requested: bool,
    /// The replica (process) that holds the job: `<pid>-<random>`.
    pub owner: Option<String>,
    /// Until when the owner holds the job (on the lease clock); a running job past it is taken
    /// over by another replica.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// How many times the job was taken over from an owner whose lease had expired.
    pub takeovers: i64,
}

/// What a new job asks for.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub dry_run: bool,
    pub continue_on_error: bool,
    pub concurrency: i64,
    pub target_version: Option<i64>,
    pub requested_by: Option<String>,
    /// Take the kind's single slot: fail with the running job's id when it is taken.
    pub exclusive: bool,
    /// Process that runs it.
    pub owner: String,
    /// Canary wave: the first N tenants with work.
    pub canary: Option<i64>,
    /// Canary wave: these tenants (validated schema names).
    pub canary_tenants: Option<Vec<String>>,
    /// Failure budget.
    pub max_failures: Option<i64>,
    /// How long the owner holds the job without a heartbeat.
    pub lease: Duration,
}

/// One tenant's outcome within a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct JobTenantRow {
    pub schema_name: String,
    pub status: String,
    pub from_version: Option<i64>,
    pub to_version: Option<i64>,
    pub duration_ms: i64,
    pub attempts: i64,
    pub error: Option<String>,
    pub finished_at: DateTime<Utc>,
    /// The replica (process) that ran the tenant: `<pid>-<random>` of the service, as the
    /// job's `owner` was then.
    pub owner: Option<String>,
}

/// Which jobs to list.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub limit: u64,
    pub offset: u64,
}

const COLUMNS: &str = "id, kind, state, dry_run, continue_on_error, concurrency, target_version, \
    requested_by, total, succeeded, failed, skipped, not_attempted, error, created_at, started_at, \
    heartbeat_at, finished_at, canary, canary_tenants, max_failures, halted, waves, cancel_requested, \
    owner, lease_expires_at, takeovers";

/// A JSON column read back; a value that does not parse (written by hand) reads as absent.
fn json_column<T: serde::de::DeserializeOwned>(raw: Option<String>) -> Option<T> {
    raw.and_then(|s| serde_json::from_str(&s).ok())
}

macro_rules! decode_job {
    ($r:expr, $Id:ty) => {{
        let r = $r;
        let state: String = col(r, 2)?;
        Ok::<JobRow, DbError>(JobRow {
            id: uuid_of(col::<_, $Id>(r, 0)?),
            kind: col(r, 1)?,
            state: JobState::parse(&state).unwrap_or(JobState::Failed),
            dry_run: col(r, 3)?,
            continue_on_error: col(r, 4)?,
            concurrency: col(r, 5)?,
            target_version: col(r, 6)?,
            requested_by: col(r, 7)?,
            counts: JobCounts {
                total: col(r, 8)?,
                succeeded: col(r, 9)?,
                failed: col(r, 10)?,
                skipped: col(r, 11)?,
                not_attempted: col(r, 12)?,
            },
            error: col(r, 13)?,
            created_at: col(r, 14)?,
            started_at: col(r, 15)?,
            heartbeat_at: col(r, 16)?,
            finished_at: col(r, 17)?,
            canary: col(r, 18)?,
            canary_tenants: json_column(col(r, 19)?),
            max_failures: col(r, 20)?,
            halted: col::<_, Option<String>>(r, 21)?
                .as_deref()
                .and_then(HaltReason::parse),
            waves: json_column(col(r, 22)?),
            cancel_requested: col(r, 23)?,
            owner: col(r, 24)?,
            lease_expires_at: col(r, 25)?,
            takeovers: col(r, 26)?,
        })
    }};
}

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// Still the owner's running job.
    Ours,
    /// Still the owner's, and a replica asked for a cancel.
    CancelRequested,
    /// No longer the owner's running job.
    Lost,
}

/// A running job whose lease has expired: who held it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredJob {
    pub id: Uuid,
    pub kind: String,
    pub owner: Option<String>,
}

/// Why a job could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartJobError {
    #[error("job {0} of this kind is already running")]
    AlreadyRunning(Uuid),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// How often a unique-slot conflict is retried when the holder finishes before it can be named.
const SLOT_ATTEMPTS: usize = 5;

/// Outcomes of `migration_job_tenants` counted as succeeded, failed and skipped (the names of
/// `OutcomeStatus`, which lives above the catalog).
const SUCCEEDED: &[&str] = &["migrated", "created"];
const FAILED: &[&str] = &["failed", "dirty", "checksum_mismatch", "missing", "foreign"];
const SKIPPED: &[&str] = &["skipped", "exists", "up_to_date"];

/// A running job without a lease expiry (started before the leases' migration) has expired
/// once its heartbeat is this old, as it was judged before.
const LEGACY_STALE_AFTER: Duration = Duration::from_secs(5);

/// The lease clock's "now" in SQL: the database server's clock on MySQL and PostgreSQL, so that
/// replicas whose own clocks disagree still agree on whose heartbeat is old. SQLite's database
/// is a file on this machine, whose clock is the application's: there it is a bound value
/// (`bind_lease_now!`).
fn lease_now(b: Backend) -> &'static str {
    match b {
        Backend::MySql => "UTC_TIMESTAMP(6)",
        Backend::Postgres => "CURRENT_TIMESTAMP",
        Backend::Sqlite => "?",
    }
}

/// The lease clock's "now minus a bound duration" in SQL (`bind_lease_cutoff!`).
fn lease_cutoff(b: Backend) -> &'static str {
    match b {
        Backend::MySql => "UTC_TIMESTAMP(6) - INTERVAL ? MICROSECOND",
        Backend::Postgres => "CURRENT_TIMESTAMP - ? * INTERVAL '1 microsecond'",
        Backend::Sqlite => "?",
    }
}

/// The lease clock's "now plus a bound duration" in SQL (`bind_lease_until!`): a lease's expiry.
fn lease_until(b: Backend) -> &'static str {
    match b {
        Backend::MySql => "UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND",
        Backend::Postgres => "CURRENT_TIMESTAMP + ? * INTERVAL '1 microsecond'",
        Backend::Sqlite => "?",
    }
}

/// "The job's lease has expired" in SQL (`bind_expired!`): its expiry is past or, for a job
/// without one, its heartbeat is older than [`LEGACY_STALE_AFTER`].
fn expired(b: Backend) -> String {
    format!(
        "(lease_expires_at < {} OR (lease_expires_at IS NULL AND heartbeat_at < {}))",
        lease_now(b),
        lease_cutoff(b)
    )
}

/// Binds what [`lease_until`] needs for `$lease`: microseconds on a server, the expiry on
/// SQLite.
macro_rules! bind_lease_until {
    ($q:expr, $b:expr, $lease:expr) => {{
        let lease = chrono::Duration::from_std($lease).unwrap_or(chrono::Duration::MAX);
        if $b == Backend::Sqlite {
            $q.bind(now() + lease)
        } else {
            $q.bind(lease.num_microseconds().unwrap_or(i64::MAX))
        }
    }};
}

/// Binds what [`expired`] needs.
macro_rules! bind_expired {
    ($q:expr, $b:expr) => {{
        let q = bind_lease_now!($q, $b);
        bind_lease_cutoff!(q, $b, LEGACY_STALE_AFTER)
    }};
}

/// Binds what [`lease_now`] needs: nothing on a server, the application's time on SQLite.
macro_rules! bind_lease_now {
    ($q:expr, $b:expr) => {
        if $b == Backend::Sqlite {
            $q.bind(now())
        } else {
            $q
        }
    };
}

/// Binds what [`lease_cutoff`] needs for `$age`: microseconds on a server, the cut-off time on
/// SQLite.
macro_rules! bind_lease_cutoff {
    ($q:expr, $b:expr, $age:expr) => {{
        let age = chrono::Duration::from_std($age).unwrap_or(chrono::Duration::MAX);
        if $b == Backend::Sqlite {
            $q.bind(now() - age)
        } else {
            $q.bind(age.num_microseconds().unwrap_or(i64::MAX))
        }
    }};
}

/// The counts of a job whose run stopped without reporting them, from its per-tenant outcomes
/// (written as each tenant finishes) and the counts its last heartbeat saved (`stored`: the
/// plan's size, and the tenants skipped as up to date, which have no outcome row). Tenants
/// neither recorded nor skipped — in flight or never started — are `not_attempted`.
fn recount(stored: &JobCounts, by_status: &[(String, i64)]) -> JobCounts {
    let sum = |names: &[&str]| -> i64 {
        by_status
            .iter()
            .filter(|(s, _)| names.contains(&s.as_str()))
            .map(|(_, n)| n)
            .sum()
    };
    let recorded: i64 = by_status.iter().map(|(_, n)| n).sum();
    let planned = sum(&["planned"]);
    let succeeded = sum(SUCCEEDED);
    let failed = sum(FAILED);
    let skipped = stored.skipped.max(sum(SKIPPED));
    let total = stored
        .total
        .max(recorded)
        .max(succeeded + failed + skipped + planned);
    JobCounts {
        total,
        succeeded,
        failed,
        skipped,
        not_attempted: (total - succeeded - failed - skipped - planned).max(0),
    }
}

impl Catalog {
    /// Inserts a running job. With `exclusive`, fails with the holder's id when another job
    /// holds the slot.
    pub async fn start_job(&self, job: &NewJob) -> Result<JobRow, StartJobError> {
        let id = Uuid::new_v4();
        let slot = job.exclusive.then_some(job.kind.as_str());
        let canary_tenants = job
            .canary_tenants
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| DbError::Unexpected(format!("encoding the canary tenants: {e}")))?;
        for _ in 0..SLOT_ATTEMPTS {
            let t = now();
            let inserted = with_pool!(&self.pool, |p, b, Id| {
                let sql = format!(
                    "INSERT INTO migration_jobs (id, kind, state, dry_run, continue_on_error, \
                     concurrency, target_version, requested_by, owner, active_slot, created_at, \
                     started_at, canary, canary_tenants, max_failures, heartbeat_at, lease_expires_at) \
                     VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {}, {})",
                    lease_now(b),
                    lease_until(b)
                );
                let q = sqlx::query(placeholders(b, &sql))
                    .bind(Id::from(id))
                    .bind(&job.kind)
                    .bind(job.dry_run)
                    .bind(job.continue_on_error)
                    .bind(job.concurrency)
                    .bind(job.target_version)
                    .bind(job.requested_by.as_deref())
                    .bind(&job.owner)
                    .bind(slot)
                    .bind(t)
                    .bind(t)
                    .bind(job.canary)
                    .bind(canary_tenants.as_deref())
                    .bind(job.max_failures);
                let q = bind_lease_now!(q, b);
                bind_lease_until!(q, b, job.lease)
                    .execute(p)
                    .await
                    .map(|_| ())
                    .map_err(|e| DbError::sqlx("starting job", e))
            });
            match inserted {
                Ok(()) => {
                    return self.get_job(id).await?.ok_or_else(|| {
                        DbError::Unexpected(format!("job {id} vanished after insert")).into()
                    });
                }
                Err(e) if e.is_unique_violation() => {
                    // The holder may have finished since: then the slot is free, try again.
                    if let Some(holder) = self.slot_holder(&job.kind).await? {
                        return Err(StartJobError::AlreadyRunning(holder));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(slot_churn(&job.kind))
    }

    async fn slot_holder(&self, kind: &str) -> Result<Option<Uuid>, DbError> {
        with_pool!(&self.pool, |p, b, Id| {
            let row = sqlx::query(placeholders(
                b,
                "SELECT id FROM migration_jobs WHERE active_slot = ?",
            ))
            .bind(kind)
            .fetch_optional(p)
            .await
            .map_err(|e| DbError::sqlx("reading job slot", e))?;
            match row {
                Some(r) => Ok(Some(uuid_of(col::<_, Id>(&r, 0)?))),
                None => Ok(None),
            }
        })
    }

    pub async fn get_job(&self, id: Uuid) -> Result<Option<JobRow>, DbError> {
        let sql = format!("SELECT {COLUMNS} FROM migration_jobs WHERE id = ?");
        with_pool!(&self.pool, |p, b, Id| {
            let row = sqlx::query(placeholders(b, &sql))
                .bind(Id::from(id))
                .fetch_optional(p)
                .await
                .map_err(|e| DbError::sqlx("reading job", e))?;
            match row {
                Some(r) => Ok(Some(decode_job!(&r, Id)?)),
                None => Ok(None),
            }
        })
    }

    /// Jobs, newest first, with the total count.
    pub async fn list_jobs(&self, filter: &JobFilter) -> Result<(Vec<JobRow>, i64), DbError> {
        let cond = if filter.state.is_some() {
            " WHERE state = ?"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM migration_jobs{cond} ORDER BY created_at DESC, id LIMIT ? OFFSET ?"
        );
        let (limit, offset) = (
            filter.limit.min(i64::MAX as u64) as i64,
            filter.offset.min(i64::MAX as u64) as i64,
        );
        let count_sql = format!("SELECT COUNT(*) FROM migration_jobs{cond}");
        let state = filter.state.map(JobState::as_str);
        with_pool!(&self.pool, |p, b, Id| {
            let mut q = sqlx::query(placeholders(b, &sql));
            let mut c = sqlx::query_scalar::<_, i64>(placeholders(b, &count_sql));
            if let Some(s) = state {
                q = q.bind(s);
                c = c.bind(s);
            }
            let rows = q
                .bind(limit)
                .bind(offset)
                .fetch_all(p)
                .await
                .map_err(|e| DbError::sqlx("listing jobs", e))?;
            let total = c
                .fetch_one(p)
                .await
                .map_err(|e| DbError::sqlx("counting jobs", e))?;
            let jobs = rows
                .iter()
                .map(|r| decode_job!(r, Id))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((jobs, total))
        })
    }

    /// Records (or, on resume, replaces) one tenant's outcome. Insert first and update on a
    /// duplicate: no DELETE, so concurrent tenants of one job take no gap locks and cannot
    /// deadlock each other on MySQL.
    pub async fn record_job_tenant(&self, job: Uuid, t: &JobTenantRow) -> Result<(), DbError> {
        // Both statements take the same values in the same order.
        let insert = "INSERT INTO migration_job_tenants (status, from_version, to_version, \
            duration_ms, attempts, error, finished_at, owner, job_id, schema_name) \
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
        let update = "UPDATE migration_job_tenants SET status = ?, from_version = ?, to_version = ?, \
            duration_ms = ?, attempts = ?, error = ?, finished_at = ?, owner = ? \
            WHERE job_id = ? AND schema_name = ?";
        let mut written = Ok(());
        for sql in [insert, update] {
            written = with_pool!(&self.pool, |p, b, Id| {
                sqlx::query(placeholders(b, sql))
                    .bind(&t.status)
                    .bind(t.from_version)
                    .bind(t.to_version)
                    .bind(t.duration_ms)
                    .bind(t.attempts)
                    .bind(t.error.as_deref())
                    .bind(t.finished_at)
                    .bind(t.owner.as_deref())
                    .bind(Id::from(job))
                    .bind(&t.schema_name)
                    .execute(p)
                    .await
                    .map(|_| ())
                    .map_err(|e| DbError::sqlx("recording job outcome", e))
            });
            match &written {
                Err(e) if e.is_unique_violation() => continue,
                _ => break,
            }
        }
        written
    }

    /// Per-tenant outcomes of a job, by schema name.
    pub async fn job_tenants(&self, job: Uuid) -> Result<Vec<JobTenantRow>, DbError> {
        let sql = "SELECT schema_name, status, from_version, to_version, duration_ms, attempts, \
            error, finished_at, owner FROM migration_job_tenants WHERE job_id = ? ORDER BY schema_name";
        with_pool!(&self.pool, |p, b, Id| {
            let rows = sqlx::query(placeholders(b, sql))
                .bind(Id::from(job))
                .fetch_all(p)
                .await
                .map_err(|e| DbError::sqlx("reading job outcomes", e))?;
            rows.iter()
                .map(|r| {
                    Ok(JobTenantRow {
                        schema_name: col(r, 0)?,
                        status: col(r, 1)?,
                        from_version: col(r, 2)?,
                        to_version: col(r, 3)?,
                        duration_ms: col(r, 4)?,
                        attempts: col(r, 5)?,
                        error: col(r, 6)?,
                        finished_at: col(r, 7)?,
                        owner: col(r, 8)?,
                    })
                })
                .collect()
        })
    }

    /// Proves `owner` is alive (on the lease clock), extends its lease by `lease` from now and,
    /// when given, saves progress counts. [`Beat::Lost`]: the job is no longer `owner`'s
    /// running job (another process took it over once its lease had expired): the owner must
    /// stop. [`Beat::CancelRequested`]: a replica asked for a cancel.
    pub async fn heartbeat_job(
        &self,
        job: Uuid,
        owner: &str,
        counts: Option<&JobCounts>,
        lease: Duration,
    ) -> Result<Beat, DbError> {
        let ours = self.beat(job, owner, counts, lease).await?;
        if !ours {
            return Ok(Beat::Lost);
        }
        let cancel: Option<bool> = with_pool!(&self.pool, |p, b, Id| {
            sqlx::query_scalar(placeholders(
                b,
                "SELECT cancel_requested FROM migration_jobs WHERE id = ?",
            ))
            .bind(Id::from(job))
            .fetch_optional(p)
            .await
            .map_err(|e| DbError::sqlx("reading job", e))
        })?;
        Ok(if cancel == Some(true) {
            Beat::CancelRequested
        } else {
            Beat::Ours
        })
    }

    async fn beat(
        &self,
        job: Uuid,
        owner: &str,
        counts: Option<&JobCounts>,
        lease: Duration,
    ) -> Result<bool, DbError> {
        with_pool!(&self.pool, |p, b, Id| {
            let sql = format!(
                "UPDATE migration_jobs SET heartbeat_at = {}, lease_expires_at = {}, \
                 total = COALESCE(?, total), \
                 succeeded = COALESCE(?, succeeded), failed = COALESCE(?, failed), \
                 skipped = COALESCE(?, skipped), not_attempted = COALESCE(?, not_attempted) \
                 WHERE id = ? AND owner = ? AND state = 'running'",
                lease_now(b),
                lease_until(b)
            );
            let q = sqlx::query(placeholders(b, &sql));
            let q = bind_lease_now!(q, b);
            bind_lease_until!(q, b, lease)
                .bind(counts.map(|c| c.total))
                .bind(counts.map(|c| c.succeeded))
                .bind(counts.map(|c| c.failed))
                .bind(counts.map(|c| c.skipped))
                .bind(counts.map(|c| c.not_attempted))
                .bind(Id::from(job))
                .bind(owner)
                .execute(p)
                .await
                .map(|r| r.rows_affected() > 0)
                .map_err(|e| DbError::sqlx("updating job", e))
        })
    }

    /// Asks the replica running `job` to cancel it (it reads the flag with its heartbeat).
    /// `Ok(false)`: the job is not running.
    pub async fn request_cancel(&self, job: Uuid) -> Result<bool, DbError> {
        with_pool!(&self.pool, |p, b, Id| {
            sqlx::query(placeholders(
                b,
                "UPDATE migration_jobs SET cancel_requested = TRUE WHERE id = ? AND state = 'running'",
            ))
            .bind(Id::from(job))
            .execute(p)
            .await
            .map(|r| r.rows_affected() > 0)
            .map_err(|e| DbError::sqlx("cancelling job", e))
        })
    }

    /// Ends `owner`'s running job in `state` and frees its slot. `Ok(false)`: the job was no
    /// longer `owner`'s running job (see [`Catalog::heartbeat_job`]); nothing was written.
    pub async fn finish_job(
        &self,
        job: Uuid,
        owner: &str,
        state: JobState,
        counts: &JobCounts,
        error: Option<&str>,
    ) -> Result<bool, DbError> {
        let sql = "UPDATE migration_jobs SET state = ?, active_slot = NULL, total = ?, succeeded = ?, \
            failed = ?, skipped = ?, not_attempted = ?, error = ?, finished_at = ?, heartbeat_at = ? \
            WHERE id = ? AND owner = ? AND state IN ('running', 'queued')";
        let t = now();
        with_pool!(&self.pool, |p, b, Id| {
            sqlx::query(placeholders(b, sql))
                .bind(state.as_str())
                .bind(counts.total)
                .bind(counts.succeeded)
                .bind(counts.failed)
                .bind(counts.skipped)
                .bind(counts.not_attempted)
                .bind(error)
                .bind(t)
                .bind(t)
                .bind(Id::from(job))
                .bind(owner)
                .execute(p)
                .await
                .map(|r| r.rows_affected() > 0)
                .map_err(|e| DbError::sqlx("finishing job", e))
        })
    }

    /// Saves how `owner`'s running job ran (its waves, why it halted), just before it ends.
    /// `Ok(false)`: the job is no longer `owner`'s running job; nothing was written.
    pub async fn record_job_waves(
        &self,
        job: Uuid,
        owner: &str,
        waves: &JobWaves,
    ) -> Result<bool, DbError> {
        let encoded = serde_json::to_string(&waves.waves)
            .map_err(|e| DbError::Unexpected(format!("encoding the job's waves: {e}")))?;
        let sql = "UPDATE migration_jobs SET waves = ?, halted = ? \
            WHERE id = ? AND owner = ? AND state = 'running'";
        with_pool!(&self.pool, |p, b, Id| {
            sqlx::query(placeholders(b, sql))
                .bind(&encoded)
                .bind(waves.halted.map(HaltReason::as_str))
                .bind(Id::from(job))
                .bind(owner)
                .execute(p)
                .await
                .map(|r| r.rows_affected() > 0)
                .map_err(|e| DbError::sqlx("recording job waves", e))
        })
    }

    /// Takes an interrupted job back for `owner` (resume). Fails with the holder's id when an
    /// exclusive slot is taken — possibly by this very job, resumed by someone else meanwhile;
    /// `Ok(None)` when the job is not interrupted (any more).
    pub async fn resume_job(
        &self,
        job: Uuid,
        owner: &str,
        exclusive_kind: Option<&str>,
        lease: Duration,
    ) -> Result<Option<JobRow>, StartJobError> {
        for _ in 0..SLOT_ATTEMPTS {
            let updated = with_pool!(&self.pool, |p, b, Id| {
                let sql = format!(
                    "UPDATE migration_jobs SET state = 'running', owner = ?, active_slot = ?, \
                     heartbeat_at = {}, lease_expires_at = {}, finished_at = NULL, error = NULL, \
                     waves = NULL, halted = NULL, cancel_requested = FALSE \
                     WHERE id = ? AND state = 'interrupted'",
                    lease_now(b),
                    lease_until(b)
                );
                let q = sqlx::query(placeholders(b, &sql))
                    .bind(owner)
                    .bind(exclusive_kind);
                let q = bind_lease_now!(q, b);
                bind_lease_until!(q, b, lease)
                    .bind(Id::from(job))
                    .execute(p)
                    .await
                    .map(|r| r.rows_affected())
                    .map_err(|e| DbError::sqlx("resuming job", e))
            });
            match updated {
                Ok(0) => return Ok(None),
                Ok(_) => return Ok(self.get_job(job).await?),
                Err(e) if e.is_unique_violation() => {
                    let kind = exclusive_kind.unwrap_or_default();
                    // The holder may have finished since: then the slot is free, try again.
                    if let Some(holder) = self.slot_holder(kind).await? {
                        return Err(StartJobError::AlreadyRunning(holder));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(slot_churn(exclusive_kind.unwrap_or_default()))
    }

    /// The counts of `job` recomputed from its per-tenant outcomes ([`recount`]).
    pub async fn recount_job(&self, job: Uuid) -> Result<JobCounts, DbError> {
        let stored = self
            .get_job(job)
            .await?
            .map(|j| j.counts)
            .unwrap_or_default();
        let sql = "SELECT status, COUNT(*) FROM migration_job_tenants WHERE job_id = ? \
            GROUP BY status";
        let by_status = with_pool!(&self.pool, |p, b, Id| {
            let rows = sqlx::query(placeholders(b, sql))
                .bind(Id::from(job))
                .fetch_all(p)
                .await
                .map_err(|e| DbError::sqlx("counting job outcomes", e))?;
            rows.iter()
                .map(|r| Ok((col::<_, String>(r, 0)?, col::<_, i64>(r, 1)?)))
                .collect::<Result<Vec<_>, DbError>>()
        })?;
        Ok(recount(&stored, &by_status))
    }

    /// Running jobs whose lease has expired (on the lease clock), oldest first.
    pub async fn expired_jobs(&self) -> Result<Vec<ExpiredJob>, DbError> {
        with_pool!(&self.pool, |p, b, Id| {
            let sql = format!(
                "SELECT id, kind, owner FROM migration_jobs WHERE state = 'running' AND {} \
                 ORDER BY created_at, id",
                expired(b)
            );
            let q = sqlx::query(placeholders(b, &sql));
            let rows = bind_expired!(q, b)
                .fetch_all(p)
                .await
                .map_err(|e| DbError::sqlx("looking for expired job leases", e))?;
            rows.iter()
                .map(|r| {
                    Ok(ExpiredJob {
                        id: uuid_of(col::<_, Id>(r, 0)?),
                        kind: col(r, 1)?,
                        owner: col(r, 2)?,
                    })
                })
                .collect::<Result<Vec<_>, DbError>>()
        })
    }

    /// Takes `expired` over for `owner` with a lease of `lease`: one conditional UPDATE that
    /// applies only while the job is still `running`, still held by the owner that
    /// [`Catalog::expired_jobs`] saw and its lease still expired — so of processes racing for
    /// it exactly one wins, and an owner that beat meanwhile keeps it. The winner gets the job
    /// recounted from its per-tenant outcomes, with `takeovers` raised by one. `Ok(None)`:
    /// another process won, or the owner was alive after all.
    pub async fn take_over_job(
        &self,
        expired_job: &ExpiredJob,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<JobRow>, DbError> {
        let job = expired_job.id;
        let counts = self.recount_job(job).await?;
        let taken = with_pool!(&self.pool, |p, b, Id| {
            let sql = format!(
                "UPDATE migration_jobs SET owner = ?, heartbeat_at = {}, lease_expires_at = {}, \
                 takeovers = takeovers + 1, total = ?, succeeded = ?, failed = ?, skipped = ?, \
                 not_attempted = ? \
                 WHERE id = ? AND state = 'running' AND owner = ? AND {}",
                lease_now(b),
                lease_until(b),
                expired(b)
            );
            let q = sqlx::query(placeholders(b, &sql)).bind(owner);
            let q = bind_lease_now!(q, b);
            let q = bind_lease_until!(q, b, lease)
                .bind(counts.total)
                .bind(counts.succeeded)
                .bind(counts.failed)
                .bind(counts.skipped)
                .bind(counts.not_attempted)
                .bind(Id::from(job))
                .bind(expired_job.owner.as_deref().unwrap_or_default());
            bind_expired!(q, b)
                .execute(p)
                .await
                .map(|r| r.rows_affected() > 0)
                .map_err(|e| DbError::sqlx("taking over a job", e))
        })?;
        if !taken {
            return Ok(None);
        }
        self.get_job(job).await
    }

    /// Hands `owner`'s running job off: its lease expires now (on the lease clock) and it
    /// stays `running`, so another replica takes it over at once; the counts are saved.
    /// `Ok(false)`: the job was no longer `owner`'s running job.
    pub async fn hand_off_job(
        &self,
        job: Uuid,
        owner: &str,
        counts: &JobCounts,
    ) -> Result<bool, DbError> {
        with_pool!(&self.pool, |p, b, Id| {
            let sql = format!(
                "UPDATE migration_jobs SET lease_expires_at = {}, total = ?, succeeded = ?, \
                 failed = ?, skipped = ?, not_attempted = ? \
                 WHERE id = ? AND owner = ? AND state = 'running'",
                lease_now(b)
            );
            let q = sqlx::query(placeholders(b, &sql));
            bind_lease_now!(q, b)
                .bind(counts.total)
                .bind(counts.succeeded)
                .bind(counts.failed)
                .bind(counts.skipped)
                .bind(counts.not_attempted)
                .bind(Id::from(job))
                .bind(owner)
                .execute(p)
                .await
                .map(|r| r.rows_affected() > 0)
                .map_err(|e| DbError::sqlx("handing a job off", e))
        })
    }
}

/// A slot that kept changing hands faster than it could be taken or its holder named.
fn slot_churn(kind: &str) -> StartJobError {
    StartJobError::Db(DbError::Unexpected(format!(
        "the {kind} job slot kept changing hands; try again"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(total: i64, skipped: i64) -> JobCounts {
        JobCounts {
            total,
            skipped,
            ..JobCounts::default()
        }
    }

    fn statuses(v: &[(&str, i64)]) -> Vec<(String, i64)> {
        v.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect()
    }

    #[test]
    fn recount_takes_outcomes_from_the_tenant_rows() {
        // The last heartbeat saw the plan (5 tenants, 1 up to date) but no outcome yet.
        let c = recount(&counts(5, 1), &statuses(&[("migrated", 2), ("failed", 1)]));
        assert_eq!(
            c,
            JobCounts {
                total: 5,
                succeeded: 2,
                failed: 1,
                skipped: 1,
                not_attempted: 1
            }
        );
    }

    #[test]
    fn recount_without_a_saved_plan_counts_what_is_recorded() {
        let c = recount(
            &JobCounts::default(),
            &statuses(&[("created", 1), ("dirty", 1), ("skipped", 1)]),
        );
        assert_eq!(
            c,
            JobCounts {
                total: 3,
                succeeded: 1,
                failed: 1,
                skipped: 1,
                not_attempted: 0
            }
        );
    }

    #[test]
    fn recount_of_a_dry_run_leaves_planned_tenants_out_of_not_attempted() {
        let c = recount(&counts(3, 0), &statuses(&[("planned", 2)]));
        assert_eq!((c.total, c.succeeded, c.not_attempted), (3, 0, 1));
    }
}
