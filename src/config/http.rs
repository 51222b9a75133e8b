//! Settings of the HTTP service (`serve`): listening address, timeouts, connection limit,
//! CORS, token issuing, login throttling and the optional metrics token. Raw values arrive in
//! [`ServiceSettings`]; [`HttpConfig::from_settings`] validates them once, naming the variable
//! of any bad value.

use std::net::SocketAddr;
use std::time::Duration;

use super::ConfigError;

/// Default listening address.
pub const DEFAULT_BIND: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);
/// Longest accepted token lifetime (24 hours).
pub const MAX_JWT_TTL_SECS: u64 = 24 * 3600;
/// Shortest accepted `SECRET_KEY`, in bytes.
pub const MIN_SECRET_LEN: usize = 32;
/// Least estimated entropy of `SECRET_KEY`, in bits (32 random hex digits carry 128).
pub const MIN_SECRET_BITS: f64 = 96.0;

/// Raw service settings, as read from the environment or set by a program.
#[derive(Debug, Clone, Default)]
pub struct ServiceSettings {
    pub bind: Option<String>,
    pub cors_origins: Option<String>,
    pub request_timeout_secs: Option<u64>,
    pub header_read_timeout_secs: Option<u64>,
    pub shutdown_timeout_secs: Option<u64>,
    pub max_connections: Option<u64>,
    pub jwt_ttl_secs: Option<u64>,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    pub metrics_token: Option<String>,
    pub login_concurrency: Option<u64>,
    pub login_rate_per_minute: Option<u64>,
    pub trusted_proxies: Option<String>,
}

/// Token issuing settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    /// Lifetime of an access token, 60 s to [`MAX_JWT_TTL_SECS`].
    pub ttl_secs: u64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            issuer: "tenant-migrator".into(),
            audience: "tenant-migrator-admin".into(),
            ttl_secs: 3600,
        }
    }
}

/// Bounds on `POST /auth/login`, whose password check costs 19 MiB and tens of milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSettings {
    /// Password checks running at once; more wait briefly, then get 503 with `Retry-After`.
    pub max_concurrent_hashes: usize,
    /// Login attempts per minute from one client address (bursts of up to a fifth of it, at
    /// least 5); beyond it 429 with `Retry-After`. 0 turns the per-client limit off.
    pub rate_per_minute: u32,
}

impl Default for LoginSettings {
    fn default() -> Self {
        Self {
            max_concurrent_hashes: default_hash_concurrency(),
            rate_per_minute: 30,
        }
    }
}

/// One less than the core count (at least one): more parallel argon2 checks only add memory,
/// and one core stays free to answer everything else (probes, the API) during a flood.
fn default_hash_concurrency() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .saturating_sub(1)
        .clamp(1, 16)
}

/// The validated settings of the HTTP service.
#[derive(Clone)]
pub struct HttpConfig {
    pub bind: SocketAddr,
    /// Origins allowed by CORS: empty = CORS off; `["*"]` = any origin (never credentials).
    pub cors_origins: Vec<String>,
    /// Time for a whole request before 408.
    pub request_timeout: Duration,
    /// Time for a client to send a request's headers before the connection is closed.
    pub header_read_timeout: Duration,
    /// Time that shutdown waits for connections in flight before closing them.
    pub shutdown_timeout: Duration,
    /// Open connections at most; further clients wait in the listen backlog.
    pub max_connections: usize,
    pub token: TokenSettings,
    /// `SECRET_KEY`; `None` is allowed only with the embedded SQLite default.
    pub secret_key: Option<String>,
    /// When set, `/metrics` needs `Authorization: Bearer <METRICS_TOKEN>`.
    pub metrics_token: Option<String>,
    pub login: LoginSettings,
    /// Peers whose `X-Forwarded-For` names the client (a load balancer, an ingress); from
    /// any other peer the header is ignored.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("bind", &self.bind)
            .field("cors_origins", &self.cors_origins)
            .field("request_timeout", &self.request_timeout)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("max_connections", &self.max_connections)
            .field("token", &self.token)
            .field("secret_key", &self.secret_key.as_ref().map(|_| "***"))
            .field("metrics_token", &self.metrics_token.as_ref().map(|_| "***"))
            .field("login", &self.login)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish()
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            bind: DEFAULT_BIND,
            cors_origins: Vec::new(),
            request_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(30),
            max_connections: 1024,
            token: TokenSettings::default(),
            secret_key: None,
            metrics_token: None,
            login: LoginSettings::default(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// `value` of `var` when it lies in `range`, else `default` when unset.
fn bounded(
    value: Option<u64>,
    var: &'static str,
    range: std::ops::RangeInclusive<u64>,
    default: u64,
) -> Result<u64, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) if range.contains(&v) => Ok(v),
        Some(v) => Err(ConfigError::new(
            var,
            format!("{v} is out of range ({} to {})", range.start(), range.end()),
        )),
    }
}

