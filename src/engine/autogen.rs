//! `diff`: the next migration written from a desired schema, the way Atlas does it. The
//! migrations so far and the desired file are each applied to a scratch schema on a real
//! server, both are described into the schema model, and the difference is rendered as the
//! server's DDL. Before anything is written, the migrations plus the new file are applied to
//! a third scratch schema, which must describe equal to the desired one. Scratch schemas are
//! dropped whatever happens (errors, Ctrl-C). `dump`: a live schema as the DDL that makes it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use tracing::{info, instrument};

use super::EngineError;
use super::scratch::Scratch;
use crate::config::{Config, ConfigError, Settings};
use crate::db::{self, Backend, ConnectMode, Dialect, Target};
use crate::domain::SchemaName;
use crate::migrate::naming::{check_name, next_file};
use crate::migrate::source::{SourceError, checksum};
use crate::migrate::split::split_statements;
use crate::migrate::{Migration, MigrationSet, MigrationSource, Scope};
use crate::schema::{self, Change, Rendered, Schema};

/// What `diff` is asked to do.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    pub scope: Scope,
    /// The new migration's snake_case name.
    pub name: String,
    /// The migrations folder the file goes into.
    pub migrations_dir: PathBuf,
    /// The desired schema file, when one dialect is diffed.
    pub desired: Option<PathBuf>,
    /// Only this dialect.
    pub dialect: Option<Backend>,
    pub allow_destructive: bool,
    /// Servers to build scratch schemas on for dialects other than the configured one.
    pub dev_urls: Vec<String>,
    /// Show the migration, write nothing.
    pub dry_run: bool,
}

/// `diff` for one dialect.
#[derive(Debug, Clone, Serialize)]
pub struct DialectDiff {
    pub dialect: Backend,
    /// The desired schema file.
    pub desired: String,
    /// Each change, in the order the migration makes them.
    pub changes: Vec<String>,
    /// Changes that can lose data (written only with `--allow-destructive`).
    pub destructive: Vec<String>,
    /// Changes that may fail on tables with rows.
    pub cautions: Vec<String>,
    /// Changes the tool cannot write.
    pub unsupported: Vec<String>,
    /// Differences left when the new migration was tried (the proof failed).
    pub remaining: Vec<String>,
    pub statements: Vec<String>,
    /// The file written (or that would be, in a dry run).
    pub file: Option<String>,
}

/// The result of `diff`.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    pub scope: Scope,
    pub name: String,
    /// The new migration's version, when there is one.
    pub version: Option<i64>,
    pub dialects: Vec<DialectDiff>,
    /// Header-only files written beside it in dialect folders without a desired file, so
    /// the folders keep agreeing; they need their statements written by hand.
    pub placeholders: Vec<String>,
    pub written: bool,
    /// Why nothing was written, when something stood in the way.
    pub refused: Option<String>,
}

/// A dialect's server for scratch schemas, and the folder to remove afterwards (SQLite).
struct DevServer {
    dialect: Arc<dyn Dialect>,
    temp: Option<PathBuf>,
}

