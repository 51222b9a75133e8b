//! Fleet jobs of the service: each runs in a background task, records its progress in the
//! catalog (each tenant's outcome and the counts as tenants finish, a heartbeat every
//! [`HEARTBEAT`]) and fans events out to server-sent-event subscribers. One fleet upgrade at a
//! time, decided by the catalog's `active_slot`. Cancel stops at a tenant boundary; shutdown
//! does the same and marks the job `interrupted`.
//!
//! A job is leased to the process running it. Its heartbeat runs in its own task, so a long
//! tenant migration never delays it; a heartbeat older than [`STALE_AFTER`] (on the database
//! server's clock) means the owner died: every replica's janitor looks every
//! [`JANITOR_EVERY`], a starting replica looks before it serves, and a new fleet job or a resume
//! refused because of such a job looks at once. The dead job is marked `interrupted`,
//! recounted from its per-tenant outcomes, and can be resumed with the tenants not yet done.
//! An owner whose heartbeat finds the job taken from it stops at the next tenant boundary and
//! writes nothing more to the job.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tracing::{Instrument, error, info, info_span, warn};
use uuid::Uuid;

use crate::catalog::{Beat, JobCounts, JobRow, JobState, JobWaves, NewJob, StartJobError};
use crate::domain::{SchemaName, ValidationError};
use crate::engine::Engine;
use crate::jobs::{Canary, FleetReport, OutcomeStatus, Progress, TenantReport, counts_of};

/// How often a running job proves it is alive (and saves its counts, which it also does as
/// tenants finish).
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A running job whose heartbeat is older than this belongs to a dead process: five beats
/// missed in a row, which a live owner (its heartbeat task independent of the migrations)
/// only misses when it cannot reach the catalog — and then it must stop anyway.
pub const STALE_AFTER: Duration = Duration::from_secs(5);
/// How often each replica looks for jobs of dead processes. A dead job is seen `interrupted`
/// at most `STALE_AFTER + JANITOR_EVERY` (plus a query) after its last heartbeat.
pub const JANITOR_EVERY: Duration = HEARTBEAT;
/// Kind of the exclusive fleet-upgrade job.
pub const UPGRADE_ALL: &str = "upgrade_all";

/// What subscribers of a job hear.
#[derive(Debug, Clone)]
pub enum JobEvent {
    /// A tenant finished (whatever its outcome).
    Tenant(TenantReport),
    /// The job ended; its final row.
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

struct Running {
    cancel: Arc<AtomicBool>,
    events: broadcast::Sender<JobEvent>,
    task: Option<JoinHandle<()>>,
}

struct Inner {
    engine: Engine,
    owner: String,
    running: Mutex<HashMap<Uuid, Running>>,
    shutting_down: AtomicBool,
}

/// Starts, follows, cancels and resumes this process's fleet jobs.
#[derive(Clone)]
pub struct JobManager {
    inner: Arc<Inner>,
}

impl JobManager {
    pub fn new(engine: Engine) -> Self {
        let owner = format!(
            "{}-{}",
            std::process::id(),
            &Uuid::new_v4().simple().to_string()[..8]
        );
        Self {
            inner: Arc::new(Inner {
                engine,
                owner,
                running: Mutex::new(HashMap::new()),
                shutting_down: AtomicBool::new(false),
            }),
        }
    }

    /// How often a running job proves it is alive ([`HEARTBEAT`]).
    pub const HEARTBEAT: Duration = HEARTBEAT;
    /// Heartbeat age after which a job's process counts as dead ([`STALE_AFTER`]).
    pub const STALE_AFTER: Duration = STALE_AFTER;

