//! `GET /servers`: the configured tenant servers, what the catalog places on each (tenants
//! by schema version) and whether each answers now.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::engine::ServerStatus;
use crate::http::error::ApiError;
use crate::http::{AppState, AuthUser};

#[derive(Debug, Serialize, ToSchema)]
pub struct ServerList {
    /// In the configured order (the first one also holds the scratch schemas of drift checks).
    pub servers: Vec<ServerStatus>,
}

/// The tenant servers: per-server tenant counts and versions, draining, reachability.
#[utoipa::path(
    get,
    path = "/servers",
    tag = "servers",
    operation_id = "list_servers",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every configured server, checked just now (a server that does not answer is listed with `reachable: false` and why)", body = ServerList),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    _user: AuthUser,
) -> Result<Json<ServerList>, ApiError> {
    Ok(Json(ServerList {
        servers: state.engine.server_statuses().await?,
    }))
}
