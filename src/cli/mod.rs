//! The command line: clap definitions and dispatch. Each command is a thin layer over
//! [`Engine`]; this module only turns arguments into calls and reports into output and exit
//! codes (0 all good, 1 some tenant failed, 2 usage/configuration/validation error).

mod args;
mod progress;
mod render;
mod scaffold;
mod serve;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

pub use args::{
    AdoptAlembicArgs, AdoptCommand, Cli, Command, GlobalArgs, OutputFormat, ServeArgs,
    UpgradeAllArgs,
};

use crate::catalog::{TenantFilter, TenantStatus};
use crate::config::{Config, ConfigError};
use crate::domain::{DisplayName, SchemaName, ValidationError};
use crate::engine::autogen::DiffOptions;
use crate::engine::{AdoptOptions, AlembicMap, Engine, EngineError, RepairOptions, Selection};
use crate::jobs::{Canary, FleetOptions, FleetReport};
use crate::migrate::Scope;

/// Parses the process arguments, runs the command and returns its exit code.
pub async fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let show_bar = cli.global.output == OutputFormat::Text
        && std::io::stderr().is_terminal()
        && cli.command.is_fleet();
    crate::telemetry::init(cli.global.verbose, show_bar);
    let output = cli.global.output;
    let code = match run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            render::error(output, &e);
            ExitCode::from(e.exit_code() as u8)
        }
    };
    close_engines().await;
    code
}

/// The engines the command opened, closed before the process exits: the servers see each
/// connection end cleanly instead of logging it as reset by the peer.
static OPENED: std::sync::Mutex<Vec<Engine>> = std::sync::Mutex::new(Vec::new());

fn opened(engine: Engine) -> Engine {
    OPENED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(engine.clone());
    engine
}

