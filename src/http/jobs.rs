//! Fleet jobs of the service: each runs in a background task, records its progress in the
//! catalog (per-tenant outcomes, counts, a heartbeat every few seconds) and fans events out to
//! server-sent-event subscribers. One fleet upgrade at a time, decided by the catalog's
//! `active_slot`. Cancel stops at a tenant boundary; shutdown does the same and marks the job
//! `interrupted`; a job whose process died (stale heartbeat) is marked `interrupted` by any
//! replica and can be resumed with the tenants not yet done.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tracing::{Instrument, error, info, info_span, warn};
use uuid::Uuid;

use crate::catalog::{JobCounts, JobRow, JobState, NewJob, StartJobError};
use crate::engine::Engine;
use crate::jobs::{FleetReport, OutcomeStatus, Progress, TenantReport, counts_of};

/// How often a running job proves it is alive.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// A running job whose heartbeat is older than this belongs to a dead process.
const STALE_AFTER: Duration = Duration::from_secs(60);
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

    /// Marks jobs of dead processes `interrupted`.
    pub async fn interrupt_stale(&self) {
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(STALE_AFTER)
                .unwrap_or_else(|_| chrono::Duration::seconds(60));
        match self
            .inner
            .engine
            .catalog()
            .interrupt_stale_jobs(cutoff, None)
            .await
        {
            Ok(0) => {}
            Ok(n) => warn!(jobs = n, "marked jobs of stopped processes as interrupted"),
            Err(e) => warn!(error = %e, "could not check for interrupted jobs"),
        }
    }

    /// Checks for dead processes' jobs every half minute.
    pub fn spawn_janitor(&self) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(STALE_AFTER / 2);
            loop {
                tick.tick().await;
                me.interrupt_stale().await;
            }
        })
    }

    /// Starts a fleet upgrade; fails with the running job when one holds the slot.
    pub async fn start_upgrade_all(
        &self,
        params: UpgradeAllParams,
        requested_by: &str,
    ) -> Result<JobRow, StartJobError> {
        let job = self
            .inner
            .engine
            .catalog()
            .start_job(&NewJob {
                kind: UPGRADE_ALL.into(),
                dry_run: params.dry_run,
                continue_on_error: params.continue_on_error,
                concurrency: params.concurrency as i64,
                target_version: params.target,
                requested_by: Some(requested_by.to_owned()),
                exclusive: true,
                owner: self.inner.owner.clone(),
            })
            .await?;
        self.launch(job.clone(), HashSet::new(), 0);
        Ok(job)
    }

    /// Continues an interrupted job with the tenants it had not finished. `Ok(None)`: the job
    /// is not interrupted.
    pub async fn resume(&self, id: Uuid) -> Result<Option<JobRow>, StartJobError> {
        let catalog = self.inner.engine.catalog();
        let Some(job) = catalog
            .resume_job(id, &self.inner.owner, Some(UPGRADE_ALL))
            .await?
        else {
            return Ok(None);
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
        let progress = JobProgress {
            tx: tx.clone(),
            counts: Arc::new(Mutex::new(JobCounts::default())),
            prior_succeeded,
        };
        let heartbeat = {
            let counts = progress.counts.clone();
            let catalog = catalog.clone();
            let id = job.id;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(HEARTBEAT);
                loop {
                    tick.tick().await;
                    let snapshot = *counts
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if let Err(e) = catalog.heartbeat_job(id, &snapshot).await {
                        warn!(error = %e, "job heartbeat failed");
                    }
                }
            })
        };
        info!(
            dry_run = job.dry_run,
            concurrency = opts.concurrency,
            "job started"
        );
        let result = engine.upgrade_all_except(&done, &opts, &progress).await;
        heartbeat.abort();
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
                let c = *progress
                    .counts
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                (JobState::Failed, c, Some(e.to_string()))
            }
        };
        // Metrics first: whoever sees the job finished also sees it counted.
        metrics::histogram!("tenant_migrator_job_duration_seconds", "kind" => job.kind.clone(), "state" => state.as_str())
            .record(clock.elapsed().as_secs_f64());
        metrics::counter!("tenant_migrator_jobs_total", "kind" => job.kind.clone(), "state" => state.as_str())
            .increment(1);
        if let Err(e) = catalog
            .finish_job(job.id, state, &counts, error.as_deref())
            .await
        {
            error!(error = %e, "could not record the end of the job");
        }
        info!(
            state = state.as_str(),
            succeeded = counts.succeeded,
            failed = counts.failed,
            "job finished"
        );
        let row = catalog.get_job(job.id).await.ok().flatten();
        self.running().remove(&job.id);
        if let Some(row) = row {
            let _ = tx.send(JobEvent::Summary(Box::new(row)));
        }
    }
}

struct JobProgress {
    tx: broadcast::Sender<JobEvent>,
    counts: Arc<Mutex<JobCounts>>,
    prior_succeeded: i64,
}

impl Progress for JobProgress {
    fn planned(&self, total: usize, _work: usize) {
        let mut c = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        c.total = total as i64 + self.prior_succeeded;
        c.succeeded = self.prior_succeeded;
    }

    fn tenant_finished(&self, r: &TenantReport) {
        {
            let mut c = self
                .counts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match r.status {
                OutcomeStatus::Created | OutcomeStatus::Migrated => c.succeeded += 1,
                OutcomeStatus::NotAttempted => c.not_attempted += 1,
                s if s.is_failure() => c.failed += 1,
                _ => c.skipped += 1,
            }
        }
        let _ = self.tx.send(JobEvent::Tenant(r.clone()));
    }

    fn finished(&self, _report: &FleetReport) {}
}
