//! The control-plane service: an axum router over the same [`Engine`] the CLI uses, with JWT
//! admin auth, RFC 9457 errors, server-made request ids, security headers, body and header
//! limits, timeouts, compression, optional CORS, login throttling, Prometheus metrics, OpenAPI
//! and Swagger UI. `Application::build` binds (port 0 in tests) and migrates the catalog;
//! `run_until_stopped` serves (see [`server`]) until the shutdown future resolves, then stops
//! fleet jobs at a tenant boundary and hands them off to another replica. Jobs themselves live
//! in [`crate::engine::jobs`]: this layer only starts, reads and follows them.

mod auth;
mod error;
mod extract;
pub mod handlers;
mod headers;
mod metrics;
pub mod openapi;
mod server;
mod throttle;
mod ui;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode, header};
use tokio::net::TcpListener;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::PropagateRequestIdLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::{info, info_span, warn};

pub use crate::engine::jobs::{JobEvent, JobManager, UpgradeAllParams};
pub use auth::AuthUser;
pub use error::{ApiError, Problem};
pub use throttle::LoginThrottle;

/// Settings of the service (validated in `config`).
pub use crate::config::HttpConfig as HttpSettings;

use crate::auth::TokenKeys;
use crate::config::ConfigError;
use crate::db::Backend;
use crate::engine::{Engine, EngineError};

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub tokens: Arc<TokenKeys>,
    pub jobs: JobManager,
    pub accounts: Arc<auth::AccountCache>,
    pub pages: Arc<handlers::tenants::PageCache>,
    pub login: Arc<LoginThrottle>,
    /// `METRICS_TOKEN`, when `/metrics` needs one.
    pub metrics_token: Option<Arc<str>>,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl StartError {
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Config(_) | StartError::Bind { .. } => 2,
            StartError::Engine(e) => e.exit_code(),
        }
    }
}

fn token_keys(engine: &Engine, settings: &HttpSettings) -> Result<TokenKeys, ConfigError> {
    match settings.secret_key.as_deref() {
        Some(k) => TokenKeys::new(k.as_bytes(), settings.token.clone()).map_err(|_| {
            ConfigError::new(
                "SECRET_KEY",
                format!(
                    "must be at least {} bytes (e.g. `openssl rand -hex 32`)",
                    crate::auth::token::MIN_SECRET_LEN
                ),
            )
        }),
        None if engine.config().backend() == Backend::Sqlite => {
            warn!(
                "SECRET_KEY is not set: using a random key for this process only. Tokens stop \
                 working at restart and differ between replicas. Set SECRET_KEY (32+ bytes) \
                 for anything but a local trial."
            );
            Ok(TokenKeys::random(settings.token.clone()))
        }
        None => Err(ConfigError::new(
            "SECRET_KEY",
            "is required with a MySQL or PostgreSQL catalog (at least 32 bytes)",
        )),
    }
}

/// A bound, ready-to-serve service.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    settings: HttpSettings,
}

impl Application {
    /// Checks the settings, migrates the catalog (refusing a dirty one), takes over fleet jobs
    /// whose lease expired (they continue here), and binds.
    pub async fn build(engine: Engine, settings: HttpSettings) -> Result<Self, StartError> {
        let tokens = token_keys(&engine, &settings)?;
        engine.prepare_catalog(false).await.inspect_err(|e| {
            tracing::error!(error = %e, "the catalog cannot be migrated; refusing to serve");
        })?;
        let jobs = JobManager::new(engine.clone());
        jobs.take_over_expired().await;
        let state = AppState {
            engine,
            tokens: Arc::new(tokens),
            jobs,
            accounts: Arc::default(),
            pages: Arc::default(),
            login: Arc::new(LoginThrottle::new(&settings.login)),
            metrics_token: settings.metrics_token.as_deref().map(Arc::from),
            trusted_proxies: Arc::from(settings.trusted_proxies.as_slice()),
        };
        let router = router(state.clone(), &settings);
        let listener =
            TcpListener::bind(settings.bind)
                .await
                .map_err(|source| StartError::Bind {
                    addr: settings.bind,
                    source,
                })?;
        Ok(Self {
            listener,
            router,
            state,
            settings,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves: stops accepting, lets requests in flight finish
    /// (for at most `SHUTDOWN_TIMEOUT`), then stops fleet jobs at a tenant boundary and hands
    /// them off (their lease expires at once; another replica continues them).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        info!(addr = %self.local_addr(), "listening");
        let janitor = self.state.jobs.spawn_janitor();
        // Jobs start stopping when the signal arrives, not after the connections drained: an
        // open event stream ends only when its job does.
        let jobs = self.state.jobs.clone();
        let signal = async move {
            shutdown.await;
            jobs.begin_shutdown();
        };
        let served = server::serve(self.listener, self.router, &self.settings, signal).await;
        janitor.abort();
        self.state.jobs.shutdown().await;
        self.state.engine.close().await;
        info!("stopped");
        served
    }
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called, not when
/// the future is first polled: a signal sent right after `listening` is logged is never lost
/// to the default action (the process ending without a graceful shutdown).
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let handlers = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            async fn wait(s: Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            let (term, int) = handlers;
            tokio::select! {
                _ = wait(term) => {},
                _ = wait(int) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        info!("shutdown requested");
    }
}

fn router(state: AppState, settings: &HttpSettings) -> Router {
    let (api, spec) = openapi::api_router().split_for_parts();
    let mut app = api
        .merge(openapi::docs_router(spec))
        .merge(handlers::health::router())
        .merge(ui::router())
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(state)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // Inside the metrics and problem layers, so a timeout is counted and is a problem
        // document like any other error.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            settings.request_timeout,
        ))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(axum::middleware::from_fn(error::problem_responses))
        .layer(axum::middleware::from_fn(handlers::scope_request_id))
        .layer(CompressionLayer::new())
        .layer(PropagateRequestIdLayer::new(headers::REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let client_id = req
                    .extensions()
                    .get::<headers::ClientRequestId>()
                    .map(|c| c.0.as_str())
                    .unwrap_or_default();
                info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id, client_request_id = %client_id)
            }),
        )
        .layer(axum::middleware::from_fn(headers::request_guard))
        .layer(axum::middleware::from_fn(headers::security_headers));
    if !settings.cors_origins.is_empty() {
        // Validated in `config`: either `*` alone (any origin, never with credentials) or
        // a list of origins.
        let allow = if settings.cors_origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(
                settings
                    .cors_origins
                    .iter()
                    .filter_map(|o| HeaderValue::from_str(o).ok()),
            )
        };
        app = app.layer(
            CorsLayer::new()
                .allow_origin(allow)
                .allow_methods([Method::GET, Method::POST, Method::PATCH])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
                .expose_headers([HeaderName::from_static("x-request-id"), header::LOCATION]),
        );
    }
    app
}
