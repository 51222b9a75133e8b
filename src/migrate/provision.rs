//! Provisioning a tenant in one piece: the schema, every migration and the history are built
//! by one [`FreshSession`] that made the schema itself — one transaction on PostgreSQL and
//! SQLite, and on MySQL a database without per-migration `running` markers whose history
//! table and rows are written last. A failure undoes the build; a build interrupted by a
//! crash is recognised by the next `create` (the schema holds no history rows and nothing but
//! tables its migrations create) and built again from scratch.
//!
//! A schema that exists with a history of this tool is resumed with the ordinary, per-migration
//! path; one that was not made by this tool is refused and left untouched. A SQLite file that
//! holds nothing at all is built in place under its write lock (another `create` may have
//! made it a moment before taking that lock).

use std::collections::BTreeSet;
use std::time::Instant;

use chrono::Utc;
use tracing::{info, instrument, warn};

use super::apply::{RunOptions, StepReport, TargetResult, first_line, run_locked, with_retries};
use super::error::MigrateError;
use super::observe::tables_created;
use super::plan::plan;
use super::source::{Migration, MigrationSet};
use crate::db::{AppliedRow, Dialect, FreshSession, Opened, SchemaSession, Target};

/// Who made the catalog row of the tenant being provisioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOrigin {
    /// This `create` inserted it: a schema that already exists was made by someone else.
    New,
    /// An earlier `create` did (the tenant is `provisioning` or `failed`): an existing schema
    /// without history may be that create's unfinished build.
    Earlier,
}

/// Builds `target` (a new tenant) up to `opts.target` in one piece, or resumes a tenant an
/// earlier `create` left unfinished; retries transient failures. Returns the outcome and the
/// number of attempts.
#[instrument(skip_all, fields(schema = %label))]
pub async fn provision_target_counted(
    dialect: &dyn Dialect,
    target: &Target,
    label: &str,
    set: &MigrationSet,
    opts: &RunOptions,
    origin: RowOrigin,
) -> (Result<TargetResult, MigrateError>, u32) {
    // After an attempt of this run built part of the schema, what it left is this run's own.
    let origin = std::sync::Mutex::new(origin);
    with_retries(dialect, opts, || async {
        let o = *origin
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (result, built) = provision_once(dialect, target, set, opts, o).await;
        if built {
            *origin
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = RowOrigin::Earlier;
        }
        result
    })
    .await
}

/// One attempt; also says whether it started a build of its own.
async fn provision_once(
    dialect: &dyn Dialect,
    target: &Target,
    set: &MigrationSet,
    opts: &RunOptions,
    origin: RowOrigin,
) -> (Result<TargetResult, MigrateError>, bool) {
    let mut built = false;
    // A fresh build sends each migration as one script where the build is atomic; when a
    // script fails, the build is made again statement by statement to name the failing one.
    let mut mode = Mode::Scripts;
    // An unfinished build that is dropped is followed by a fresh one: at most twice, as
    // another `create` may be racing this one for the name (and once more after a script).
    'attempts: for _ in 0..4 {
        let opened = match dialect.create_fresh(target, opts.lock_timeout).await {
            Ok(o) => o,
            Err(e) => return (Err(e.into()), built),
        };
        // The session to build in: a new schema, or an empty one this run may build in place.
        let fresh = 'fresh: {
            let mut session = match opened {
                Opened::Fresh(fresh) => break 'fresh fresh,
                Opened::Existing(session) => session,
            };
            let origin = if built { RowOrigin::Earlier } else { origin };
            let outcome = existing(session.as_mut(), target, set, opts.target, origin).await;
            let outcome = match outcome {
                Ok(Leftover::Empty) => match session.into_fresh() {
                    Ok(fresh) => break 'fresh fresh,
                    // On a server, an empty schema this tool did not make is refused like any
                    // other; an unfinished build of its own is dropped and made again.
                    Err(back) => {
                        session = back;
                        if origin == RowOrigin::New {
                            Err(MigrateError::Foreign {
                                schema: label_of(target),
                                tables: Vec::new(),
                            })
                        } else {
                            session
                                .drop_own_schema()
                                .await
                                .map(|()| None)
                                .map_err(Into::into)
                        }
                    }
                },
                Ok(Leftover::Partial) => session
                    .drop_own_schema()
                    .await
                    .map(|()| None)
                    .map_err(Into::into),
                Ok(Leftover::Resumed(done)) => Ok(Some(done)),
                Err(e) => Err(e),
            };
            let released = session.release().await;
            match (outcome, released) {
                (Ok(Some(done)), Ok(())) => return (Ok(done), built),
                (Ok(Some(_)), Err(e)) => return (Err(e.into()), built),
                (Ok(None), _) => continue 'attempts,
                (Err(e), _) => return (Err(e), built),
            }
        };
        built = true;
        match build(fresh, target, set, opts.target, mode).await {
            Err(Failed::Script) => mode = Mode::Statements,
            Err(Failed::Run(e)) => return (Err(e), built),
            Ok(done) => return (Ok(done), built),
        }
    }
    let schema = label_of(target);
    (
        Err(MigrateError::Db(crate::db::DbError::Unexpected(format!(
            "schema {schema} kept reappearing while its unfinished build was being replaced; try again"
        )))),
        built,
    )
}

/// How a fresh build sends a migration's statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Each migration as one script, where the session is atomic: a round trip per
    /// migration instead of one per statement.
    Scripts,
    /// Statement by statement, which names the one that fails.
    Statements,
}

