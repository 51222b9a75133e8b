//! Configuration: every setting of every command, read from the environment (and `.env`,
//! see [`env`]), overridden by command-line flags, validated once into a [`Config`]. Owns URL
//! normalisation (the seed's SQLAlchemy schemes), the embedded SQLite default, the HTTP
//! service's settings ([`http`]) and password redaction for every message that shows a URL.
//!
//! A Rust program gets the CLI's exact configuration with [`Config::from_env`].

pub mod env;
pub mod http;
pub mod servers;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use crate::backend::Backend;

pub use http::{HttpConfig, LoginSettings, ServiceSettings, TokenSettings};
pub use servers::{DEFAULT_SERVER, ServerSpec, is_server_name};

/// Default tenant connection pool size, as in the seed.
pub const DEFAULT_POOL_SIZE: u32 = 3;
/// Default catalog pool size of batch commands: with the tenant pool, at most pool + 2
/// connections per server.
pub const DEFAULT_CATALOG_POOL_SIZE: u32 = 2;
/// Default time to wait for another run's lock on a schema.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(300);
/// Default lease of a fleet job (`JOB_LEASE`), and the seconds it may be set to.
pub const DEFAULT_JOB_LEASE: Duration = Duration::from_secs(10);
pub const JOB_LEASE_RANGE: std::ops::RangeInclusive<u64> = 2..=30;

/// `JOB_LEASE` validated: whole seconds in [`JOB_LEASE_RANGE`].
fn job_lease(secs: Option<u64>) -> Result<Duration, ConfigError> {
    match secs {
        None => Ok(DEFAULT_JOB_LEASE),
        Some(s) if JOB_LEASE_RANGE.contains(&s) => Ok(Duration::from_secs(s)),
        Some(s) => Err(ConfigError::new(
            "JOB_LEASE",
            format!(
                "{s} is out of range ({} to {} seconds): how long a fleet job's owner holds it \
                 without a heartbeat before another replica takes it over",
                JOB_LEASE_RANGE.start(),
                JOB_LEASE_RANGE.end()
            ),
        )),
    }
}

/// Where the embedded SQLite default keeps its files.
pub const DEFAULT_DATA_DIR: &str = "./data";

/// A configuration problem: names the variable (or flag) and never echoes a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    /// The variable (or flag); a `PLACEHOLDER_<NAME>` is only known at run time.
    pub variable: Cow<'static, str>,
    pub message: String,
}

impl ConfigError {
    pub fn new(variable: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self {
            variable: variable.into(),
            message: message.into(),
        }
    }
}

/// Raw settings as read from env and flags, before validation.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub database_url: Option<String>,
    pub tenant_url_template: Option<String>,
    /// `TENANT_SERVERS`: `name=URL template` pairs (or `@FILE`).
    pub tenant_servers: Option<String>,
    /// `DRAINING_SERVERS`: servers that get no new tenants.
    pub draining_servers: Option<String>,
    pub pool_size: Option<u32>,
    pub migrations_dir: Option<PathBuf>,
    pub secret_key: Option<String>,
    pub redis_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub lock_timeout_secs: Option<u64>,
    /// `JOB_LEASE`: seconds a fleet job's owner holds it without a heartbeat.
    pub job_lease_secs: Option<u64>,
    pub catalog_schema: Option<String>,
    pub catalog_pool_size: Option<u32>,
    /// Values of the user's placeholders in migration files, by name (`PLACEHOLDER_<NAME>`,
    /// `--placeholder name=value`).
    pub placeholders: BTreeMap<String, String>,
    /// Settings of the HTTP service (`serve`).
    pub service: ServiceSettings,
}

/// Where a database lives, normalised and validated.
#[derive(Clone, PartialEq, Eq)]
pub enum DbLocation {
    /// `mysql://user:pass@host:port/database?params`; `database` is the catalog's own.
    MySql { url: Url, database: String },
    /// `postgres://user:pass@host:port/database?params`.
    Postgres { url: Url, database: String },
    /// A SQLite file.
    Sqlite { path: PathBuf },
}

impl std::fmt::Debug for DbLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl DbLocation {
    pub fn backend(&self) -> Backend {
        match self {
            DbLocation::MySql { .. } => Backend::MySql,
            DbLocation::Postgres { .. } => Backend::Postgres,
            DbLocation::Sqlite { .. } => Backend::Sqlite,
        }
    }