fn seconds(
    value: Option<u64>,
    var: &'static str,
    range: std::ops::RangeInclusive<u64>,
    default: u64,
) -> Result<Duration, ConfigError> {
    bounded(value, var, range, default).map(Duration::from_secs)
}

impl HttpConfig {
    /// Validates raw service settings; `secret_key` is the already-read `SECRET_KEY`.
    pub fn from_settings(
        s: ServiceSettings,
        secret_key: Option<String>,
    ) -> Result<Self, ConfigError> {
        let d = HttpConfig::default();
        let bind = parse_bind(s.bind.as_deref())?;
        if let Some(k) = &secret_key {
            check_secret_key(k)?;
        }
        let token = TokenSettings {
            issuer: s.jwt_issuer.unwrap_or(d.token.issuer),
            audience: s.jwt_audience.unwrap_or(d.token.audience),
            ttl_secs: bounded(s.jwt_ttl_secs, "JWT_TTL", 60..=MAX_JWT_TTL_SECS, 3600)?,
        };
        let metrics_token = s.metrics_token.filter(|t| !t.is_empty());
        if metrics_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError::new(
                "METRICS_TOKEN",
                "must be at least 16 characters",
            ));
        }
        Ok(Self {
            bind,
            cors_origins: cors_origins(s.cors_origins.as_deref())?,
            request_timeout: seconds(s.request_timeout_secs, "REQUEST_TIMEOUT", 1..=3600, 60)?,
            header_read_timeout: seconds(
                s.header_read_timeout_secs,
                "HEADER_READ_TIMEOUT",
                1..=300,
                10,
            )?,
            shutdown_timeout: seconds(s.shutdown_timeout_secs, "SHUTDOWN_TIMEOUT", 1..=3600, 30)?,
            max_connections: bounded(s.max_connections, "MAX_CONNECTIONS", 1..=65_536, 1024)?
                as usize,
            token,
            secret_key,
            metrics_token,
            login: LoginSettings {
                max_concurrent_hashes: bounded(
                    s.login_concurrency,
                    "LOGIN_CONCURRENCY",
                    1..=256,
                    d.login.max_concurrent_hashes as u64,
                )? as usize,
                rate_per_minute: bounded(
                    s.login_rate_per_minute,
                    "LOGIN_RATE_PER_MINUTE",
                    0..=100_000,
                    u64::from(d.login.rate_per_minute),
                )? as u32,
            },
            trusted_proxies: trusted_proxies(s.trusted_proxies.as_deref())?,
        })
    }
}

/// `BIND_ADDR` (or `--bind`): an address such as `0.0.0.0:8080`, [`DEFAULT_BIND`] when unset.
pub fn parse_bind(raw: Option<&str>) -> Result<SocketAddr, ConfigError> {
    match raw.map(str::trim).filter(|b| !b.is_empty()) {
        None => Ok(DEFAULT_BIND),
        Some(r) => r.parse().map_err(|_| {
            let shown: String = r.chars().take(80).collect();
            ConfigError::new(
                "BIND_ADDR",
                format!("{shown:?} is not an address like 0.0.0.0:8080"),
            )
        }),
    }
}

/// `TRUSTED_PROXIES`: comma-separated addresses or networks (`10.0.0.0/8`, `127.0.0.1`).
fn trusted_proxies(raw: Option<&str>) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    raw.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<ipnet::IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    let shown: String = p.chars().take(60).collect();
                    ConfigError::new(
                        "TRUSTED_PROXIES",
                        format!("{shown:?} is not an address or network such as 10.0.0.0/8"),
                    )
                })
        })
        .collect()
}

