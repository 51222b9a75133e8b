//! Provisioning: `create` places each new tenant on a server (the one asked for, else the
//! active one with the fewest tenants), inserts the catalog rows as `provisioning` with their
//! servers (in batches), builds each schema in one piece (`migrate::provision`) and marks it
//! `active` (in batches); a failure leaves it `failed` with the error and no schema, and
//! running `create` again starts it clean on the server it was placed on. Creating an active
//! tenant reports `exists`. Many tenants go through the fleet runner (`jobs::Fleet::fan_out`,
//! the one `upgrade-all` uses): the servers side by side, each at most `concurrency` tenants at
//! a time, fewer while it refuses connections.

use std::collections::BTreeMap;
use std::time::Instant;

use tracing::{info, instrument, warn};

use super::{Engine, EngineError};
use crate::catalog::{TenantFilter, TenantPage, TenantRow, TenantStatus};
use crate::db::Target;
use crate::db::TenantServer;
use crate::domain::{DisplayName, SchemaName, ValidationError};
use crate::jobs::{
    Action, Fleet, FleetOptions, FleetReport, OutcomeStatus, Progress, Refused, TenantReport,
    failure_report, reached,
};
use crate::migrate::RunOptions;
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
        // One catalog row per tenant: inserted now, or in a dry run (nothing is written) the
        // row the tenant would get.
        let rows: Vec<CatalogRow> = if opts.run.dry_run {
            let mut rows = Vec::with_capacity(unique.len());
            for (name, server) in unique.iter().zip(&places) {
                let existing = match catalog_ready {
                    true => self.catalog().get_tenant(name.as_str()).await?,
                    false => None,
                };
                rows.push(match existing {
                    Some(row) => (row, false),
                    None => (unsaved_row(name, &display_of(name), server), true),
                });
            }
            rows
        } else {
            let displays: Vec<String> = unique.iter().map(display_of).collect();
            let new: Vec<(&str, &str, &str)> = unique
                .iter()
                .zip(&displays)
                .zip(&places)
                .map(|((n, d), s)| (n.as_str(), d.as_str(), s.as_str()))
                .collect();
            self.catalog().insert_tenants(&new).await?
        };
        let build = Build {
            engine: self,
            inserted: rows
                .iter()
                .filter(|(_, mine)| *mine)
                .map(|(row, _)| row.schema_name.clone())
                .collect(),
            activated: ActiveBatch::default(),
        };
        let work = unique
            .into_iter()
            .zip(rows)
            .map(|(name, (row, _))| (name, row, None))
            .collect();
        let fleet = self.fleet();
        for (server, why) in &down {
            fleet.mark_down(server, why);
        }
        let mut reports = fleet.fan_out(work, opts, progress, &build).await;
        build.activated.flush(self, &mut reports).await;
        if !opts.run.dry_run {
            // Rows inserted for tenants the run never started (it stopped, was cancelled, or
            // their server was down) go: those tenants were not provisioned.
            let unstarted: Vec<&str> = reports
                .iter()
                .filter(|r| {
                    (r.status == OutcomeStatus::NotAttempted
                        || (r.status.is_failure() && r.attempts == 0))
                        && build.inserted.contains(&r.schema)
                })
                .map(|r| r.schema.as_str())
                .collect();
            if let Err(e) = self.catalog().delete_unstarted(&unstarted).await {
                warn!(error = %e, tenants = unstarted.len(), "could not remove the catalog rows of tenants the run did not start; they stay `provisioning` until created");
            }
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
        let (r, active) = match self
            .build_one(name, &row, inserted, opts.server.as_deref(), &opts.run)
            .await
        {
            Ok(done) => done,
            Err(refused) => (failure_report(name.as_str(), &refused.error), None),
        };
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

    /// Builds (or resumes) one tenant whose catalog row `row` is (`inserted`: by this run);
    /// `asked`: the server the user named. Returns its report and, when it is done, the
    /// version to mark it `active` at; a failure is recorded in the catalog at once. With
    /// `run.return_refusals`, a connection the server refused (its connection limit) comes back
    /// as such: nothing of the tenant ran.
    async fn build_one(
        &self,
        name: &SchemaName,
        row: &TenantRow,
        inserted: bool,
        asked: Option<&str>,
        run: &RunOptions,
    ) -> Result<(TenantReport, Option<Option<i64>>), Refused> {
        let started = Instant::now();
        let (mut r, active) = match self.try_build_one(name, row, inserted, asked, run).await {
            Ok(done) => done?,
            Err(e) => {
                let mut r = TenantReport::new(name.as_str(), OutcomeStatus::Failed);
                r.error = Some(e.to_string());
                r.attempts = 1;
                (r, None)
            }
        };
        r.duration_ms = started.elapsed().as_millis() as i64;
        Ok((r, active))
    }

    #[allow(clippy::type_complexity)]
    async fn try_build_one(
        &self,
        name: &SchemaName,
        row: &TenantRow,
        inserted: bool,
        asked: Option<&str>,
        run: &RunOptions,
    ) -> Result<Result<(TenantReport, Option<Option<i64>>), Refused>, EngineError> {
        let catalog = self.catalog();
        if let Some(asked) = asked
            && row.server != asked
        {
            let mut r = TenantReport::new(name.as_str(), OutcomeStatus::Failed);
            r.from = row.schema_version;
            r.to = row.schema_version;
            r.error = Some(format!(
                "tenant is on server {}, not {asked}; a tenant keeps its server",
                row.server
            ));
            return Ok(Ok((r, None)));
        }
        let dialect = self.server_of(row)?.dialect();
        match row.status {
            TenantStatus::Active => {
                let mut r = TenantReport::new(name.as_str(), OutcomeStatus::Exists);
                r.from = row.schema_version;
                r.to = row.schema_version;
                return Ok(Ok((r, None)));
            }
            TenantStatus::Archived => {
                let mut r = TenantReport::new(name.as_str(), OutcomeStatus::Failed);
                r.error = Some("tenant is archived; it cannot be created again".into());
                return Ok(Ok((r, None)));
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
            provision_target_counted(dialect, &target, name.as_str(), set, run, origin).await;
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
                Ok(Ok((
                    TenantReport::from_result(name.as_str(), res, status),
                    Some(version),
                )))
            }
            Err(MigrateError::Db(e))
                if run.return_refusals && e.is_connection_refused_by_limit() =>
            {
                Ok(Err(Refused {
                    error: MigrateError::Db(e),
                    attempts,
                }))
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
                Ok(Ok((r, None)))
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
                Ok(Ok((r, None)))
            }
        }
    }
}

