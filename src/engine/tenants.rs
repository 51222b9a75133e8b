//! Provisioning: `create` places each new tenant on a server (the one asked for, else the
//! active one with the fewest tenants), inserts the catalog row as `provisioning` with that
//! server, creates the schema, migrates it and marks it `active`; a failure leaves it `failed`
//! with the error, and running `create` again resumes it on the server it was placed on.
//! Creating an active tenant reports `exists`. The servers provision side by side, each at
//! most `concurrency` tenants at a time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures_util::future::join_all;
use futures_util::{StreamExt, stream};
use tracing::{info, instrument, warn};

use super::{Engine, EngineError};
use crate::catalog::{TenantFilter, TenantPage, TenantRow, TenantStatus};
use crate::db::Target;
use crate::domain::{DisplayName, SchemaName, ValidationError};
use crate::jobs::{
    FleetOptions, FleetReport, OutcomeStatus, Progress, TenantReport, failure_report, reached,
};
use crate::migrate::apply::dry_run_result;
use crate::migrate::{MigrateError, RowOrigin, Scope, provision_target_counted};

impl Engine {
    /// One tenant's catalog row, if the catalog lists it.
    pub async fn tenant(&self, name: &SchemaName) -> Result<Option<TenantRow>, EngineError> {
        Ok(self.catalog().get_tenant(name.as_str()).await?)
    }

    /// A page of the catalog's tenants, read straight from a catalog known to exist (the
    /// service's); see [`Engine::list_tenants`] for callers that cannot assume it.
    pub async fn tenant_page(&self, filter: &TenantFilter) -> Result<TenantPage, EngineError> {
        Ok(self.catalog().list_tenants(filter).await?)
    }

    /// Moves on every tenant write this process makes: a page derived under one generation is
    /// still right while it is unchanged (up to what other processes wrote meanwhile).
    pub fn tenant_generation(&self) -> u64 {
        self.catalog().tenant_generation()
    }