    /// The location as it may appear in logs and errors: no password, no query string.
    pub fn redacted(&self) -> String {
        match self {
            DbLocation::MySql { url, .. } | DbLocation::Postgres { url, .. } => redact_url(url),
            DbLocation::Sqlite { path } => format!("sqlite://{}", path.display()),
        }
    }
}

/// Where tenant schemas live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantLocation {
    /// MySQL/MariaDB: databases on this server (the template's `{schema}` is the database).
    MySql { server: Url },
    /// PostgreSQL: schemas inside this database.
    Postgres { database_url: Url, database: String },
    /// SQLite: one file per tenant; the path contains `{schema}`.
    Sqlite { path_template: String },
}

impl TenantLocation {
    /// The location as it may be shown: no password, no query string.
    pub fn redacted(&self) -> String {
        match self {
            TenantLocation::MySql { server } => redact_url(server),
            TenantLocation::Postgres { database_url, .. } => redact_url(database_url),
            TenantLocation::Sqlite { path_template } => format!("sqlite://{path_template}"),
        }
    }
}

/// The validated configuration every command runs with.
#[derive(Clone)]
pub struct Config {
    pub catalog: DbLocation,
    /// Where the first server's tenants live (the only server's, without `TENANT_SERVERS`).
    pub tenants: TenantLocation,
    /// Every server that holds tenants, in the configured order (at least one).
    pub servers: Vec<ServerSpec>,
    /// Servers that keep their tenants and get no new ones.
    pub draining: BTreeSet<String>,
    pub pool_size: u32,
    pub migrations_dir: Option<PathBuf>,
    pub redis_url: Option<String>,
    pub lock_timeout: Duration,
    /// How long a fleet job's owner holds it without a heartbeat (`JOB_LEASE`); it beats
    /// every fifth of it, and another replica takes the job over once it has expired.
    pub job_lease: Duration,
    /// PostgreSQL: the schema that holds the catalog tables.
    pub catalog_schema: String,
    /// Connections of the catalog pool (default 2; the service raises it).
    pub catalog_pool_size: u32,
    /// The user's placeholders in migration files (`${name}` → value), validated.
    pub placeholders: BTreeMap<String, String>,
    /// Settings of the HTTP service (`SECRET_KEY` among them).
    pub http: HttpConfig,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("catalog", &self.catalog)
            .field("tenants", &self.tenants)
            .field(
                "servers",
                &self.servers.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .field("draining", &self.draining)
            .field("pool_size", &self.pool_size)
            .field("migrations_dir", &self.migrations_dir)
            .field("lock_timeout", &self.lock_timeout)
            .field("job_lease", &self.job_lease)
            .field("catalog_schema", &self.catalog_schema)
            .field("catalog_pool_size", &self.catalog_pool_size)
            .field("placeholders", &self.placeholders)
            .field("http", &self.http)
            .finish()
    }
}

