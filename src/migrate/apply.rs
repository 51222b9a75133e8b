//! Runs a plan on one schema: lock, read history, plan, execute each pending migration
//! statement by statement, record it — retrying the whole schema on transient errors (3
//! attempts, exponential backoff with jitter) only while that cannot double-apply anything.
//! Where DDL commits on its own (MySQL), a migration interrupted by a crash or a lost
//! connection is resumed by the next run that holds the lock: after its counted statements,
//! with the one in doubt checked against the live schema (`observe`).

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::Utc;
use serde::Serialize;
use tracing::{debug, info, instrument, warn};

use super::error::MigrateError;
use super::history::{HistoryRow, RowState};
use super::observe::{self, Kind, Verdict};
use super::plan::{Plan, Problem, plan};
use super::source::{Migration, MigrationSet};
use crate::db::{Dialect, SchemaSession, SchemaState, StepError, Target};

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
    /// A connection the server refused because of its connection limit is returned at once
    /// instead of retried: the caller (a fleet run) puts the schema back in its queue and
    /// lowers its concurrency, which is the cure.
    pub return_refusals: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            target: None,
            lock_timeout: crate::config::DEFAULT_LOCK_TIMEOUT,
            retry_delay: Duration::from_millis(200),
            return_refusals: false,
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
    /// Set when this run resumed the migration after a crash: how many of its statements
    /// were already done (it went on after that one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_after: Option<usize>,
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
            resumed_after: None,
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
    with_retries(dialect, opts, || migrate_once(dialect, target, set, opts)).await
}

/// Runs `once` until it succeeds, fails for good, or spends [`MAX_ATTEMPTS`]; returns its
/// outcome and the number of attempts made.
pub(crate) async fn with_retries<F, Fut>(
    dialect: &dyn Dialect,
    opts: &RunOptions,
    mut once: F,
) -> (Result<TargetResult, MigrateError>, u32)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<TargetResult, MigrateError>>,
{
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(opts.retry_delay)
        .with_max_delay(opts.retry_delay * 20)
        .with_max_times(MAX_ATTEMPTS - 1)
        .with_jitter()
        .build();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match once().await {
            Ok(mut r) => {
                r.attempts = attempts;
                return (Ok(r), attempts);
            }
            Err(MigrateError::Db(e))
                if opts.return_refusals && e.is_connection_refused_by_limit() =>
            {
                return (Err(MigrateError::Db(e)), attempts);
            }
            Err(e) if e.is_retryable() => {
                // Before trying again, the server is asked directly (a fresh connection): a
                // server that went away would make the pool wait its whole acquire timeout.
                // A server that does not answer costs an attempt of the budget; one that comes
                // back (a restart) is tried again.
                loop {
                    let Some(delay) = delays.next() else {
                        return (Err(e), attempts);
                    };
                    warn!(attempt = attempts, retry_in_ms = delay.as_millis() as u64, error = %e, "transient failure, retrying");
                    tokio::time::sleep(delay).await;
                    match dialect.ping().await {
                        Ok(()) => break,
                        // Busy, not gone: the pool's attempt meets the same limit and says so.
                        Err(why) if why.is_connection_refused_by_limit() => break,
                        Err(why) => {
                            attempts += 1;
                            warn!(attempt = attempts, error = %why, "the server does not answer");
                        }
                    }
                }
            }
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
    let result = run_locked(session.as_mut(), target, set, opts.target).await;
    match session.release().await {
        Ok(()) => result,
        // The run's own error says more than the failed release after it.
        Err(release_err) => match result {
            Ok(_) => Err(release_err.into()),
            Err(e) => Err(e),
        },
    }
}

/// The migration a crashed run left `running`, when this run can resume it: the backend
/// commits DDL statement by statement (so the row counts them), the row is the only
/// unfinished one and newer than every applied one, and its file is unchanged.
fn interrupted<'a>(
    transactional: bool,
    rows: &'a [HistoryRow],
    set: &MigrationSet,
) -> Option<&'a HistoryRow> {
    if transactional {
        return None;
    }
    let mut unfinished = rows.iter().filter(|r| !r.state.is_applied());
    let row = unfinished.next()?;
    let newest = rows
        .iter()
        .filter(|r| r.state.is_applied())
        .map(|r| r.version)
        .max();
    let resumable = unfinished.next().is_none()
        && row.state == RowState::Running
        && row.statements_done.is_some()
        && newest.is_none_or(|v| v < row.version)
        && set
            .get(row.version)
            .is_some_and(|m| m.checksum == row.checksum);
    resumable.then_some(row)
}