    /// Provisions `names` (each validated already), `opts.concurrency` at a time, with
    /// `display_name` (the schema name when `None`). The catalog is migrated first when
    /// needed. Without `continue_on_error`, the first failure stops new tenants from starting.
    ///
    /// The catalog rows are written in batches: inserted as `provisioning` before the tenants
    /// are built, and marked `active` a batch at a time as they finish (a tenant whose row a
    /// crash left `provisioning` is finished by the next `create`).
    #[instrument(skip_all, fields(tenants = names.len(), dry_run = opts.run.dry_run))]
    pub async fn create_tenants(
        &self,
        names: &[SchemaName],
        display_name: Option<&DisplayName>,
        opts: &FleetOptions,
        progress: &dyn Progress,
    ) -> Result<FleetReport, EngineError> {
        let clock = Instant::now();
        let mut unique: Vec<SchemaName> = Vec::with_capacity(names.len());
        for n in names {
            if !unique.contains(n) {
                unique.push(n.clone());
            }
        }
        let (places, catalog_ready, down) = self.prepare_create(&unique, opts).await?;
        progress.planned(unique.len(), unique.len());
        let display_of =
            |name: &SchemaName| display_name.map_or_else(|| name.to_string(), |d| d.to_string());
        // One catalog row per tenant, `None` in a dry run (nothing is written).
        let rows: Vec<Option<CatalogRow>> = if opts.run.dry_run {
            vec![None; unique.len()]
        } else {
            let displays: Vec<String> = unique.iter().map(display_of).collect();
            let new: Vec<(&str, &str, &str)> = unique
                .iter()
                .zip(&displays)
                .zip(&places)
                .map(|((n, d), s)| (n.as_str(), d.as_str(), s.as_str()))
                .collect();
            self.catalog()
                .insert_tenants(&new)
                .await?
                .into_iter()
                .map(Some)
                .collect()
        };
        let inserted: std::collections::HashSet<String> = rows
            .iter()
            .flatten()
            .filter(|(_, mine)| *mine)
            .map(|(row, _)| row.schema_name.clone())
            .collect();
        // Each server provisions `opts.concurrency` tenants at a time, the servers side by side.
        let mut by_server: BTreeMap<String, Vec<(SchemaName, Option<CatalogRow>)>> =
            BTreeMap::new();
        for ((name, server), row) in unique.into_iter().zip(places).zip(rows) {
            by_server.entry(server).or_default().push((name, row));
        }
        let stop = &AtomicBool::new(false);
        let down = &down;
        let activated = &ActiveBatch::default();
        let per_server = by_server.into_iter().map(|(server, tenants)| {
            stream::iter(tenants)
                .map(move |(name, row)| {
                    let server = server.clone();
                    async move {
                        if stop.load(Ordering::SeqCst) || opts.cancel.load(Ordering::SeqCst) {
                            let r = TenantReport::new(name.as_str(), OutcomeStatus::NotAttempted);
                            progress.tenant_finished(&r);
                            return r;
                        }
                        progress.tenant_started(name.as_str());
                        let r = match (down.get(&server), row) {
                            (Some(why), _) => {
                                let mut r = TenantReport::new(name.as_str(), OutcomeStatus::Failed);
                                r.error = Some(format!("database server {server} is down: {why}"));
                                r
                            }
                            (None, None) => {
                                self.plan_create(&name, &server, catalog_ready, opts).await
                            }
                            (None, Some((row, inserted))) => {
                                let (r, active) = self.build_one(&name, &row, inserted, opts).await;
                                if let Some(version) = active {
                                    activated.push(self, name.as_str(), version).await;
                                }
                                r
                            }
                        };
                        if r.status.is_failure() && !opts.continue_on_error {
                            stop.store(true, Ordering::SeqCst);
                        }
                        progress.tenant_finished(&r);
                        r
                    }
                })
                .buffer_unordered(opts.concurrency.max(1))
                .collect::<Vec<TenantReport>>()
        });
        let mut reports: Vec<TenantReport> =
            join_all(per_server).await.into_iter().flatten().collect();
        activated.flush(self, &mut reports).await;
        // Rows inserted for tenants the run never started (it stopped, or was cancelled) go:
        // those tenants were not provisioned.
        let unstarted: Vec<&str> = reports
            .iter()
            .filter(|r| r.status == OutcomeStatus::NotAttempted && inserted.contains(&r.schema))
            .map(|r| r.schema.as_str())
            .collect();
        if let Err(e) = self.catalog().delete_unstarted(&unstarted).await {
            warn!(error = %e, tenants = unstarted.len(), "could not remove the catalog rows of tenants the run did not start; they stay `provisioning` until created");
        }
        let report = FleetReport::from_tenants(
            Scope::Tenant,
            opts.run.dry_run,
            opts.run.target,
            self.migrations(Scope::Tenant).latest(),
            reports,
            clock.elapsed().as_millis() as i64,
        );
        progress.finished(&report);
        Ok(report)
    }

    /// Provisions one tenant (see [`Engine::create_tenants`]); its catalog row is written at
    /// once.
    pub async fn create_tenant(
        &self,
        name: &SchemaName,
        display_name: Option<&DisplayName>,
        opts: &FleetOptions,
    ) -> Result<TenantReport, EngineError> {
        let (places, catalog_ready, down) = self
            .prepare_create(std::slice::from_ref(name), opts)
            .await?;
        let server = places.into_iter().next().unwrap_or_default();
        if let Some(why) = down.get(&server) {
            let mut r = TenantReport::new(name.as_str(), OutcomeStatus::Failed);
            r.error = Some(format!("database server {server} is down: {why}"));
            return Ok(r);
        }
        if opts.run.dry_run {
            return Ok(self.plan_create(name, &server, catalog_ready, opts).await);
        }
        let display = display_name.map_or_else(|| name.to_string(), |d| d.to_string());
        let (row, inserted) = self
            .catalog()
            .insert_tenant(name.as_str(), &display, &server)
            .await?;
        let (r, active) = self.build_one(name, &row, inserted, opts).await;
        if let Some(version) = active {
            self.catalog()
                .set_tenant_outcome(name.as_str(), TenantStatus::Active, version, None)
                .await?;
        }
        Ok(r)
    }

