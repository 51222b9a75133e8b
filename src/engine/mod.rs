//! `Engine`: the Rust API the CLI and the HTTP service are thin layers over. It mirrors the
//! seed's `create_schema_and_migrate` (`create_tenant`), `migrate_all` (`upgrade_all`) and
//! `migrate_public_schema` (`upgrade_public`), plus status, repair and drift checks.

pub mod access;
mod adopt;
pub mod autogen;
mod error;
mod history;
pub mod jobs;
pub mod scratch;
mod servers;
mod status;
mod tenants;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use tracing::{info, instrument};

pub use adopt::{
    ALEMBIC_TABLE, AdoptCounts, AdoptOptions, AdoptOutcome, AdoptReport, AlembicMap, Selection,
    Verdict,
};
pub use error::EngineError;
pub use history::{HistoryEntry, TenantHistory};
pub use servers::{ServerStatus, VersionCount};
pub use status::{
    DriftReport, REFERENCE_PREFIX, RepairOptions, RepairReport, TenantDrift, TenantFix,
    TenantState, diff_structure,
};
pub use tenants::{FleetSummary, StatusCount};

use crate::catalog::{Catalog, TenantFilter, TenantPage, TenantRow, TenantStatus};
use crate::config::Config;
use crate::db::{self, Dialect, SchemaState, Target};
use crate::domain::{SchemaName, ValidationError};
use crate::jobs::{
    Canary, Fleet, FleetOptions, FleetReport, OutcomeStatus, Progress, TenantReport,
};
use crate::migrate::apply::dry_run_result;
use crate::migrate::{
    MigrateError, MigrationSet, MigrationSource, RunOptions, Scope, migrate_target,
};

/// The migration engine bound to one configuration.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    /// The tenant servers; the first one's dialect also holds the catalog's pool.
    servers: db::Servers,
    catalog: Catalog,
    source: MigrationSource,
    public: MigrationSet,
    tenant: MigrationSet,
    /// Set once this process saw the catalog at its newest migration: a catalog only moves
    /// forward, so later tenant work (each `POST /tenants`) need not read its history again.
    catalog_current: std::sync::atomic::AtomicBool,
}

impl Engine {
    /// Loads the migrations and connects. Configuration problems (unknown scheme, server
    /// unreachable, migration files invalid) come back as errors with exit code 2.
    pub async fn connect(config: Config) -> Result<Self, EngineError> {
        let source = MigrationSource::load(config.migrations_dir.as_deref())?;
        Self::with_source(config, source).await
    }

    /// Like [`Engine::connect`], for work that needs an existing catalog (listing, status,
    /// drift checks, repair): when there is none, fails as [`Engine::require_catalog`] does,
    /// having created nothing (no file, directory, database or schema).
    pub async fn connect_existing(config: Config) -> Result<Self, EngineError> {
        let engine = Self::connect(config).await?;
        if let Err(e) = engine.require_catalog().await {
            engine.close().await;
            return Err(e);
        }
        Ok(engine)
    }

