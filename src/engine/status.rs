//! Read-side and maintenance operations: `status` (version, pending, dirty, checksum
//! problems per schema; a `running` migration told apart as in progress or interrupted),
//! `repair` (after a human fixed a dirty schema; it looks at the live schema before it
//! forgets a migration) and the drift check
//! (each tenant's actual tables against a freshly migrated reference schema).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use tracing::{info, instrument, warn};

use super::{Engine, EngineError};
use crate::catalog::{TenantFilter, TenantRow, TenantStatus};
use crate::db::{SchemaState, Target};
use crate::domain::SchemaName;
use crate::migrate::history::RowState;
use crate::migrate::observe::{self, Effects};
use crate::migrate::plan::{Problem, plan};
use crate::migrate::{MigrationSet, Scope};
use crate::schema::Schema;

/// Where one schema stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TenantState {
    pub schema: String,
    /// Catalog status (`null` for the catalog itself or a schema the catalog does not list).
    pub catalog_status: Option<TenantStatus>,
    /// The database server holding it (`null` for the catalog itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The schema exists on the server.
    pub exists: bool,
    /// Newest applied version.
    pub version: Option<i64>,
    /// Newest version available.
    pub latest: Option<i64>,
    /// Versions not applied yet.
    pub pending: Vec<i64>,
    /// A failed or interrupted migration awaits `repair`.
    pub dirty: bool,
    /// Everything that blocks migrations (dirty rows, checksum mismatches, missing files).
    pub problems: Vec<Problem>,
    pub last_error: Option<String>,
}

impl TenantState {
    /// True when the schema exists and nothing blocks it.
    pub fn healthy(&self) -> bool {
        self.exists && self.problems.is_empty()
    }
}

fn state_of(
    schema: &str,
    set: &MigrationSet,
    state: &SchemaState,
    row: Option<&TenantRow>,
) -> TenantState {
    let p = crate::migrate::apply::unlocked_plan(set, state, None);
    TenantState {
        schema: schema.to_owned(),
        catalog_status: row.map(|r| r.status),
        server: row.map(|r| r.server.clone()),
        exists: *state != SchemaState::Missing,
        version: p.from,
        latest: set.latest(),
        pending: p.pending,
        dirty: p.problems.iter().any(Problem::is_dirty),
        problems: p.problems,
        last_error: row.and_then(|r| r.last_error.clone()),
    }
}

/// What `repair` may do besides forgetting failed migrations.
#[derive(Debug, Clone, Copy, Default)]
pub struct RepairOptions {
    /// Record failed/interrupted migrations as applied (the human completed them by hand)
    /// instead of forgetting them (the human undid them, so they run again).
    pub mark_applied: bool,
    /// Accept the current files' checksums for applied migrations that were edited.
    pub accept_checksums: bool,
    /// Forget failed/interrupted migrations even when the live schema shows (or cannot rule
    /// out) their effects: the human undid them by hand.
    pub force: bool,
    pub dry_run: bool,
}

/// What `repair` did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RepairReport {
    pub schema: String,
    pub dry_run: bool,
    /// Failed/interrupted rows removed: these migrations run again at the next upgrade.
    pub forgotten: Vec<i64>,
    /// Failed/interrupted rows recorded as applied.
    pub marked_applied: Vec<i64>,
    /// Applied rows whose checksum now matches the file.
    pub checksums_accepted: Vec<i64>,
    /// Problems repair did not (or could not) resolve.
    pub remaining: Vec<Problem>,
}

/// A difference between a tenant's tables and the reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TenantDrift {
    pub schema: String,
    /// Tables, columns, indexes and foreign keys the reference has and the tenant lacks.
    pub missing: Vec<String>,
    /// Tables, columns, indexes and foreign keys the tenant has and the reference does not.
    pub unexpected: Vec<String>,
    /// Columns whose type, nullability or default differ.
    pub changed: Vec<String>,
}