    /// What every `create` checks and decides before building anything: the names, the
    /// catalog (migrated when needed), and each new tenant's server. Returns the servers in
    /// the order of `names`, whether the catalog exists, and the servers that are down.
    async fn prepare_create(
        &self,
        names: &[SchemaName],
        opts: &FleetOptions,
    ) -> Result<(Vec<String>, bool, BTreeMap<String, String>), EngineError> {
        self.check_target(Scope::Tenant, opts.run.target)?;
        let catalog_name = self.config().catalog_name();
        if let Some(n) = names.iter().find(|n| n.as_str() == catalog_name) {
            return Err(ValidationError::new(
                "schema_name",
                format!(
                    "{:?} is the catalog's own schema and cannot be a tenant",
                    n.as_str()
                ),
            )
            .into());
        }
        if let Some(server) = opts.server.as_deref() {
            // Before the catalog is created or migrated: a refused run writes nothing.
            self.server_for_new_tenants(server)?;
        }
        let catalog_ready = self.prepare_catalog(opts.run.dry_run).await?;
        let down = self.servers_down().await;
        let places = self
            .place(names.len(), opts.server.as_deref(), catalog_ready, &down)
            .await?;
        Ok((places, catalog_ready, down))
    }

    async fn plan_create(
        &self,
        name: &SchemaName,
        server: &str,
        catalog_ready: bool,
        opts: &FleetOptions,
    ) -> TenantReport {
        let started = Instant::now();
        let mut r = match self
            .try_plan_create(name, server, catalog_ready, opts)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                let mut r = TenantReport::new(name.as_str(), OutcomeStatus::Failed);
                r.error = Some(e.to_string());
                r
            }
        };
        r.duration_ms = started.elapsed().as_millis() as i64;
        r
    }

    async fn try_plan_create(
        &self,
        name: &SchemaName,
        server: &str,
        catalog_ready: bool,
        opts: &FleetOptions,
    ) -> Result<TenantReport, EngineError> {
        let row = match catalog_ready {
            true => self.catalog().get_tenant(name.as_str()).await?,
            false => None,
        };
        if let Some(row) = &row
            && row.status == TenantStatus::Active
        {
            let mut r = TenantReport::new(name.as_str(), OutcomeStatus::Exists);
            r.from = row.schema_version;
            r.to = row.schema_version;
            return Ok(r);
        }
        // A tenant already in the catalog stays where it is.
        let server = match &row {
            Some(row) => self.server_of(row)?,
            None => self.servers().require(server)?,
        };
        let state = server
            .dialect()
            .read_states(&[Target::Tenant(name.clone())])
            .await?
            .pop()
            .unwrap_or(crate::db::SchemaState::Missing);
        Ok(
            match dry_run_result(self.migrations(Scope::Tenant), &state, opts.run.target) {
                Ok(res) => TenantReport::from_result(name.as_str(), res, OutcomeStatus::Planned),
                Err(e) => failure_report(name.as_str(), &e),
            },
        )
    }

    /// Builds (or resumes) one tenant whose catalog row `row` is (`inserted`: by this run).
    /// Returns its report and, when it is done, the version to mark it `active` at; a failure
    /// is recorded in the catalog at once.
    async fn build_one(
        &self,
        name: &SchemaName,
        row: &TenantRow,
        inserted: bool,
        opts: &FleetOptions,
    ) -> (TenantReport, Option<Option<i64>>) {
        let started = Instant::now();
        let (mut r, active) = match self.try_build_one(name, row, inserted, opts).await {
            Ok(done) => done,
            Err(e) => {
                let mut r = TenantReport::new(name.as_str(), OutcomeStatus::Failed);
                r.error = Some(e.to_string());
                (r, None)
            }
        };
        r.duration_ms = started.elapsed().as_millis() as i64;
        (r, active)
    }

    async fn try_build_one(
        &self,
        name: &SchemaName,
        row: &TenantRow,
        inserted: bool,
        opts: &FleetOptions,
    ) -> Result<(TenantReport, Option<Option<i64>>), EngineError> {
        let catalog = self.catalog();
        if let Some(asked) = opts.server.as_deref()
            && row.server != asked
        {
            let mut r = TenantReport::new(name.as_str(), OutcomeStatus::Failed);
            r.from = row.schema_version;
            r.to = row.schema_version;
            r.error = Some(format!(
                "tenant is on server {}, not {asked}; a tenant keeps its server",
                row.server
            ));
            return Ok((r, None));
        }
        let dialect = self.server_of(row)?.dialect();
        match row.status {
            TenantStatus::Active => {
                let mut r = TenantReport::new(name.as_str(), OutcomeStatus::Exists);
                r.from = row.schema_version;
                r.to = row.schema_version;
                return Ok((r, None));
            }
            TenantStatus::Archived => {
                let mut r = TenantReport::new(name.as_str(), OutcomeStatus::Failed);
                r.error = Some("tenant is archived; it cannot be created again".into());
                return Ok((r, None));
            }
            TenantStatus::Provisioning | TenantStatus::Failed => {}
        }
        let target = Target::Tenant(name.clone());
        let set = self.migrations(Scope::Tenant);
        let origin = if inserted {
            RowOrigin::New
        } else {
            RowOrigin::Earlier
        };
        let (outcome, attempts) =
            provision_target_counted(dialect, &target, name.as_str(), set, &opts.run, origin).await;
        match outcome {
            Ok(res) => {
                metrics::counter!("tenant_migrator_migrations_applied_total")
                    .increment(res.steps.len() as u64);
                info!(schema = %name, version = res.to, "tenant created");
                // Another request that provisioned it meanwhile leaves this one nothing to do.
                let status = if inserted || !res.steps.is_empty() {
                    OutcomeStatus::Created
                } else {
                    OutcomeStatus::Exists
                };
                let version = res.to;
                Ok((
                    TenantReport::from_result(name.as_str(), res, status),
                    Some(version),
                ))
            }
            Err(e @ MigrateError::Foreign { .. }) => {
                // Not this tool's schema: the catalog row this run inserted goes too, so the
                // refusal changes nothing.
                warn!(schema = %name, error = %e, "create refused: the schema exists and is not this tool's");
                if inserted {
                    catalog.delete_tenant(name.as_str()).await?;
                }
                let mut r = failure_report(name.as_str(), &e);
                r.attempts = attempts;
                Ok((r, None))
            }
            Err(e) => {
                metrics::counter!("tenant_migrator_migrations_failed_total").increment(1);
                warn!(schema = %name, error = %e, "tenant creation failed");
                let mut r = failure_report(name.as_str(), &e);
                r.from = row.schema_version;
                r.to = reached(dialect, name).await.or(row.schema_version);
                r.attempts = attempts;
                catalog
                    .set_tenant_outcome(
                        name.as_str(),
                        TenantStatus::Failed,
                        row.schema_version,
                        r.error.as_deref(),
                    )
                    .await?;
                Ok((r, None))
            }
        }
    }
}