    /// Like [`Engine::connect`] with an explicit migration source.
    pub async fn with_source(config: Config, source: MigrationSource) -> Result<Self, EngineError> {
        let backend = config.backend();
        for scope in [Scope::Public, Scope::Tenant] {
            if source.missing_dialect(scope, backend) {
                return Err(EngineError::Config(crate::config::ConfigError::new(
                    "MIGRATIONS_DIR",
                    format!(
                        "has no {}/{} folder for this database",
                        scope.folder(),
                        backend.folder()
                    ),
                )));
            }
        }
        // Placeholders with one value for every schema are bound once, before anything is
        // touched: an unknown one stops the engine here (exit 2, file and line).
        let catalog_name = config.catalog_name();
        let public = source
            .set(Scope::Public, backend)
            .bind(&catalog_name, &config.placeholders)?;
        let tenant = source
            .set(Scope::Tenant, backend)
            .bind(&catalog_name, &config.placeholders)?;
        let servers = db::Servers::connect(&config).await?;
        let catalog = Catalog::new(servers.catalog_dialect().catalog_pool());
        info!(
            backend = %backend,
            server = %servers.catalog_dialect().server_label(),
            servers = servers.len(),
            public_latest = public.latest(),
            tenant_latest = tenant.latest(),
            "engine ready"
        );
        let engine = Self {
            inner: Arc::new(Inner {
                config,
                servers,
                catalog,
                source,
                public,
                tenant,
                catalog_current: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        if let Err(e) = engine.check_servers_hold_their_tenants().await {
            engine.close().await;
            return Err(e);
        }
        Ok(engine)
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// The dialect of the catalog (the first server's).
    pub fn dialect(&self) -> &dyn Dialect {
        self.inner.servers.catalog_dialect()
    }

    /// The configured tenant servers.
    pub fn servers(&self) -> &db::Servers {
        &self.inner.servers
    }

    pub fn source(&self) -> &MigrationSource {
        &self.inner.source
    }

    /// The migrations of `scope` for the configured backend.
    pub fn migrations(&self, scope: Scope) -> &MigrationSet {
        match scope {
            Scope::Public => &self.inner.public,
            Scope::Tenant => &self.inner.tenant,
        }
    }

    /// Run options with the configured lock timeout.
    pub fn run_options(&self, dry_run: bool, target: Option<i64>) -> RunOptions {
        RunOptions {
            dry_run,
            target,
            lock_timeout: self.inner.config.lock_timeout,
            ..RunOptions::default()
        }
    }

    /// Fleet options with the configured pool size as concurrency.
    pub fn fleet_options(&self, dry_run: bool, target: Option<i64>) -> FleetOptions {
        FleetOptions::new(
            self.run_options(dry_run, target),
            self.inner.config.pool_size as usize,
        )
    }

    /// Checks that `target` names a migration of `scope`.
    pub fn check_target(&self, scope: Scope, target: Option<i64>) -> Result<(), EngineError> {
        match target {
            Some(v) if self.migrations(scope).get(v).is_none() => Err(EngineError::Validation(
                crate::domain::ValidationError::new(
                    "target",
                    format!(
                        "no {scope} migration has version {v} (newest is {})",
                        self.migrations(scope)
                            .latest()
                            .map(|l| l.to_string())
                            .unwrap_or_else(|| "none".into())
                    ),
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The catalog's own migration state. An unreadable catalog is an error: nothing can
    /// be done without it.
    pub async fn catalog_state(&self) -> Result<SchemaState, EngineError> {
        let catalog = [Target::Catalog];
        match crate::db::retry_read("catalog history", || self.dialect().read_states(&catalog))
            .await?
            .pop()
        {
            Some(SchemaState::Unreadable(why)) => Err(EngineError::Catalog(format!(
                "the catalog at {} cannot be read: {why}",
                self.catalog_location()
            ))),
            state => Ok(state.unwrap_or(SchemaState::Missing)),
        }
    }

    /// Fails with a configuration error (exit 2) naming where the catalog was looked for when
    /// there is none there: no file, database or schema, or one without the catalog's tables.
    /// Commands that only read call this first, so a mistyped `DATABASE_URL` is reported
    /// instead of answered with an empty fleet — and nothing is created to find out.
    pub async fn require_catalog(&self) -> Result<(), EngineError> {
        let why = match self.catalog_state().await? {
            SchemaState::History(rows) if !rows.is_empty() => return Ok(()),
            SchemaState::Missing => match self.inner.config.backend() {
                db::Backend::Sqlite => "no such file",
                db::Backend::MySql => "no such database",
                db::Backend::Postgres => "no such schema",
            },
            SchemaState::Uninitialised | SchemaState::History(_) => {
                "it exists but holds no catalog tables"
            }
            // `catalog_state` already turned this into an error.
            SchemaState::Unreadable(_) => "it cannot be read",
        };
        Err(EngineError::Config(crate::config::ConfigError::new(
            "DATABASE_URL",
            format!(
                "no catalog at {} ({why}); nothing was created. Check the URL, or run \
                 `create` or `upgrade-public` to make the catalog",
                self.catalog_location()
            ),
        )))
    }

    /// Where the catalog lives, as it may be shown (no password): the URL, and on
    /// PostgreSQL the schema.
    fn catalog_location(&self) -> String {
        let config = &self.inner.config;
        let url = config.catalog.redacted();
        match config.backend() {
            db::Backend::Postgres => format!("{url}, schema {}", config.catalog_schema),
            _ => url,
        }
    }

    /// Brings the catalog to the newest public migration (creating its schema when needed).
    /// Returns what was applied. A dirty catalog is an error.
    #[instrument(skip_all, fields(dry_run = opts.dry_run))]
    pub async fn upgrade_public(&self, opts: &RunOptions) -> Result<TenantReport, EngineError> {
        self.check_target(Scope::Public, opts.target)?;
        let clock = Instant::now();
        let label = self.inner.config.catalog_name();
        let catalog_err = |e: MigrateError| EngineError::Migrate {
            target: format!("catalog {label}"),
            source: e,
        };
        let state = self.catalog_state().await?;
        self.refuse_foreign_tables(&state).await?;
        let mut report = if opts.dry_run {
            let res =
                dry_run_result(&self.inner.public, &state, opts.target).map_err(catalog_err)?;
            let status = TenantReport::worked(&res, OutcomeStatus::Planned);
            TenantReport::from_result(&label, res, status)
        } else {
            if state == SchemaState::Missing {
                self.dialect().create_schema(&Target::Catalog).await?;
            }
            let res = migrate_target(
                self.dialect(),
                &Target::Catalog,
                &label,
                &self.inner.public,
                opts,
            )
            .await
            .map_err(catalog_err)?;
            let status = TenantReport::worked(&res, OutcomeStatus::Migrated);
            TenantReport::from_result(&label, res, status)
        };
        report.duration_ms = clock.elapsed().as_millis() as i64;
        Ok(report)
    }

    /// Refuses to start a catalog where tables of the same names already are: an application's
    /// own `tenants` or `admin_master_users` (the seed keeps them in its public database). The
    /// catalog's first migration would fail half-way or, worse, succeed next to them; either
    /// way the tool must never alter or drop an application's table.
    async fn refuse_foreign_tables(&self, state: &SchemaState) -> Result<(), EngineError> {
        // The tool makes its history table before any catalog table, so tables beside a
        // history table are its own (perhaps being made by a concurrent run right now).
        if *state != SchemaState::Uninitialised {
            return Ok(());
        }
        let ours: std::collections::BTreeSet<String> = self
            .inner
            .public
            .migrations
            .iter()
            .flat_map(|m| &m.statements)
            .filter_map(|s| match crate::migrate::observe::classify(&s.sql) {
                crate::migrate::observe::Kind::Observable(expects) => Some(expects),
                _ => None,
            })
            .flatten()
            .filter_map(|e| match e.fact {
                crate::migrate::observe::Fact::Table { table, .. } if e.present => {
                    Some(table.to_ascii_lowercase())
                }
                _ => None,
            })
            .collect();
        let existing = self.dialect().structure(&Target::Catalog).await?;
        let clash: Vec<&str> = existing
            .tables
            .keys()
            .map(String::as_str)
            .filter(|t| ours.contains(&t.to_ascii_lowercase()))
            .collect();
        // A concurrent run may have made the history table, then its tables, between the two
        // reads: they are its own.
        if clash.is_empty() || self.catalog_state().await? != SchemaState::Uninitialised {
            return Ok(());
        }
        let advice = match self.inner.config.backend() {
            db::Backend::Postgres => {
                "set CATALOG_SCHEMA to a schema of the tool's own (for example tenant_migrator)"
            }
            db::Backend::MySql => {
                "point DATABASE_URL at a database of the tool's own on the same server (for \
                 example mysql://…/tenant_migrator)"
            }
            db::Backend::Sqlite => "point DATABASE_URL at a file of the tool's own",
        };
        let tables = format!(
            "{} {}",
            if clash.len() == 1 { "table" } else { "tables" },
            clash.join(", ")
        );
        Err(EngineError::Config(crate::config::ConfigError::new(
            "DATABASE_URL",
            format!(
                "the catalog at {} already holds {} that tenant-migrator did not create (it has \
                 no {} history there). The tool never alters or drops an application's tables, \
                 and nothing was changed: {advice}. README, \"Switching from Alembic\", walks \
                 through it",
                self.catalog_location(),
                tables,
                db::HISTORY_TABLE,
            ),
        )))
    }

    /// Makes sure the catalog is usable before tenant work: migrates it when needed (never in a
    /// dry run). Returns `false` when it does not exist yet (dry run only).
    pub async fn prepare_catalog(&self, dry_run: bool) -> Result<bool, EngineError> {
        use std::sync::atomic::Ordering;
        if self.inner.catalog_current.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let state = self.catalog_state().await?;
        let plan = crate::migrate::apply::plan_from_state(&self.inner.public, &state, None)
            .map_err(|e| {
                EngineError::Catalog(format!("{e}; run `upgrade-public` after fixing it"))
            })?;
        if plan.is_noop() {
            self.inner.catalog_current.store(true, Ordering::Relaxed);
            return Ok(true);
        }
        if dry_run {
            // The catalog would be migrated first; without its tables there is nothing to list.
            return Ok(!matches!(
                state,
                SchemaState::Missing | SchemaState::Uninitialised
            ));
        }
        self.upgrade_public(&self.run_options(false, None)).await?;
        self.inner.catalog_current.store(true, Ordering::Relaxed);
        Ok(true)
    }

    /// Tenants from the catalog (all of them when `filter` is the default).
    pub async fn list_tenants(&self, filter: &TenantFilter) -> Result<TenantPage, EngineError> {
        let state = self.catalog_state().await?;
        if matches!(state, SchemaState::Missing | SchemaState::Uninitialised) {
            return Ok(TenantPage {
                tenants: Vec::new(),
                total: 0,
            });
        }
        Ok(self.inner.catalog.list_tenants(filter).await?)
    }

    /// Brings every tenant (except archived ones and those being provisioned) to the target.
    pub async fn upgrade_all(
        &self,
        opts: &FleetOptions,
        progress: &dyn Progress,
    ) -> Result<FleetReport, EngineError> {
        self.upgrade_all_except(&HashSet::new(), opts, progress)
            .await
    }

    /// Like [`Engine::upgrade_all`], leaving out the schemas in `done` (resuming a job).
    #[instrument(skip_all, fields(dry_run = opts.run.dry_run, concurrency = opts.concurrency, done = done.len()))]
    pub async fn upgrade_all_except(
        &self,
        done: &HashSet<String>,
        opts: &FleetOptions,
        progress: &dyn Progress,
    ) -> Result<FleetReport, EngineError> {
        self.check_target(Scope::Tenant, opts.run.target)?;
        if let Some(server) = opts.server.as_deref() {
            self.named_server(server)?;
        }
        if matches!(opts.canary, Some(Canary::Tenants(_))) {
            // Before the catalog is created or migrated: a refused run writes nothing.
            check_canary_tenants(
                opts,
                &self.list_tenants(&TenantFilter::default()).await?.tenants,
            )?;
        }
        if !self.prepare_catalog(opts.run.dry_run).await? {
            return Ok(FleetReport::from_tenants(
                Scope::Tenant,
                true,
                opts.run.target,
                self.inner.tenant.latest(),
                Vec::new(),
                0,
            ));
        }
        let all = TenantFilter::default();
        let mut tenants =
            crate::db::retry_read("tenants", || self.inner.catalog.list_tenants(&all))
                .await?
                .tenants;
        tenants.retain(|t| {
            !done.contains(&t.schema_name) && opts.server.as_deref().is_none_or(|s| t.server == s)
        });
        Ok(self.fleet().run(tenants, opts, progress).await?)
    }

    /// Brings one tenant to the target.
    pub async fn upgrade_tenant(
        &self,
        schema: &crate::domain::SchemaName,
        opts: &FleetOptions,
        progress: &dyn Progress,
    ) -> Result<FleetReport, EngineError> {
        self.check_target(Scope::Tenant, opts.run.target)?;
        if !self.prepare_catalog(opts.run.dry_run).await? {
            return Err(EngineError::NotFound(format!(
                "tenant {schema} is not in the catalog"
            )));
        }
        let row = self
            .inner
            .catalog
            .get_tenant(schema.as_str())
            .await?
            .ok_or_else(|| {
                EngineError::NotFound(format!("tenant {schema} is not in the catalog"))
            })?;
        if row.status == TenantStatus::Archived {
            return Err(EngineError::NotFound(format!(
                "tenant {schema} is archived"
            )));
        }
        Ok(self.fleet().run(vec![row], opts, progress).await?)
    }

    pub(crate) fn fleet(&self) -> Fleet<'_> {
        Fleet::new(&self.inner.servers, &self.inner.catalog, &self.inner.tenant)
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.inner.servers.close().await;
    }
}

/// Refuses a named canary tenant that is not in the catalog (`tenants`), before any tenant
/// is touched.
fn check_canary_tenants(opts: &FleetOptions, tenants: &[TenantRow]) -> Result<(), EngineError> {
    let Some(Canary::Tenants(names)) = &opts.canary else {
        return Ok(());
    };
    let known: HashSet<&str> = tenants.iter().map(|t| t.schema_name.as_str()).collect();
    let missing: Vec<&str> = names
        .iter()
        .map(SchemaName::as_str)
        .filter(|n| !known.contains(n))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(ValidationError::new(
        "--canary-tenants",
        format!("not in the catalog: {}", missing.join(", ")),
    )
    .into())
}
