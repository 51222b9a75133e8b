//! The fleet-job lifecycle, the one home of it (no axum types: the HTTP layer and the CLI only
//! start, read and follow jobs through [`JobManager`] and the `Engine` methods here). A job
//! runs as a task of the process that holds it, records its progress in the catalog (each
//! tenant's outcome and the counts as tenants finish) and fans events out to subscribers. One
//! fleet upgrade at a time, decided by the catalog's `active_slot`.
//!
//! **Leases.** A job is leased to the process running it for `JOB_LEASE` ([`Config::job_lease`],
//! default 10 s): its heartbeat, in a task of its own so a long tenant migration never delays
//! it, extends the lease every fifth of it (on the database server's clock). A running job
//! whose lease has expired belongs to a dead (or cut-off) process: every serving replica's
//! janitor looks every heartbeat period, a starting replica looks before it serves, and a new
//! fleet job or resume refused because of such a job looks at once. The first replica to
//! win the catalog's compare-and-swap ([`crate::catalog::Catalog::take_over_job`]) becomes the
//! owner and **continues the job** with the tenants that have no outcome yet (a tenant that
//! was in flight is upgraded again: its lock and history make that a no-op or a completion).
//! Each outcome row names the replica that ran the tenant; `takeovers` counts the changes of
//! hands. An owner whose heartbeat finds the job taken from it stops at the next tenant
//! boundary and writes nothing more to the job.
//!
//! **Stopping.** Cancel (from any replica) stops at a tenant boundary and ends `cancelled`. A
//! service's graceful shutdown stops at a tenant boundary and **hands the job off**: the lease
//! expires at once and the job stays `running`, so another replica (or this one, restarted)
//! continues it. A CLI run (`upgrade-all --job`) stopped with Ctrl-C ends `interrupted`:
//! nobody is there to hand it to on purpose, and a person resumes it
//! (`POST /migrations/jobs/{id}/resume`), as any `interrupted` job.
//!
//! [`Config::job_lease`]: crate::config::Config::job_lease

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tracing::{Instrument, error, info, info_span, instrument, warn};
use uuid::Uuid;

use crate::catalog::{
    Beat, Catalog, ExpiredJob, JobCounts, JobFilter, JobRow, JobState, JobTenantRow, JobWaves,
    NewJob, StartJobError,
};
use crate::db::DbError;
use crate::domain::{SchemaName, ValidationError};
use crate::engine::{Engine, EngineError};
use crate::jobs::{Canary, FleetReport, OutcomeStatus, Progress, TenantReport, counts_of};

/// Kind of the exclusive fleet-upgrade job.
pub const UPGRADE_ALL: &str = "upgrade_all";

/// How often the owner of a job with lease `lease` beats: five beats per lease, so a live owner
/// loses it only when it cannot reach the catalog for the whole lease — and then it must stop.
pub fn heartbeat_every(lease: Duration) -> Duration {
    lease / 5
}

/// What subscribers of a job hear.
#[derive(Debug, Clone)]
pub enum JobEvent {
    /// A tenant finished (whatever its outcome).
    Tenant(TenantReport),
    /// The job ended (or, from a service stopping, was handed off); its row then.
    Summary(Box<JobRow>),
}

/// Options of a fleet upgrade job.
#[derive(Debug, Clone)]
pub struct UpgradeAllParams {
    pub dry_run: bool,
    pub continue_on_error: bool,
    pub concurrency: usize,
    pub target: Option<i64>,
    /// The canary wave, when the fleet goes in two waves.
    pub canary: Option<Canary>,
    /// The failure budget.
    pub max_failures: Option<usize>,
}

/// What a process does with its jobs when it stops at a tenant boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStop {
    /// A serving replica: hand the job off (its lease expires, it stays `running`) and take
    /// over jobs whose lease expired.
    HandOff,
    /// A CLI run: end the job `interrupted` (resumable); never take over others' jobs.
    Interrupt,
}

/// The canary a job asked for, from its row (the names were validated when it was asked).
fn canary_of(job: &JobRow) -> Result<Option<Canary>, ValidationError> {
    if let Some(names) = &job.canary_tenants {
        let names = names
            .iter()
            .map(|n| SchemaName::parse(n))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Some(Canary::Tenants(names)));
    }
    Ok(job
        .canary
        .map(|n| Canary::Count(usize::try_from(n).unwrap_or(usize::MAX).max(1))))
}

