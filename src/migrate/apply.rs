//! Runs a plan on one schema: lock, read history, plan, execute each pending migration
//! statement by statement, record it — retrying the whole schema on transient errors (3
//! attempts, exponential backoff with jitter) only while that cannot double-apply anything.

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::Utc;
use serde::Serialize;
use tracing::{debug, info, instrument, warn};

use super::error::MigrateError;
use super::history::RowState;
use super::plan::{Plan, Problem, plan};
use super::source::{Migration, MigrationSet};
use crate::db::{Dialect, SchemaSession, SchemaState, Target};

/// Attempts per schema for transient failures (first try included).
pub const MAX_ATTEMPTS: usize = 3;

/// How one schema run behaves.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Build the plan and write nothing.
    pub dry_run: bool,
    /// Stop at this version (inclusive) instead of the newest file.
    pub target: Option<i64>,
    /// How long to wait for another run holding the schema's lock.
    pub lock_timeout: Duration,
    /// First delay between attempts (grows exponentially, with jitter).
    pub retry_delay: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            target: None,
            lock_timeout: crate::config::DEFAULT_LOCK_TIMEOUT,
            retry_delay: Duration::from_millis(200),
        }
    }
}

/// A migration that ran (or, in a dry run, would run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StepReport {
    pub version: i64,
    pub name: String,
    pub file: String,
    /// Milliseconds it took (0 in a dry run).
    pub duration_ms: i64,
}

/// What happened to one schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetResult {
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// Migrations applied (or planned, in a dry run).
    pub steps: Vec<StepReport>,
    pub attempts: u32,
}

fn planned_steps(set: &MigrationSet, plan: &Plan) -> Vec<StepReport> {
    plan.pending
        .iter()
        .filter_map(|v| set.get(*v))
        .map(|m| StepReport {
            version: m.version,
            name: m.name.clone(),
            file: m.file.clone(),
            duration_ms: 0,
        })
        .collect()
}

/// The plan for a schema as its unlocked read found it. An unreadable history is a problem of
/// its own, with nothing pending: its version is unknown.
pub fn unlocked_plan(set: &MigrationSet, state: &SchemaState, target: Option<i64>) -> Plan {
    let rows = match state {
        SchemaState::History(rows) => rows.as_slice(),
        SchemaState::Uninitialised | SchemaState::Missing => &[],
        SchemaState::Unreadable(error) => {
            return Plan {
                from: None,
                to: None,
                pending: Vec::new(),
                problems: vec![Problem::Unreadable {
                    error: error.clone(),
                }],
            };
        }
    };
    plan(set, rows, target)
}

/// The plan for a schema whose state was read without its lock (fleet triage, catalog
/// check). A `running` row seen without the lock may be another process's migration in
/// progress: only a read under the lock can tell it from an interrupted one, so such a schema
/// comes back as work (a plan that is not a no-op) rather than as blocked.
pub fn plan_from_state(
    set: &MigrationSet,
    state: &SchemaState,
    target: Option<i64>,
) -> Result<Plan, MigrateError> {
    let p = unlocked_plan(set, state, target);
    let maybe_in_progress = p.problems.iter().all(|x| {
        matches!(
            x,
            Problem::Dirty {
                state: RowState::Running,
                ..
            }
        )
    });
    if !maybe_in_progress {
        return Err(MigrateError::Blocked(p.problems));
    }
    Ok(p)
}

/// Dry run: the plan as a result, with nothing written and no lock taken.
pub fn dry_run_result(
    set: &MigrationSet,
    state: &SchemaState,
    target: Option<i64>,
) -> Result<TargetResult, MigrateError> {
    let p = unlocked_plan(set, state, target);
    if !p.problems.is_empty() {
        return Err(MigrateError::Blocked(p.problems));
    }
    Ok(TargetResult {
        from: p.from,
        to: p.to,
        steps: planned_steps(set, &p),
        attempts: 0,
    })
}

/// Brings `target` to `opts.target` (or the newest migration), retrying transient failures.
/// The schema must exist.
pub async fn migrate_target(
    dialect: &dyn Dialect,
    target: &Target,
    label: &str,
    set: &MigrationSet,
    opts: &RunOptions,
) -> Result<TargetResult, MigrateError> {
    migrate_target_counted(dialect, target, label, set, opts)
        .await
        .0
}