/// Everything that happens while the schema's lock is held.
pub(crate) async fn run_locked(
    session: &mut dyn SchemaSession,
    target_schema: &Target,
    set: &MigrationSet,
    target: Option<i64>,
) -> Result<TargetResult, MigrateError> {
    let history = session.history().await?;
    let rows = history.as_deref().unwrap_or_default();
    // Held lock + `running` row = its owner is gone: plan as if the row were not there and
    // resume it first.
    let mut resume = None;
    let mut p = plan(set, rows, target);
    if let Some(row) = interrupted(session.transactional(), rows, set) {
        let rest: Vec<HistoryRow> = rows
            .iter()
            .filter(|r| r.version != row.version)
            .cloned()
            .collect();
        let without = plan(set, &rest, target);
        if without.problems.is_empty() && without.pending.first() == Some(&row.version) {
            resume = row
                .statements_done
                .map(|d| (row.version, usize::try_from(d).unwrap_or(0)));
            p = without;
        }
    }
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
        // `${schema}` rendered for this schema (borrowed when the file has none).
        let Some(m) = set.get_for(*version, target_schema) else {
            continue;
        };
        let done = resume.and_then(|(v, d)| (v == m.version).then_some(d));
        let (duration_ms, resumed_after) = apply_one(session, &m, done).await?;
        result.to = Some(m.version);
        result.steps.push(StepReport {
            version: m.version,
            name: m.name.clone(),
            file: m.file.clone(),
            duration_ms,
            resumed_after,
        });
    }
    Ok(result)
}

/// Where an interrupted migration with `done` statements counted goes on. Statements run in
/// order: from the count, each uncounted one the live schema shows done is passed over, and
/// the first statement not shown done is where the run goes on. A counted statement at that
/// point is the one in doubt: a data change did not commit (it commits with its count),
/// others repeat harmlessly or are checked. One whose effect cannot be seen makes the
/// migration `failed`, naming it, for a person to settle.
async fn resume_point(
    session: &mut dyn SchemaSession,
    m: &Migration,
    done: usize,
    started_at: chrono::DateTime<Utc>,
) -> Result<usize, MigrateError> {
    let kinds: Vec<Kind> = m
        .statements
        .iter()
        .map(|s| observe::classify(&s.sql))
        .collect();
    let counted = observe::counted(&kinds);
    let mut at = done;
    let reason = loop {
        let (Some(stmt), Some(kind)) = (m.statements.get(at), kinds.get(at)) else {
            break None;
        };
        match kind {
            Kind::Dml | Kind::Session | Kind::Rerunnable => break None,
            Kind::Observable(expects) => {
                let facts: Vec<_> = expects.iter().map(|e| e.fact.clone()).collect();
                let seen = session.observe(&facts).await?;
                match observe::verdict(expects, &seen) {
                    Verdict::Done => {
                        at += 1;
                        // A counted statement that ran but was not counted is the last that
                        // can have run: the next one was sent only after its count.
                        if counted[at - 1] {
                            break None;
                        }
                    }
                    Verdict::NotDone => break None,
                    Verdict::Unknown(why) => break Some((stmt, why)),
                }
            }
            Kind::Opaque(why) => break Some((stmt, why.clone())),
        }
    };
    let Some((stmt, reason)) = reason else {
        if at > done {
            session.record_progress(m.version, at).await?;
        }
        return Ok(at.min(m.statements.len()));
    };
    let err = MigrateError::InDoubt {
        version: m.version,
        name: m.name.clone(),
        statement: at + 1,
        line: stmt.line,
        sql: first_line(&stmt.sql).to_owned(),
        reason,
    };
    let text = err.to_string();
    session
        .record_progress(m.version, at)
        .await
        .map_err(MigrateError::from)?;
    session
        .abort(m.as_ref(), started_at, Some(&text))
        .await
        .map_err(MigrateError::from)?;
    Err(err)
}

