//! `GET /fleet`: the fleet at a glance for any signed-in user (counts by status and by
//! schema version, the tenants that need attention), read from the catalog alone and served
//! from the same one-second snapshot as `GET /tenants` pages (see [`super::tenants::PageCache`]).

use axum::extract::State;
use axum::response::Response;

use super::tenants::Snapshot;
use crate::engine::FleetSummary;
use crate::http::error::ApiError;
use crate::http::{AppState, AuthUser};

/// Tenants by status and by schema version, and the failed and behind ones first (at most
/// 100 of each).
#[utoipa::path(
    get,
    path = "/fleet",
    tag = "tenants",
    operation_id = "fleet_summary",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The fleet at a glance", body = FleetSummary),
    )
)]
pub async fn summary(State(state): State<AppState>, _user: AuthUser) -> Result<Response, ApiError> {
    let generation = state.engine.tenant_generation();
    state
        .pages
        .serve(Snapshot::Fleet, generation, "the fleet", || async {
            Ok(state.engine.fleet_summary().await?)
        })
        .await
}