/// Why a build did not finish.
enum Failed {
    /// A migration's script failed and the build was undone: build again statement by
    /// statement to find out which one.
    Script,
    /// The build failed (and was undone where it could be).
    Run(MigrateError),
}

impl From<MigrateError> for Failed {
    fn from(e: MigrateError) -> Self {
        Failed::Run(e)
    }
}

impl From<crate::db::DbError> for Failed {
    fn from(e: crate::db::DbError) -> Self {
        Failed::Run(e.into())
    }
}

/// Runs every pending migration in the fresh session and finishes it; on a failure, discards
/// the build.
async fn build(
    mut fresh: Box<dyn FreshSession>,
    target: &Target,
    set: &MigrationSet,
    to: Option<i64>,
    mode: Mode,
) -> Result<TargetResult, Failed> {
    let p = plan(set, &[], to);
    if !p.problems.is_empty() {
        discard(fresh).await;
        return Err(MigrateError::Blocked(p.problems).into());
    }
    let scripts = mode == Mode::Scripts && fresh.atomic();
    let mut migrations = Vec::with_capacity(p.pending.len());
    for version in &p.pending {
        if let Some(m) = set.get_for(*version, target) {
            migrations.push(m);
        }
    }
    let mut applied = Vec::with_capacity(migrations.len());
    let mut result = TargetResult {
        from: None,
        to: None,
        steps: Vec::with_capacity(migrations.len()),
        attempts: 1,
    };
    for m in &migrations {
        let started = Utc::now();
        let clock = Instant::now();
        if scripts && m.statements.len() > 1 {
            if let Err(e) = fresh.execute(&script(m)).await {
                info!(version = m.version, error = %e, "a migration's script failed; building the tenant again statement by statement");
                discard(fresh).await;
                return Err(Failed::Script);
            }
        } else {
            for (i, stmt) in m.statements.iter().enumerate() {
                if let Err(e) = fresh.execute(&stmt.sql).await {
                    let err = MigrateError::statement(m, i, stmt, &e, false, false);
                    warn!(version = m.version, statement = i + 1, sql = %first_line(&stmt.sql), error = %err, "building the tenant failed; undoing it");
                    discard(fresh).await;
                    return Err(err.into());
                }
            }
        }
        let duration_ms = clock.elapsed().as_millis() as i64;
        applied.push(AppliedRow {
            migration: Migration::as_ref(m),
            started,
            finished: Utc::now(),
            duration_ms,
        });
        result.to = Some(m.version);
        result.steps.push(StepReport {
            version: m.version,
            name: m.name.clone(),
            file: m.file.clone(),
            duration_ms,
            resumed_after: None,
        });
    }
    fresh.finish(&applied).await?;
    info!(version = ?result.to, migrations = applied.len(), "tenant built");
    Ok(result)
}

/// A migration's statements as one script. Each ends on a line of its own, so a trailing
/// `--` comment cannot swallow the delimiter.
fn script(m: &Migration) -> String {
    let mut out = String::with_capacity(m.statements.iter().map(|s| s.sql.len() + 3).sum());
    for stmt in &m.statements {
        out.push_str(&stmt.sql);
        out.push_str("\n;\n");
    }
    out
}

async fn discard(fresh: Box<dyn FreshSession>) {
    if let Err(e) = fresh.discard().await {
        // The session's connection is closed instead (ending its transaction); on MySQL, the
        // next `create` finds the unfinished build and replaces it.
        warn!(error = %e, "could not undo the unfinished build");
    }
}

/// What an existing schema turned out to be.
enum Leftover {
    /// This tool's schema, brought to the target.
    Resumed(TargetResult),
    /// Holding nothing at all: an unfinished build, or an empty schema or file.
    Empty,
    /// An unfinished build holding some of the migrations' tables.
    Partial,
}

/// With the lock of a schema that exists: resumes it when this tool's history is there,
/// says whether it is an unfinished build of an earlier `create` (to build again), and
/// refuses anything else.
async fn existing(
    session: &mut dyn SchemaSession,
    target: &Target,
    set: &MigrationSet,
    to: Option<i64>,
    origin: RowOrigin,
) -> Result<Leftover, MigrateError> {
    let history = session.history().await?;
    if history.as_ref().is_some_and(|rows| !rows.is_empty()) {
        return run_locked(session, target, set, to)
            .await
            .map(Leftover::Resumed);
    }
    let schema = label_of(target);
    let present: BTreeSet<String> = session.tables().await?.into_iter().collect();
    let ours: BTreeSet<String> = set
        .migrations
        .iter()
        .flat_map(|m| m.statements.iter())
        .flat_map(|s| tables_created(&s.sql))
        .map(|t| t.to_lowercase())
        .collect();
    let foreign: Vec<String> = present
        .iter()
        .filter(|t| !ours.contains(&t.to_lowercase()))
        .cloned()
        .collect();
    if present.is_empty() && history.is_none() {
        // Nothing at all: an unfinished build, an empty file (SQLite: another `create` that
        // made it has not taken its lock yet), or an empty schema someone made.
        return Ok(Leftover::Empty);
    }
    if origin == RowOrigin::New || !foreign.is_empty() {
        return Err(MigrateError::Foreign {
            schema,
            tables: foreign,
        });
    }
    warn!(schema = %schema, tables = present.len(), "an earlier create did not finish this tenant; building it again");
    Ok(Leftover::Partial)
}

fn label_of(target: &Target) -> String {
    target.tenant().map(|s| s.to_string()).unwrap_or_default()
}