impl Config {
    /// The configuration the CLI would run with: the environment and a `.env` file in the
    /// working directory (the environment wins), validated.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_settings(Settings::from_env()?)
    }

    /// Validates raw settings. With no `DATABASE_URL`, the catalog is `<data>/public.db` and
    /// tenants are `<data>/tenants/<schema>.db` (SQLite, no server needed).
    pub fn from_settings(s: Settings) -> Result<Self, ConfigError> {
        let data_dir = s
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let catalog = match s.database_url.as_deref().map(str::trim) {
            None | Some("") => {
                if data_dir.exists() && !data_dir.is_dir() {
                    return Err(ConfigError::new(
                        "DATA_DIR",
                        format!("{} is not a directory", data_dir.display()),
                    ));
                }
                DbLocation::Sqlite {
                    path: data_dir.join("public.db"),
                }
            }
            Some(raw) => parse_location(raw, "DATABASE_URL")?,
        };
        let servers = servers::servers(
            &catalog,
            s.tenant_servers.as_deref(),
            s.tenant_url_template.as_deref(),
            &data_dir,
        )?;
        let draining = servers::draining(s.draining_servers.as_deref(), &servers)?;
        let tenants = servers[0].tenants.clone();
        let pool_size = s.pool_size.unwrap_or(DEFAULT_POOL_SIZE);
        if !(1..=256).contains(&pool_size) {
            return Err(ConfigError::new(
                "TENANT_ENGINE_POOL_SIZE",
                format!("{pool_size} is out of range (1 to 256)"),
            ));
        }
        if let Some(dir) = &s.migrations_dir
            && !dir.is_dir()
        {
            return Err(ConfigError::new(
                "MIGRATIONS_DIR",
                format!("{} is not a directory", dir.display()),
            ));
        }
        if let Some(r) = s.redis_url.as_deref().filter(|r| !r.is_empty()) {
            match Url::parse(r) {
                Ok(u) if matches!(u.scheme(), "redis" | "rediss" | "unix") => {}
                _ => {
                    return Err(ConfigError::new(
                        "REDIS_URL",
                        "must be a redis:// or rediss:// URL",
                    ));
                }
            }
        }
        let catalog_pool_size = s.catalog_pool_size.unwrap_or(DEFAULT_CATALOG_POOL_SIZE);
        if !(1..=256).contains(&catalog_pool_size) {
            return Err(ConfigError::new(
                "CATALOG_POOL_SIZE",
                format!("{catalog_pool_size} is out of range (1 to 256)"),
            ));
        }
        let catalog_schema = s.catalog_schema.unwrap_or_else(|| "public".into());
        if !is_plain_identifier(&catalog_schema) {
            return Err(ConfigError::new(
                "CATALOG_SCHEMA",
                "must be a plain identifier (letters, digits, _; at most 63 characters)",
            ));
        }
        for (name, value) in &s.placeholders {
            crate::migrate::placeholders::check_user(name, value)
                .map_err(|m| ConfigError::new(placeholder_variable(name), m))?;
        }
        let http = HttpConfig::from_settings(s.service, s.secret_key.filter(|k| !k.is_empty()))?;
        Ok(Config {
            catalog,
            tenants,
            servers,
            draining,
            pool_size,
            migrations_dir: s.migrations_dir,
            redis_url: s.redis_url.filter(|r| !r.is_empty()),
            lock_timeout: s
                .lock_timeout_secs
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_LOCK_TIMEOUT),
            job_lease: job_lease(s.job_lease_secs)?,
            catalog_schema,
            catalog_pool_size,
            placeholders: s.placeholders,
            http,
        })
    }

    pub fn backend(&self) -> Backend {
        self.catalog.backend()
    }

    /// This configuration with `server`'s tenants in place of the first server's.
    pub fn for_server(&self, server: &ServerSpec) -> Config {
        Config {
            tenants: server.tenants.clone(),
            ..self.clone()
        }
    }

    /// Name of the catalog's own schema (MySQL database, PostgreSQL schema, SQLite file stem).
    pub fn catalog_name(&self) -> String {
        match &self.catalog {
            DbLocation::MySql { database, .. } => database.clone(),
            DbLocation::Postgres { .. } => self.catalog_schema.clone(),
            DbLocation::Sqlite { path } => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "public".into()),
        }
    }
}

/// The variable that sets placeholder `name`: `PLACEHOLDER_<NAME>`.
pub fn placeholder_variable(name: &str) -> String {
    format!("{}{}", env::PLACEHOLDER_PREFIX, name.to_ascii_uppercase())
}

/// Letters, digits, `_`, `$` and `-`, 1 to 63 characters: safe to quote as an identifier.
pub fn is_plain_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '-')
}

/// Maps the seed's SQLAlchemy schemes (`mysql+mysqlconnector`, `postgresql+psycopg`, …) and
/// the usual aliases onto the three backends.
fn scheme_backend(scheme: &str) -> Option<Backend> {
    let base = scheme.split('+').next().unwrap_or(scheme);
    match base {
        "mysql" | "mariadb" => Some(Backend::MySql),
        "postgres" | "postgresql" | "pgsql" => Some(Backend::Postgres),
        "sqlite" | "sqlite3" => Some(Backend::Sqlite),
        _ => None,
    }
}

