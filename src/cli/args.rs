//! clap definitions of every command and global flag. Settings that are secrets
//! (`SECRET_KEY`) are read from the environment only, never from flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::env::parse_number;
use crate::config::{ConfigError, Settings};
use crate::migrate::Scope;

#[derive(Debug, Parser)]
#[command(
    name = "tenant-migrator",
    version,
    about = "Owns the database schemas of a schema-per-tenant SaaS: provisions tenants and migrates the whole fleet.",
    after_help = "Environment: DATABASE_URL (alias PUBLIC_DATABASE_URL), TENANT_URL_TEMPLATE, \
TENANT_SERVERS, DRAINING_SERVERS, TENANT_ENGINE_POOL_SIZE, MIGRATIONS_DIR, DATA_DIR, LOCK_TIMEOUT, CATALOG_SCHEMA, CATALOG_POOL_SIZE, SECRET_KEY, \
REDIS_URL, LOG_FORMAT, RUST_LOG; for serve: BIND_ADDR, CORS_ORIGINS, REQUEST_TIMEOUT, HEADER_READ_TIMEOUT, \
SHUTDOWN_TIMEOUT, MAX_CONNECTIONS, JWT_TTL, JWT_ISSUER, JWT_AUDIENCE, METRICS_TOKEN, LOGIN_CONCURRENCY, \
LOGIN_RATE_PER_MINUTE, TRUSTED_PROXIES. PLACEHOLDER_<NAME>=value sets ${name} in migration files. \
A .env file in the working directory is read too; flags win."
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
    /// `create`: put new tenants on this server (default: the active one with the fewest);
    /// `upgrade-all`: only this server's tenants; `adopt`: the server the schemas are on.
    #[arg(long, global = true, value_name = "NAME")]
    pub server: Option<String>,
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
    /// Value of `${name}` in migration files, as name=value; repeatable
    /// [env: PLACEHOLDER_<NAME>].
    #[arg(long = "placeholder", global = true, value_name = "NAME=VALUE")]
    pub placeholders: Vec<String>,
}

impl GlobalArgs {
    /// The environment (and `.env`) with these flags over it.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let mut s = Settings::from_env()?;
        if let Some(u) = &self.database_url {
            s.database_url = Some(u.clone());
        }
        if let Some(t) = &self.tenant_url_template {
            s.tenant_url_template = Some(t.clone());
        }
        if let Some(p) = &self.pool_size {
            s.pool_size = Some(parse_number(p, "TENANT_ENGINE_POOL_SIZE")?);
        }
        if let Some(d) = &self.migrations_dir {
            s.migrations_dir = Some(d.clone());
        }
        if let Some(d) = &self.data_dir {
            s.data_dir = Some(d.clone());
        }
        if let Some(t) = &self.lock_timeout {
            s.lock_timeout_secs = Some(parse_number(t, "LOCK_TIMEOUT")?);
        }
        for p in &self.placeholders {
            let (name, value) = p.split_once('=').ok_or_else(|| {
                let shown: String = p.chars().take(64).collect();
                ConfigError::new(
                    "--placeholder",
                    format!(
                        "{shown:?} must be name=value, e.g. --placeholder app_public=torri_app"
                    ),
                )
            })?;
            if !crate::migrate::placeholders::is_name(name) {
                let shown: String = name.chars().take(64).collect();
                return Err(ConfigError::new(
                    "--placeholder",
                    format!(
                        "{shown:?} is not a placeholder name (a-z, 0-9 and _, not starting \
                         with a digit, at most 63)"
                    ),
                ));
            }
            s.placeholders.insert(name.to_owned(), value.to_owned());
        }
        Ok(s)
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
    UpgradeAll(UpgradeAllArgs),
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
    /// Compare every up-to-date tenant's tables with a freshly migrated reference; with a
    /// schema, that tenant against the reference at its own version.
    CheckStructure {
        /// Only this tenant.
        schema: Option<String>,
        /// Print the statements that would bring the tenant back to its version's structure
        /// (printed, never run). Needs a schema.
        #[arg(long, requires = "schema")]
        fix_sql: bool,
    },
    /// After a human fixed a dirty schema: forget (or mark applied) its failed migration.
    Repair {
        schema: String,
        /// Record the failed migration as applied (it was completed by hand).
        #[arg(long)]
        mark_applied: bool,
        /// Accept edited files' checksums for applied migrations.
        #[arg(long)]
        accept_checksums: bool,
        /// Forget the failed migration even though the live schema shows (or cannot rule out)
        /// its effects: you undid them by hand.
        #[arg(long)]
        force: bool,
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
    /// Clear an admin user's failed logins and login back-off.
    UnlockAdmin { email: String },
    /// Print the OpenAPI document of the HTTP API.
    Openapi,
    /// Exit 0 when the service on BIND_ADDR answers /healthz (for container health checks).
    Healthcheck {
        /// Address of the service [env: BIND_ADDR, default 127.0.0.1:8080].
        #[arg(long)]
        bind: Option<String>,
    },
    /// Take over tenants another migration tool manages, without touching their data.
    #[command(subcommand)]
    Adopt(AdoptCommand),
    /// Write the next migration from a desired schema file (`schema/<scope>/<dialect>.sql`):
    /// builds scratch schemas from the migrations and from the file, writes the statements
    /// between them, and proves the result before writing. Exit 0 written or nothing to do,
    /// 1 refused (destructive, unsupported, proof failed), 2 usage or configuration errors.
    Diff(DiffArgs),
    /// Print a live schema's structure as the DDL that creates it (a baseline migration).
    Dump { schema: String },
    /// Create the next-numbered empty migration file in every dialect folder.
    NewMigration {
        #[arg(long, value_enum)]
        scope: ScopeArg,
        /// snake_case name, e.g. add_loyalty_points
        name: String,
    },
}

/// `diff`'s arguments.
#[derive(Debug, Args)]
pub struct DiffArgs {
    #[arg(long, value_enum)]
    pub scope: ScopeArg,
    /// snake_case name of the new migration, e.g. add_loyalty_points
    #[arg(long)]
    pub name: String,
    /// The desired schema file (one dialect: --dialect, else the configured database's).
    #[arg(long, value_name = "PATH")]
    pub desired: Option<PathBuf>,
    /// Only this dialect (mysql, postgres, sqlite).
    #[arg(long, value_enum)]
    pub dialect: Option<DialectArg>,
    /// Write drops of tables, columns and indexes and narrowing type changes too.
    #[arg(long)]
    pub allow_destructive: bool,
    /// A server for another dialect's scratch schemas (mysql://… or postgres://…); SQLite
    /// needs none. Repeat for each.
    #[arg(long, value_name = "URL")]
    pub dev_url: Vec<String>,
}

/// A dialect named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DialectArg {
    Mysql,
    Postgres,
    Sqlite,
}

