//! clap definitions of every command and global flag. Settings that are secrets
//! (`SECRET_KEY`) are read from the environment only, never from flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{ConfigError, Settings};
use crate::migrate::Scope;

#[derive(Debug, Parser)]
#[command(
    name = "tenant-migrator",
    version,
    about = "Owns the database schemas of a schema-per-tenant SaaS: provisions tenants and migrates the whole fleet.",
    after_help = "Environment: DATABASE_URL (alias PUBLIC_DATABASE_URL), TENANT_URL_TEMPLATE, \
TENANT_ENGINE_POOL_SIZE, MIGRATIONS_DIR, DATA_DIR, LOCK_TIMEOUT, CATALOG_SCHEMA, CATALOG_POOL_SIZE, SECRET_KEY, \
REDIS_URL, LOG_FORMAT, RUST_LOG. A .env file in the working directory is read too; flags win."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Output of a command on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    Public,
    Tenant,
}

impl From<ScopeArg> for Scope {
    fn from(s: ScopeArg) -> Self {
        match s {
            ScopeArg::Public => Scope::Public,
            ScopeArg::Tenant => Scope::Tenant,
        }
    }
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Log every SQL statement with its timing.
    #[arg(long, short, global = true)]
    pub verbose: bool,
    /// `json` prints one JSON document for scripts.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub output: OutputFormat,
    /// Show what would run; write nothing (no schema, no history row, no catalog row).
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Attempt every tenant even after one fails.
    #[arg(long, global = true)]
    pub continue_on_error: bool,
    /// Tenants worked on at once (default: TENANT_ENGINE_POOL_SIZE).
    #[arg(long, global = true, value_parser = clap::value_parser!(usize))]
    pub concurrency: Option<usize>,
    /// Migrate up to this version (inclusive) instead of the newest.
    #[arg(long, global = true)]
    pub target: Option<i64>,
    /// Catalog database URL [env: DATABASE_URL or PUBLIC_DATABASE_URL].
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// Tenant URL with `{schema}` [env: TENANT_URL_TEMPLATE].
    #[arg(long, global = true)]
    pub tenant_url_template: Option<String>,
    /// Tenant connection pool size, default 3 [env: TENANT_ENGINE_POOL_SIZE].
    #[arg(long, global = true)]
    pub pool_size: Option<String>,
    /// Folder replacing the embedded migrations [env: MIGRATIONS_DIR].
    #[arg(long, global = true)]
    pub migrations_dir: Option<PathBuf>,
    /// Folder of the SQLite default, default ./data [env: DATA_DIR].
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Seconds to wait for another run's lock on a schema, default 300 [env: LOCK_TIMEOUT].
    #[arg(long, global = true)]
    pub lock_timeout: Option<String>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn number<T: std::str::FromStr>(
    flag: Option<&String>,
    var: &'static str,
) -> Result<Option<T>, ConfigError> {
    let raw = flag.cloned().or_else(|| env(var));
    match raw {
        None => Ok(None),
        Some(r) => r
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ConfigError::new(var, format!("{r:?} is not a whole number"))),
    }
}

impl GlobalArgs {
    /// Flags over environment.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        Ok(Settings {
            database_url: self
                .database_url
                .clone()
                .or_else(|| env("DATABASE_URL"))
                .or_else(|| env("PUBLIC_DATABASE_URL")),
            tenant_url_template: self
                .tenant_url_template
                .clone()
                .or_else(|| env("TENANT_URL_TEMPLATE")),
            pool_size: number(self.pool_size.as_ref(), "TENANT_ENGINE_POOL_SIZE")?,
            migrations_dir: self
                .migrations_dir
                .clone()
                .or_else(|| env("MIGRATIONS_DIR").map(PathBuf::from)),
            secret_key: env("SECRET_KEY"),
            redis_url: env("REDIS_URL"),
            data_dir: self
                .data_dir
                .clone()
                .or_else(|| env("DATA_DIR").map(PathBuf::from)),
            lock_timeout_secs: number(self.lock_timeout.as_ref(), "LOCK_TIMEOUT")?,
            catalog_schema: env("CATALOG_SCHEMA"),
            catalog_pool_size: number(None, "CATALOG_POOL_SIZE")?,
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Provision tenants: catalog row, schema, migrations (resumes failed ones).
    Create {
        /// One or many schema names (a-z, 0-9, _; starting with a letter; ≤ 63).
        #[arg(required = true)]
        schemas: Vec<String>,
        /// Display name stored in the catalog (default: the schema name).
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Bring every tenant to the newest (or --target) version.
    UpgradeAll,
    /// Bring one tenant to the newest (or --target) version.
    Upgrade { schema: String },
    /// Migrate the catalog (public) schema.
    UpgradePublic,
    /// List tenants from the catalog.
    ListTenants {
        /// Only tenants in this status (provisioning, active, failed, archived).
        #[arg(long)]
        status: Option<String>,
    },
    /// Version, pending migrations, dirty state and checksum problems per schema.
    Status { schema: Option<String> },
    /// Compare every up-to-date tenant's tables with a freshly migrated reference.
    CheckStructure,
    /// After a human fixed a dirty schema: forget (or mark applied) its failed migration.
    Repair {
        schema: String,
        /// Record the failed migration as applied (it was completed by hand).
        #[arg(long)]
        mark_applied: bool,
        /// Accept edited files' checksums for applied migrations.
        #[arg(long)]
        accept_checksums: bool,
    },
    /// Run the HTTP control plane (REST API, /docs, /metrics).
    Serve(ServeArgs),
    /// Create an admin master user; the password is read from stdin (at least 12 characters).
    CreateAdmin {
        email: String,
        /// admin, operator or viewer.
        #[arg(long, default_value = "admin")]
        role: String,
    },
    /// Print the OpenAPI document of the HTTP API.
    Openapi,
    /// Exit 0 when the service on BIND_ADDR answers /healthz (for container health checks).
    Healthcheck {
        /// Address of the service [env: BIND_ADDR, default 127.0.0.1:8080].
        #[arg(long)]
        bind: Option<String>,
    },
    /// Create the next-numbered empty migration file in every dialect folder.
    NewMigration {
        #[arg(long, value_enum)]
        scope: ScopeArg,
        /// snake_case name, e.g. add_loyalty_points
        name: String,
    },
}

/// Settings of `serve` (flags over environment).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [env: BIND_ADDR, default 127.0.0.1:8080].
    #[arg(long)]
    pub bind: Option<String>,
}

impl Command {
    /// Commands that run over many tenants (and show a progress bar on a terminal).
    pub fn is_fleet(&self) -> bool {
        matches!(self, Command::Create { .. } | Command::UpgradeAll)
    }
}
