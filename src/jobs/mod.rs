//! The fleet runner: brings many tenants to a version with bounded concurrency, retries of
//! transient errors (inside each tenant's run), stop-at-first-failure or continue-on-error,
//! cancellation at tenant boundaries, and one catalog update per tenant.
//!
//! Up-to-date tenants cost almost nothing: histories are read in batches without locks and
//! only tenants with work are locked and touched.
//!
//! The concurrency is a ceiling, not a promise: a server that refuses connections (its or the
//! user's connection limit reached) lowers it for the rest of the run and the refused tenants
//! are queued again instead of failing (see [`limit`]).
//!
//! A run may go in two waves, a canary first, and stops starting tenants once its failure
//! budget is spent (see [`waves`]).

pub mod limit;
pub mod progress;
pub mod report;
pub mod waves;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::{StreamExt, stream};
use tracing::{debug, info, instrument, warn};
use uuid::Uuid;

pub use limit::AdaptiveLimit;
pub use progress::{NoProgress, Progress};
pub use report::{FleetReport, OutcomeStatus, TenantReport};
pub use waves::{Budget, Canary, HaltReason, WaveReport};

use crate::catalog::{Catalog, JobCounts, JobTenantRow, TenantRow, TenantStatus};
use crate::db::{DbError, Dialect, SchemaState, Servers, Target, TenantServer};
use crate::domain::SchemaName;
use crate::migrate::apply::{dry_run_result, plan_from_state};
use crate::migrate::{MigrateError, MigrationSet, RunOptions, migrate_target_counted};

/// How a fleet run behaves.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub run: RunOptions,
    /// Tenants worked on at once, at most: lowered while the server refuses connections.
    pub concurrency: usize,
    /// How long refused tenants are queued again while no tenant gets a connection (at a
    /// concurrency already lowered to 1), before they are reported failed.
    pub refusal_patience: Duration,
    /// Attempt every tenant even after failures (up to `max_failures` when given).
    pub continue_on_error: bool,
    /// Tenants that go first; the others start only if none of them failed.
    pub canary: Option<Canary>,
    /// No tenant starts once this many failed (at least 1); implies continuing until then,
    /// with or without `continue_on_error`.
    pub max_failures: Option<usize>,
    /// Set to stop starting new tenants (in-flight ones finish).
    pub cancel: Arc<AtomicBool>,
    /// Record per-tenant outcomes under this job.
    pub job: Option<Uuid>,
    /// The replica running the job, recorded with each tenant's outcome.
    pub owner: Option<String>,
    /// `create`: the server new tenants go on (else the active one with the fewest);
    /// `upgrade-all`: only the tenants of this server.
    pub server: Option<String>,
}

impl FleetOptions {
    pub fn new(run: RunOptions, concurrency: usize) -> Self {
        Self {
            run,
            concurrency: concurrency.max(1),
            refusal_patience: limit::DEFAULT_PATIENCE,
            continue_on_error: false,
            canary: None,
            max_failures: None,
            cancel: Arc::new(AtomicBool::new(false)),
            job: None,
            owner: None,
            server: None,
        }
    }
}

/// Maps a failed run on one tenant to its report line.
pub fn failure_report(schema: &str, e: &MigrateError) -> TenantReport {
    let status = match e {
        MigrateError::Blocked(problems) if problems.iter().any(|p| p.is_dirty()) => {
            OutcomeStatus::Dirty
        }
        MigrateError::Blocked(problems)
            if problems
                .iter()
                .any(|p| matches!(p, crate::migrate::Problem::Unreadable { .. })) =>
        {
            OutcomeStatus::Failed
        }
        MigrateError::Blocked(_) => OutcomeStatus::ChecksumMismatch,
        MigrateError::SchemaMissing(_) => OutcomeStatus::Missing,
        MigrateError::Foreign { .. } => OutcomeStatus::Foreign,
        e if e.is_dirty() => OutcomeStatus::Dirty,
        _ => OutcomeStatus::Failed,
    };
    let mut r = TenantReport::new(schema, status);
    r.error = Some(e.to_string());
    r
}

