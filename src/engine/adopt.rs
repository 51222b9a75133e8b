//! `adopt alembic`: takes over tenants another tool migrated (Alembic, one `alembic_version`
//! table per tenant) without touching their data. For each tenant, under its migration lock:
//! read the Alembic revision, map it to a version (the team's `alembic-map.toml`), verify the
//! live structure equals a reference migrated from the files up to that version, record
//! versions 1..v as `baselined` in one statement, and register the tenant `active` at v. No
//! statement runs against the tenant's own tables; its `alembic_version` stays as it was.
//!
//! Also owns the map file and the optional `--tenants-query` that supplies display names.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Connection, Row};
use tracing::{info, instrument, warn};

use super::{Engine, EngineError};
use crate::catalog::TenantStatus;
use crate::config::{ConfigError, DbLocation, parse_location};
use crate::db::{DbError, SchemaSession, Structure, Target, with_conn};
use crate::domain::{DisplayName, SchemaName};
use crate::migrate::{MigrationSet, Scope};

/// Alembic's own table, in each tenant.
pub const ALEMBIC_TABLE: &str = "alembic_version";

/// How long `--tenants-query` may run.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// The team's map from Alembic revision ids to migration versions (`alembic-map.toml`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlembicMap {
    /// Revisions of the tenants' `alembic_version`.
    pub tenant: BTreeMap<String, i64>,
    /// Revisions of the catalog's own `alembic_version`, when the catalog was Alembic-managed.
    pub public: BTreeMap<String, i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MapFile {
    #[serde(default)]
    tenant: BTreeMap<String, i64>,
    #[serde(default)]
    public: BTreeMap<String, i64>,
}

fn map_error(message: impl Into<String>) -> ConfigError {
    ConfigError::new("--map", message)
}