/// Runs one migration's statements and records it: from the start, or (`resume`: the count
/// of an interrupted run) after the statements already done. Returns its duration in
/// milliseconds and, for a resumed migration, after how many statements it went on.
async fn apply_one(
    session: &mut dyn SchemaSession,
    m: &Migration,
    resume: Option<usize>,
) -> Result<(i64, Option<usize>), MigrateError> {
    let started_at = Utc::now();
    let clock = Instant::now();
    let transactional = session.transactional();
    let start = match resume {
        None => {
            session.begin(m.as_ref(), started_at).await?;
            0
        }
        Some(done) => {
            let start = resume_point(session, m, done, started_at).await?;
            // Session settings of the statements already done went with the dead connection.
            for stmt in &m.statements[..start.min(m.statements.len())] {
                if observe::classify(&stmt.sql) == Kind::Session {
                    session.execute(&stmt.sql).await?;
                }
            }
            info!(
                version = m.version,
                name = %m.name,
                after_statement = start,
                of = m.statements.len(),
                "resuming an interrupted migration"
            );
            start
        }
    };
    // Where DDL commits on its own, each statement's kind decides how its completion is
    // recorded (see `observe::counted`).
    let kinds: Vec<Kind> = if transactional {
        Vec::new()
    } else {
        m.statements
            .iter()
            .map(|s| observe::classify(&s.sql))
            .collect()
    };
    let counted = observe::counted(&kinds);
    for (i, stmt) in m.statements.iter().enumerate().skip(start) {
        let t = Instant::now();
        let dml = kinds.get(i) == Some(&Kind::Dml);
        let count = counted.get(i).copied().unwrap_or(false);
        if let Err(step) = session
            .execute_step(m.version, i, &stmt.sql, dml, count)
            .await
        {
            return Err(failed_step(session, m, started_at, i, stmt, step).await);
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
    let resumed_after = resume.map(|_| start);
    session
        .commit(m.as_ref(), started_at, duration_ms, resumed_after)
        .await?;
    info!(version = m.version, name = %m.name, duration_ms, "migration applied");
    Ok((duration_ms, resumed_after))
}

/// Ends a migration whose statement `i` did not complete normally, and says why.
///
/// Transactional backends roll everything back. Without transactional DDL: a statement the
/// server refused for good did not run, so the migration is forgotten (nothing of it ran) or
/// `failed` (earlier statements stay, a person decides). Anything else — a lost connection, a
/// temporary refusal, a count that could not be written — leaves the row `running` with its
/// count, and the next run (a retry, or the next command) resumes it.
async fn failed_step(
    session: &mut dyn SchemaSession,
    m: &Migration,
    started_at: chrono::DateTime<Utc>,
    i: usize,
    stmt: &super::split::Statement,
    step: StepError,
) -> MigrateError {
    let (e, ran) = match step {
        StepError::Statement(e) => (e, false),
        StepError::Progress(e) => (e, true),
    };
    let server_refused = !ran
        && matches!(&e, crate::db::DbError::Sqlx { source, .. } if source.as_database_error().is_some());
    let transient = e.is_transient();
    let transactional = session.transactional();
    let settled = transactional || (server_refused && !transient);
    let partial = !transactional && (i > 0 || !server_refused);
    let err = MigrateError::statement(m, i, stmt, &e, partial, !settled);
    if settled {
        if partial && !transactional {
            // Statements before `i` all completed; uncounted ones among them are counted now.
            if let Err(count_err) = session.record_progress(m.version, i).await {
                warn!(version = m.version, error = %count_err, "could not record the statements done");
            }
        }
        let recorded = partial.then(|| err.to_string());
        if let Err(abort_err) = session
            .abort(m.as_ref(), started_at, recorded.as_deref())
            .await
        {
            warn!(version = m.version, error = %abort_err, "could not record the failed migration");
        }
    }
    err
}

pub(crate) fn first_line(sql: &str) -> &str {
    let line = sql.lines().next().unwrap_or_default();
    match line.char_indices().nth(100) {
        Some((i, _)) => &line[..i],
        None => line,
    }
}