/// Result of a drift check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DriftReport {
    /// Version the reference schema was migrated to.
    pub version: Option<i64>,
    /// Tenants compared (those at that version).
    pub checked: usize,
    /// Tenants not at the newest version, left out of the comparison.
    pub not_current: Vec<String>,
    /// Tenants whose structure differs.
    pub drifted: Vec<TenantDrift>,
}

/// Compares `actual` against `reference` with the schema model's [`schema::diff`]: each
/// change that would bring the tenant back, sorted into what it lacks, what it has besides
/// and what differs. A table missing (or extra) as a whole is named once, not its columns
/// and keys one by one.
pub fn diff_structure(
    schema: &str,
    reference: &crate::schema::Schema,
    actual: &crate::schema::Schema,
) -> Option<TenantDrift> {
    use crate::schema::{Change, Direction};
    let changes = crate::schema::diff(actual, reference);
    let whole: BTreeSet<&str> = changes
        .iter()
        .filter_map(|c| match c {
            Change::CreateTable(t) | Change::DropTable(t) => Some(t.name.as_str()),
            _ => None,
        })
        .collect();
    let mut d = TenantDrift {
        schema: schema.to_owned(),
        missing: Vec::new(),
        unexpected: Vec::new(),
        changed: Vec::new(),
    };
    for c in &changes {
        let of_whole_table = matches!(
            c,
            Change::AddForeignKey { .. } | Change::DropForeignKey { .. }
        ) && whole.contains(c.table());
        if of_whole_table {
            continue;
        }
        match (c.direction(), c) {
            (Direction::Changed, Change::AlterColumn { table, from, to }) => {
                d.changed.push(format!(
                    "column {table}.{}: expected {}, found {}",
                    to.name,
                    to.shape(),
                    from.shape()
                ))
            }
            (Direction::Missing, _) => d.missing.push(c.subject()),
            (Direction::Unexpected, _) => d.unexpected.push(c.subject()),
            (Direction::Changed, _) => d.changed.push(c.subject()),
        }
    }
    (!(d.missing.is_empty() && d.unexpected.is_empty() && d.changed.is_empty())).then_some(d)
}

impl TenantDrift {
    /// Every difference on one line each: `missing …`, `unexpected …`, `changed …`.
    pub fn lines(&self) -> Vec<String> {
        let tagged = |tag: &str, v: &[String]| -> Vec<String> {
            v.iter().map(|x| format!("{tag} {x}")).collect()
        };
        let mut out = tagged("missing", &self.missing);
        out.extend(tagged("unexpected", &self.unexpected));
        out.extend(tagged("changed", &self.changed));
        out
    }
}

/// Prefix of the scratch schemas drift checks migrate as their reference.
pub const REFERENCE_PREFIX: &str = "tm_reference_";

