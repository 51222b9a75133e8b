//! Reading settings from the process environment and a `.env` file: the one place that knows
//! every variable's name. Values are only parsed here (a number that is not one is an error
//! naming its variable); [`super::Config::from_settings`] validates them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

use super::{ConfigError, ServiceSettings, Settings};

/// Prefix of the variables that set placeholders of migration files (`PLACEHOLDER_APP_PUBLIC`
/// sets `${app_public}`).
pub const PLACEHOLDER_PREFIX: &str = "PLACEHOLDER_";

/// Every `PLACEHOLDER_<NAME>` variable as `name → value`, NAME lower-cased. Values are kept as
/// they are (an empty one too): [`super::Config::from_settings`] validates them.
pub fn placeholders() -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (key, value) in std::env::vars_os() {
        let key = match key.into_string() {
            Ok(k) => k,
            Err(raw) if raw.to_string_lossy().starts_with(PLACEHOLDER_PREFIX) => {
                return Err(ConfigError::new(
                    raw.to_string_lossy().into_owned(),
                    "the variable's name is not UTF-8",
                ));
            }
            Err(_) => continue,
        };
        let Some(suffix) = key.strip_prefix(PLACEHOLDER_PREFIX) else {
            continue;
        };
        let name = suffix.to_ascii_lowercase();
        if !crate::migrate::placeholders::is_name(&name) {
            return Err(ConfigError::new(
                key.clone(),
                "is not a placeholder variable: PLACEHOLDER_ is followed by a name of letters, \
                 digits and _ (not starting with a digit, at most 63), e.g. PLACEHOLDER_APP_PUBLIC",
            ));
        }
        let Ok(value) = value.into_string() else {
            return Err(ConfigError::new(key, "the value is not UTF-8"));
        };
        if let Some((other, _)) = out.get(&name) {
            return Err(ConfigError::new(
                key.clone(),
                format!("{other} sets the same placeholder ${{{name}}}; keep one of them"),
            ));
        }
        out.insert(name, (key, value));
    }
    Ok(out.into_iter().map(|(n, (_, v))| (n, v)).collect())
}

/// A variable's value, `None` when unset or blank.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Parses `raw` (from `variable` or its flag) as a whole number.
pub fn parse_number<T: FromStr>(raw: &str, variable: &'static str) -> Result<T, ConfigError> {
    raw.trim().parse().map_err(|_| {
        let shown: String = raw.chars().take(40).collect();
        ConfigError::new(variable, format!("{shown:?} is not a whole number"))
    })
}

/// `variable` parsed as a whole number, `None` when unset.
pub fn number<T: FromStr>(variable: &'static str) -> Result<Option<T>, ConfigError> {
    var(variable)
        .map(|raw| parse_number(&raw, variable))
        .transpose()
}

impl Settings {
    /// Every setting from the environment, after loading `.env` from the working directory
    /// (variables already set win over the file).
    pub fn from_env() -> Result<Settings, ConfigError> {
        let _ = dotenvy::dotenv();
        Ok(Settings {
            database_url: var("DATABASE_URL").or_else(|| var("PUBLIC_DATABASE_URL")),
            tenant_url_template: var("TENANT_URL_TEMPLATE"),
            tenant_servers: var("TENANT_SERVERS"),
            draining_servers: var("DRAINING_SERVERS"),
            pool_size: number("TENANT_ENGINE_POOL_SIZE")?,
            migrations_dir: var("MIGRATIONS_DIR").map(PathBuf::from),
            secret_key: var("SECRET_KEY"),
            redis_url: var("REDIS_URL"),
            data_dir: var("DATA_DIR").map(PathBuf::from),
            lock_timeout_secs: number("LOCK_TIMEOUT")?,
            job_lease_secs: number("JOB_LEASE")?,
            catalog_schema: var("CATALOG_SCHEMA"),
            catalog_pool_size: number("CATALOG_POOL_SIZE")?,
            placeholders: placeholders()?,
            service: ServiceSettings {
                bind: var("BIND_ADDR"),
                cors_origins: var("CORS_ORIGINS"),
                request_timeout_secs: number("REQUEST_TIMEOUT")?,
                header_read_timeout_secs: number("HEADER_READ_TIMEOUT")?,
                shutdown_timeout_secs: number("SHUTDOWN_TIMEOUT")?,
                max_connections: number("MAX_CONNECTIONS")?,
                jwt_ttl_secs: number("JWT_TTL")?,
                jwt_issuer: var("JWT_ISSUER"),
                jwt_audience: var("JWT_AUDIENCE"),
                metrics_token: var("METRICS_TOKEN"),
                login_concurrency: number("LOGIN_CONCURRENCY")?,
                login_rate_per_minute: number("LOGIN_RATE_PER_MINUTE")?,
                trusted_proxies: var("TRUSTED_PROXIES"),
            },
        })
    }
}