impl AlembicMap {
    /// Reads and parses the map file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| map_error(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| map_error(format!("{}: {}", path.display(), e.message)))
    }

    /// Parses a map: `[tenant]` (required, not empty) and `[public]` (optional) tables of
    /// `"revision" = version`.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let file: MapFile = toml::from_str(text).map_err(|e| map_error(e.to_string()))?;
        if file.tenant.is_empty() {
            return Err(map_error(
                "the [tenant] section is missing or empty: map each Alembic revision id to a version, e.g. \"1f2e3d4c5b6a\" = 1",
            ));
        }
        for (section, revisions) in [("tenant", &file.tenant), ("public", &file.public)] {
            for (revision, version) in revisions {
                if revision.is_empty()
                    || revision.len() > 255
                    || revision
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(map_error(format!(
                        "[{section}]: {revision:?} is not an Alembic revision id"
                    )));
                }
                if *version < 1 {
                    return Err(map_error(format!(
                        "[{section}]: revision {revision} maps to {version}; versions start at 1"
                    )));
                }
            }
        }
        Ok(Self {
            tenant: file.tenant,
            public: file.public,
        })
    }

    /// Every version the map names must be a migration of its scope.
    fn check(&self, tenant: &MigrationSet, public: &MigrationSet) -> Result<(), ConfigError> {
        for (section, revisions, set) in [
            ("tenant", &self.tenant, tenant),
            ("public", &self.public, public),
        ] {
            for (revision, version) in revisions {
                if set.get(*version).is_none() {
                    return Err(map_error(format!(
                        "[{section}]: revision {revision} maps to version {version}, but no {} \
                         migration has that version (newest is {})",
                        set.scope,
                        set.latest()
                            .map(|v| v.to_string())
                            .unwrap_or_else(|| "none".into())
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Which tenants to adopt.
#[derive(Debug, Clone)]
pub enum Selection {
    /// These schemas.
    Schemas(Vec<SchemaName>),
    /// Every schema on the tenant server holding an `alembic_version` table (except the
    /// catalog's and the `--tenants-url` database's), optionally filtered by a `LIKE` pattern.
    Discover { like: Option<String> },
}

/// Everything `adopt alembic` needs besides the engine's configuration.
#[derive(Debug, Clone)]
pub struct AdoptOptions {
    pub map: AlembicMap,
    pub selection: Selection,
    /// `SELECT schema_name, display_name …` supplying display names.
    pub tenants_query: Option<String>,
    /// Where that query runs (default: the catalog's URL).
    pub tenants_url: Option<String>,
    pub dry_run: bool,
    /// Tenants worked on at once.
    pub concurrency: usize,
}

/// What happened to one schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Recorded as baselined and registered.
    Adopted,
    /// Would be adopted (dry run).
    WouldAdopt,
    /// Had a history already: adopted (or created) before.
    AlreadyAdopted,
    /// Its state does not allow adoption (unmapped revision, drift, no `alembic_version`…).
    Refused,
    /// An error (a lost connection…) stopped the work; run again.
    Failed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Adopted => "adopted",
            Verdict::WouldAdopt => "would_adopt",
            Verdict::AlreadyAdopted => "already_adopted",
            Verdict::Refused => "refused",
            Verdict::Failed => "failed",
        }
    }
}

/// The verdict on one schema and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AdoptOutcome {
    pub schema: String,
    pub verdict: Verdict,
    /// The Alembic revision found.
    pub revision: Option<String>,
    /// The version it maps to (for `already_adopted`: the version its history shows).
    pub version: Option<i64>,
    pub display_name: Option<String>,
    /// Why it was refused (or failed).
    pub reason: Option<String>,
    /// Structure differences from the reference at `version`, one per line.
    pub differences: Vec<String>,
}

impl AdoptOutcome {
    fn new(schema: &str, verdict: Verdict) -> Self {
        Self {
            schema: schema.to_owned(),
            verdict,
            revision: None,
            version: None,
            display_name: None,
            reason: None,
            differences: Vec::new(),
        }
    }

    fn refused(schema: &str, reason: impl Into<String>) -> Self {
        Self {
            reason: Some(reason.into()),
            ..Self::new(schema, Verdict::Refused)
        }
    }

    fn failed(schema: &str, e: &dyn std::fmt::Display) -> Self {
        Self {
            reason: Some(e.to_string()),
            ..Self::new(schema, Verdict::Failed)
        }
    }
}

/// How many schemas got each verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AdoptCounts {
    pub adopted: usize,
    pub would_adopt: usize,
    pub already_adopted: usize,
    pub refused: usize,
    pub failed: usize,
}

/// The result of `adopt alembic`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AdoptReport {
    pub dry_run: bool,
    /// The catalog's own adoption, when the map has a `[public]` section.
    pub catalog: Option<AdoptOutcome>,
    /// One outcome per schema, sorted by name.
    pub tenants: Vec<AdoptOutcome>,
    pub counts: AdoptCounts,
}

impl AdoptReport {
    /// True when nothing was refused or failed.
    pub fn all_good(&self) -> bool {
        self.counts.refused == 0
            && self.counts.failed == 0
            && self
                .catalog
                .as_ref()
                .is_none_or(|c| !matches!(c.verdict, Verdict::Refused | Verdict::Failed))
    }
}

/// What a look at one schema under its lock found.
enum Found {
    /// The schema has a history already: the newest applied version, and the revision its
    /// `alembic_version` still shows (if any).
    History(Option<i64>, Option<String>),
    /// Its revision maps to this version (and, after [`Engine::verify_and_baseline`], its
    /// structure matched and, unless a dry run, the baseline was written).
    Mapped {
        revision: String,
        version: i64,
    },
    Refused(AdoptOutcome),
}

/// A schema named or discovered: one to look at, or one refused by its name alone.
enum Candidate {
    Schema(SchemaName),
    Refused(AdoptOutcome),
}

/// One schema between the two passes: decided, or mapped to a version still to verify.
enum Pending {
    Done(AdoptOutcome),
    Mapped {
        name: SchemaName,
        revision: String,
        version: i64,
        listed: Option<crate::catalog::TenantRow>,
    },
}

impl Engine {
    /// Takes over Alembic-managed tenants: see the module docs. Configuration problems (a map
    /// naming versions that do not exist, a failing `--tenants-query`) are errors; everything
    /// about one schema is its outcome.
    ///
    /// Two passes: the first reads every schema's history and revision under its lock; the
    /// reference structures of the versions found are then built, one scratch schema for all;
    /// the second verifies and baselines under the lock again. No tenant connection is held
    /// while a reference is built.
    #[instrument(skip_all, fields(dry_run = opts.dry_run, concurrency = opts.concurrency))]
    pub async fn adopt_alembic(&self, opts: &AdoptOptions) -> Result<AdoptReport, EngineError> {
        let tenant_set = self.migrations(Scope::Tenant);
        opts.map.check(tenant_set, self.migrations(Scope::Public))?;
        let tenants_location = match &opts.tenants_url {
            Some(u) => parse_location(u, "--tenants-url")?,
            None => server_of(&self.config().catalog),
        };
        let names: Vec<Candidate> = match &opts.selection {
            Selection::Schemas(s) => s.iter().cloned().map(Candidate::Schema).collect(),
            Selection::Discover { like } => {
                self.discover(like.as_deref(), &tenants_location).await?
            }
        };
        let display = match &opts.tenants_query {
            Some(q) => display_names(q, &tenants_location).await?,
            None => HashMap::new(),
        };
        let catalog = if opts.map.public.is_empty() {
            None
        } else {
            Some(self.adopt_catalog(&opts.map.public, opts.dry_run).await?)
        };
        if catalog
            .as_ref()
            .is_some_and(|c| matches!(c.verdict, Verdict::Refused | Verdict::Failed))
        {
            // Without its catalog nothing can be registered.
            return Ok(finish(opts.dry_run, catalog, Vec::new()));
        }
        let catalog_ready = self.prepare_catalog(opts.dry_run).await?;
        let concurrency = opts.concurrency.max(1);

        let first = names.into_iter().map(|name| async move {
            match name {
                Candidate::Refused(outcome) => Pending::Done(outcome),
                Candidate::Schema(name) => {
                    self.inspect_tenant(name, &opts.map.tenant, catalog_ready)
                        .await
                }
            }
        });
        let pending: Vec<Pending> = futures_util::stream::iter(first)
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let mut outcomes = Vec::new();
        let mut mapped = Vec::new();
        for p in pending {
            match p {
                Pending::Done(o) => outcomes.push(o),
                Pending::Mapped {
                    name,
                    revision,
                    version,
                    listed,
                } => mapped.push((name, revision, version, listed)),
            }
        }
        let versions: Vec<i64> = mapped.iter().map(|(_, _, v, _)| *v).collect();
        let references = if versions.is_empty() {
            BTreeMap::new()
        } else {
            self.reference_structures(tenant_set, &versions).await?
        };

        let second = mapped.into_iter().map(|(name, revision, version, listed)| {
            let (display, references) = (&display, &references);
            async move {
                self.adopt_tenant(
                    &name,
                    (&revision, version),
                    listed,
                    display,
                    references,
                    opts,
                )
                .await
            }
        });
        let adopted: Vec<AdoptOutcome> = futures_util::stream::iter(second)
            .buffer_unordered(concurrency)
            .collect()
            .await;
        outcomes.extend(adopted);
        outcomes.sort_by(|a, b| a.schema.cmp(&b.schema));
        let report = finish(opts.dry_run, catalog, outcomes);
        info!(
            adopted = report.counts.adopted,
            would_adopt = report.counts.would_adopt,
            already_adopted = report.counts.already_adopted,
            refused = report.counts.refused,
            failed = report.counts.failed,
            "adoption finished"
        );
        Ok(report)
    }

    /// The schemas holding an `alembic_version`, minus the catalog, the `--tenants-url`
    /// database and the servers' own; a name the tool cannot take as a tenant is refused.
    async fn discover(
        &self,
        like: Option<&str>,
        tenants_location: &DbLocation,
    ) -> Result<Vec<Candidate>, EngineError> {
        let found = crate::db::retry_read("alembic tenants", || {
            self.dialect().schemas_with_table(ALEMBIC_TABLE, like)
        })
        .await?;
        let catalog = self.config().catalog_name();
        let application: Vec<String> = match tenants_location {
            DbLocation::MySql { database, .. } => vec![database.clone()],
            DbLocation::Postgres { url, .. } => search_path(url),
            DbLocation::Sqlite { .. } => Vec::new(),
        };
        Ok(found
            .into_iter()
            .filter(|s| *s != catalog && !application.contains(s))
            .filter(|s| {
                !crate::domain::is_reserved_schema(s) && !s.starts_with(super::REFERENCE_PREFIX)
            })
            .map(|s| match SchemaName::parse(&s) {
                Ok(name) => Candidate::Schema(name),
                Err(e) => Candidate::Refused(AdoptOutcome::refused(
                    &s,
                    format!("cannot be a tenant of this tool: {e}"),
                )),
            })
            .collect())
    }

    /// Runs `work` on `target`'s session holding its lock, and releases it. A missing schema
    /// is `Ok(None)`.
    async fn under_lock<T>(
        &self,
        target: &Target,
        work: impl AsyncFnOnce(&mut dyn SchemaSession) -> Result<T, DbError>,
    ) -> Result<Option<T>, DbError> {
        let mut session = match self
            .dialect()
            .open_session(target, self.config().lock_timeout)
            .await
        {
            Err(DbError::SchemaMissing(_)) => return Ok(None),
            Err(e) => return Err(e),
            Ok(s) => s,
        };
        let result = work(session.as_mut()).await;
        if let Err(e) = session.release().await {
            warn!(error = %e, "could not release the lock after adoption");
        }
        result.map(Some)
    }

    /// First pass over one tenant: its history and revision.
    async fn inspect_tenant(
        &self,
        name: SchemaName,
        map: &BTreeMap<String, i64>,
        catalog_ready: bool,
    ) -> Pending {
        let schema = name.as_str().to_owned();
        let listed = if catalog_ready {
            match self.catalog().get_tenant(&schema).await {
                Ok(row) => row,
                Err(e) => return Pending::Done(AdoptOutcome::failed(&schema, &e)),
            }
        } else {
            None
        };
        let target = Target::Tenant(name.clone());
        let found = self
            .under_lock(&target, async |s| inspect(s, &target, map).await)
            .await;
        let outcome = match found {
            Ok(None) => AdoptOutcome::refused(&schema, "no such schema on the tenant server"),
            Err(e) => AdoptOutcome::failed(&schema, &e),
            Ok(Some(Found::Refused(o))) => AdoptOutcome { schema, ..o },
            Ok(Some(Found::History(version, revision))) => {
                // Adopted (or created) before; registered unless its process stopped first.
                return match self.register(&schema, listed.as_ref(), version, None).await {
                    Ok(registered) => Pending::Done(AdoptOutcome {
                        version,
                        revision,
                        display_name: Some(
                            listed
                                .as_ref()
                                .map_or(schema.as_str(), |r| r.display_name.as_str())
                                .to_owned(),
                        ),
                        ..AdoptOutcome::new(
                            &schema,
                            if registered {
                                Verdict::Adopted
                            } else {
                                Verdict::AlreadyAdopted
                            },
                        )
                    }),
                    Err(e) => Pending::Done(AdoptOutcome::failed(&schema, &e)),
                };
            }
            Ok(Some(Found::Mapped { revision, version })) => match &listed {
                Some(row) => AdoptOutcome::refused(
                    &schema,
                    format!(
                        "the catalog lists it ({}) but it has no {} history: not adopted; see \
                         `status {schema}`",
                        row.status.as_str(),
                        crate::db::HISTORY_TABLE
                    ),
                ),
                None => {
                    return Pending::Mapped {
                        name,
                        revision,
                        version,
                        listed,
                    };
                }
            },
        };
        Pending::Done(outcome)
    }

    /// Second pass over one tenant: verify, baseline, register.
    async fn adopt_tenant(
        &self,
        name: &SchemaName,
        (revision, version): (&str, i64),
        listed: Option<crate::catalog::TenantRow>,
        display: &HashMap<String, String>,
        references: &BTreeMap<Option<i64>, Structure>,
        opts: &AdoptOptions,
    ) -> AdoptOutcome {
        let schema = name.as_str();
        let display_name = match display.get(schema).map(|d| DisplayName::parse(d)) {
            None => None,
            Some(Ok(d)) => Some(d),
            Some(Err(e)) => {
                return AdoptOutcome::refused(
                    schema,
                    format!("its display name from --tenants-query is not accepted: {e}"),
                );
            }
        };
        let target = Target::Tenant(name.clone());
        let set = self.migrations(Scope::Tenant);
        let actual = match self.dialect().structure(&target).await {
            Ok(a) => a,
            Err(e) => return AdoptOutcome::failed(schema, &e),
        };
        let found = self
            .under_lock(&target, async |s| {
                self.verify_and_baseline(
                    s,
                    &target,
                    &opts.map.tenant,
                    (revision, version),
                    &actual,
                    set,
                    references,
                    opts.dry_run,
                )
                .await
            })
            .await;
        let (revision, version) = match found {
            Ok(None) => {
                return AdoptOutcome::refused(schema, "no such schema on the tenant server");
            }
            Err(e) => return AdoptOutcome::failed(schema, &e),
            Ok(Some(Found::Refused(o))) => {
                return AdoptOutcome {
                    schema: schema.to_owned(),
                    ..o
                };
            }
            // Another run adopted it between the passes.
            Ok(Some(Found::History(version, revision))) => {
                return AdoptOutcome {
                    version,
                    revision,
                    ..AdoptOutcome::new(schema, Verdict::AlreadyAdopted)
                };
            }
            Ok(Some(Found::Mapped { revision, version })) => (revision, version),
        };
        let mut outcome = AdoptOutcome {
            revision: Some(revision),
            version: Some(version),
            display_name: Some(
                display_name
                    .as_ref()
                    .map_or(schema, DisplayName::as_str)
                    .to_owned(),
            ),
            ..AdoptOutcome::new(schema, Verdict::WouldAdopt)
        };
        if opts.dry_run {
            return outcome;
        }
        outcome.verdict = Verdict::Adopted;
        if let Err(e) = self
            .register(
                schema,
                listed.as_ref(),
                Some(version),
                display_name.as_ref(),
            )
            .await
        {
            return AdoptOutcome::failed(schema, &e);
        }
        outcome
    }

    /// Registers an adopted schema in the catalog as `active` at `version`, unless it is
    /// listed already (a row left `provisioning` by a stopped run is finished). Returns whether
    /// it wrote.
    async fn register(
        &self,
        schema: &str,
        listed: Option<&crate::catalog::TenantRow>,
        version: Option<i64>,
        display_name: Option<&DisplayName>,
    ) -> Result<bool, DbError> {
        if listed.is_some_and(|row| row.status != TenantStatus::Provisioning) {
            return Ok(false);
        }
        if listed.is_none() {
            let shown = display_name.map_or(schema, DisplayName::as_str);
            self.catalog().insert_tenant(schema, shown).await?;
        }
        self.catalog()
            .set_tenant_outcome(schema, TenantStatus::Active, version, None)
            .await?;
        Ok(true)
    }

    /// Second pass under the lock: the history and revision again (another run may have
    /// moved them since the first pass and since `actual` was read: both must be what the
    /// first pass found), `actual` against the reference, and the baseline rows.
    ///
    /// The structure is read before the lock is taken: reading it takes a connection of the
    /// tenant pool, and holding the lock's own connection meanwhile could exhaust the pool.
    #[allow(clippy::too_many_arguments)]
    async fn verify_and_baseline(
        &self,
        session: &mut dyn SchemaSession,
        target: &Target,
        map: &BTreeMap<String, i64>,
        expected: (&str, i64),
        actual: &Structure,
        set: &MigrationSet,
        references: &BTreeMap<Option<i64>, Structure>,
        dry_run: bool,
    ) -> Result<Found, DbError> {
        let (revision, version) = match inspect(session, target, map).await? {
            Found::Mapped { revision, version } => (revision, version),
            other => return Ok(other),
        };
        if expected != (revision.as_str(), version) {
            return Ok(Found::Refused(AdoptOutcome::refused(
                "",
                format!("its revision changed to {revision} during adoption; run adopt again"),
            )));
        }
        let Some(reference) = references.get(&Some(version)) else {
            return Err(DbError::Unexpected(format!(
                "no reference structure was built for version {version}"
            )));
        };
        if let Some(drift) = super::diff_structure("", reference, actual) {
            let differences = drift.lines();
            return Ok(Found::Refused(AdoptOutcome {
                revision: Some(revision),
                version: Some(version),
                reason: Some(format!(
                    "its structure differs from version {version} ({} differences)",
                    differences.len()
                )),
                differences,
                ..AdoptOutcome::new("", Verdict::Refused)
            }));
        }
        if !dry_run {
            let baselined: Vec<_> = set
                .migrations
                .iter()
                .filter(|m| m.version <= version)
                .map(|m| m.as_ref())
                .collect();
            session.create_history_table().await?;
            session.settle().await?;
            let (conn, table) = session.parts();
            table.baseline(conn, &baselined, Utc::now()).await?;
        }
        Ok(Found::Mapped { revision, version })
    }

    /// Adopts the catalog itself (the map's `[public]` section): the same checks against the
    /// public migrations. A catalog with a history of its own is left as it is.
    async fn adopt_catalog(
        &self,
        map: &BTreeMap<String, i64>,
        dry_run: bool,
    ) -> Result<AdoptOutcome, EngineError> {
        let label = self.config().catalog_name();
        let target = Target::Catalog;
        let set = self.migrations(Scope::Public);
        let first = self
            .under_lock(&target, async |s| inspect(s, &target, map).await)
            .await;
        let (revision, version) = match first {
            Ok(Some(Found::Mapped { revision, version })) => (revision, version),
            Ok(None) => return Ok(AdoptOutcome::refused(&label, "the catalog does not exist")),
            Ok(Some(Found::Refused(o))) => return Ok(AdoptOutcome { schema: label, ..o }),
            Ok(Some(Found::History(version, revision))) => {
                return Ok(AdoptOutcome {
                    version,
                    revision,
                    ..AdoptOutcome::new(&label, Verdict::AlreadyAdopted)
                });
            }
            Err(e) => return Ok(AdoptOutcome::failed(&label, &e)),
        };
        let references = self.reference_structures(set, &[version]).await?;
        let actual = self.dialect().structure(&target).await?;
        let found = self
            .under_lock(&target, async |s| {
                self.verify_and_baseline(
                    s,
                    &target,
                    map,
                    (&revision, version),
                    &actual,
                    set,
                    &references,
                    dry_run,
                )
                .await
            })
            .await;
        Ok(match found {
            Err(e) => AdoptOutcome::failed(&label, &e),
            Ok(None) => AdoptOutcome::refused(&label, "the catalog does not exist"),
            Ok(Some(Found::Refused(o))) => AdoptOutcome { schema: label, ..o },
            Ok(Some(Found::History(version, revision))) => AdoptOutcome {
                version,
                revision,
                ..AdoptOutcome::new(&label, Verdict::AlreadyAdopted)
            },
            Ok(Some(Found::Mapped { revision, version })) => AdoptOutcome {
                revision: Some(revision),
                version: Some(version),
                ..AdoptOutcome::new(
                    &label,
                    if dry_run {
                        Verdict::WouldAdopt
                    } else {
                        Verdict::Adopted
                    },
                )
            },
        })
    }
}

/// A schema's history and Alembic revision, read under its lock.
async fn inspect(
    session: &mut dyn SchemaSession,
    target: &Target,
    map: &BTreeMap<String, i64>,
) -> Result<Found, DbError> {
    let refused = |reason: String| Ok(Found::Refused(AdoptOutcome::refused("", reason)));
    if let Some(rows) = session.history().await?
        && !rows.is_empty()
    {
        let newest = rows
            .iter()
            .filter(|r| r.state.is_applied())
            .map(|r| r.version)
            .max();
        // Informational only: a tenant the tool created has no alembic_version at all.
        let revision = match read_revisions(session).await {
            Ok(r) if r.len() == 1 => r.into_iter().next(),
            _ => None,
        };
        return Ok(Found::History(newest, revision));
    }
    let revisions = match read_revisions(session).await {
        Ok(r) => r,
        Err(e) if e.is_missing_object() => {
            return refused(format!(
                "it has no {ALEMBIC_TABLE} table: Alembic does not manage it"
            ));
        }
        Err(e) => return Err(e),
    };
    let revision = match revisions.as_slice() {
        [] => return refused(format!("its {ALEMBIC_TABLE} table is empty")),
        [one] => one.clone(),
        many => {
            return refused(format!(
                "its {ALEMBIC_TABLE} holds several heads ({}); merge them with Alembic first",
                many.join(", ")
            ));
        }
    };
    let section = if *target == Target::Catalog {
        "public"
    } else {
        "tenant"
    };
    match map.get(&revision) {
        Some(&version) => Ok(Found::Mapped { revision, version }),
        None => Ok(Found::Refused(AdoptOutcome {
            revision: Some(revision.clone()),
            ..AdoptOutcome::refused(
                "",
                format!("revision {revision} is not in the map's [{section}] section"),
            )
        })),
    }
}

fn finish(dry_run: bool, catalog: Option<AdoptOutcome>, tenants: Vec<AdoptOutcome>) -> AdoptReport {
    let mut counts = AdoptCounts::default();
    for t in &tenants {
        *match t.verdict {
            Verdict::Adopted => &mut counts.adopted,
            Verdict::WouldAdopt => &mut counts.would_adopt,
            Verdict::AlreadyAdopted => &mut counts.already_adopted,
            Verdict::Refused => &mut counts.refused,
            Verdict::Failed => &mut counts.failed,
        } += 1;
    }
    AdoptReport {
        dry_run,
        catalog,
        tenants,
        counts,
    }
}

/// The revisions in the session's schema's `alembic_version` (sorted).
async fn read_revisions(session: &mut dyn SchemaSession) -> Result<Vec<String>, DbError> {
    let (conn, table) = session.parts();
    let sql = format!(
        "SELECT version_num FROM {} ORDER BY version_num",
        table.qualify(ALEMBIC_TABLE)
    );
    let context = format!("reading {ALEMBIC_TABLE} of {}", table.label);
    with_conn!(conn, |c, _b| {
        let rows = sqlx::raw_sql(AssertSqlSafe(sql))
            .fetch_all(&mut *c)
            .await
            .map_err(|e| DbError::sqlx(context.clone(), e))?;
        rows.iter()
            .map(|r| text_column(r, 0))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| DbError::sqlx(context.clone(), e))
    })
}