impl Engine {
    /// Where the catalog and the tenants stand (`schema`: just that tenant).
    pub async fn status(
        &self,
        schema: Option<&SchemaName>,
    ) -> Result<(TenantState, Vec<TenantState>), EngineError> {
        let catalog_state = self.catalog_state().await?;
        let catalog = state_of(
            &self.config().catalog_name(),
            self.migrations(Scope::Public),
            &catalog_state,
            None,
        );
        let rows: Vec<TenantRow> = match schema {
            Some(s) => match self.catalog().get_tenant(s.as_str()).await {
                Ok(Some(row)) => vec![row],
                Ok(None) => {
                    return Err(EngineError::NotFound(format!(
                        "tenant {s} is not in the catalog"
                    )));
                }
                Err(_) if !catalog.exists => {
                    return Err(EngineError::NotFound(format!(
                        "tenant {s} is not in the catalog"
                    )));
                }
                Err(e) => return Err(e.into()),
            },
            None => self.list_tenants(&TenantFilter::default()).await?.tenants,
        };
        let mut names = Vec::with_capacity(rows.len());
        let mut listed = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Ok(n) = SchemaName::from_catalog(&row.schema_name) {
                names.push((row.server.as_str(), Target::Tenant(n)));
                listed.push(row);
            }
        }
        // A server that cannot be read makes its tenants unreadable, not the whole status.
        let states: Vec<SchemaState> = self
            .servers()
            .read_states(&names)
            .await
            .into_iter()
            .map(|st| st.unwrap_or_else(SchemaState::Unreadable))
            .collect();
        let set = self.migrations(Scope::Tenant);
        let mut tenants: Vec<TenantState> = listed
            .iter()
            .zip(states.iter())
            .map(|(row, st)| state_of(&row.schema_name, set, st, Some(row)))
            .collect();
        let mut catalog = catalog;
        self.refine_running(
            self.dialect(),
            &Target::Catalog,
            self.migrations(Scope::Public),
            &mut catalog,
        )
        .await?;
        for ((row, (_, target)), st) in listed.iter().zip(&names).zip(tenants.iter_mut()) {
            if let Ok(server) = self.server_of(row) {
                self.refine_running(server.dialect(), target, set, st)
                    .await?;
            }
        }
        Ok((catalog, tenants))
    }

    /// Tells a `running` migration whose session is alive (it holds the schema's lock) from
    /// one whose process died, and whether the next run can resume the latter. Costs a query
    /// only for schemas showing a `running` row.
    async fn refine_running(
        &self,
        dialect: &dyn crate::db::Dialect,
        target: &Target,
        set: &MigrationSet,
        st: &mut TenantState,
    ) -> Result<(), EngineError> {
        for p in st.problems.iter_mut() {
            let Problem::Dirty {
                version,
                name,
                state: RowState::Running,
                ..
            } = p
            else {
                continue;
            };
            let (version, name) = (*version, name.clone());
            let info = dialect.running_info(target, version).await?;
            if info.holder.is_some() {
                *p = Problem::InProgress {
                    version,
                    name,
                    holder: info.holder,
                };
                continue;
            }
            let rendered = set.get_for(version, target); // `${schema}` as it ran there
            let file = rendered.as_deref();
            let (resumable, reason) = match (info.statements_done, file) {
                (None, _) => (
                    false,
                    Some("it was recorded without statement progress".to_owned()),
                ),
                (Some(_), None) => (false, Some("its file is gone".to_owned())),
                (Some(done), Some(m)) => {
                    // The resume scan passes over uncounted statements it sees done; the first
                    // counted one from the count on is the last that can be in doubt.
                    let kinds: Vec<observe::Kind> = m
                        .statements
                        .iter()
                        .map(|s| observe::classify(&s.sql))
                        .collect();
                    let counted = observe::counted(&kinds);
                    let from = usize::try_from(done).unwrap_or(0);
                    let last = (from..m.statements.len())
                        .find(|i| counted[*i])
                        .unwrap_or(from);
                    match m.statements.get(last).zip(kinds.get(last)) {
                        Some((stmt, observe::Kind::Opaque(why))) => (
                            false,
                            Some(format!(
                                "statement {} (line {}) may or may not have run: {why}",
                                last + 1,
                                stmt.line
                            )),
                        ),
                        _ => (true, None),
                    }
                }
            };
            *p = Problem::Interrupted {
                version,
                name,
                statements_done: info.statements_done,
                statements: file.map_or(0, |m| m.statements.len()),
                resumable,
                reason,
            };
        }
        st.dirty = st.problems.iter().any(Problem::is_dirty);
        Ok(())
    }

    /// Resolves a dirty schema after a human fixed it: failed/interrupted migrations are
    /// forgotten (they run again at the next upgrade) or, with `mark_applied`, recorded as
    /// applied; with `accept_checksums`, edited files are accepted. Runs under the schema's
    /// lock, in a dry run too (which writes nothing). `schema` may name the catalog itself.
    ///
    /// Before forgetting, it looks at the live schema: a migration whose statements are (or
    /// may be) there is not forgotten without `force` — running it again from the start would
    /// fail or apply its data changes twice.
    #[instrument(skip_all, fields(schema = %schema, dry_run = opts.dry_run))]
    pub async fn repair(
        &self,
        schema: &SchemaName,
        opts: RepairOptions,
    ) -> Result<RepairReport, EngineError> {
        let (target, scope, dialect) = if schema.as_str() == self.config().catalog_name() {
            (Target::Catalog, Scope::Public, self.dialect())
        } else {
            let Some(row) = self.catalog().get_tenant(schema.as_str()).await? else {
                return Err(EngineError::NotFound(format!(
                    "tenant {schema} is not in the catalog"
                )));
            };
            (
                Target::Tenant(schema.clone()),
                Scope::Tenant,
                self.server_of(&row)?.dialect(),
            )
        };
        let set = self.migrations(scope);
        let mut report = RepairReport {
            schema: schema.to_string(),
            dry_run: opts.dry_run,
            forgotten: Vec::new(),
            marked_applied: Vec::new(),
            checksums_accepted: Vec::new(),
            remaining: Vec::new(),
        };
        let mut session = dialect
            .open_session(&target, self.config().lock_timeout)
            .await?;
        let result = async {
            let rows = {
                let (conn, table) = session.parts();
                match table.read_compatible(conn).await {
                    Ok(rows) => rows,
                    Err(e) if e.is_missing_object() => Vec::new(),
                    Err(e) => return Err(e),
                }
            };
            let mut refused = Vec::new();
            for row in &rows {
                let file = set.get(row.version);
                if !row.state.is_applied() {
                    match (opts.mark_applied, file) {
                        (true, Some(f)) => report.marked_applied.push(f.version),
                        _ if opts.force => report.forgotten.push(row.version),
                        _ => match observe::effects(
                            session.as_mut(),
                            row,
                            set.get_for(row.version, &target).as_deref(),
                        )
                        .await?
                        {
                            Effects::None => report.forgotten.push(row.version),
                            Effects::Present(evidence) | Effects::Unknown(evidence) => {
                                refused.push(Problem::PartlyApplied {
                                    version: row.version,
                                    name: row.name.clone(),
                                    evidence,
                                });
                            }
                        },
                    }
                } else if opts.accept_checksums
                    && let Some(f) = file
                    && f.checksum != row.checksum
                {
                    report.checksums_accepted.push(row.version);
                }
            }
            if !opts.dry_run {
                session.delete_rows(&report.forgotten).await?;
                for v in report
                    .marked_applied
                    .iter()
                    .chain(&report.checksums_accepted)
                {
                    if let Some(f) = set.get(*v) {
                        session.mark_applied(*v, &f.checksum).await?;
                    }
                }
            }
            let refused_versions: Vec<i64> = refused
                .iter()
                .filter_map(|p| match p {
                    Problem::PartlyApplied { version, .. } => Some(*version),
                    _ => None,
                })
                .collect();
            let after: Vec<_> = rows
                .into_iter()
                .filter(|r| {
                    !report.forgotten.contains(&r.version) && !refused_versions.contains(&r.version)
                })
                .map(|mut r| {
                    if report.marked_applied.contains(&r.version)
                        || report.checksums_accepted.contains(&r.version)
                    {
                        if !r.state.is_applied() {
                            r.state = RowState::Applied;
                        }
                        if let Some(f) = set.get(r.version) {
                            r.checksum = f.checksum.clone();
                        }
                    }
                    r
                })
                .collect();
            report.remaining = refused;
            report.remaining.extend(plan(set, &after, None).problems);
            Ok::<(), crate::db::DbError>(())
        }
        .await;
        if let Err(e) = session.release().await {
            warn!(error = %e, "could not release the lock after repair");
        }
        result?;
        if opts.dry_run {
            info!(
                would_forget = ?report.forgotten,
                would_mark_applied = ?report.marked_applied,
                would_accept_checksums = ?report.checksums_accepted,
                remaining = report.remaining.len(),
                "repair planned (dry run): nothing was written"
            );
            return Ok(report);
        }
        if target != Target::Catalog
            && report.remaining.is_empty()
            && let Some(row) = self.catalog().get_tenant(schema.as_str()).await?
        {
            self.catalog()
                .set_tenant_outcome(schema.as_str(), row.status, row.schema_version, None)
                .await?;
        }
        info!(
            forgotten = ?report.forgotten,
            marked_applied = ?report.marked_applied,
            checksums_accepted = ?report.checksums_accepted,
            remaining = report.remaining.len(),
            "repair done"
        );
        Ok(report)
    }

    /// [`Engine::repair`] of a tenant only: a name the catalog does not list as a tenant (the
    /// catalog's own schema included) is [`EngineError::NotFound`], as is a listed tenant
    /// whose schema does not exist.
    #[instrument(skip_all, fields(schema = %schema, dry_run = opts.dry_run))]
    pub async fn repair_tenant(
        &self,
        schema: &SchemaName,
        opts: RepairOptions,
    ) -> Result<RepairReport, EngineError> {
        if schema.as_str() == self.config().catalog_name() {
            return Err(EngineError::NotFound(format!(
                "tenant {schema} is not in the catalog"
            )));
        }
        match self.repair(schema, opts).await {
            Err(EngineError::Db(crate::db::DbError::SchemaMissing(_))) => Err(
                EngineError::NotFound(format!("tenant {schema} has no schema on its server")),
            ),
            other => other,
        }
    }

    /// The structure of `set` migrated from scratch up to each of `versions` (the newest when
    /// empty): migrated step by step into one scratch schema under a `tm_reference_` name,
    /// described at each version, and dropped.
    pub async fn reference_structures(
        &self,
        set: &MigrationSet,
        versions: &[i64],
    ) -> Result<BTreeMap<Option<i64>, Schema>, EngineError> {
        self.reference_structures_on(self.dialect(), set, versions)
            .await
    }

    /// [`Engine::reference_structures`] built on `dialect`'s server (a tenant's own, so
    /// server defaults such as collations are the tenant's).
    pub async fn reference_structures_on(
        &self,
        dialect: &dyn crate::db::Dialect,
        set: &MigrationSet,
        versions: &[i64],
    ) -> Result<BTreeMap<Option<i64>, Schema>, EngineError> {
        let mut stops: Vec<Option<i64>> = versions.iter().copied().map(Some).collect();
        stops.sort();
        stops.dedup();
        if stops.is_empty() {
            stops.push(None);
        }
        let scratch = super::scratch::Scratch::new(dialect);
        let work = async {
            let target = scratch.create().await?;
            let mut out = BTreeMap::new();
            for stop in stops {
                scratch
                    .migrate(&target, set, stop, "drift reference schema")
                    .await?;
                out.insert(stop, dialect.structure(&target).await?);
            }
            Ok::<_, EngineError>(out)
        };
        let built = tokio::select! {
            r = work => r,
            _ = super::scratch::stop_requested() => Err(EngineError::Interrupted(
                "the reference schema was dropped".into(),
            )),
        };
        scratch.drop_all().await;
        built
    }

    /// Compares every tenant at the newest version with a reference schema migrated from
    /// scratch (see [`Engine::reference_structures`]).
    #[instrument(skip_all)]
    pub async fn check_structure(&self) -> Result<DriftReport, EngineError> {
        let set = self.migrations(Scope::Tenant);
        let (_, tenants) = self.status(None).await?;
        let reference_structure = self
            .reference_structures(set, &[])
            .await?
            .remove(&None)
            .unwrap_or_default();
        let mut report = DriftReport {
            version: set.latest(),
            checked: 0,
            not_current: Vec::new(),
            drifted: Vec::new(),
        };
        let compare = async {
            for t in tenants {
                if !t.exists || t.version != set.latest() {
                    report.not_current.push(t.schema);
                    continue;
                }
                let Ok(name) = SchemaName::from_catalog(&t.schema) else {
                    continue;
                };
                let server = t.server.as_deref().unwrap_or(crate::config::DEFAULT_SERVER);
                let actual = self
                    .servers()
                    .require(server)?
                    .dialect()
                    .structure(&Target::Tenant(name))
                    .await?;
                report.checked += 1;
                if let Some(d) = diff_structure(&t.schema, &reference_structure, &actual) {
                    report.drifted.push(d);
                }
            }
            Ok::<(), EngineError>(())
        };
        // The reference's stop handler stays installed: a stop asked for during the
        // comparison (which only reads) ends it here.
        tokio::select! {
            r = compare => r?,
            _ = super::scratch::stop_requested() => {
                return Err(EngineError::Interrupted("nothing was written".into()));
            }
        }
        Ok(report)
    }
}

