//! `GET /structure/check`: drift of every up-to-date tenant against a reference schema.

use axum::Json;
use axum::extract::State;

use crate::domain::Role;
use crate::engine::DriftReport;
use crate::http::error::{ApiError, Problem};
use crate::http::{AppState, AuthUser};

use super::detached;

/// Compare every tenant at the newest version with a freshly migrated reference schema
/// (created and dropped for the check, hence the operator role).
#[utoipa::path(
    get,
    path = "/structure/check",
    tag = "migrations",
    operation_id = "check_structure",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Drift report (empty `drifted` when every tenant matches)", body = DriftReport),
        (status = 403, description = "Needs the operator role", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn check(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<DriftReport>, ApiError> {
    user.require(Role::Operator)?;
    // Detached: the scratch reference schema is dropped even if the client stops waiting
    // (or the request times out) while it is built.
    let report = detached(async move { state.engine.check_structure().await }).await??;
    Ok(Json(report))
}