/// A text column, also when the server sends it as bytes (MySQL's binary collations).
fn text_column<R>(row: &R, i: usize) -> Result<String, sqlx::Error>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    match row.try_get::<String, _>(i) {
        Ok(s) => Ok(s),
        Err(e) => match row.try_get::<Vec<u8>, _>(i) {
            Ok(b) => String::from_utf8(b).map_err(|u| sqlx::Error::Decode(Box::new(u))),
            Err(_) => Err(e),
        },
    }
}

fn query_error(message: impl Into<String>) -> EngineError {
    EngineError::Config(ConfigError::new("--tenants-query", message))
}

/// Runs `--tenants-query` read-only where `location` says: schema name → display name.
async fn display_names(
    query: &str,
    location: &DbLocation,
) -> Result<HashMap<String, String>, EngineError> {
    let run = async {
        match location {
            DbLocation::MySql { url, .. } => {
                let mut c = sqlx::MySqlConnection::connect(url.as_str()).await?;
                sqlx::raw_sql("START TRANSACTION READ ONLY")
                    .execute(&mut c)
                    .await?;
                let rows = sqlx::raw_sql(AssertSqlSafe(query.to_owned()))
                    .fetch_all(&mut c)
                    .await;
                let _ = c.close().await;
                pairs(&rows?)
            }
            DbLocation::Postgres { url, .. } => {
                let schemas = search_path(url);
                let mut plain = url.clone();
                let rest: Vec<(String, String)> = url
                    .query_pairs()
                    .filter(|(k, _)| k != "search_path")
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                plain.set_query(None);
                if !rest.is_empty() {
                    plain.query_pairs_mut().extend_pairs(rest);
                }
                let mut c = sqlx::PgConnection::connect(plain.as_str()).await?;
                sqlx::raw_sql("BEGIN READ ONLY").execute(&mut c).await?;
                if !schemas.is_empty() {
                    let list: Vec<String> = schemas
                        .iter()
                        .map(|s| crate::db::Backend::Postgres.quote(s))
                        .collect();
                    sqlx::raw_sql(AssertSqlSafe(format!(
                        "SET LOCAL search_path TO {}",
                        list.join(", ")
                    )))
                    .execute(&mut c)
                    .await?;
                }
                let rows = sqlx::raw_sql(AssertSqlSafe(query.to_owned()))
                    .fetch_all(&mut c)
                    .await;
                let _ = c.close().await;
                pairs(&rows?)
            }
            DbLocation::Sqlite { path } => {
                let opts = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(false)
                    .read_only(true);
                let mut c = sqlx::SqliteConnection::connect_with(&opts).await?;
                let rows = sqlx::raw_sql(AssertSqlSafe(query.to_owned()))
                    .fetch_all(&mut c)
                    .await;
                let _ = c.close().await;
                pairs(&rows?)
            }
        }
    };
    match tokio::time::timeout(QUERY_TIMEOUT, run).await {
        Err(_) => Err(query_error(format!(
            "did not finish within {} s",
            QUERY_TIMEOUT.as_secs()
        ))),
        Ok(Err(e)) => Err(query_error(match e.as_database_error() {
            Some(db) => db.message().to_owned(),
            None => e.to_string(),
        })),
        Ok(Ok(map)) => Ok(map),
    }
}