/// Where a run starts: tenants already settled (left out of it) and what they count.
#[derive(Debug, Default)]
struct Start {
    done: HashSet<String>,
    prior: JobCounts,
}

impl Start {
    /// A resume: tenants that succeeded (or were planned, in a dry run) stay done; failed ones
    /// are tried again — a person asked for it.
    fn resume(rows: Vec<JobTenantRow>) -> Self {
        let done: HashSet<String> = rows
            .into_iter()
            .filter(|t| matches!(t.status.as_str(), "migrated" | "created" | "planned"))
            .map(|t| t.schema_name)
            .collect();
        let prior = JobCounts {
            succeeded: done.len() as i64,
            ..JobCounts::default()
        };
        Self { done, prior }
    }

    /// A takeover: every tenant with an outcome is settled, as the dead owner left it; only
    /// tenants without one (never started, or in flight when it died) are run.
    fn takeover(rows: Vec<JobTenantRow>) -> Self {
        let mut prior = JobCounts::default();
        let mut done = HashSet::new();
        for t in rows {
            match t.status.as_str() {
                "not_attempted" => continue,
                "migrated" | "created" | "planned" => prior.succeeded += 1,
                "failed" | "dirty" | "checksum_mismatch" | "missing" | "foreign" => {
                    prior.failed += 1
                }
                _ => prior.skipped += 1,
            }
            done.insert(t.schema_name);
        }
        Self { done, prior }
    }

    fn settled(&self) -> i64 {
        self.prior.succeeded + self.prior.failed + self.prior.skipped
    }
}

/// True when the failures a job already had leave it nothing more to start: without
/// `continue_on_error` one failure stops it, with a budget the budget does.
fn failure_policy_spent(job: &JobRow, prior: &JobCounts) -> bool {
    if prior.failed == 0 {
        return false;
    }
    match job.max_failures {
        Some(k) => prior.failed >= k,
        None => !job.continue_on_error,
    }
}

struct Running {
    /// Stop starting tenants (a cancel or a shutdown).
    stop: Arc<AtomicBool>,
    /// A cancel was asked (here or, read with the heartbeat, on another replica).
    cancel: Arc<AtomicBool>,
    events: broadcast::Sender<JobEvent>,
    task: Option<JoinHandle<()>>,
}

struct Inner {
    engine: Engine,
    owner: String,
    lease: Duration,
    on_stop: OnStop,
    running: Mutex<HashMap<Uuid, Running>>,
    shutting_down: AtomicBool,
}

/// Starts, follows, cancels, resumes, takes over and hands off this process's fleet jobs.
#[derive(Clone)]
pub struct JobManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JobManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobManager")
            .field("owner", &self.inner.owner)
            .field("lease", &self.inner.lease)
            .field("on_stop", &self.inner.on_stop)
            .finish()
    }
}

impl JobManager {
    /// The job manager of a serving replica ([`OnStop::HandOff`]), with the engine's lease.
    pub fn new(engine: Engine) -> Self {
        Self::with(engine, OnStop::HandOff)
    }

    /// A job manager that stops its jobs in the way `on_stop` says.
    pub fn with(engine: Engine, on_stop: OnStop) -> Self {
        let owner = format!(
            "{}-{}",
            std::process::id(),
            &Uuid::new_v4().simple().to_string()[..8]
        );
        let lease = engine.config().job_lease;
        Self {
            inner: Arc::new(Inner {
                engine,
                owner,
                lease,
                on_stop,
                running: Mutex::new(HashMap::new()),
                shutting_down: AtomicBool::new(false),
            }),
        }
    }

    /// This process's name in the `owner` columns.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// How long this process holds a job without a heartbeat (`JOB_LEASE`).
    pub fn lease(&self) -> Duration {
        self.inner.lease
    }

    /// How often this process's jobs beat, and its janitor looks for expired leases.
    pub fn heartbeat(&self) -> Duration {
        heartbeat_every(self.inner.lease)
    }