impl From<DialectArg> for crate::db::Backend {
    fn from(d: DialectArg) -> Self {
        match d {
            DialectArg::Mysql => crate::db::Backend::MySql,
            DialectArg::Postgres => crate::db::Backend::Postgres,
            DialectArg::Sqlite => crate::db::Backend::Sqlite,
        }
    }
}

/// Canary waves and the failure budget of `upgrade-all`.
#[derive(Debug, Args)]
pub struct UpgradeAllArgs {
    /// Run the first N tenants with work (by schema name) as a canary wave; the others start
    /// only if none of them failed.
    #[arg(long, value_name = "N", conflicts_with = "canary_tenants",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub canary: Option<u64>,
    /// Run these tenants as the canary wave (comma-separated or repeated; each must be in the
    /// catalog).
    #[arg(long, value_name = "SCHEMA", value_delimiter = ',')]
    pub canary_tenants: Vec<String>,
    /// Start no tenant once K tenants failed (tenants in flight finish); continues after
    /// failures until then, with or without --continue-on-error.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_failures: Option<u64>,
    /// Run as a recorded fleet job, like `POST /migrations/upgrade-all`: one at a time, shown
    /// in `GET /migrations/jobs`, leased (JOB_LEASE) so a serving replica takes it over if this
    /// process dies. Ctrl-C stops at a tenant boundary and leaves it `interrupted` (resume it
    /// with `POST /migrations/jobs/{id}/resume`); exit 130 then.
    #[arg(long)]
    pub job: bool,
}

/// `adopt …`: one subcommand per tool taken over.
#[derive(Debug, Subcommand)]
pub enum AdoptCommand {
    /// Adopt Alembic-managed tenants: verify each one's structure against the migrations up to
    /// the version its revision maps to, record those as baselined, register it as active.
    /// Exit 0 all adopted, 1 some refused, 2 usage or configuration errors.
    Alembic(AdoptAlembicArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["schemas", "discover"])))]
pub struct AdoptAlembicArgs {
    /// TOML map from Alembic revision ids to versions: `[tenant]` ("rev" = N) and an optional
    /// `[public]` for a catalog that was Alembic-managed.
    #[arg(long, value_name = "FILE")]
    pub map: PathBuf,
    /// The schemas (databases on MySQL) to adopt.
    #[arg(long, num_args = 1.., value_name = "SCHEMA")]
    pub schemas: Vec<String>,
    /// Adopt every schema on the tenant server holding an `alembic_version` table, except the
    /// catalog's and the --tenants-url database's.
    #[arg(long)]
    pub discover: bool,
    /// With --discover: only names matching this SQL LIKE pattern, e.g. 'tenant\_%'.
    #[arg(long, requires = "discover", value_name = "PATTERN")]
    pub like: Option<String>,
    /// Query returning (schema name, display name) rows, e.g.
    /// "SELECT schema_name, name FROM torri_app_public.tenants"; run read-only.
    #[arg(long, value_name = "SQL")]
    pub tenants_query: Option<String>,
    /// Database URL --tenants-query runs on (default: the catalog's URL).
    #[arg(long, value_name = "URL")]
    pub tenants_url: Option<String>,
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
        matches!(self, Command::Create { .. } | Command::UpgradeAll(_))
    }
}