/// One tenant's structure against its own version's reference, and the statements that
/// would bring it back (`check-structure <schema> [--fix-sql]`). The statements are for a
/// person to read and run; the tool never runs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TenantFix {
    pub schema: String,
    /// The tenant's version, which the reference was migrated to.
    pub version: Option<i64>,
    /// The differences; `None` when there are none.
    pub drift: Option<TenantDrift>,
    pub statements: Vec<String>,
    /// Of those, the changes that drop data.
    pub destructive: Vec<String>,
    /// Differences no statement is written for.
    pub unsupported: Vec<String>,
}

impl Engine {
    /// Compares one tenant with the reference at its own version (see [`TenantFix`]).
    #[instrument(skip_all, fields(schema = %schema))]
    pub async fn structure_fix(&self, schema: &SchemaName) -> Result<TenantFix, EngineError> {
        let (_, tenants) = self.status(Some(schema)).await?;
        let Some(t) = tenants.into_iter().next().filter(|t| t.exists) else {
            return Err(EngineError::NotFound(format!(
                "tenant {schema} has no schema on its server"
            )));
        };
        let set = self.migrations(Scope::Tenant);
        let server = t.server.as_deref().unwrap_or(crate::config::DEFAULT_SERVER);
        let dialect = self.servers().require(server)?.dialect();
        let reference = match t.version {
            Some(v) => self
                .reference_structures_on(dialect, set, &[v])
                .await?
                .remove(&Some(v))
                .unwrap_or_default(),
            None => Schema::default(),
        };
        let actual = dialect.structure(&Target::Tenant(schema.clone())).await?;
        let changes = crate::schema::diff(&actual, &reference);
        let mut rendered = crate::schema::render(dialect.backend(), &actual, &reference, &changes);
        // SQLite's table rebuild needs foreign key enforcement off, and the keys checked after.
        if dialect.backend() == crate::db::Backend::Sqlite
            && rendered
                .statements
                .iter()
                .any(|s| s.starts_with("DROP TABLE"))
        {
            // In one transaction: run with `sqlite3 -bail`, a failed step undoes them all.
            rendered.statements.splice(
                0..0,
                ["PRAGMA foreign_keys = OFF".to_owned(), "BEGIN".to_owned()],
            );
            rendered.statements.extend([
                "PRAGMA foreign_key_check".to_owned(),
                "COMMIT".to_owned(),
                "PRAGMA foreign_keys = ON".to_owned(),
            ]);
        }
        Ok(TenantFix {
            schema: t.schema.clone(),
            version: t.version,
            drift: diff_structure(&t.schema, &reference, &actual),
            statements: rendered.statements,
            destructive: changes
                .iter()
                .filter_map(crate::schema::Change::destructive)
                .collect(),
            unsupported: rendered.unsupported,
        })
    }
}