impl DevServer {
    async fn close(self) {
        self.dialect.close().await;
        if let Some(dir) = self.temp {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn temp_dir() -> PathBuf {
    std::env::temp_dir().join(format!(
        "tenant-migrator-scratch-{}",
        uuid::Uuid::new_v4().simple()
    ))
}

/// The server `backend`'s scratch schemas are built on: the configured one for its kind, a
/// temporary folder for SQLite, else the `--dev-url` of that kind.
async fn dev_server(
    config: &Config,
    backend: Backend,
    dev_urls: &[String],
) -> Result<DevServer, EngineError> {
    let mode = ConnectMode {
        probe_catalog: false,
        strict_tenants: true,
    };
    if config.backend() == backend && backend != Backend::Sqlite {
        return Ok(DevServer {
            dialect: db::connect(config, mode).await?,
            temp: None,
        });
    }
    let temp = temp_dir();
    let url = match backend {
        Backend::Sqlite => None,
        _ => Some(
            dev_urls
                .iter()
                .find(|u| {
                    crate::config::parse_location(u, "--dev-url")
                        .map(|l| l.backend())
                        .ok()
                        == Some(backend)
                })
                .cloned()
                .ok_or_else(|| {
                    ConfigError::new(
                        "--dev-url",
                        format!(
                            "no {backend} server to build scratch schemas on: the configured \
                             database is {}; pass --dev-url with a {backend} URL, or --dialect",
                            config.backend()
                        ),
                    )
                })?,
        ),
    };
    std::fs::create_dir_all(&temp)
        .map_err(|e| ConfigError::new("TMPDIR", format!("cannot make {}: {e}", temp.display())))?;
    let settings = Settings {
        database_url: url,
        data_dir: Some(temp.clone()),
        placeholders: config.placeholders.clone(),
        ..Settings::default()
    };
    let connected = async { db::connect(&Config::from_settings(settings)?, mode).await }.await;
    match connected {
        Ok(dialect) => Ok(DevServer {
            dialect,
            temp: Some(temp),
        }),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&temp);
            Err(e.into())
        }
    }
}

/// A desired schema file as a one-migration set.
fn desired_set(
    path: &Path,
    scope: Scope,
    backend: Backend,
    config: &Config,
) -> Result<MigrationSet, EngineError> {
    let file = path.display().to_string();
    let bad = |message: String| SourceError::BadFile {
        file: file.clone(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot be read: {e}")))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| bad(format!("is not UTF-8 ({e})")))?;
    let statements = split_statements(text, backend).map_err(|e| bad(e.to_string()))?;
    if statements.is_empty() {
        return Err(bad("holds no statements".into()).into());
    }
    let set = MigrationSet {
        scope,
        backend,
        migrations: vec![Migration {
            version: 1,
            name: "desired".into(),
            file: file.clone(),
            checksum: checksum(&bytes),
            statements,
        }],
    };
    Ok(set.bind(&config.catalog_name(), &config.placeholders)?)
}

/// The default desired file of `scope` for `backend`: `schema/<scope>/<dialect>.sql`.
pub fn default_desired(scope: Scope, backend: Backend) -> PathBuf {
    PathBuf::from("schema")
        .join(scope.folder())
        .join(format!("{}.sql", backend.folder()))
}

/// The file `diff` writes: a header naming what it changes, then the statements.
fn migration_text(
    file: &str,
    scope: Scope,
    backend: Backend,
    desired: &str,
    changes: &[Change],
    rendered: &Rendered,
) -> String {
    let mut out = format!(
        "-- {file}: {scope} migration for {backend}, written by `tenant-migrator diff` from\n\
         -- {desired}. Review it before it reaches a fleet.\n--\n"
    );
    for c in changes {
        out.push_str(&format!("--   {}\n", c.describe()));
    }
    for c in changes.iter().filter_map(Change::caution) {
        out.push_str(&format!("-- caution: {c}\n"));
    }
    if changes.iter().any(|c| c.destructive().is_some()) {
        out.push_str("-- destructive: written with --allow-destructive\n");
    }
    out.push('\n');
    out.push_str(&rendered.script());
    out
}

/// One dialect's diff, with the migration text when there is one to write.
struct Outcome {
    report: DialectDiff,
    text: Option<String>,
}

/// Builds, compares and proves one dialect's migration on `scratch`.
#[allow(clippy::too_many_arguments)]
async fn diff_dialect(
    scratch: &Scratch<'_>,
    opts: &DiffOptions,
    config: &Config,
    set: &MigrationSet,
    desired_path: &Path,
    version: i64,
    file: &str,
) -> Result<Outcome, EngineError> {
    let backend = set.backend;
    let desired_label = desired_path.display().to_string();
    let wanted = desired_set(desired_path, opts.scope, backend, config)?;
    let current = scratch.build(set, "the migrations").await?;
    let desired = scratch.build(&wanted, &desired_label).await?;
    let changes = schema::diff(&current, &desired);
    let rendered = schema::render(backend, &current, &desired, &changes);
    let mut report = DialectDiff {
        dialect: backend,
        desired: desired_label.clone(),
        changes: changes.iter().map(Change::describe).collect(),
        destructive: changes.iter().filter_map(Change::destructive).collect(),
        cautions: changes.iter().filter_map(Change::caution).collect(),
        unsupported: rendered.unsupported.clone(),
        remaining: Vec::new(),
        statements: rendered.statements.clone(),
        file: None,
    };
    if changes.is_empty()
        || !report.unsupported.is_empty()
        || (!report.destructive.is_empty() && !opts.allow_destructive)
    {
        return Ok(Outcome { report, text: None });
    }
    let text = migration_text(
        file,
        opts.scope,
        backend,
        &desired_label,
        &changes,
        &rendered,
    );
    let mut proof = set.clone();
    proof
        .migrations
        .push(new_migration(version, &opts.name, file, &text, backend)?);
    let proof = proof.bind(&config.catalog_name(), &config.placeholders)?;
    report.remaining = prove(scratch, &proof, &desired).await?;
    let text = report.remaining.is_empty().then_some(text);
    Ok(Outcome { report, text })
}

/// A migration file's text as the next migration of a set.
fn new_migration(
    version: i64,
    name: &str,
    file: &str,
    text: &str,
    backend: Backend,
) -> Result<Migration, EngineError> {
    let statements = split_statements(text, backend).map_err(|e| SourceError::BadFile {
        file: file.to_owned(),
        message: format!("the written migration does not split: {e}"),
    })?;
    Ok(Migration {
        version,
        name: name.to_owned(),
        file: file.to_owned(),
        checksum: checksum(text.as_bytes()),
        statements,
    })
}

/// The proof of a new migration: `set` (the migrations with the new one last), applied to a
/// fresh scratch schema, must describe equal to `desired`. Returns what still differs, or
/// why the set did not apply; empty when proved.
pub async fn prove(
    scratch: &Scratch<'_>,
    set: &MigrationSet,
    desired: &Schema,
) -> Result<Vec<String>, EngineError> {
    match scratch.build(set, "the migrations with the new file").await {
        Ok(proved) => Ok(schema::diff(&proved, desired)
            .iter()
            .map(Change::describe)
            .collect()),
        Err(EngineError::Migrate { source, .. }) => Ok(vec![format!(
            "the migrations with the new file do not apply to an empty schema: {source}"
        )]),
        Err(e) => Err(e),
    }
}

/// `diff`: see the module's documentation.
#[instrument(skip_all, fields(scope = %opts.scope, migration = %opts.name))]
pub async fn diff(config: &Config, opts: &DiffOptions) -> Result<DiffReport, EngineError> {
    check_name(&opts.name)?;
    for url in &opts.dev_urls {
        crate::config::parse_location(url, "--dev-url")?;
    }
    let dialects: Vec<(Backend, PathBuf)> = match (&opts.desired, opts.dialect) {
        (Some(path), d) => vec![(d.unwrap_or(config.backend()), path.clone())],
        (None, Some(d)) => vec![(d, default_desired(opts.scope, d))],
        (None, None) => Backend::ALL
            .into_iter()
            .map(|b| (b, default_desired(opts.scope, b)))
            .filter(|(_, p)| p.is_file())
            .collect(),
    };
    if dialects.is_empty() {
        return Err(ConfigError::new(
            "--desired",
            format!(
                "no desired schema file: looked for {} (or name one with --desired)",
                Backend::ALL
                    .map(|b| default_desired(opts.scope, b).display().to_string())
                    .join(", ")
            ),
        )
        .into());
    }
    for (_, path) in &dialects {
        if !path.is_file() {
            return Err(
                ConfigError::new("--desired", format!("{} is not a file", path.display())).into(),
            );
        }
    }
    // A missing folder is more often a wrong working directory than a new project: the
    // whole desired schema would be written as the next migration of an empty one.
    if !opts.migrations_dir.is_dir() {
        return Err(ConfigError::new(
            "MIGRATIONS_DIR",
            format!(
                "{} is not a folder: run diff where the migrations are, set MIGRATIONS_DIR, or \
                 for a new project make it first (mkdir -p {}/{}/<dialect>)",
                opts.migrations_dir.display(),
                opts.migrations_dir.display(),
                opts.scope.folder()
            ),
        )
        .into());
    }
    let source = MigrationSource::from_dir(&opts.migrations_dir)?;
    let (folders, version, file_name) = next_file(&opts.migrations_dir, opts.scope, &opts.name);
    let mut report = DiffReport {
        scope: opts.scope,
        name: opts.name.clone(),
        version: None,
        dialects: Vec::new(),
        placeholders: Vec::new(),
        written: false,
        refused: None,
    };
    let mut texts = Vec::new();
    for (backend, path) in &dialects {
        let set = source
            .set(opts.scope, *backend)
            .bind(&config.catalog_name(), &config.placeholders)?;
        let rel = format!("{}/{}/{file_name}", opts.scope.folder(), backend.folder());
        let server = dev_server(config, *backend, &opts.dev_urls).await?;
        let scratch = Scratch::new(server.dialect.as_ref());
        let work = diff_dialect(&scratch, opts, config, &set, path, version, &rel);
        let outcome = tokio::select! {
            r = work => r,
            _ = tokio::signal::ctrl_c() => Err(EngineError::Interrupted(
                "the scratch schemas were dropped, nothing was written".into(),
            )),
        };
        scratch.drop_all().await;
        server.close().await;
        let outcome = outcome?;
        texts.push((*backend, outcome.text));
        report.dialects.push(outcome.report);
    }
    let refused: Vec<String> = report
        .dialects
        .iter()
        .flat_map(|d| {
            let tag = |what: &str, v: &[String]| -> Vec<String> {
                v.iter()
                    .map(|x| format!("{}: {what} {x}", d.dialect))
                    .collect()
            };
            let mut out = tag("cannot write:", &d.unsupported);
            if !opts.allow_destructive {
                out.extend(tag("destructive:", &d.destructive));
            }
            out.extend(tag(
                "still different after the new migration:",
                &d.remaining,
            ));
            out
        })
        .collect();
    if !refused.is_empty() {
        let mut why = refused.join("\n");
        if !opts.allow_destructive && report.dialects.iter().any(|d| !d.destructive.is_empty()) {
            why.push_str(
                "\ndestructive changes are written only with --allow-destructive; a rename \
                 cannot be told from a drop and an add: rename by hand to keep the data",
            );
        }
        report.refused = Some(why);
        return Ok(report);
    }
    if report.dialects.iter().all(|d| d.changes.is_empty()) {
        info!("no differences: nothing written");
        return Ok(report);
    }
    report.version = Some(version);
    let scope_dir = opts.migrations_dir.join(opts.scope.folder());
    let mut writes: Vec<(PathBuf, String)> = Vec::new();
    for (d, (backend, text)) in report.dialects.iter_mut().zip(texts) {
        let path = scope_dir.join(backend.folder()).join(&file_name);
        let text = text.unwrap_or_else(|| {
            format!(
                "-- {file_name}: {} migration for {backend}: no changes for this dialect ({} \
                 already matches).\n",
                opts.scope, d.desired
            )
        });
        d.file = Some(path.display().to_string());
        writes.push((path, text));
    }
    for b in folders {
        if dialects.iter().any(|(d, _)| *d == b) {
            continue;
        }
        let path = scope_dir.join(b.folder()).join(&file_name);
        report.placeholders.push(path.display().to_string());
        writes.push((
            path,
            format!(
                "-- {file_name}: {} migration for {b}. `diff` had no desired file for this \
                 dialect:\n-- write its statements by hand (every dialect folder needs them).\n",
                opts.scope
            ),
        ));
    }
    if opts.dry_run {
        return Ok(report);
    }
    for (path, text) in &writes {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| write_error(dir, e))?;
        }
        std::fs::write(path, text).map_err(|e| write_error(path, e))?;
        info!(file = %path.display(), "migration written");
    }
    report.written = true;
    Ok(report)
}

fn write_error(path: &Path, e: std::io::Error) -> EngineError {
    ConfigError::new(
        "MIGRATIONS_DIR",
        format!("cannot write {}: {e}", path.display()),
    )
    .into()
}

/// A live schema as DDL (see [`dump_schema`]).
#[derive(Debug, Clone, Serialize)]
pub struct Dump {
    pub schema: String,
    pub dialect: Backend,
    pub statements: Vec<String>,
    /// What the model cannot write (see [`crate::schema::Column::unsupported`]).
    pub unsupported: Vec<String>,
}

/// `dump`: the structure of `schema` on `dialect` as the statements that create it in an
/// empty schema.
pub async fn dump_schema(dialect: &dyn Dialect, schema: &SchemaName) -> Result<Dump, EngineError> {
    let target = Target::Tenant(schema.clone());
    if !dialect.schema_exists(&target).await? {
        return Err(EngineError::NotFound(format!(
            "schema {schema} does not exist on {}",
            dialect.server_label()
        )));
    }
    let live = dialect.structure(&target).await?;
    let empty = Schema::default();
    let rendered = schema::render(
        dialect.backend(),
        &empty,
        &live,
        &schema::diff(&empty, &live),
    );
    Ok(Dump {
        schema: schema.to_string(),
        dialect: dialect.backend(),
        statements: rendered.statements,
        unsupported: rendered.unsupported,
    })
}