/// What a fan-out does to each tenant, and how it records the outcome: the one runner (per
/// server limits that adapt to refused connections, failure budget, cancellation, servers
/// found down) serves both `upgrade-all` ([`Upgrade`]) and `create`.
#[async_trait::async_trait]
pub trait Action: Sync {
    /// Works on one tenant (`row`, seen at version `from`). A connection the server refused
    /// because of its connection limit comes back as [`Refused`]: nothing of the tenant ran,
    /// and it is queued again.
    async fn run(
        &self,
        fleet: &Fleet<'_>,
        server: &TenantServer,
        name: &SchemaName,
        row: &TenantRow,
        from: Option<i64>,
        opts: &FleetOptions,
    ) -> Result<TenantReport, Refused>;

    /// Records a finished tenant's outcome.
    async fn record(
        &self,
        fleet: &Fleet<'_>,
        row: &TenantRow,
        r: &TenantReport,
        opts: &FleetOptions,
    );
}

/// Brings tenants to the target version (`upgrade-all`).
pub struct Upgrade;

#[async_trait::async_trait]
impl Action for Upgrade {
    async fn run(
        &self,
        fleet: &Fleet<'_>,
        server: &TenantServer,
        name: &SchemaName,
        _row: &TenantRow,
        from: Option<i64>,
        opts: &FleetOptions,
    ) -> Result<TenantReport, Refused> {
        fleet.try_one(server, name, from, &opts.run).await
    }

    async fn record(
        &self,
        fleet: &Fleet<'_>,
        row: &TenantRow,
        r: &TenantReport,
        opts: &FleetOptions,
    ) {
        fleet.record(row, r, opts).await;
    }
}

/// Everything one run needs from the engine, and the servers the run found down.
pub struct Fleet<'a> {
    /// The tenant servers; each tenant row names its own.
    servers: &'a Servers,
    catalog: &'a Catalog,
    set: &'a MigrationSet,
    /// Servers that stopped answering during this run, with why: their remaining tenants
    /// fail at once instead of each waiting for a connection.
    down: std::sync::Mutex<BTreeMap<String, String>>,
}

impl<'a> Fleet<'a> {
    pub fn new(servers: &'a Servers, catalog: &'a Catalog, set: &'a MigrationSet) -> Self {
        Self {
            servers,
            catalog,
            set,
            down: std::sync::Mutex::default(),
        }
    }