/// The schemas a PostgreSQL URL's `search_path` parameter names (the README's way of naming
/// a schema in a URL), in order.
fn search_path(url: &url::Url) -> Vec<String> {
    url.query_pairs()
        .filter(|(k, _)| k == "search_path")
        .flat_map(|(_, v)| {
            v.split(',')
                .map(|s| s.trim().trim_matches('"').to_owned())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Where `--tenants-query` runs by default: the catalog's server. On MySQL no database is
/// selected (the catalog's may not exist before the first adoption); the query names its
/// tables' database, as `torri_app_public.tenants`.
fn server_of(catalog: &DbLocation) -> DbLocation {
    match catalog {
        DbLocation::MySql { url, .. } => {
            let mut server = url.clone();
            server.set_path("");
            DbLocation::MySql {
                url: server,
                database: String::new(),
            }
        }
        other => other.clone(),
    }
}

/// The first two columns of every row, as schema name and display name.
fn pairs<R>(rows: &[R]) -> Result<HashMap<String, String>, sqlx::Error>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    if let Some(first) = rows.first()
        && first.len() < 2
    {
        return Err(sqlx::Error::Protocol(
            "it must return two columns: the schema name, then the display name".into(),
        ));
    }
    rows.iter()
        .map(|r| Ok((text_column(r, 0)?, text_column(r, 1)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_needs_a_tenant_section_of_revisions_to_positive_versions() {
        let m =
            AlembicMap::parse("[tenant]\n\"1f2e3d4c5b6a\" = 1\n\"a9b8c7d6e5f4\" = 2\n[public]\n")
                .expect("valid map");
        assert_eq!(m.tenant.get("a9b8c7d6e5f4"), Some(&2));
        assert!(m.public.is_empty());
        for bad in [
            "",
            "[public]\n\"x\" = 1\n",
            "[tenant]\n",
            "[tenant]\n\"abc\" = 0\n",
            "[tenant]\n\"abc\" = \"one\"\n",
            "[tenant]\n\"a b\" = 1\n",
            "[tenants]\n\"abc\" = 1\n",
            "[tenant\n",
        ] {
            let e = AlembicMap::parse(bad).expect_err(bad);
            assert_eq!(e.variable, "--map", "{bad}");
        }
    }
}