/// Parses a catalog URL. `variable` names the setting in error messages.
pub fn parse_location(raw: &str, variable: &'static str) -> Result<DbLocation, ConfigError> {
    let scheme = raw.split_once("://").map(|(s, _)| s).unwrap_or_default();
    let backend = scheme_backend(&scheme.to_ascii_lowercase()).ok_or_else(|| {
        let shown = if scheme.is_empty() || scheme.len() > 40 {
            "(none)".to_owned()
        } else {
            format!("{scheme:?}")
        };
        ConfigError::new(
            variable,
            format!(
                "unknown URL scheme {shown}; expected mysql://, postgres:// or sqlite:// \
                 (SQLAlchemy forms such as mysql+mysqlconnector:// are accepted)"
            ),
        )
    })?;
    let rest = &raw[scheme.len() + 3..];
    match backend {
        Backend::Sqlite => {
            let path = rest.split('?').next().unwrap_or_default();
            if path.is_empty() || path == ":memory:" {
                return Err(ConfigError::new(
                    variable,
                    "sqlite URL needs a file path, e.g. sqlite://data/public.db",
                ));
            }
            Ok(DbLocation::Sqlite {
                path: PathBuf::from(path),
            })
        }
        Backend::MySql | Backend::Postgres => {
            let target = if backend == Backend::MySql {
                "mysql"
            } else {
                "postgres"
            };
            let url = Url::parse(&format!("{target}://{rest}"))
                .map_err(|e| ConfigError::new(variable, format!("is not a valid URL ({e})")))?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err(ConfigError::new(variable, "URL has no host"));
            }
            let database = url.path().trim_start_matches('/').to_owned();
            if database.is_empty() {
                return Err(ConfigError::new(
                    variable,
                    format!(
                        "URL names no database ({}); add one, e.g. /torri_app_public",
                        redact_url(&url)
                    ),
                ));
            }
            if !is_plain_identifier(&database) {
                return Err(ConfigError::new(
                    variable,
                    "database name must be letters, digits, _ or - (at most 63 characters)",
                ));
            }
            Ok(match backend {
                Backend::MySql => DbLocation::MySql { url, database },
                _ => DbLocation::Postgres { url, database },
            })
        }
    }
}

fn tenant_location(
    catalog: &DbLocation,
    template: Option<&str>,
    data_dir: &Path,
) -> Result<TenantLocation, ConfigError> {
    const VAR: &str = "TENANT_URL_TEMPLATE";
    let template = template.map(str::trim).filter(|t| !t.is_empty());
    if let Some(t) = template
        && !t.contains("{schema}")
    {
        return Err(ConfigError::new(
            VAR,
            "must contain {schema}, e.g. mysql://root@localhost:3306/{schema}",
        ));
    }
    match catalog {
        DbLocation::Sqlite { path } => {
            let path_template = match template {
                None => match &path.parent() {
                    // Beside the catalog: <dir>/tenants/<schema>.db
                    Some(dir) if !dir.as_os_str().is_empty() => dir
                        .join("tenants")
                        .join("{schema}.db")
                        .to_string_lossy()
                        .into_owned(),
                    _ => data_dir
                        .join("tenants")
                        .join("{schema}.db")
                        .to_string_lossy()
                        .into_owned(),
                },
                Some(t) => {
                    let probe = t.replace("{schema}", "x");
                    match parse_location(&probe, VAR)? {
                        DbLocation::Sqlite { .. } => t
                            .split_once("://")
                            .map(|(_, p)| p.split('?').next().unwrap_or_default().to_owned())
                            .unwrap_or_default(),
                        _ => return Err(mixed_backends()),
                    }
                }
            };
            Ok(TenantLocation::Sqlite { path_template })
        }
        DbLocation::MySql { url, .. } => {
            let server = match template {
                None => url.clone(),
                Some(t) => {
                    let probe = t.replace("{schema}", "tenant_probe");
                    match parse_location(&probe, VAR)? {
                        DbLocation::MySql { mut url, database } if database == "tenant_probe" => {
                            // The server only: tenants' databases are chosen per session.
                            url.set_path("/");
                            url
                        }
                        DbLocation::MySql { .. } => {
                            return Err(ConfigError::new(
                                VAR,
                                "{schema} must be the whole database name, e.g. mysql://root@localhost:3306/{schema}",
                            ));
                        }
                        _ => return Err(mixed_backends()),
                    }
                }
            };
            Ok(TenantLocation::MySql { server })
        }
        DbLocation::Postgres { url, database } => match template {
            None => Ok(TenantLocation::Postgres {
                database_url: url.clone(),
                database: database.clone(),
            }),
            Some(t) => {
                // Tenants are schemas; the template's path names the database that holds them.
                let probe = t.replace("{schema}", "tenant_probe");
                match parse_location(&probe, VAR)? {
                    DbLocation::Postgres { mut url, database } => {
                        if database == "tenant_probe"
                            || url.host_str().is_some_and(|h| h.contains("tenant_probe"))
                        {
                            return Err(ConfigError::new(
                                VAR,
                                "on PostgreSQL tenants are schemas inside one database: \
                                 {schema} goes in a query parameter such as \
                                 ?search_path={schema}, or leave the template unset",
                            ));
                        }
                        let kept: Vec<(String, String)> = url
                            .query_pairs()
                            .filter(|(_, v)| !v.contains("tenant_probe"))
                            .map(|(k, v)| (k.into_owned(), v.into_owned()))
                            .collect();
                        url.set_query(None);
                        if !kept.is_empty() {
                            url.query_pairs_mut().extend_pairs(kept);
                        }
                        Ok(TenantLocation::Postgres {
                            database_url: url,
                            database,
                        })
                    }
                    _ => Err(mixed_backends()),
                }
            }
        },
    }
}

