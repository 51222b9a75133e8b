//! Commands of the HTTP service: `serve`, `create-admin` and `healthcheck`.

use std::io::{BufRead, IsTerminal};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{GlobalArgs, ServeArgs, engine};
use crate::auth::password::{PasswordError, hash_password};
use crate::config::http::parse_bind;
use crate::config::{ConfigError, DEFAULT_CATALOG_POOL_SIZE};
use crate::domain::{Email, Role};
use crate::engine::{Engine, EngineError};
use crate::http::{Application, StartError, shutdown_signal};

/// Catalog connections of the service (unless CATALOG_POOL_SIZE says otherwise): it answers
/// many concurrent reads.
const SERVICE_CATALOG_POOL: u32 = 10;

pub async fn serve(g: &GlobalArgs, args: &ServeArgs) -> Result<u8, EngineError> {
    let mut settings = g.settings()?;
    if settings.catalog_pool_size.is_none() {
        settings.catalog_pool_size = Some(SERVICE_CATALOG_POOL.max(DEFAULT_CATALOG_POOL_SIZE));
    }
    if let Some(bind) = &args.bind {
        settings.service.bind = Some(bind.clone());
    }
    let config = crate::config::Config::from_settings(settings)?;
    let http = config.http.clone();
    let engine = Engine::connect(config).await?;
    let app = match Application::build(engine, http).await {
        Ok(app) => app,
        Err(StartError::Engine(e)) => return Err(e),
        Err(StartError::Config(e)) => return Err(e.into()),
        Err(e @ StartError::Bind { .. }) => {
            return Err(ConfigError::new("BIND_ADDR", e.to_string()).into());
        }
    };
    app.run_until_stopped(shutdown_signal())
        .await
        .map_err(|e| EngineError::Service(e.to_string()))?;
    Ok(0)
}

fn read_password() -> Result<String, EngineError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!(
            "Password for the new admin (at least 12 characters; pipe it in to keep it off the screen): "
        );
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).map_err(|e| {
        crate::domain::ValidationError::new("password", format!("cannot read stdin: {e}"))
    })?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

pub async fn create_admin(g: &GlobalArgs, email: &str, role: &str) -> Result<u8, EngineError> {
    let email = Email::parse(email)?;
    let role: Role = role.parse()?;
    let password = read_password()?;
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| EngineError::Service(format!("hashing failed: {e}")))?
        .map_err(|e| match e {
            PasswordError::TooShort | PasswordError::TooLong => EngineError::Validation(
                crate::domain::ValidationError::new("password", e.to_string()),
            ),
            other => EngineError::Service(other.to_string()),
        })?;
    let engine = engine(g).await?;
    engine.prepare_catalog(false).await?;
    match engine.catalog().insert_admin(&email, &hash, role).await? {
        Some(admin) => {
            let _ = engine
                .catalog()
                .audit(
                    "cli",
                    "admin.create",
                    Some(email.as_str()),
                    "ok",
                    Some(&serde_json::json!({"role": role})),
                    None,
                )
                .await;
            super::render::say!(
                "created admin {} ({}) with role {}",
                admin.email,
                admin.id,
                admin.role
            );
            Ok(0)
        }
        None => Err(EngineError::Conflict(format!(
            "an admin with e-mail {email} exists"
        ))),
    }
}

/// Clears an admin's failed logins and back-off (the account must exist).
pub async fn unlock_admin(g: &GlobalArgs, email: &str) -> Result<u8, EngineError> {
    let email = Email::parse(email)?;
    let engine = engine(g).await?;
    engine.prepare_catalog(false).await?;
    let catalog = engine.catalog();
    let admin = catalog
        .find_admin_by_email(email.as_str())
        .await?
        .ok_or_else(|| EngineError::NotFound(format!("no admin with e-mail {email}")))?;
    catalog.unlock_admin(admin.id).await?;
    let _ = catalog
        .audit(
            "cli",
            "admin.unlock",
            Some(email.as_str()),
            "ok",
            None,
            None,
        )
        .await;
    super::render::say!("unlocked admin {} ({})", admin.email, admin.id);
    Ok(0)
}

/// Returns 0 when `GET /healthz` on the service answers 200 within 3 seconds, 1 otherwise.
pub async fn healthcheck(bind: Option<&str>) -> u8 {
    let raw = bind
        .map(str::to_owned)
        .or_else(|| crate::config::env::var("BIND_ADDR"));
    let Ok(mut addr) = parse_bind(raw.as_deref()) else {
        return 1;
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = vec![0u8; 64];
        let n = s.read(&mut buf).await.ok()?;
        let head = String::from_utf8_lossy(&buf[..n]);
        Some(head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"))
    };
    match tokio::time::timeout(Duration::from_secs(3), probe).await {
        Ok(Some(true)) => 0,
        _ => 1,
    }
}