    fn down(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.down
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn mark_down(&self, server: &str, why: &str) {
        let mut down = self.down();
        if !down.contains_key(server) {
            warn!(server = %server, reason = %why, "a tenant server is down; its remaining tenants fail");
            down.insert(server.to_owned(), why.to_owned());
        }
    }

    /// The failure of a tenant whose server this run found down, if it is.
    fn down_report(
        &self,
        server: &str,
        name: &SchemaName,
        at: Option<i64>,
    ) -> Option<TenantReport> {
        let why = self.down().get(server).cloned()?;
        let mut r = TenantReport::new(name.as_str(), OutcomeStatus::Failed);
        r.from = at;
        r.to = at;
        r.error = Some(format!("database server {server} is down: {why}"));
        Some(r)
    }

    /// With several servers, checks each one holding `candidates` before the run reads
    /// anything (side by side, a fresh connection each): a server that is down is known at
    /// once instead of after a pool's acquire timeout per read.
    async fn preflight(&self, candidates: &[(SchemaName, TenantRow)]) {
        if self.servers.len() < 2 {
            return;
        }
        let used: std::collections::BTreeSet<&str> =
            candidates.iter().map(|(_, r)| r.server.as_str()).collect();
        let checks = used.into_iter().filter_map(|name| {
            let server = self.servers.get(name)?;
            Some(async move { (name, server.ping().await) })
        });
        for (name, ping) in join_all(checks).await {
            if let Err(why) = ping {
                self.mark_down(name, &why);
            }
        }
    }

    /// Brings `tenants` (catalog rows) to the target. Archived tenants and tenants being
    /// provisioned are skipped. With a canary, its tenants run first and the others only if
    /// none of them failed.
    #[instrument(skip_all, fields(tenants = tenants.len(), dry_run = opts.run.dry_run, concurrency = opts.concurrency, canary = opts.canary.is_some(), max_failures = ?opts.max_failures))]
    pub async fn run(
        &self,
        tenants: Vec<TenantRow>,
        opts: &FleetOptions,
        progress: &dyn Progress,
    ) -> Result<FleetReport, crate::db::DbError> {
        let clock = Instant::now();
        let mut reports = Vec::with_capacity(tenants.len());
        let mut candidates = Vec::with_capacity(tenants.len());
        for row in tenants {
            match (row.status, SchemaName::from_catalog(&row.schema_name)) {
                (TenantStatus::Archived | TenantStatus::Provisioning, _) => {
                    let mut r = TenantReport::new(&row.schema_name, OutcomeStatus::Skipped);
                    r.from = row.schema_version;
                    r.to = row.schema_version;
                    r.error = Some(format!("tenant is {}", row.status.as_str()));
                    reports.push(r);
                }
                (_, Err(e)) => {
                    let mut r = TenantReport::new(&row.schema_name, OutcomeStatus::Failed);
                    r.error = Some(format!("catalog row has an invalid schema name: {e}"));
                    reports.push(r);
                }
                (_, Ok(name)) => candidates.push((name, row)),
            }
        }
        self.preflight(&candidates).await;
        let mut reachable = Vec::with_capacity(candidates.len());
        for (name, row) in candidates {
            match self.down_report(&row.server, &name, row.schema_version) {
                None => reachable.push((name, row)),
                Some(r) => {
                    self.record(&row, &r, opts).await;
                    progress.tenant_finished(&r);
                    reports.push(r);
                }
            }
        }
        let candidates = reachable;
        let targets: Vec<(&str, Target)> = candidates
            .iter()
            .map(|(n, row)| (row.server.as_str(), Target::Tenant(n.clone())))
            .collect();
        let states = self.servers.read_states(&targets).await;
        drop(targets);
        let mut work = Vec::new();
        for ((name, row), state) in candidates.into_iter().zip(states) {
            let state = match state {
                Ok(state) => state,
                Err(why) => {
                    // Its server cannot be read: the tenant fails, the others go on.
                    let mut r = TenantReport::new(name.as_str(), OutcomeStatus::Failed);
                    r.from = row.schema_version;
                    r.to = row.schema_version;
                    r.error = Some(why);
                    self.record(&row, &r, opts).await;
                    progress.tenant_finished(&r);
                    reports.push(r);
                    continue;
                }
            };
            match self.triage(&name, &row, &state, opts) {
                Triage::Done(r) => {
                    self.record(&row, &r, opts).await;
                    if r.status.is_failure() {
                        progress.tenant_finished(&r);
                    }
                    reports.push(r);
                }
                Triage::Work(from) => work.push((name, row, from)),
            }
        }
        progress.planned(reports.len() + work.len(), work.len());
        info!(
            total = reports.len() + work.len(),
            with_work = work.len(),
            "fleet checked"
        );
        // The canary: named tenants, or the first ones (by schema name) with work — in a dry
        // run, those with a plan.
        let canary = opts.canary.as_ref().map(|c| {
            let mut with_work: Vec<&str> = work
                .iter()
                .map(|(n, _, _)| n.as_str())
                .chain(
                    reports
                        .iter()
                        .filter(|r| r.status == OutcomeStatus::Planned)
                        .map(|r| r.schema.as_str()),
                )
                .collect();
            with_work.sort_unstable();
            c.members(with_work.into_iter())
        });
        // A tenant that already failed the unlocked check (dirty, checksum mismatch, missing)
        // is a failure too: it counts against the budget before any tenant starts.
        let budget = Budget::new(
            opts.max_failures,
            opts.continue_on_error,
            reports.iter().filter(|r| r.status.is_failure()).count(),
        );
        let limits = limits_for(&work, opts);
        let limits = &limits;
        let mut halted = None;
        let fleet_wave = match &canary {
            None => work,
            Some(members) => {
                let (first, rest): (Vec<_>, Vec<_>) = work
                    .into_iter()
                    .partition(|(n, _, _)| members.contains(n.as_str()));
                info!(
                    tenants = members.len(),
                    with_work = first.len(),
                    "canary wave starting"
                );
                reports.extend(
                    self.wave(first, opts, &budget, limits, progress, &Upgrade)
                        .await,
                );
                let failed = reports
                    .iter()
                    .filter(|r| members.contains(&r.schema) && r.status.is_failure())
                    .count();
                if failed > 0 && !opts.run.dry_run {
                    warn!(
                        failed,
                        not_started = rest.len(),
                        "a canary tenant failed; the fleet wave is not started"
                    );
                    halted = Some(HaltReason::CanaryFailed);
                    for (name, row, _) in rest {
                        let r = not_attempted(&name, &row);
                        progress.tenant_finished(&r);
                        reports.push(r);
                    }
                    Vec::new()
                } else {
                    rest
                }
            }
        };
        if !fleet_wave.is_empty() {
            reports.extend(
                self.wave(fleet_wave, opts, &budget, limits, progress, &Upgrade)
                    .await,
            );
        }
        for (server, limit) in limits {
            if limit.current() < limit.max() {
                info!(
                    server = %server,
                    concurrency = limit.current(),
                    configured = limit.max(),
                    "fleet run ended below its configured concurrency: the server refused connections"
                );
            }
        }
        if halted.is_none()
            && opts.max_failures.is_some()
            && budget.is_spent()
            && reports
                .iter()
                .any(|r| r.status == OutcomeStatus::NotAttempted)
        {
            warn!(
                max_failures = ?opts.max_failures,
                "the failure budget is spent; the remaining tenants were not started"
            );
            halted = Some(HaltReason::MaxFailures);
        }
        let mut report = FleetReport::from_tenants(
            self.set.scope,
            opts.run.dry_run,
            opts.run.target,
            self.set.latest(),
            reports,
            clock.elapsed().as_millis() as i64,
        );
        report.job_id = opts.job;
        report.waves = waves::summarize(&report.tenants, canary.as_ref());
        report.halted = halted;
        metrics::counter!("tenant_migrator_fleet_runs_total").increment(1);
        progress.finished(&report);
        Ok(report)
    }

    /// Works on `work` (tenant, catalog row, version it is at) with `action`: each server's
    /// tenants `opts.concurrency` at a time under an adaptive limit, the servers side by side,
    /// until done or the failure budget is spent (the rest are `not_attempted`).
    pub async fn fan_out(
        &self,
        work: Vec<(SchemaName, TenantRow, Option<i64>)>,
        opts: &FleetOptions,
        progress: &dyn Progress,
        action: &dyn Action,
    ) -> Vec<TenantReport> {
        let budget = Budget::new(opts.max_failures, opts.continue_on_error, 0);
        let limits = limits_for(&work, opts);
        self.wave(work, opts, &budget, &limits, progress, action)
            .await
    }

    /// Works on one wave's tenants, each server's at most its adaptive limit at a time and
    /// the servers side by side, until they are done or the budget is spent (the rest are
    /// `not_attempted`).
    async fn wave(
        &self,
        work: Vec<(SchemaName, TenantRow, Option<i64>)>,
        opts: &FleetOptions,
        budget: &Budget,
        limits: &BTreeMap<String, AdaptiveLimit>,
        progress: &dyn Progress,
        action: &dyn Action,
    ) -> Vec<TenantReport> {
        let mut by_server: BTreeMap<String, Vec<(SchemaName, TenantRow, Option<i64>)>> =
            BTreeMap::new();
        for item in work {
            by_server
                .entry(item.1.server.clone())
                .or_default()
                .push(item);
        }
        let servers = by_server.into_iter().filter_map(|(server, items)| {
            // Every tenant with work passed the server read, so its server is known.
            let server = self.servers.get(&server)?;
            let limit = limits.get(&server.name)?;
            Some(self.server_wave(server, items, opts, budget, limit, progress, action))
        });
        join_all(servers).await.into_iter().flatten().collect()
    }

    /// One server's share of a wave.
    #[allow(clippy::too_many_arguments)]
    async fn server_wave(
        &self,
        server: &TenantServer,
        work: Vec<(SchemaName, TenantRow, Option<i64>)>,
        opts: &FleetOptions,
        budget: &Budget,
        limit: &AdaptiveLimit,
        progress: &dyn Progress,
        action: &dyn Action,
    ) -> Vec<TenantReport> {
        stream::iter(work)
            .map(|(name, row, from)| async move {
                let r = self
                    .turn(
                        server, &name, &row, from, opts, budget, limit, progress, action,
                    )
                    .await;
                if r.status == OutcomeStatus::NotAttempted {
                    progress.tenant_finished(&r);
                    return r;
                }
                // Counted before anything else awaits, so no tenant starts past the budget.
                budget.record(r.status);
                action.record(self, &row, &r, opts).await;
                progress.tenant_finished(&r);
                r
            })
            // The adaptive limit decides how many of these run; this only bounds the queue.
            .buffer_unordered(limit.max())
            .collect()
            .await
    }

    /// Decides from the unlocked history read whether a tenant needs its lock at all.
    fn triage(
        &self,
        name: &SchemaName,
        row: &TenantRow,
        state: &SchemaState,
        opts: &FleetOptions,
    ) -> Triage {
        if *state == SchemaState::Missing {
            let e = MigrateError::SchemaMissing(name.to_string());
            let mut r = failure_report(name.as_str(), &e);
            r.from = row.schema_version;
            r.to = row.schema_version;
            return Triage::Done(r);
        }
        if opts.run.dry_run {
            return Triage::Done(match dry_run_result(self.set, state, opts.run.target) {
                Ok(res) => {
                    let status = TenantReport::worked(&res, OutcomeStatus::Planned);
                    TenantReport::from_result(name.as_str(), res, status)
                }
                Err(e) => failure_report(name.as_str(), &e),
            });
        }
        match plan_from_state(self.set, state, opts.run.target) {
            Ok(p) if p.is_noop() => {
                let mut r = TenantReport::new(name.as_str(), OutcomeStatus::UpToDate);
                r.from = p.from;
                r.to = p.to;
                Triage::Done(r)
            }
            Ok(p) => Triage::Work(p.from),
            Err(e) => {
                let mut r = failure_report(name.as_str(), &e);
                if let SchemaState::History(rows) = state {
                    r.from = max_applied(rows);
                    r.to = r.from;
                }
                Triage::Done(r)
            }
        }
    }

    /// One tenant's turn in a run: waits for a place under the adaptive limit and upgrades
    /// it, queueing it again whenever the server refuses its connection, until it is done, not
    /// attempted (the run is stopping) or given up (the server refused every connection of
    /// the run for `opts.refusal_patience`).
    #[instrument(skip_all, fields(schema = %name))]
    #[allow(clippy::too_many_arguments)]
    async fn turn(
        &self,
        server: &TenantServer,
        name: &SchemaName,
        row: &TenantRow,
        from: Option<i64>,
        opts: &FleetOptions,
        budget: &Budget,
        limit: &AdaptiveLimit,
        progress: &dyn Progress,
        action: &dyn Action,
    ) -> TenantReport {
        let (started, refused_attempts) = (&AtomicBool::new(false), &AtomicU32::new(0));
        let finished = limit
            .run(move || async move {
                if budget.is_spent() || opts.cancel.load(Ordering::SeqCst) {
                    return limit::Attempt::NotTried(Ok(not_attempted(name, row)));
                }
                if let Some(r) = self.down_report(&server.name, name, from) {
                    return limit::Attempt::Admitted(Ok(r));
                }
                if !started.swap(true, Ordering::SeqCst) {
                    progress.tenant_started(name.as_str());
                }
                match action.run(self, server, name, row, from, opts).await {
                    Ok(r) => limit::Attempt::Admitted(Ok(r)),
                    Err(refused) => {
                        refused_attempts.fetch_add(refused.attempts, Ordering::SeqCst);
                        let reason = refused.reason();
                        debug!(reason = %reason, "the server refused a connection; tenant queued again");
                        limit::Attempt::Refused {
                            value: Err(refused),
                            reason,
                        }
                    }
                }
            })
            .await;
        match finished {
            limit::Finished::Done { value: Ok(r), .. } => r,
            // Only refusals end as errors, and a refusal is queued again or given up.
            limit::Finished::Done {
                value: Err(refused),
                ..
            } => {
                self.failed(
                    server.dialect(),
                    name,
                    from,
                    &refused.error,
                    refused.attempts,
                )
                .await
            }
            limit::Finished::GaveUp {
                value,
                refusals,
                waited,
            } => {
                let attempts = refused_attempts.load(Ordering::SeqCst);
                let reason = match value {
                    Ok(r) => r.error.unwrap_or_default(),
                    Err(refused) => refused.reason(),
                };
                metrics::counter!("tenant_migrator_migrations_failed_total").increment(1);
                let message = format!(
                    "the database server refused this tenant's connection {refusals} times and \
                     no tenant of the run got one for {}s (concurrency already lowered to 1): \
                     {reason}. Its connection limit is taken, by other clients or by this \
                     tool's own pools: raise the limit, free connections, lower \
                     TENANT_ENGINE_POOL_SIZE, or try again later",
                    waited.as_secs()
                );
                warn!(error = %message, "tenant failed");
                let mut r = TenantReport::new(name.as_str(), OutcomeStatus::Failed);
                r.from = from;
                r.to = from;
                r.attempts = attempts;
                r.error = Some(message);
                r
            }
        }
    }

    /// Locks, migrates and releases one tenant (with retries of transient errors); `from` is
    /// the version it was seen at, reported when it fails. A connection the server refused
    /// because of a connection limit comes back as such: nothing of the tenant ran, and trying
    /// it later with fewer connections at once is the cure.
    async fn try_one(
        &self,
        server: &TenantServer,
        name: &SchemaName,
        from: Option<i64>,
        run: &RunOptions,
    ) -> Result<TenantReport, Refused> {
        let clock = Instant::now();
        let target = Target::Tenant(name.clone());
        let run = RunOptions {
            return_refusals: true,
            ..run.clone()
        };
        let (outcome, attempts) =
            migrate_target_counted(server.dialect(), &target, name.as_str(), self.set, &run).await;
        // A connection that failed or waited in vain may mean the server is gone: then this
        // tenant and every later one of the server fail at once instead of each waiting.
        let gone = match &outcome {
            Err(e)
                if e.is_retryable()
                    || matches!(e, MigrateError::Db(db) if db.is_connection_refused_by_limit()) =>
            {
                server.ping().await.err()
            }
            _ => None,
        };
        if let (Some(why), Err(e)) = (gone, &outcome) {
            self.mark_down(&server.name, &why);
            metrics::counter!("tenant_migrator_migrations_failed_total").increment(1);
            warn!(schema = %name, error = %e, "tenant failed: its server is down");
            // Where it got to cannot be read from a server that is gone.
            let mut r = failure_report(name.as_str(), e);
            r.from = from;
            r.to = from;
            r.attempts = attempts;
            r.error = Some(format!(
                "database server {} is down ({why}): {e}",
                server.name
            ));
            r.duration_ms = clock.elapsed().as_millis() as i64;
            return Ok(r);
        }
        let mut r = match outcome {
            Ok(res) => {
                metrics::counter!("tenant_migrator_migrations_applied_total")
                    .increment(res.steps.len() as u64);
                let status = TenantReport::worked(&res, OutcomeStatus::Migrated);
                TenantReport::from_result(name.as_str(), res, status)
            }
            Err(MigrateError::Db(e)) if e.is_connection_refused_by_limit() => {
                return Err(Refused {
                    error: MigrateError::Db(e),
                    attempts,
                });
            }
            Err(e) => {
                self.failed(server.dialect(), name, from, &e, attempts)
                    .await
            }
        };
        r.duration_ms = clock.elapsed().as_millis() as i64;
        Ok(r)
    }

    /// The report of a tenant whose run failed with `e` after `attempts` tries.
    async fn failed(
        &self,
        dialect: &dyn Dialect,
        name: &SchemaName,
        from: Option<i64>,
        e: &MigrateError,
        attempts: u32,
    ) -> TenantReport {
        metrics::counter!("tenant_migrator_migrations_failed_total").increment(1);
        warn!(schema = %name, error = %e, "tenant failed");
        let mut r = failure_report(name.as_str(), e);
        r.from = from;
        r.to = reached(dialect, name).await.or(from);
        r.attempts = attempts;
        r
    }

    /// Writes a tenant's outcome to its catalog row (never in a dry run; only when something
    /// changed) and to the job, when there is one (a dry-run job records its plan there).
    async fn record(&self, row: &TenantRow, r: &TenantReport, opts: &FleetOptions) {
        if r.status == OutcomeStatus::NotAttempted {
            return;
        }
        if !opts.run.dry_run {
            self.record_tenant(row, r, opts.refusal_patience).await;
        }
        if let Some(job) = opts.job
            && r.status != OutcomeStatus::UpToDate
        {
            let t = JobTenantRow {
                schema_name: r.schema.clone(),
                status: r.status.as_str().to_owned(),
                from_version: r.from,
                to_version: r.to,
                duration_ms: r.duration_ms,
                attempts: i64::from(r.attempts),
                error: r.error.clone(),
                finished_at: chrono::Utc::now(),
                owner: opts.owner.clone(),
            };
            if let Err(e) = retry_refused(opts.refusal_patience, || {
                self.catalog.record_job_tenant(job, &t)
            })
            .await
            {
                warn!(schema = %row.schema_name, error = %e, "could not record the tenant's outcome in the job");
            }
        }
    }

    async fn record_tenant(&self, row: &TenantRow, r: &TenantReport, patience: Duration) {
        let (status, version, error) = if r.status.is_failure() {
            (
                TenantStatus::Failed,
                r.to.or(row.schema_version),
                r.error.as_deref(),
            )
        } else {
            (TenantStatus::Active, r.to, None)
        };
        let unchanged = row.status == status
            && row.schema_version == version
            && row.last_error.as_deref() == error;
        if !unchanged
            && let Err(e) = retry_refused(patience, || {
                self.catalog
                    .set_tenant_outcome(&row.schema_name, status, version, error)
            })
            .await
        {
            warn!(schema = %row.schema_name, error = %e, "could not record the tenant's outcome in the catalog");
        }
    }
}

/// One adaptive limit per server holding some of `work`: each works `opts.concurrency`
/// tenants at a time, the servers side by side.
fn limits_for(
    work: &[(SchemaName, TenantRow, Option<i64>)],
    opts: &FleetOptions,
) -> BTreeMap<String, AdaptiveLimit> {
    work.iter()
        .map(|(_, row, _)| {
            (
                row.server.clone(),
                AdaptiveLimit::new(opts.concurrency, opts.refusal_patience),
            )
        })
        .collect()
}

/// A try at a tenant whose connection the server refused because of a connection limit:
/// nothing of it ran.
pub struct Refused {
    pub error: MigrateError,
    pub attempts: u32,
}

impl Refused {
    /// The server's answer, without our context.
    fn reason(&self) -> String {
        match &self.error {
            MigrateError::Db(e) => e.server_message(),
            other => other.to_string(),
        }
    }
}

/// Runs a catalog write, trying it again while the server refuses the connection because of a
/// connection limit (the tenants' connections may hold the user's limit for a moment), for
/// at most `patience`.
async fn retry_refused<F, Fut>(patience: Duration, mut write: F) -> Result<(), DbError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), DbError>>,
{
    let clock = tokio::time::Instant::now();
    let mut refusals = 0u32;
    loop {
        match write().await {
            Err(e) if e.is_connection_refused_by_limit() && clock.elapsed() < patience => {
                refusals += 1;
                debug!(error = %e, refusals, "the server refused a catalog connection; trying again");
                tokio::time::sleep(limit::backoff(refusals)).await;
            }
            done => return done,
        }
    }
}