/// `create` as a fan-out action: builds each tenant, batching its `active` mark.
struct Build<'e> {
    engine: &'e Engine,
    /// Tenants whose catalog row this run inserted.
    inserted: std::collections::HashSet<String>,
    activated: ActiveBatch,
}

#[async_trait::async_trait]
impl Action for Build<'_> {
    async fn run(
        &self,
        _fleet: &Fleet<'_>,
        server: &TenantServer,
        name: &SchemaName,
        row: &TenantRow,
        _from: Option<i64>,
        opts: &FleetOptions,
    ) -> Result<TenantReport, Refused> {
        let engine = self.engine;
        if opts.run.dry_run {
            let catalog_ready = !self.inserted.contains(name.as_str());
            return Ok(engine
                .plan_create(name, &server.name, catalog_ready, opts)
                .await);
        }
        let run = RunOptions {
            return_refusals: true,
            ..opts.run.clone()
        };
        let inserted = self.inserted.contains(name.as_str());
        let (r, active) = engine
            .build_one(name, row, inserted, opts.server.as_deref(), &run)
            .await?;
        if let Some(version) = active {
            self.activated.push(engine, name.as_str(), version).await;
        }
        Ok(r)
    }

    /// Failures are recorded as they happen and `active` marks in batches.
    async fn record(
        &self,
        _fleet: &Fleet<'_>,
        _row: &TenantRow,
        _r: &TenantReport,
        _opts: &FleetOptions,
    ) {
    }
}

/// The row a tenant would get (dry runs, which write nothing).
fn unsaved_row(name: &SchemaName, display: &str, server: &str) -> TenantRow {
    let now = chrono::Utc::now();
    TenantRow {
        id: uuid::Uuid::nil(),
        schema_name: name.to_string(),
        display_name: display.to_owned(),
        status: TenantStatus::Provisioning,
        server: server.to_owned(),
        schema_version: None,
        last_error: None,
        created_at: now,
        updated_at: now,
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

/// The fleet at a glance, from the catalog alone (fast at any size): `GET /fleet`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct FleetSummary {
    pub total: i64,
    /// The newest tenant migration.
    pub latest: Option<i64>,
    /// Tenants per catalog status, every status listed.
    pub by_status: Vec<StatusCount>,
    /// Tenants per recorded schema version, oldest first (`null`: not migrated yet).
    pub by_version: Vec<super::VersionCount>,
    /// Failed tenants first, then those behind the newest version (at most 100 each), with
    /// the catalog's last error.
    pub attention: Vec<TenantRow>,
}

/// Tenants in one catalog status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct StatusCount {
    pub status: TenantStatus,
    pub tenants: i64,
}

impl Engine {
    /// The fleet at a glance (see [`FleetSummary`]).
    #[instrument(skip_all)]
    pub async fn fleet_summary(&self) -> Result<FleetSummary, EngineError> {
        const LISTED: u64 = 100;
        let latest = self.migrations(crate::migrate::Scope::Tenant).latest();
        let statuses = self.catalog().count_by_status().await?;
        let by_status: Vec<StatusCount> = TenantStatus::ALL
            .into_iter()
            .map(|status| StatusCount {
                status,
                tenants: statuses
                    .iter()
                    .filter(|(s, _)| s == status.as_str())
                    .map(|(_, n)| n)
                    .sum(),
            })
            .collect();
        let mut versions: std::collections::BTreeMap<Option<i64>, i64> = Default::default();
        for (_, version, n) in self.catalog().count_by_server_version().await? {
            *versions.entry(version).or_default() += n;
        }
        let mut attention = self
            .catalog()
            .list_tenants(&TenantFilter {
                status: Some(TenantStatus::Failed),
                after: None,
                offset: 0,
                limit: Some(LISTED),
                name_prefix: None,
            })
            .await?
            .tenants;
        let behind = self.catalog().tenants_behind(latest, LISTED).await?;
        attention.extend(behind);
        Ok(FleetSummary {
            total: by_status.iter().map(|s| s.tenants).sum(),
            latest,
            by_status,
            by_version: versions
                .into_iter()
                .map(|(version, tenants)| super::VersionCount { version, tenants })
                .collect(),
            attention,
        })
    }
}
