//! `migration_jobs` and `migration_job_tenants`: fleet runs and each tenant's outcome, so a
//! job can be followed, inspected after the fact, and resumed after a crash. A job that must
//! be the only one of its kind (an API fleet upgrade) holds `active_slot`, a unique column:
//! the database, not a process, decides who runs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Catalog, col, now, uuid_of};
use crate::db::{DbError, placeholders, with_pool};

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
    /// Its process stopped (shutdown or crash) before it finished; it can be resumed.
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
    heartbeat_at, finished_at";

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
        })
    }};
}

/// Why a job could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartJobError {
    #[error("job {0} of this kind is already running")]
    AlreadyRunning(Uuid),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl Catalog {
    /// Inserts a running job. With `exclusive`, fails when another job holds the slot.
    pub async fn start_job(&self, job: &NewJob) -> Result<JobRow, StartJobError> {
        let id = Uuid::new_v4();
        let t = now();
        let slot = job.exclusive.then_some(job.kind.as_str());
        let sql = "INSERT INTO migration_jobs (id, kind, state, dry_run, continue_on_error, \
            concurrency, target_version, requested_by, owner, active_slot, created_at, started_at, \
            heartbeat_at) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
        let inserted = with_pool!(&self.pool, |p, b, Id| {
            sqlx::query(placeholders(b, sql))
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
                .bind(t)
                .execute(p)
                .await
                .map(|_| ())
                .map_err(|e| DbError::sqlx("starting job", e))
        });
        match inserted {
            Ok(_) => {}
            Err(e) if e.is_unique_violation() => {
                let holder = self.slot_holder(&job.kind).await?;
                return Err(StartJobError::AlreadyRunning(holder.unwrap_or(Uuid::nil())));
            }
            Err(e) => return Err(e.into()),
        }
        self.get_job(id)
            .await?
            .ok_or_else(|| DbError::Unexpected(format!("job {id} vanished after insert")).into())
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
            duration_ms, attempts, error, finished_at, job_id, schema_name) \
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
        let update = "UPDATE migration_job_tenants SET status = ?, from_version = ?, to_version = ?, \
            duration_ms = ?, attempts = ?, error = ?, finished_at = ? WHERE job_id = ? AND schema_name = ?";
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
            error, finished_at FROM migration_job_tenants WHERE job_id = ? ORDER BY schema_name";
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
                    })
                })
                .collect()
        })
    }

    /// Saves progress counts and proves the owner is alive.
    pub async fn heartbeat_job(&self, job: Uuid, counts: &JobCounts) -> Result<(), DbError> {
        let sql = "UPDATE migration_jobs SET heartbeat_at = ?, total = ?, succeeded = ?, failed = ?, \
            skipped = ?, not_attempted = ? WHERE id = ? AND state = 'running'";
        with_pool!(&self.pool, |p, b, Id| {
            sqlx::query(placeholders(b, sql))
                .bind(now())
                .bind(counts.total)
                .bind(counts.succeeded)
                .bind(counts.failed)
                .bind(counts.skipped)
                .bind(counts.not_attempted)
                .bind(Id::from(job))
                .execute(p)
                .await
                .map(|_| ())
                .map_err(|e| DbError::sqlx("updating job", e))
        })
    }

    /// Ends a job in `state` and frees its slot.
    pub async fn finish_job(
        &self,
        job: Uuid,
        state: JobState,
        counts: &JobCounts,
        error: Option<&str>,
    ) -> Result<(), DbError> {
        let sql = "UPDATE migration_jobs SET state = ?, active_slot = NULL, total = ?, succeeded = ?, \
            failed = ?, skipped = ?, not_attempted = ?, error = ?, finished_at = ?, heartbeat_at = ? \
            WHERE id = ?";
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
                .execute(p)
                .await
                .map(|_| ())
                .map_err(|e| DbError::sqlx("finishing job", e))
        })
    }

    /// Takes an interrupted job back for `owner` (resume). Fails with the running job's id
    /// when an exclusive slot is taken meanwhile; `Ok(None)` when the job is not interrupted.
    pub async fn resume_job(
        &self,
        job: Uuid,
        owner: &str,
        exclusive_kind: Option<&str>,
    ) -> Result<Option<JobRow>, StartJobError> {
        let sql = "UPDATE migration_jobs SET state = 'running', owner = ?, active_slot = ?, \
            heartbeat_at = ?, finished_at = NULL, error = NULL WHERE id = ? AND state = 'interrupted'";
        let updated = with_pool!(&self.pool, |p, b, Id| {
            sqlx::query(placeholders(b, sql))
                .bind(owner)
                .bind(exclusive_kind)
                .bind(now())
                .bind(Id::from(job))
                .execute(p)
                .await
                .map(|r| r.rows_affected())
                .map_err(|e| DbError::sqlx("resuming job", e))
        });
        match updated {
            Ok(0) => Ok(None),
            Ok(_) => Ok(self.get_job(job).await?),
            Err(e) if e.is_unique_violation() => {
                let kind = exclusive_kind.unwrap_or_default();
                let holder = self.slot_holder(kind).await?;
                Err(StartJobError::AlreadyRunning(holder.unwrap_or(Uuid::nil())))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Marks running jobs whose owner stopped proving it is alive as `interrupted` (and frees
    /// their slot). With `owner`, marks that process's own running jobs regardless of age
    /// (graceful shutdown). Returns how many were marked.
    pub async fn interrupt_stale_jobs(
        &self,
        stale_before: DateTime<Utc>,
        owner: Option<&str>,
    ) -> Result<u64, DbError> {
        let (cond, who) = match owner {
            Some(o) => ("owner = ?", o.to_owned()),
            None => ("heartbeat_at < ?", String::new()),
        };
        let sql = format!(
            "UPDATE migration_jobs SET state = 'interrupted', active_slot = NULL, finished_at = ?, \
             error = 'the process running this job stopped before it finished' \
             WHERE state IN ('running', 'queued') AND {cond}"
        );
        with_pool!(&self.pool, |p, b, _Id| {
            let q = sqlx::query(placeholders(b, &sql)).bind(now());
            let q = if owner.is_some() {
                q.bind(who.as_str())
            } else {
                q.bind(stale_before)
            };
            q.execute(p)
                .await
                .map(|r| r.rows_affected())
                .map_err(|e| DbError::sqlx("marking interrupted jobs", e))
        })
    }
}