/// [`migrate_target`], with the number of attempts it made whether it succeeded or not (a
/// failure after retries reports how many it took).
#[instrument(skip_all, fields(schema = %label))]
pub async fn migrate_target_counted(
    dialect: &dyn Dialect,
    target: &Target,
    label: &str,
    set: &MigrationSet,
    opts: &RunOptions,
) -> (Result<TargetResult, MigrateError>, u32) {
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(opts.retry_delay)
        .with_max_delay(opts.retry_delay * 20)
        .with_max_times(MAX_ATTEMPTS - 1)
        .with_jitter()
        .build();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match migrate_once(dialect, target, set, opts).await {
            Ok(mut r) => {
                r.attempts = attempts;
                return (Ok(r), attempts);
            }
            Err(e) if e.is_retryable() => match delays.next() {
                Some(delay) => {
                    warn!(attempt = attempts, retry_in_ms = delay.as_millis() as u64, error = %e, "transient failure, retrying");
                    tokio::time::sleep(delay).await;
                }
                None => return (Err(e), attempts),
            },
            Err(e) => return (Err(e), attempts),
        }
    }
}

async fn migrate_once(
    dialect: &dyn Dialect,
    target: &Target,
    set: &MigrationSet,
    opts: &RunOptions,
) -> Result<TargetResult, MigrateError> {
    let mut session = dialect.open_session(target, opts.lock_timeout).await?;
    let result = run_locked(session.as_mut(), set, opts.target).await;
    match session.release().await {
        Ok(()) => result,
        // The run's own error says more than the failed release after it.
        Err(release_err) => match result {
            Ok(_) => Err(release_err.into()),
            Err(e) => Err(e),
        },
    }
}

/// Everything that happens while the schema's lock is held.
async fn run_locked(
    session: &mut dyn SchemaSession,
    set: &MigrationSet,
    target: Option<i64>,
) -> Result<TargetResult, MigrateError> {
    let history = session.history().await?;
    let p = plan(set, history.as_deref().unwrap_or_default(), target);
    if !p.problems.is_empty() {
        return Err(MigrateError::Blocked(p.problems));
    }
    let mut result = TargetResult {
        from: p.from,
        to: p.from,
        steps: Vec::with_capacity(p.pending.len()),
        attempts: 1,
    };
    if p.pending.is_empty() {
        return Ok(result);
    }
    if history.is_none() {
        session.create_history_table().await?;
    }
    for version in &p.pending {
        let Some(m) = set.get(*version) else { continue };
        let duration_ms = apply_one(session, m).await?;
        result.to = Some(m.version);
        result.steps.push(StepReport {
            version: m.version,
            name: m.name.clone(),
            file: m.file.clone(),
            duration_ms,
        });
    }
    Ok(result)
}

/// Runs one migration's statements and records it. Returns its duration in milliseconds.
async fn apply_one(session: &mut dyn SchemaSession, m: &Migration) -> Result<i64, MigrateError> {
    let started_at = Utc::now();
    let clock = Instant::now();
    session.begin(m.as_ref(), started_at).await?;
    for (i, stmt) in m.statements.iter().enumerate() {
        let t = Instant::now();
        if let Err(e) = session.execute(&stmt.sql).await {
            // A statement the server answered with an error did not run; one whose connection
            // broke may or may not have. Without transactional DDL anything already run stays.
            let server_refused = matches!(&e, crate::db::DbError::Sqlx { source, .. } if source.as_database_error().is_some());
            let partial = !session.transactional() && (i > 0 || !server_refused);
            let err = MigrateError::Statement {
                version: m.version,
                name: m.name.clone(),
                statement: i + 1,
                line: stmt.line,
                message: e.server_message(),
                partial,
                transient: e.is_transient(),
            };
            let recorded = partial.then(|| err.to_string());
            if let Err(abort_err) = session
                .abort(m.as_ref(), started_at, recorded.as_deref())
                .await
            {
                warn!(version = m.version, error = %abort_err, "could not record the failed migration");
            }
            return Err(err);
        }
        debug!(
            version = m.version,
            statement = i + 1,
            line = stmt.line,
            elapsed_ms = t.elapsed().as_secs_f64() * 1000.0,
            sql = %first_line(&stmt.sql),
            "statement done"
        );
    }
    let duration_ms = clock.elapsed().as_millis() as i64;
    session.commit(m.as_ref(), started_at, duration_ms).await?;
    info!(version = m.version, name = %m.name, duration_ms, "migration applied");
    Ok(duration_ms)
}

fn first_line(sql: &str) -> &str {
    let line = sql.lines().next().unwrap_or_default();
    match line.char_indices().nth(100) {
        Some((i, _)) => &line[..i],
        None => line,
    }
}