async fn close_engines() {
    let engines = std::mem::take(
        &mut *OPENED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    for engine in engines {
        // A connection still held by a task that outlived the command would keep `close`
        // waiting: exit regardless after a moment.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), engine.close()).await;
    }
}

fn config(g: &GlobalArgs) -> Result<Config, ConfigError> {
    Config::from_settings(g.settings()?)
}

async fn engine(g: &GlobalArgs) -> Result<Engine, EngineError> {
    Engine::connect(config(g)?).await.map(opened)
}

/// The engine for commands about what the catalog holds (listing, status, drift, repair, one
/// tenant's upgrade): they refuse a catalog that does not exist (exit 2) and create nothing,
/// so a mistyped `DATABASE_URL` never leaves an empty catalog behind.
async fn existing(g: &GlobalArgs) -> Result<Engine, EngineError> {
    Engine::connect_existing(config(g)?).await.map(opened)
}

/// The migrations folder files are written to: `--migrations-dir`, else `MIGRATIONS_DIR`,
/// else `./migrations`.
fn migrations_dir(g: &GlobalArgs) -> Result<std::path::PathBuf, ConfigError> {
    Ok(g.settings()?
        .migrations_dir
        .unwrap_or_else(|| std::path::PathBuf::from("migrations")))
}

fn schema_names(raw: &[String]) -> Result<Vec<SchemaName>, ValidationError> {
    raw.iter().map(|s| SchemaName::parse(s)).collect()
}

fn fleet_options(engine: &Engine, g: &GlobalArgs) -> FleetOptions {
    let mut o = engine.fleet_options(g.dry_run, g.target);
    if let Some(c) = g.concurrency {
        o.concurrency = c.max(1);
    }
    o.continue_on_error = g.continue_on_error;
    o.server = g.server.clone();
    o
}

/// The canary and failure budget `upgrade-all` asks for, checked before anything is touched
/// (whether named canary tenants are in the catalog is checked by the run, before it starts).
fn waves_of(args: &UpgradeAllArgs) -> Result<(Option<Canary>, Option<usize>), ValidationError> {
    let canary = if !args.canary_tenants.is_empty() {
        let mut names = Vec::with_capacity(args.canary_tenants.len());
        for name in schema_names(&args.canary_tenants)? {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        Some(Canary::Tenants(names))
    } else {
        args.canary
            .map(|n| Canary::Count(usize::try_from(n).unwrap_or(usize::MAX)))
    };
    let max_failures = args
        .max_failures
        .map(|k| usize::try_from(k).unwrap_or(usize::MAX));
    Ok((canary, max_failures))
}

fn exit_for(report: &FleetReport) -> u8 {
    if report.all_good() { 0 } else { 1 }
}

async fn run(cli: Cli) -> Result<u8, EngineError> {
    let g = &cli.global;
    match &cli.command {
        Command::Create {
            schemas,
            display_name,
        } => {
            // Validate every name before touching anything.
            let names = schema_names(schemas)?;
            let display = display_name
                .as_deref()
                .map(DisplayName::parse)
                .transpose()?;
            let engine = engine(g).await?;
            let opts = fleet_options(&engine, g);
            let progress = progress::for_run(g.output, names.len());
            let report = engine
                .create_tenants(&names, display.as_ref(), &opts, progress.as_ref())
                .await?;
            render::fleet(g.output, &report);
            Ok(exit_for(&report))
        }
        Command::UpgradeAll(args) => {
            let (canary, max_failures) = waves_of(args)?;
            if args.job {
                if g.server.is_some() {
                    // A job's parameters live in the catalog, which records no server filter.
                    return Err(ValidationError::new(
                        "--server",
                        "cannot be combined with --job: a recorded job runs over every server",
                    )
                    .into());
                }
                return serve::upgrade_all_job(g, canary, max_failures).await;
            }
            let engine = engine(g).await?;
            let mut opts = fleet_options(&engine, g);
            opts.canary = canary;
            opts.max_failures = max_failures;
            let progress = progress::for_run(g.output, 0);
            let report = engine.upgrade_all(&opts, progress.as_ref()).await?;
            render::fleet(g.output, &report);
            Ok(exit_for(&report))
        }
        Command::Upgrade { schema } => {
            let name = SchemaName::parse(schema)?;
            let engine = existing(g).await?;
            let opts = fleet_options(&engine, g);
            let progress = progress::for_run(g.output, 1);
            let report = engine
                .upgrade_tenant(&name, &opts, progress.as_ref())
                .await?;
            render::fleet(g.output, &report);
            Ok(exit_for(&report))
        }
        Command::UpgradePublic => {
            let engine = engine(g).await?;
            let run = engine.run_options(g.dry_run, g.target);
            let one = engine.upgrade_public(&run).await?;
            let report = FleetReport::from_tenants(
                Scope::Public,
                g.dry_run,
                g.target,
                engine.migrations(Scope::Public).latest(),
                vec![one.clone()],
                one.duration_ms,
            );
            render::fleet(g.output, &report);
            Ok(exit_for(&report))
        }
        Command::ListTenants { status } => {
            let status = match status.as_deref() {
                None => None,
                Some(s) => Some(TenantStatus::parse(s).ok_or_else(|| {
                    ValidationError::new(
                        "status",
                        format!("{s:?} is not one of provisioning, active, failed, archived"),
                    )
                })?),
            };
            let engine = existing(g).await?;
            let page = engine
                .list_tenants(&TenantFilter {
                    status,
                    ..TenantFilter::default()
                })
                .await?;
            render::tenants(g.output, &page);
            Ok(0)
        }
        Command::Status { schema } => {
            let name = schema.as_deref().map(SchemaName::parse).transpose()?;
            let engine = existing(g).await?;
            let (catalog, tenants) = engine.status(name.as_ref()).await?;
            // The fleet's status shows every server; one tenant's, its own only.
            let mut servers = engine.server_statuses().await?;
            if name.is_some() {
                servers.retain(|s| tenants.iter().any(|t| t.server.as_ref() == Some(&s.name)));
            }
            render::status(g.output, &catalog, &servers, &tenants);
            let healthy = (!catalog.exists || catalog.problems.is_empty())
                && servers.iter().all(|s| s.reachable)
                && tenants.iter().all(|t| t.healthy());
            Ok(if healthy { 0 } else { 1 })
        }
        Command::CheckStructure { schema, fix_sql } => {
            let name = schema.as_deref().map(SchemaName::parse).transpose()?;
            let engine = existing(g).await?;
            match name {
                None => {
                    let report = engine.check_structure().await?;
                    render::drift(g.output, &report);
                    Ok(if report.drifted.is_empty() { 0 } else { 1 })
                }
                Some(name) => {
                    let fix = engine.structure_fix(&name).await?;
                    render::tenant_fix(g.output, &fix, *fix_sql);
                    Ok(if fix.drift.is_none() { 0 } else { 1 })
                }
            }
        }
        Command::Repair {
            schema,
            mark_applied,
            accept_checksums,
            force,
        } => {
            let name = SchemaName::parse(schema)?;
            let engine = existing(g).await?;
            let report = engine
                .repair(
                    &name,
                    RepairOptions {
                        mark_applied: *mark_applied,
                        accept_checksums: *accept_checksums,
                        force: *force,
                        dry_run: g.dry_run,
                    },
                )
                .await?;
            render::repair(g.output, &report);
            Ok(if report.remaining.is_empty() { 0 } else { 1 })
        }
        Command::Serve(args) => serve::serve(g, args).await,
        Command::CreateAdmin { email, role } => serve::create_admin(g, email, role).await,
        Command::UnlockAdmin { email } => serve::unlock_admin(g, email).await,
        Command::Openapi => {
            render::say!("{}", crate::http::openapi::spec_json());
            Ok(0)
        }
        Command::Healthcheck { bind } => Ok(serve::healthcheck(bind.as_deref()).await),
        Command::Adopt(AdoptCommand::Alembic(args)) => adopt_alembic(g, args).await,
        Command::Diff(args) => {
            let config = config(g)?;
            let opts = DiffOptions {
                scope: Scope::from(args.scope),
                name: args.name.clone(),
                migrations_dir: migrations_dir(g)?,
                desired: args.desired.clone(),
                dialect: args.dialect.map(Into::into),
                allow_destructive: args.allow_destructive,
                dev_urls: args.dev_url.clone(),
                dry_run: g.dry_run,
            };
            let report = crate::engine::autogen::diff(&config, &opts).await?;
            render::diff(g.output, &report);
            if report.written && config.migrations_dir.is_none() {
                tracing::warn!(
                    folder = %opts.migrations_dir.display(),
                    "the binary runs the migrations built into it: set MIGRATIONS_DIR to this \
                     folder (or rebuild) so upgrade-all applies the new file"
                );
            }
            Ok(if report.refused.is_some() { 1 } else { 0 })
        }
        Command::Dump { schema } => {
            let name = SchemaName::parse(schema)?;
            let config = config(g)?;
            // `--server NAME` picks the server the schema is on (default: the first).
            let spec = match &g.server {
                None => config.servers.first(),
                Some(n) => config.servers.iter().find(|s| &s.name == n),
            }
            .ok_or_else(|| {
                ConfigError::new(
                    "--server",
                    format!(
                        "no server named {} (servers: {})",
                        g.server.as_deref().unwrap_or_default(),
                        config
                            .servers
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
            let dialect = crate::db::connect(
                &config.for_server(spec),
                crate::db::ConnectMode {
                    probe_catalog: false,
                    strict_tenants: true,
                },
            )
            .await?;
            let dumped = crate::engine::autogen::dump_schema(dialect.as_ref(), &name).await;
            dialect.close().await;
            let dump = dumped?;
            render::dump(g.output, &dump);
            Ok(if dump.unsupported.is_empty() { 0 } else { 1 })
        }
        Command::NewMigration { scope, name } => {
            let dir = migrations_dir(g)?;
            let created = scaffold::new_migration(&dir, Scope::from(*scope), name, g.dry_run)?;
            render::created_files(g.output, &created);
            Ok(0)
        }
    }
}

async fn adopt_alembic(g: &GlobalArgs, args: &AdoptAlembicArgs) -> Result<u8, EngineError> {
    // Everything given is checked before anything is touched.
    let map = AlembicMap::load(&args.map)?;
    let selection = if args.discover {
        Selection::Discover {
            like: args.like.clone(),
        }
    } else {
        Selection::Schemas(schema_names(&args.schemas)?)
    };
    if let Some(q) = &args.tenants_query
        && q.trim().is_empty()
    {
        return Err(ValidationError::new("--tenants-query", "must not be empty").into());
    }
    let engine = engine(g).await?;
    let opts = AdoptOptions {
        map,
        selection,
        tenants_query: args.tenants_query.clone(),
        tenants_url: args.tenants_url.clone(),
        dry_run: g.dry_run,
        concurrency: g
            .concurrency
            .unwrap_or(engine.config().pool_size as usize)
            .max(1),
        server: g.server.clone(),
    };
    let report = engine.adopt_alembic(&opts).await?;
    render::adopt(g.output, &report);
    Ok(if report.all_good() { 0 } else { 1 })
}
