//! `adopt alembic`: takes over tenants another tool migrated (Alembic, one `alembic_version`
//! table per tenant) without touching their data. For each tenant, under its migration lock:
//! read the Alembic revision, map it to a version (the team's `alembic-map.toml`), verify the
//! live structure equals a reference migrated from the files up to that version, record
//! versions 1..v as `baselined` in one statement, and register the tenant `active` at v. No
//! statement runs against the tenant's own tables; its `alembic_version` stays as it was.
//!
//! Also owns the map file and the optional `--tenants-query` that supplies display names.

mod map;
mod names;
mod report;

use std::collections::{BTreeMap, HashMap};

use chrono::Utc;
use futures_util::StreamExt;
use sqlx::AssertSqlSafe;
use tracing::{info, instrument, warn};

pub use map::AlembicMap;
pub use report::{AdoptCounts, AdoptOutcome, AdoptReport, Verdict};

use super::{Engine, EngineError};
use crate::catalog::TenantStatus;
use crate::config::{DbLocation, parse_location};
use crate::db::{DbError, Dialect, SchemaSession, Target, TenantServer, with_conn};
use crate::domain::{DisplayName, SchemaName};
use crate::migrate::{MigrationSet, Scope};
use crate::schema::Schema as Structure;
use names::{display_names, search_path, server_of, text_column};
use report::finish;

/// Alembic's own table, in each tenant.
pub const ALEMBIC_TABLE: &str = "alembic_version";

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
    /// The server the schemas are on (default: the first configured); recorded as theirs.
    pub server: Option<String>,
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
        let server = match &opts.server {
            Some(name) => self.named_server(name)?,
            None => self.servers().first(),
        };
        let names: Vec<Candidate> = match &opts.selection {
            Selection::Schemas(s) => s.iter().cloned().map(Candidate::Schema).collect(),
            Selection::Discover { like } => {
                self.discover(server, like.as_deref(), &tenants_location)
                    .await?
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
                    self.inspect_tenant(server, name, &opts.map.tenant, catalog_ready)
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
                    server,
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
        server: &TenantServer,
        like: Option<&str>,
        tenants_location: &DbLocation,
    ) -> Result<Vec<Candidate>, EngineError> {
        let found = crate::db::retry_read("alembic tenants", || {
            server.dialect().schemas_with_table(ALEMBIC_TABLE, like)
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
        dialect: &dyn Dialect,
        target: &Target,
        work: impl AsyncFnOnce(&mut dyn SchemaSession) -> Result<T, DbError>,
    ) -> Result<Option<T>, DbError> {
        let mut session = match dialect
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
        server: &TenantServer,
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
        if let Some(row) = &listed
            && row.server != server.name
        {
            return Pending::Done(AdoptOutcome::refused(
                &schema,
                format!(
                    "the catalog places it on server {}, not {}: run adopt with --server {}",
                    row.server, server.name, row.server
                ),
            ));
        }
        let target = Target::Tenant(name.clone());
        let found = self
            .under_lock(server.dialect(), &target, async |s| {
                inspect(s, &target, map).await
            })
            .await;
        let outcome = match found {
            Ok(None) => AdoptOutcome::refused(&schema, "no such schema on the tenant server"),
            Err(e) => AdoptOutcome::failed(&schema, &e),
            Ok(Some(Found::Refused(o))) => AdoptOutcome { schema, ..o },
            Ok(Some(Found::History(version, revision))) => {
                // Adopted (or created) before; registered unless its process stopped first.
                return match self
                    .register(server, &schema, listed.as_ref(), version, None)
                    .await
                {
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
    #[allow(clippy::too_many_arguments)]
    async fn adopt_tenant(
        &self,
        server: &TenantServer,
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
        let actual = match server.dialect().structure(&target).await {
            Ok(a) => a,
            Err(e) => return AdoptOutcome::failed(schema, &e),
        };
        let found = self
            .under_lock(server.dialect(), &target, async |s| {
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
                server,
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
        server: &TenantServer,
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
            self.catalog()
                .insert_tenant(schema, shown, &server.name)
                .await?;
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
            .under_lock(self.dialect(), &target, async |s| {
                inspect(s, &target, map).await
            })
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
            .under_lock(self.dialect(), &target, async |s| {
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
