//! `/healthz` (the process answers), `/readyz` (catalog reachable and migrated, as
//! [`crate::engine::Engine::readiness`] finds it) and
//! `/metrics` (Prometheus text). No admin token: these are for load balancers and scrapers;
//! `/metrics` asks for `METRICS_TOKEN` as a bearer token when one is configured.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::engine::access::Readiness;
use crate::http::AppState;
use crate::http::error::{ApiError, Problem};

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
    pub version: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    #[schema(example = "ready")]
    pub status: String,
    /// Catalog schema version.
    pub catalog_version: Option<i64>,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// Readiness: the catalog is reachable and its migrations are current.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "Catalog unreachable or not migrated", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    let detail = match state.engine.readiness().await {
        Readiness::Ready { catalog_version } => {
            return Ok(Json(Ready {
                status: "ready".into(),
                catalog_version,
            }));
        }
        Readiness::Unreachable => "the catalog is unreachable",
        Readiness::Unreadable => "the catalog cannot be read",
        Readiness::NotCurrent => "the catalog's migrations are not current; run upgrade-public",
    };
    Err(ApiError::Unavailable(detail.into()))
}

/// True when `headers` carry `Authorization: Bearer <expected>` (compared as digests, so the
/// comparison takes the same time wherever the strings differ).
fn bearer_matches(headers: &HeaderMap, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    Sha256::digest(given.as_bytes()) == Sha256::digest(expected.as_bytes())
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, description = "METRICS_TOKEN is set and the request does not carry it as a bearer token", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(expected) = &state.metrics_token
        && !bearer_matches(&headers, expected)
    {
        return ApiError::Unauthorized("/metrics needs the METRICS_TOKEN bearer token".into())
            .into_response();
    }
    if let Ok(counts) = state.engine.tenant_counts().await {
        for status in crate::catalog::TenantStatus::ALL {
            let n = counts
                .iter()
                .find(|(s, _)| s == status.as_str())
                .map(|(_, n)| *n)
                .unwrap_or(0);
            metrics::gauge!("tenant_migrator_tenants", "status" => status.as_str()).set(n as f64);
        }
    }
    let body = crate::http::metrics::handle()
        .map(|h| h.render())
        .unwrap_or_default();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        body,
    )
        .into_response()
}

/// Health routes are documented in the OpenAPI spec through `openapi::api_router`.
pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
}