/// `CORS_ORIGINS`: unset = off; `*` = any origin (without credentials); otherwise a list of
/// origins such as `https://admin.example.com`.
fn cors_origins(raw: Option<&str>) -> Result<Vec<String>, ConfigError> {
    const VAR: &str = "CORS_ORIGINS";
    let origins: Vec<String> = raw
        .unwrap_or_default()
        .split(',')
        .map(|o| o.trim().trim_end_matches('/').to_owned())
        .filter(|o| !o.is_empty())
        .collect();
    if origins.iter().any(|o| o == "*") {
        if origins.len() > 1 {
            return Err(ConfigError::new(
                VAR,
                "`*` allows every origin and cannot be combined with a list",
            ));
        }
        return Ok(origins);
    }
    for o in &origins {
        let ok = url::Url::parse(o).ok().is_some_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.path() == "/"
                && u.query().is_none()
                && u.username().is_empty()
        }) && axum::http::HeaderValue::from_str(o).is_ok();
        if !ok {
            let shown: String = o.chars().take(80).collect();
            return Err(ConfigError::new(
                VAR,
                format!(
                    "{shown:?} is not an origin like https://admin.example.com (scheme, host and \
                     optional port only), nor `*`"
                ),
            ));
        }
    }
    Ok(origins)
}

/// Refuses a `SECRET_KEY` that is short or guessable: fewer than [`MIN_SECRET_LEN`] bytes,
/// a repetition of a shorter string, or less than [`MIN_SECRET_BITS`] of estimated entropy.
pub fn check_secret_key(key: &str) -> Result<(), ConfigError> {
    const VAR: &str = "SECRET_KEY";
    const HOW: &str = "generate one with `openssl rand -hex 32`";
    let bytes = key.as_bytes();
    if bytes.len() < MIN_SECRET_LEN {
        return Err(ConfigError::new(
            VAR,
            format!("must be at least {MIN_SECRET_LEN} bytes; {HOW}"),
        ));
    }
    let repeats = (1..=bytes.len() / 2)
        .any(|p| bytes.len().is_multiple_of(p) && bytes.chunks(p).all(|c| c == &bytes[..p]));
    if repeats || estimated_bits(bytes) < MIN_SECRET_BITS {
        return Err(ConfigError::new(
            VAR,
            format!("is too predictable (repeated or too few distinct characters); {HOW}"),
        ));
    }
    Ok(())
}

/// Shannon entropy of the byte distribution times the length: an upper bound on what the key
/// carries, low for keys such as `aaaa…` or `abab…`.
fn estimated_bits(bytes: &[u8]) -> f64 {
    let mut counts = [0usize; 256];
    for b in bytes {
        counts[*b as usize] += 1;
    }
    let n = bytes.len() as f64;
    let per_byte: f64 = counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = *c as f64 / n;
            -p * p.log2()
        })
        .sum();
    per_byte * n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_secret_keys_are_refused() {
        for weak in [
            "a".repeat(32),
            "ab".repeat(20),
            "0123456789".repeat(4),
            "short-but-random-Zq81".to_owned(),
        ] {
            let e = check_secret_key(&weak).unwrap_err();
            assert_eq!(e.variable, "SECRET_KEY");
            assert!(!e.to_string().contains(&weak), "the key is echoed: {e}");
        }
        for strong in [
            "5f1c3b0e8a9d47c2b6e1f0a3d8c7b9e4a2f6d1c0b3e8a7f9d2c4b6e1a0f3d5c7",
            "test-secret-key-with-at-least-32-bytes!!",
            "Qm8vT2p4Yk1sZ0hJd3N6Uk5hY1BkZXVmV3E=",
        ] {
            check_secret_key(strong).unwrap_or_else(|e| panic!("{strong}: {e}"));
        }
    }

    #[test]
    fn ttl_is_capped_and_cors_star_is_explicit() {
        let s = ServiceSettings {
            jwt_ttl_secs: Some(u64::MAX),
            ..Default::default()
        };
        assert_eq!(
            HttpConfig::from_settings(s, None).unwrap_err().variable,
            "JWT_TTL"
        );
        let cors = |v: &str| {
            HttpConfig::from_settings(
                ServiceSettings {
                    cors_origins: Some(v.into()),
                    ..Default::default()
                },
                None,
            )
        };
        assert_eq!(cors("*").unwrap().cors_origins, vec!["*".to_owned()]);
        assert_eq!(
            cors("https://a.example.com/, http://localhost:3000")
                .unwrap()
                .cors_origins,
            vec!["https://a.example.com", "http://localhost:3000"]
        );
        for bad in [
            "*, https://a.example.com",
            "not a url",
            "https://a.example.com/x",
            "ftp://x",
        ] {
            assert_eq!(cors(bad).unwrap_err().variable, "CORS_ORIGINS", "{bad}");
        }
    }
}