    fn catalog(&self) -> &Catalog {
        self.inner.engine.catalog()
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Running>> {
        self.inner
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes over every fleet job whose lease has expired and continues it here; returns how
    /// many this process won. Nothing while stopping, nor in a CLI run. A failure is logged
    /// and counts as none.
    #[instrument(skip_all, fields(owner = %self.inner.owner))]
    pub async fn take_over_expired(&self) -> usize {
        if self.inner.on_stop != OnStop::HandOff || self.is_shutting_down() {
            return 0;
        }
        let expired = match self.catalog().expired_jobs().await {
            Ok(jobs) => jobs,
            Err(e) => {
                warn!(error = %e, "could not look for jobs whose lease expired");
                return 0;
            }
        };
        let mut won = 0;
        // A job still running here whose lease lapsed (the catalog was out of reach) is not
        // taken from ourselves: its own heartbeat renews the lease once the catalog answers.
        let mine = |j: &ExpiredJob| {
            j.owner.as_deref() == Some(self.owner()) && self.running().contains_key(&j.id)
        };
        for job in expired.iter().filter(|j| j.kind == UPGRADE_ALL && !mine(j)) {
            match self.take_over(job).await {
                Ok(true) => won += 1,
                Ok(false) => {}
                Err(e) => warn!(job = %job.id, error = %e, "could not take the job over"),
            }
        }
        won
    }

    async fn take_over(&self, expired: &ExpiredJob) -> Result<bool, DbError> {
        let catalog = self.catalog();
        let Some(job) = catalog
            .take_over_job(expired, &self.inner.owner, self.inner.lease)
            .await?
        else {
            return Ok(false);
        };
        let start = Start::takeover(catalog.job_tenants(job.id).await?);
        warn!(
            job = %job.id,
            previous_owner = expired.owner.as_deref().unwrap_or_default(),
            takeovers = job.takeovers,
            already_done = start.done.len(),
            "the lease of this job expired (its owner stopped or handed it off); took it over"
        );
        if failure_policy_spent(&job, &start.prior) {
            // The dead owner's failures already stop the job: end it as it would have ended.
            let counts = catalog.recount_job(job.id).await?;
            catalog
                .finish_job(job.id, &self.inner.owner, JobState::Failed, &counts, None)
                .await?;
            info!(job = %job.id, "job taken over had already failed; finished it");
            return Ok(true);
        }
        self.launch(job, start, None);
        Ok(true)
    }

    /// Looks for expired leases every heartbeat period ([`JobManager::heartbeat`]).
    pub fn spawn_janitor(&self) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(me.heartbeat());
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                me.take_over_expired().await;
            }
        })
    }

    fn new_job(&self, params: &UpgradeAllParams, requested_by: &str) -> NewJob {
        NewJob {
            kind: UPGRADE_ALL.into(),
            dry_run: params.dry_run,
            continue_on_error: params.continue_on_error,
            concurrency: params.concurrency as i64,
            target_version: params.target,
            requested_by: Some(requested_by.to_owned()),
            exclusive: true,
            owner: self.inner.owner.clone(),
            canary: match &params.canary {
                Some(Canary::Count(n)) => Some(i64::try_from(*n).unwrap_or(i64::MAX)),
                _ => None,
            },
            canary_tenants: match &params.canary {
                Some(Canary::Tenants(names)) => {
                    Some(names.iter().map(|n| n.as_str().to_owned()).collect())
                }
                _ => None,
            },
            max_failures: params
                .max_failures
                .map(|k| i64::try_from(k).unwrap_or(i64::MAX)),
            lease: self.inner.lease,
        }
    }

    /// Starts a fleet upgrade in the background; fails with the running job when one holds the
    /// slot. A holder whose lease expired is taken over (it continues here) before the refusal
    /// names it.
    #[instrument(skip_all, fields(owner = %self.inner.owner, requested_by))]
    pub async fn start_upgrade_all(
        &self,
        params: UpgradeAllParams,
        requested_by: &str,
    ) -> Result<JobRow, StartJobError> {
        let job = self.claim(&params, requested_by).await?;
        self.launch(job.clone(), Start::default(), None);
        Ok(job)
    }

    async fn claim(
        &self,
        params: &UpgradeAllParams,
        requested_by: &str,
    ) -> Result<JobRow, StartJobError> {
        match self
            .catalog()
            .start_job(&self.new_job(params, requested_by))
            .await
        {
            Err(StartJobError::AlreadyRunning(holder)) => {
                self.take_over_expired().await;
                Err(StartJobError::AlreadyRunning(holder))
            }
            started => started,
        }
    }

    /// Runs a fleet upgrade as a recorded job in this task (the CLI's `upgrade-all --job`):
    /// the same slot, lease, heartbeat and per-tenant rows as a service's job, `progress` told
    /// of every event as well. Returns the final row and the run's report, or why the run
    /// failed as a whole (the row says it too).
    #[instrument(skip_all, fields(owner = %self.inner.owner, requested_by))]
    pub async fn run_upgrade_all(
        &self,
        params: UpgradeAllParams,
        requested_by: &str,
        progress: Box<dyn Progress>,
    ) -> Result<(JobRow, Result<FleetReport, EngineError>), StartJobError> {
        let job = self.claim(&params, requested_by).await?;
        let id = job.id;
        let (stop, cancel, tx) = self.register(id);
        let report = self
            .clone()
            .run(job, Start::default(), stop, cancel, tx, Some(progress))
            .instrument(info_span!("job", job = %id))
            .await;
        let row =
            self.catalog().get_job(id).await?.ok_or_else(|| {
                StartJobError::Db(DbError::Unexpected(format!("job {id} vanished")))
            })?;
        Ok((row, report))
    }

    /// Continues an interrupted job with the tenants it had not finished. Refused because of
    /// a job whose lease expired (the slot's holder, or this very job, still `running`), it
    /// takes that job over first. `Ok(None)`: the job is finished (not interrupted).
    /// `AlreadyRunning(holder)`: a fleet job runs — `holder` is `id` itself when the job runs
    /// already (someone resumed it first, or it was taken over), as the catalog says now.
    #[instrument(skip_all, fields(owner = %self.inner.owner, job = %id))]
    pub async fn resume(&self, id: Uuid) -> Result<Option<JobRow>, StartJobError> {
        let catalog = self.catalog();
        let job = match catalog
            .resume_job(id, &self.inner.owner, Some(UPGRADE_ALL), self.inner.lease)
            .await
        {
            Ok(Some(job)) => job,
            Err(StartJobError::AlreadyRunning(holder)) => {
                self.take_over_expired().await;
                return Err(StartJobError::AlreadyRunning(holder));
            }
            Err(e) => return Err(e),
            // Not interrupted (any more): say what it is now, not what it was when asked.
            Ok(None) => {
                return match catalog.get_job(id).await? {
                    Some(now) if !now.state.is_finished() => {
                        self.take_over_expired().await;
                        Err(StartJobError::AlreadyRunning(id))
                    }
                    _ => Ok(None),
                };
            }
        };
        let start = Start::resume(catalog.job_tenants(id).await?);
        info!(already_done = start.done.len(), "resuming job");
        self.launch(job.clone(), start, None);
        Ok(Some(job))
    }

    /// Asks a job to stop at the next tenant boundary, whichever replica runs it: a run of
    /// this process is told at once, the catalog's flag reaches another replica's run with its
    /// next heartbeat. `Ok(false)`: the job is not running.
    #[instrument(skip_all, fields(owner = %self.inner.owner, job = %id))]
    pub async fn cancel(&self, id: Uuid) -> Result<bool, DbError> {
        let here = match self.running().get(&id) {
            Some(r) => {
                r.cancel.store(true, Ordering::SeqCst);
                r.stop.store(true, Ordering::SeqCst);
                true
            }
            None => false,
        };
        Ok(self.catalog().request_cancel(id).await? || here)
    }

    /// True when a job of this process was told to stop (a cancel asked here or on another
    /// replica, or a shutdown) and will not start another tenant.
    pub fn is_cancelling(&self, id: Uuid) -> bool {
        self.running()
            .get(&id)
            .is_some_and(|r| r.stop.load(Ordering::SeqCst))
    }

    /// Live events of a job running in this process.
    pub fn subscribe(&self, id: Uuid) -> Option<broadcast::Receiver<JobEvent>> {
        self.running().get(&id).map(|r| r.events.subscribe())
    }

    /// Tells every job to stop at its next tenant boundary (then it is handed off, or ends
    /// `interrupted` in a CLI run), without waiting. Called as soon as a shutdown is requested,
    /// so that jobs — and the event streams following them — end while the HTTP server drains
    /// its connections. No job is taken over after it.
    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        for r in self.running().values() {
            r.stop.store(true, Ordering::SeqCst);
        }
    }

    /// True once a shutdown was requested.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::SeqCst)
    }

    /// Stops every job at a tenant boundary and waits for them to be handed off.
    pub async fn shutdown(&self) {
        self.begin_shutdown();
        let tasks: Vec<JoinHandle<()>> = {
            let mut running = self.running();
            running.values_mut().filter_map(|r| r.task.take()).collect()
        };
        if !tasks.is_empty() {
            info!(
                jobs = tasks.len(),
                "stopping fleet jobs at a tenant boundary"
            );
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    fn launch(&self, job: JobRow, start: Start, progress: Option<Box<dyn Progress>>) {
        let id = job.id;
        let (stop, cancel, tx) = self.register(id);
        let me = self.clone();
        // Hold the map lock across spawn so the task cannot finish (and remove itself) before
        // its handle is stored.
        let mut running = self.running();
        let task = tokio::spawn(
            async move {
                let _ = me.run(job, start, stop, cancel, tx, progress).await;
            }
            .instrument(info_span!(parent: None, "job", job = %id)),
        );
        if let Some(r) = running.get_mut(&id) {
            r.task = Some(task);
        }
    }

    /// Registers a run (before it starts) so that cancel, shutdown and subscribers find it. A
    /// run registered while the process stops stops at once (handed off, or interrupted).
    fn register(
        &self,
        id: Uuid,
    ) -> (
        Arc<AtomicBool>,
        Arc<AtomicBool>,
        broadcast::Sender<JobEvent>,
    ) {
        let stop = Arc::new(AtomicBool::new(self.is_shutting_down()));
        let cancel = Arc::new(AtomicBool::new(false));
        let (tx, _) = broadcast::channel(1024);
        self.running().insert(
            id,
            Running {
                stop: stop.clone(),
                cancel: cancel.clone(),
                events: tx.clone(),
                task: None,
            },
        );
        (stop, cancel, tx)
    }

    async fn run(
        self,
        job: JobRow,
        start: Start,
        stop: Arc<AtomicBool>,
        cancel: Arc<AtomicBool>,
        tx: broadcast::Sender<JobEvent>,
        also: Option<Box<dyn Progress>>,
    ) -> Result<FleetReport, EngineError> {
        let engine = &self.inner.engine;
        let catalog = engine.catalog().clone();
        let owner = self.inner.owner.clone();
        let clock = Instant::now();
        let mut opts = engine.fleet_options(job.dry_run, job.target_version);
        opts.concurrency = job.concurrency.max(1) as usize;
        opts.continue_on_error = job.continue_on_error;
        opts.cancel = stop.clone();
        opts.job = Some(job.id);
        opts.owner = Some(owner.clone());
        // Failures of an earlier owner spend the budget too.
        opts.max_failures = job.max_failures.map(|k| {
            usize::try_from(k - start.prior.failed)
                .unwrap_or(usize::MAX)
                .max(1)
        });
        let shared = Arc::new(Shared::new(start.prior));
        let progress = JobProgress {
            tx: tx.clone(),
            shared: shared.clone(),
            settled: start.settled(),
            dry_run: job.dry_run,
            also,
        };
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = AbortOnDrop(tokio::spawn(
            heartbeat(
                catalog.clone(),
                job.id,
                owner.clone(),
                self.inner.lease,
                shared.clone(),
                [stop.clone(), cancel.clone()],
                lost.clone(),
            )
            .in_current_span(),
        ));
        info!(
            dry_run = job.dry_run,
            concurrency = opts.concurrency,
            already_done = start.done.len(),
            "job started"
        );
        let result = match canary_of(&job) {
            Ok(canary) => {
                opts.canary = canary;
                engine
                    .upgrade_all_except(&start.done, &opts, &progress)
                    .await
            }
            Err(e) => Err(e.into()),
        };
        // The heartbeat is over before the job is handed off or finished: a late beat must not
        // extend a lease just handed off.
        heartbeat.stop().await;
        let stopped = stop.load(Ordering::SeqCst);
        let cancelled = cancel.load(Ordering::SeqCst);
        let shutting_down = self.is_shutting_down();
        let prior = start.prior;
        let (state, counts, error) = match &result {
            Ok(r) => {
                let mut c = counts_of(r);
                c.succeeded += prior.succeeded;
                c.failed += prior.failed;
                c.skipped += prior.skipped;
                c.total += start.settled();
                let state = if stopped && r.not_attempted > 0 {
                    if cancelled || !shutting_down {
                        JobState::Cancelled
                    } else {
                        match self.inner.on_stop {
                            // Stays running: handed off below.
                            OnStop::HandOff => JobState::Running,
                            OnStop::Interrupt => JobState::Interrupted,
                        }
                    }
                } else if r.all_good() && prior.failed == 0 {
                    JobState::Succeeded
                } else {
                    JobState::Failed
                };
                (state, c, None)
            }
            Err(e) => {
                error!(error = %e, "job failed");
                (JobState::Failed, shared.counts(), Some(e.to_string()))
            }
        };
        // Another process took the job over (its lease had expired): nothing more of this run
        // is written to it.
        let lost = lost.load(Ordering::SeqCst);
        if lost {
            warn!(
                succeeded = counts.succeeded,
                failed = counts.failed,
                "job stopped; another process had taken it over"
            );
        } else if state == JobState::Running {
            match catalog.hand_off_job(job.id, &owner, &counts).await {
                Ok(true) => info!(
                    succeeded = counts.succeeded,
                    not_attempted = counts.not_attempted,
                    "job handed off at a tenant boundary; another replica continues it"
                ),
                Ok(false) => warn!("job handed off, but another process had taken it over"),
                Err(e) => warn!(
                    error = %e,
                    "could not hand the job off; another replica takes it over once its lease expires"
                ),
            }
        } else {
            self.finish(
                &job,
                &catalog,
                &owner,
                state,
                &counts,
                error.as_deref(),
                &result,
                clock,
            )
            .await;
        }
        // A job handed off has not ended: its followers here hear the stream close instead.
        let row = if state == JobState::Running && !lost {
            None
        } else {
            catalog.get_job(job.id).await.ok().flatten()
        };
        self.running().remove(&job.id);
        if let Some(row) = row {
            let _ = tx.send(JobEvent::Summary(Box::new(row)));
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        job: &JobRow,
        catalog: &Catalog,
        owner: &str,
        state: JobState,
        counts: &JobCounts,
        error: Option<&str>,
        result: &Result<FleetReport, EngineError>,
        clock: Instant,
    ) {
        // Metrics first: whoever sees the job finished also sees it counted.
        metrics::histogram!("tenant_migrator_job_duration_seconds", "kind" => job.kind.clone(), "state" => state.as_str())
            .record(clock.elapsed().as_secs_f64());
        metrics::counter!("tenant_migrator_jobs_total", "kind" => job.kind.clone(), "state" => state.as_str())
            .increment(1);
        if let Ok(r) = result {
            let waves = JobWaves {
                waves: r.waves.clone(),
                halted: r.halted,
            };
            if let Err(e) = catalog.record_job_waves(job.id, owner, &waves).await {
                warn!(error = %e, "could not record the job's waves");
            }
        }
        match catalog
            .finish_job(job.id, owner, state, counts, error)
            .await
        {
            Ok(true) => info!(
                state = state.as_str(),
                succeeded = counts.succeeded,
                failed = counts.failed,
                "job finished"
            ),
            Ok(false) => warn!(
                succeeded = counts.succeeded,
                failed = counts.failed,
                "job stopped; another process had taken it over"
            ),
            Err(e) => error!(error = %e, "could not record the end of the job"),
        }
    }
}

/// Aborts a task when dropped: a run that ends in any way (even a panic) stops its heartbeat,
/// so a job never outlives its run as a live-looking lease.
struct AbortOnDrop(JoinHandle<()>);

impl AbortOnDrop {
    /// Aborts the task and waits until it is gone.
    async fn stop(mut self) {
        self.0.abort();
        let _ = (&mut self.0).await;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Extends the lease every [`heartbeat_every`]`(lease)` — and saves the counts as soon as they
/// change. A cancel asked through the catalog sets both `stop_and_cancel` flags; when the
/// catalog says the job is no longer ours, stops the run at the next tenant boundary and tells
/// it (`lost`).
async fn heartbeat(
    catalog: Catalog,
    id: Uuid,
    owner: String,
    lease: Duration,
    shared: Arc<Shared>,
    stop_and_cancel: [Arc<AtomicBool>; 2],
    lost: Arc<AtomicBool>,
) {
    let [stop, cancel] = stop_and_cancel;
    let mut tick = tokio::time::interval(heartbeat_every(lease));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.changed.notified() => {}
        }
        // Counts are saved once the run has its plan: before that they would erase a resumed
        // job's counts with zeros.
        let counts = shared
            .planned
            .load(Ordering::SeqCst)
            .then(|| shared.counts());
        match catalog
            .heartbeat_job(id, &owner, counts.as_ref(), lease)
            .await
        {
            Ok(Beat::Ours) => {}
            Ok(Beat::CancelRequested) => {
                cancel.store(true, Ordering::SeqCst);
                if !stop.swap(true, Ordering::SeqCst) {
                    info!("cancel requested through the catalog; stopping at the next tenant");
                }
            }
            Ok(Beat::Lost) => {
                error!("this job's lease expired and another process took it over; stopping");
                lost.store(true, Ordering::SeqCst);
                stop.store(true, Ordering::SeqCst);
                return;
            }
            Err(e) => warn!(error = %e, "job heartbeat failed"),
        }
    }
}

/// What a run shares with its heartbeat.
struct Shared {
    counts: Mutex<JobCounts>,
    /// Counts already settled before this run (an earlier owner's, or a resumed job's).
    prior: JobCounts,
    /// The run has its plan (`total` is known).
    planned: AtomicBool,
    /// Signalled when the counts change.
    changed: Notify,
}

impl Shared {
    fn new(prior: JobCounts) -> Self {
        Self {
            counts: Mutex::new(prior),
            prior,
            planned: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JobCounts> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn counts(&self) -> JobCounts {
        *self.lock()
    }
}

struct JobProgress {
    tx: broadcast::Sender<JobEvent>,
    shared: Arc<Shared>,
    /// Tenants settled before this run (counted in the prior counts `shared` started with).
    settled: i64,
    dry_run: bool,
    /// The CLI's own progress display, told of every event too.
    also: Option<Box<dyn Progress>>,
}

impl Progress for JobProgress {
    fn planned(&self, total: usize, work: usize) {
        {
            let mut c = self.shared.lock();
            c.total = total as i64 + self.settled;
            // Tenants settled without their lock are failures (already counted) and, outside
            // a dry run (where they are `planned`), up-to-date or skipped ones, which never
            // reach `tenant_finished`.
            if !self.dry_run {
                let failed_now = c.failed - self.shared.prior.failed;
                c.skipped = self.shared.prior.skipped
                    + (total.saturating_sub(work) as i64 - failed_now).max(0);
            }
        }
        self.shared.planned.store(true, Ordering::SeqCst);
        self.shared.changed.notify_one();
        if let Some(p) = &self.also {
            p.planned(total, work);
        }
    }

    fn tenant_started(&self, schema: &str) {
        if let Some(p) = &self.also {
            p.tenant_started(schema);
        }
    }

    fn tenant_finished(&self, r: &TenantReport) {
        {
            let mut c = self.shared.lock();
            match r.status {
                OutcomeStatus::Created | OutcomeStatus::Migrated => c.succeeded += 1,
                OutcomeStatus::NotAttempted => c.not_attempted += 1,
                s if s.is_failure() => c.failed += 1,
                _ => c.skipped += 1,
            }
        }
        self.shared.changed.notify_one();
        let _ = self.tx.send(JobEvent::Tenant(r.clone()));
        if let Some(p) = &self.also {
            p.tenant_finished(r);
        }
    }

    fn finished(&self, report: &FleetReport) {
        if let Some(p) = &self.also {
            p.finished(report);
        }
    }
}

/// Reading jobs: what the HTTP layer shows and follows.
impl Engine {
    /// One job, `None` when there is no such job.
    #[instrument(skip_all, fields(job = %id))]
    pub async fn job(&self, id: Uuid) -> Result<Option<JobRow>, EngineError> {
        Ok(self.catalog().get_job(id).await?)
    }

    /// Jobs, newest first, with the total count.
    #[instrument(skip_all, fields(limit = filter.limit, offset = filter.offset))]
    pub async fn jobs(&self, filter: &JobFilter) -> Result<(Vec<JobRow>, i64), EngineError> {
        Ok(self.catalog().list_jobs(filter).await?)
    }

    /// A job's per-tenant outcomes, by schema name.
    #[instrument(skip_all, fields(job = %id))]
    pub async fn job_tenants(&self, id: Uuid) -> Result<Vec<JobTenantRow>, EngineError> {
        Ok(self.catalog().job_tenants(id).await?)
    }
}