enum Triage {
    Done(TenantReport),
    /// Needs its lock; carries the version it is at.
    Work(Option<i64>),
}

/// The line of a tenant the run did not start.
fn not_attempted(name: &SchemaName, row: &TenantRow) -> TenantReport {
    let mut r = TenantReport::new(name.as_str(), OutcomeStatus::NotAttempted);
    r.from = row.schema_version;
    r.to = row.schema_version;
    r
}

/// The newest applied version of a tenant as its history says now (after a failure,
/// migrations before the failing one may have been applied).
pub async fn reached(dialect: &dyn Dialect, name: &SchemaName) -> Option<i64> {
    match dialect.read_states(&[Target::Tenant(name.clone())]).await {
        Ok(mut states) => match states.pop() {
            Some(SchemaState::History(rows)) => max_applied(&rows),
            _ => None,
        },
        Err(_) => None,
    }
}

fn max_applied(rows: &[crate::migrate::history::HistoryRow]) -> Option<i64> {
    rows.iter()
        .filter(|r| r.state.is_applied())
        .map(|r| r.version)
        .max()
}

/// Job counters from a finished report.
pub fn counts_of(report: &FleetReport) -> JobCounts {
    JobCounts {
        total: report.tenants.len() as i64,
        succeeded: report.successful_migrations as i64,
        failed: report.failed as i64,
        skipped: report.skipped as i64,
        not_attempted: report.not_attempted as i64,
    }
}
