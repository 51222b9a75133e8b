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
    #[instrument(skip_all, fields(tenants = names.len(), dry_run = opts.run.dry_run))]
    pub async fn create_tenants(
        &self,
        names: &[SchemaName],
        display_name: Option<&DisplayName>,
        opts: &FleetOptions,
        progress: &dyn Progress,
    ) -> Result<FleetReport, EngineError> {
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
        let mut unique: Vec<SchemaName> = Vec::with_capacity(names.len());
        for n in names {
            if !unique.contains(n) {
                unique.push(n.clone());
            }
        }
        let clock = Instant::now();
        let catalog_ready = self.prepare_catalog(opts.run.dry_run).await?;
        let down = &self.servers_down().await;
        let places = self
            .place(unique.len(), opts.server.as_deref(), catalog_ready, down)
            .await?;
        progress.planned(unique.len(), unique.len());
        // Each server provisions `opts.concurrency` tenants at a time, the servers side by side.
        let mut by_server: BTreeMap<String, Vec<SchemaName>> = BTreeMap::new();
        for (name, server) in unique.into_iter().zip(places) {
            by_server.entry(server).or_default().push(name);
        }
        let stop = &AtomicBool::new(false);
        let per_server = by_server.into_iter().map(|(server, names)| {
            stream::iter(names)
                .map(move |name| {
                    let display = display_name.map_or_else(|| name.to_string(), |d| d.to_string());
                    let server = server.clone();
                    async move {
                        if stop.load(Ordering::SeqCst) || opts.cancel.load(Ordering::SeqCst) {
                            let r = TenantReport::new(name.as_str(), OutcomeStatus::NotAttempted);
                            progress.tenant_finished(&r);
                            return r;
                        }
                        progress.tenant_started(name.as_str());
                        let r = if let Some(why) = down.get(&server) {
                            let mut r = TenantReport::new(name.as_str(), OutcomeStatus::Failed);
                            r.error = Some(format!("database server {server} is down: {why}"));
                            r
                        } else if opts.run.dry_run {
                            self.plan_create(&name, &server, catalog_ready, opts).await
                        } else {
                            self.create_one(&name, &display, &server, opts).await
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
        let reports: Vec<TenantReport> = join_all(per_server).await.into_iter().flatten().collect();
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

    /// Provisions one tenant (see [`Engine::create_tenants`]).
    pub async fn create_tenant(
        &self,
        name: &SchemaName,
        display_name: Option<&DisplayName>,
        opts: &FleetOptions,
    ) -> Result<TenantReport, EngineError> {
        let report = self
            .create_tenants(
                std::slice::from_ref(name),
                display_name,
                opts,
                &crate::jobs::NoProgress,
            )
            .await?;
        Ok(report
            .tenants
            .into_iter()
            .next()
            .unwrap_or_else(|| TenantReport::new(name.as_str(), OutcomeStatus::NotAttempted)))
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

    async fn create_one(
        &self,
        name: &SchemaName,
        display: &str,
        server: &str,
        opts: &FleetOptions,
    ) -> TenantReport {
        let started = Instant::now();
        let mut r = match self.try_create_one(name, display, server, opts).await {
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

    async fn try_create_one(
        &self,
        name: &SchemaName,
        display: &str,
        server: &str,
        opts: &FleetOptions,
    ) -> Result<TenantReport, EngineError> {
        let catalog = self.catalog();
        // Insert first: the common case (a new tenant) then costs no read; an existing row
        // comes back from the conflict, and stays on its server.
        let (row, inserted) = catalog
            .insert_tenant(name.as_str(), display, server)
            .await?;
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
            return Ok(r);
        }
        let dialect = self.server_of(&row)?.dialect();
        match row.status {
            TenantStatus::Active => {
                let mut r = TenantReport::new(name.as_str(), OutcomeStatus::Exists);
                r.from = row.schema_version;
                r.to = row.schema_version;
                return Ok(r);
            }
            TenantStatus::Archived => {
                let mut r = TenantReport::new(name.as_str(), OutcomeStatus::Failed);
                r.error = Some("tenant is archived; it cannot be created again".into());
                return Ok(r);
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
                catalog
                    .set_tenant_outcome(name.as_str(), TenantStatus::Active, res.to, None)
                    .await?;
                metrics::counter!("tenant_migrator_migrations_applied_total")
                    .increment(res.steps.len() as u64);
                info!(schema = %name, version = res.to, "tenant created");
                // Another request that provisioned it meanwhile leaves this one nothing to do.
                let status = if inserted || !res.steps.is_empty() {
                    OutcomeStatus::Created
                } else {
                    OutcomeStatus::Exists
                };
                Ok(TenantReport::from_result(name.as_str(), res, status))
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
                Ok(r)
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
                Ok(r)
            }
        }
    }
}