    /// This process's name in the `owner` column.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Running>> {
        self.inner
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks jobs of dead processes (heartbeat older than [`STALE_AFTER`]) `interrupted`;
    /// returns how many. A failure is logged and counts as none.
    pub async fn interrupt_stale(&self) -> usize {
        match self
            .inner
            .engine
            .catalog()
            .interrupt_stale_jobs(STALE_AFTER)
            .await
        {
            Ok(jobs) => {
                for job in &jobs {
                    warn!(%job, "the process running this job stopped; marked it interrupted");
                }
                jobs.len()
            }
            Err(e) => {
                warn!(error = %e, "could not check for jobs of stopped processes");
                0
            }
        }
    }

    /// Checks for dead processes' jobs every [`JANITOR_EVERY`].
    pub fn spawn_janitor(&self) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(JANITOR_EVERY);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                me.interrupt_stale().await;
            }
        })
    }

    /// Starts a fleet upgrade; fails with the running job when one holds the slot. A holder
    /// whose process died is marked `interrupted` and the start goes ahead.
    pub async fn start_upgrade_all(
        &self,
        params: UpgradeAllParams,
        requested_by: &str,
    ) -> Result<JobRow, StartJobError> {
        let new = NewJob {
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
        };
        let catalog = self.inner.engine.catalog();
        let job = match catalog.start_job(&new).await {
            Err(StartJobError::AlreadyRunning(_)) if self.interrupt_stale().await > 0 => {
                catalog.start_job(&new).await?
            }
            started => started?,
        };
        self.launch(job.clone(), HashSet::new(), 0);
        Ok(job)
    }

    /// Continues an interrupted job with the tenants it had not finished. Refused because of
    /// a job whose process died (this one, still `running`, or the slot's holder), it marks
    /// that job `interrupted` and tries once more. `Ok(None)`: the job is finished (not
    /// interrupted). `AlreadyRunning(holder)`: a fleet job runs — `holder` is `id` itself when
    /// the job runs already (someone else resumed it first), as the catalog says now, not as
    /// it was when the caller last looked.
    pub async fn resume(&self, id: Uuid) -> Result<Option<JobRow>, StartJobError> {
        let catalog = self.inner.engine.catalog();
        let mut looked_for_dead = false;
        let job = loop {
            let refused = match catalog
                .resume_job(id, &self.inner.owner, Some(UPGRADE_ALL))
                .await
            {
                Ok(Some(job)) => break job,
                Ok(None) => None,
                Err(StartJobError::AlreadyRunning(holder)) => Some(holder),
                Err(e) => return Err(e),
            };
            if !looked_for_dead {
                looked_for_dead = true;
                if self.interrupt_stale().await > 0 {
                    continue;
                }
            }
            if let Some(holder) = refused {
                return Err(StartJobError::AlreadyRunning(holder));
            }
            // Not interrupted (any more): say what it is now, not what it was when asked.
            return match catalog.get_job(id).await? {
                Some(now) if !now.state.is_finished() => Err(StartJobError::AlreadyRunning(id)),
                _ => Ok(None),
            };
        };
        let done: HashSet<String> = catalog
            .job_tenants(id)
            .await?
            .into_iter()
            .filter(|t| matches!(t.status.as_str(), "migrated" | "created" | "planned"))
            .map(|t| t.schema_name)
            .collect();
        let succeeded = done.len() as i64;
        info!(job = %id, already_done = done.len(), "resuming job");
        self.launch(job.clone(), done, succeeded);
        Ok(Some(job))
    }

    /// Asks a job of this process to stop at the next tenant boundary. `false`: the job does
    /// not run here.
    pub fn cancel(&self, id: Uuid) -> bool {
        match self.running().get(&id) {
            Some(r) => {
                r.cancel.store(true, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// True when a job of this process was told to stop (a cancel asked here or on another
    /// replica, or a shutdown) and will not start another tenant.
    pub fn is_cancelling(&self, id: Uuid) -> bool {
        self.running()
            .get(&id)
            .is_some_and(|r| r.cancel.load(Ordering::SeqCst))
    }

    /// Live events of a job running in this process.
    pub fn subscribe(&self, id: Uuid) -> Option<broadcast::Receiver<JobEvent>> {
        self.running().get(&id).map(|r| r.events.subscribe())
    }

    /// Tells every job to stop at its next tenant boundary (it ends `interrupted`), without
    /// waiting. Called as soon as a shutdown is requested, so that jobs — and the event streams
    /// following them — end while the HTTP server drains its connections.
    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        for r in self.running().values() {
            r.cancel.store(true, Ordering::SeqCst);
        }
    }

    /// True once a shutdown was requested.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::SeqCst)
    }

    /// Stops every job at a tenant boundary, waits for them, marks them `interrupted`.
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

    fn launch(&self, job: JobRow, done: HashSet<String>, prior_succeeded: i64) {
        // Started while the server stops: it ends `interrupted` at once, resumable later.
        let cancel = Arc::new(AtomicBool::new(self.is_shutting_down()));
        let (tx, _) = broadcast::channel(1024);
        let me = self.clone();
        let id = job.id;
        // Hold the map lock across spawn so the task cannot finish (and remove itself) first.
        let mut running = self.running();
        let task = tokio::spawn(
            me.run(job, done, prior_succeeded, cancel.clone(), tx.clone())
                .instrument(info_span!(parent: None, "job", job = %id)),
        );
        running.insert(
            id,
            Running {
                cancel,
                events: tx,
                task: Some(task),
            },
        );
    }

    async fn run(
        self,
        job: JobRow,
        done: HashSet<String>,
        prior_succeeded: i64,
        cancel: Arc<AtomicBool>,
        tx: broadcast::Sender<JobEvent>,
    ) {
        let engine = &self.inner.engine;
        let catalog = engine.catalog().clone();
        let clock = Instant::now();
        let mut opts = engine.fleet_options(job.dry_run, job.target_version);
        opts.concurrency = job.concurrency.max(1) as usize;
        opts.continue_on_error = job.continue_on_error;
        opts.cancel = cancel.clone();
        opts.job = Some(job.id);
        opts.owner = Some(self.inner.owner.clone());
        opts.max_failures = job
            .max_failures
            .map(|k| usize::try_from(k).unwrap_or(usize::MAX).max(1));
        let progress = JobProgress {
            tx: tx.clone(),
            shared: Arc::new(Shared::default()),
            prior_succeeded,
            dry_run: job.dry_run,
        };
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = AbortOnDrop(tokio::spawn(
            heartbeat(
                catalog.clone(),
                job.id,
                self.inner.owner.clone(),
                progress.shared.clone(),
                cancel.clone(),
                lost.clone(),
            )
            .in_current_span(),
        ));
        info!(
            dry_run = job.dry_run,
            concurrency = opts.concurrency,
            "job started"
        );
        let result = match canary_of(&job) {
            Ok(canary) => {
                opts.canary = canary;
                engine.upgrade_all_except(&done, &opts, &progress).await
            }
            Err(e) => Err(e.into()),
        };
        drop(heartbeat);
        let stopped = cancel.load(Ordering::SeqCst);
        let (state, counts, error) = match &result {
            Ok(r) => {
                let mut c = counts_of(r);
                c.succeeded += prior_succeeded;
                c.total += prior_succeeded;
                let state = if stopped && r.not_attempted > 0 {
                    if self.inner.shutting_down.load(Ordering::SeqCst) {
                        JobState::Interrupted
                    } else {
                        JobState::Cancelled
                    }
                } else if r.all_good() {
                    JobState::Succeeded
                } else {
                    JobState::Failed
                };
                (state, c, None)
            }
            Err(e) => {
                error!(error = %e, "job failed");
                (
                    JobState::Failed,
                    progress.shared.counts(),
                    Some(e.to_string()),
                )
            }
        };
        // Another process declared this one dead and took the job: it is `interrupted` (or
        // resumed) there, and nothing more of this run is written to it.
        let lost = lost.load(Ordering::SeqCst);
        let state = if lost { JobState::Interrupted } else { state };
        // Metrics first: whoever sees the job finished also sees it counted.
        metrics::histogram!("tenant_migrator_job_duration_seconds", "kind" => job.kind.clone(), "state" => state.as_str())
            .record(clock.elapsed().as_secs_f64());
        metrics::counter!("tenant_migrator_jobs_total", "kind" => job.kind.clone(), "state" => state.as_str())
            .increment(1);
        if !lost && let Ok(r) = &result {
            let waves = JobWaves {
                waves: r.waves.clone(),
                halted: r.halted,
            };
            if let Err(e) = catalog
                .record_job_waves(job.id, &self.inner.owner, &waves)
                .await
            {
                warn!(error = %e, "could not record the job's waves");
            }
        }
        let finished = if lost {
            Ok(false)
        } else {
            catalog
                .finish_job(job.id, &self.inner.owner, state, &counts, error.as_deref())
                .await
        };
        match finished {
            Ok(true) => info!(
                state = state.as_str(),
                succeeded = counts.succeeded,
                failed = counts.failed,
                "job finished"
            ),
            Ok(false) => warn!(
                succeeded = counts.succeeded,
                failed = counts.failed,
                "job stopped; another process had declared this one dead and taken the job"
            ),
            Err(e) => error!(error = %e, "could not record the end of the job"),
        }
        let row = catalog.get_job(job.id).await.ok().flatten();
        self.running().remove(&job.id);
        if let Some(row) = row {
            let _ = tx.send(JobEvent::Summary(Box::new(row)));
        }
    }
}

/// Aborts a task when dropped: a run that ends in any way (even a panic) stops its heartbeat,
/// so a job never outlives its run as a live-looking lease.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Proves every [`HEARTBEAT`] — and saves the counts as soon as they change — that this process
/// still runs the job. When the catalog says the job is no longer ours, stops the run at the
/// next tenant boundary (`cancel`) and tells it (`lost`).
async fn heartbeat(
    catalog: crate::catalog::Catalog,
    id: Uuid,
    owner: String,
    shared: Arc<Shared>,
    cancel: Arc<AtomicBool>,
    lost: Arc<AtomicBool>,
) {
    let mut tick = tokio::time::interval(HEARTBEAT);
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
        match catalog.heartbeat_job(id, &owner, counts.as_ref()).await {
            Ok(Beat::Ours) => {}
            Ok(Beat::CancelRequested) => {
                if !cancel.swap(true, Ordering::SeqCst) {
                    info!("cancel requested through the catalog; stopping at the next tenant");
                }
            }
            Ok(Beat::Lost) => {
                error!("this job was declared dead and taken from this process; stopping it");
                lost.store(true, Ordering::SeqCst);
                cancel.store(true, Ordering::SeqCst);
                return;
            }
            Err(e) => warn!(error = %e, "job heartbeat failed"),
        }
    }
}

/// What a run shares with its heartbeat.
#[derive(Default)]
struct Shared {
    counts: Mutex<JobCounts>,
    /// The run has its plan (`total` is known).
    planned: AtomicBool,
    /// Signalled when the counts change.
    changed: Notify,
}

impl Shared {
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
    prior_succeeded: i64,
    dry_run: bool,
}

impl Progress for JobProgress {
    fn planned(&self, total: usize, work: usize) {
        {
            let mut c = self.shared.lock();
            c.total = total as i64 + self.prior_succeeded;
            c.succeeded = self.prior_succeeded;
            // Tenants settled without their lock are failures (already counted) and, outside
            // a dry run (where they are `planned`), up-to-date or skipped ones, which never
            // reach `tenant_finished`.
            if !self.dry_run {
                c.skipped = (total.saturating_sub(work) as i64 - c.failed).max(0);
            }
        }
        self.shared.planned.store(true, Ordering::SeqCst);
        self.shared.changed.notify_one();
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
    }

    fn finished(&self, _report: &FleetReport) {}
}