fn mixed_backends() -> ConfigError {
    ConfigError::new(
        "TENANT_URL_TEMPLATE",
        "must use the same kind of database as DATABASE_URL",
    )
}

/// `scheme://user:***@host:port/path` — what a URL may look like in any log or message.
pub fn redact_url(url: &Url) -> String {
    let mut shown = format!("{}://", url.scheme());
    if !url.username().is_empty() {
        shown.push_str(url.username());
        if url.password().is_some() {
            shown.push_str(":***");
        }
        shown.push('@');
    }
    shown.push_str(url.host_str().unwrap_or_default());
    if let Some(p) = url.port() {
        shown.push_str(&format!(":{p}"));
    }
    shown.push_str(url.path());
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: Option<&str>, template: Option<&str>) -> Settings {
        Settings {
            database_url: url.map(Into::into),
            tenant_url_template: template.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn seed_sqlalchemy_url_is_accepted() {
        let c = Config::from_settings(settings(
            Some("mysql+mysqlconnector://root:@localhost:3306/torri_app_public"),
            Some("mysql+mysqlconnector://root:@localhost:3306/{schema}"),
        ))
        .unwrap();
        assert_eq!(c.backend(), Backend::MySql);
        assert_eq!(c.catalog_name(), "torri_app_public");
        let c = Config::from_settings(settings(Some("postgresql+psycopg://u:p@db:5432/app"), None))
            .unwrap();
        assert_eq!(c.backend(), Backend::Postgres);
    }

    #[test]
    fn default_is_sqlite_under_data() {
        let c = Config::from_settings(Settings::default()).unwrap();
        assert_eq!(c.backend(), Backend::Sqlite);
        match c.tenants {
            TenantLocation::Sqlite { path_template } => {
                assert!(
                    path_template.ends_with("tenants/{schema}.db"),
                    "{path_template}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_config_names_the_variable_and_hides_the_password() {
        let e = Config::from_settings(settings(Some("oracle://u:hunter2@h/db"), None)).unwrap_err();
        assert_eq!(e.variable, "DATABASE_URL");
        assert!(!e.to_string().contains("hunter2"));
        let e = Config::from_settings(settings(
            Some("mysql://u:hunter2@h:3306/db"),
            Some("mysql://u:hunter2@h:3306/fixed"),
        ))
        .unwrap_err();
        assert_eq!(e.variable, "TENANT_URL_TEMPLATE");
        assert!(!e.to_string().contains("hunter2"));
        let e =
            Config::from_settings(settings(Some("mysql://u:hunter2@h:3306/"), None)).unwrap_err();
        assert!(
            e.message.contains("no database") && !e.message.contains("hunter2"),
            "{e}"
        );
    }

    #[test]
    fn redaction_keeps_host_and_drops_password() {
        let u = Url::parse("mysql://root:s3cret@db.internal:3306/x?ssl-mode=REQUIRED").unwrap();
        assert_eq!(redact_url(&u), "mysql://root:***@db.internal:3306/x");
    }
}
