//! Commands of the HTTP service and of what it shares with the command line: `serve`,
//! `create-admin`, `unlock-admin`, `healthcheck`, and `upgrade-all --job` (a fleet upgrade
//! run as a recorded, leased job by the same [`JobManager`] a serving replica uses, so the
//! service shows it and takes it over if this process dies). Account rules live in the engine
//! ([`crate::engine::access`]); these commands only parse, call and print.

use std::io::{BufRead, IsTerminal};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{GlobalArgs, ServeArgs, engine};
use crate::auth::password::{PasswordError, hash_password};
use crate::catalog::{JobState, StartJobError};
use crate::config::http::parse_bind;
use crate::config::{ConfigError, DEFAULT_CATALOG_POOL_SIZE};
use crate::domain::{Email, Role};
use crate::engine::jobs::{JobManager, OnStop, UpgradeAllParams};
use crate::engine::{Engine, EngineError};
use crate::http::{Application, StartError, shutdown_signal};
use crate::jobs::Canary;
use crate::migrate::Scope;

/// Exit code of a run stopped with Ctrl-C (128 + SIGINT), as shells report it.
const INTERRUPTED_EXIT: u8 = 130;

/// Who the audit log says did what the command line did.
const CLI_ACTOR: &str = "cli";

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

/// `upgrade-all --job`: the fleet upgrade as a recorded job of this process. Prints the usual
/// report (with `job_id`); Ctrl-C or SIGTERM stops it at a tenant boundary and leaves it
/// `interrupted` (exit 130). Refused (exit 1) while another fleet job runs.
pub async fn upgrade_all_job(
    g: &GlobalArgs,
    canary: Option<Canary>,
    max_failures: Option<usize>,
) -> Result<u8, EngineError> {
    let engine = engine(g).await?;
    // Checked before a job is recorded, so a wrong request is a usage error (exit 2).
    engine.check_target(Scope::Tenant, g.target)?;
    if !engine.prepare_catalog(g.dry_run).await? {
        return Err(EngineError::Catalog(
            "a job is recorded in the catalog, and there is none yet: run `upgrade-public` \
             first (or drop --job)"
                .into(),
        ));
    }
    let opts = super::fleet_options(&engine, g);
    let params = UpgradeAllParams {
        dry_run: g.dry_run,
        continue_on_error: g.continue_on_error,
        concurrency: opts.concurrency,
        target: g.target,
        canary,
        max_failures,
    };
    let jobs = JobManager::with(engine.clone(), OnStop::Interrupt);
    let stopper = jobs.clone();
    let signal = tokio::spawn(async move {
        shutdown_signal().await;
        stopper.begin_shutdown();
    });
    let progress = super::progress::for_run(g.output, 0);
    let ran = jobs.run_upgrade_all(params, CLI_ACTOR, progress).await;
    signal.abort();
    engine.close().await;
    let (job, result) = match ran {
        Ok(ran) => ran,
        Err(StartJobError::AlreadyRunning(holder)) => {
            return Err(EngineError::Conflict(format!(
                "fleet job {holder} is running; wait for it or cancel it \
                 (GET /migrations/jobs/{holder})"
            )));
        }
        Err(StartJobError::Db(e)) => return Err(e.into()),
    };
    let report = result?;
    super::render::fleet(g.output, &report);
    if g.output == super::OutputFormat::Text {
        super::render::say!("job {}: {}", job.id, job.state.as_str());
    }
    Ok(match job.state {
        JobState::Interrupted => INTERRUPTED_EXIT,
        JobState::Succeeded => 0,
        _ => 1,
    })
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
    let admin = engine
        .create_admin_audited(&email, &hash, role, CLI_ACTOR)
        .await?;
    super::render::say!(
        "created admin {} ({}) with role {}",
        admin.email,
        admin.id,
        admin.role
    );
    Ok(0)
}

/// Clears an admin's failed logins and back-off (the account must exist).
pub async fn unlock_admin(g: &GlobalArgs, email: &str) -> Result<u8, EngineError> {
    let email = Email::parse(email)?;
    let engine = engine(g).await?;
    engine.prepare_catalog(false).await?;
    let admin = engine.unlock_admin_by_email(&email, CLI_ACTOR).await?;
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