/// A tenant's catalog row and whether this run inserted it.
type CatalogRow = (TenantRow, bool);

/// Tenants built and waiting to be marked `active` in the catalog, written a batch at a time.
#[derive(Default)]
struct ActiveBatch {
    pending: tokio::sync::Mutex<Vec<(String, Option<i64>)>>,
    /// Tenants whose `active` mark could not be written, with why.
    failed: std::sync::Mutex<Vec<(String, String)>>,
}

/// Tenants marked `active` per catalog write while a `create` runs.
const ACTIVE_BATCH: usize = 64;

impl ActiveBatch {
    async fn push(&self, engine: &Engine, schema: &str, version: Option<i64>) {
        let full = {
            let mut pending = self.pending.lock().await;
            pending.push((schema.to_owned(), version));
            if pending.len() >= ACTIVE_BATCH {
                std::mem::take(&mut *pending)
            } else {
                Vec::new()
            }
        };
        self.write(engine, full).await;
    }

    async fn write(&self, engine: &Engine, batch: Vec<(String, Option<i64>)>) {
        if batch.is_empty() {
            return;
        }
        let refs: Vec<(&str, Option<i64>)> = batch.iter().map(|(s, v)| (s.as_str(), *v)).collect();
        if let Err(e) = engine.catalog().set_tenants_active(&refs).await {
            warn!(error = %e, tenants = batch.len(), "could not mark built tenants active; the next create finishes them");
            let why = e.to_string();
            let mut failed = self
                .failed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            failed.extend(batch.into_iter().map(|(s, _)| (s, why.clone())));
        }
    }

    /// Writes what is left, and turns the reports of tenants whose mark could not be written
    /// into failures.
    async fn flush(&self, engine: &Engine, reports: &mut [TenantReport]) {
        let rest = std::mem::take(&mut *self.pending.lock().await);
        self.write(engine, rest).await;
        let failed = std::mem::take(
            &mut *self
                .failed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for (schema, why) in failed {
            if let Some(r) = reports.iter_mut().find(|r| r.schema == schema) {
                r.status = OutcomeStatus::Failed;
                r.error = Some(format!(
                    "the tenant was built but its catalog row could not be marked active ({why}); running create again finishes it"
                ));
            }
        }
    }
}
