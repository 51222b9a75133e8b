//! What the console's tenant view reads and does besides `GET /tenants/{schema}`: the tenant's
//! migration history (any signed-in user), its structure against a reference schema at its
//! own version with the statements that would fix it (operator: a scratch schema is built),
//! and `repair` of a dirty tenant (operator; `?dry_run=true` shows what it would do).

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;

use super::tenants::{DryRunQuery, SchemaPath, parse_schema};
use super::{audit, detached};
use crate::db::DbError;
use crate::domain::Role;
use crate::engine::{EngineError, RepairOptions, RepairReport, TenantFix, TenantHistory};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::{AppState, AuthUser};

/// What `repair` may do besides forgetting failed or interrupted migrations whose effects are
/// not in the schema (every field defaults to false; `{}` is plain repair).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RepairRequest {
    /// Record failed or interrupted migrations as applied: you completed them by hand.
    #[serde(default)]
    pub mark_applied: bool,
    /// Accept the current files' checksums for applied migrations whose files were edited.
    #[serde(default)]
    pub accept_checksums: bool,
    /// Forget failed or interrupted migrations even when the live schema shows (or cannot rule
    /// out) their effects: you undid them by hand.
    #[serde(default)]
    pub force: bool,
}

/// A tenant's migration history, oldest first, read without waiting for a running migration.
/// A tenant whose schema does not exist (still provisioning, or failed before it was built)
/// has an empty history and `exists` false.
#[utoipa::path(
    get,
    path = "/tenants/{schema}/history",
    tag = "tenants",
    security(("bearer" = [])),
    params(SchemaPath),
    responses(
        (status = 200, description = "The history, by ascending version", body = TenantHistory),
        (status = 404, description = "No such tenant", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid schema name", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn history(
    State(state): State<AppState>,
    _user: AuthUser,
    ApiPath(SchemaPath { schema }): ApiPath<SchemaPath>,
) -> Result<Json<TenantHistory>, ApiError> {
    let name = parse_schema(&schema)?;
    Ok(Json(state.engine.tenant_history(&name).await?))
}

/// The tenant's tables against a reference schema migrated from scratch to the tenant's own
/// version (built on the tenant's server and dropped, hence the operator role), with the
/// statements that would bring the tenant back. The statements are for a person to read and
/// run; nothing is run.
#[utoipa::path(
    get,
    path = "/tenants/{schema}/structure",
    tag = "tenants",
    security(("bearer" = [])),
    params(SchemaPath),
    responses(
        (status = 200, description = "The differences (`drift` null and no `statements` when there are none)", body = TenantFix),
        (status = 403, description = "Needs the operator role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant, or its schema does not exist", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid schema name", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn structure(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(SchemaPath { schema }): ApiPath<SchemaPath>,
) -> Result<Json<TenantFix>, ApiError> {
    user.require(Role::Operator)?;
    let name = parse_schema(&schema)?;
    // Detached: the scratch reference schema is dropped even if the client stops waiting.
    let fix = detached(async move { state.engine.structure_fix(&name).await }).await??;
    Ok(Json(fix))
}

/// Resolve a dirty tenant after a person fixed its schema: failed or interrupted migrations
/// are forgotten (they run again at the next upgrade) or, with `mark_applied`, recorded as
/// applied; with `accept_checksums`, edited files are accepted. A migration whose effects are
/// (or may be) in the schema is not forgotten without `force`; it is listed in `remaining`.
/// Takes the tenant's migration lock, in a dry run too (which writes nothing).
#[utoipa::path(
    post,
    path = "/tenants/{schema}/repair",
    tag = "tenants",
    security(("bearer" = [])),
    params(
        SchemaPath,
        DryRunQuery,
    ),
    request_body = RepairRequest,
    responses(
        (status = 200, description = "What was done (in a dry run: what would be done); `remaining` lists the problems left", body = RepairReport),
        (status = 403, description = "Needs the operator role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant, or its schema does not exist", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A migration run holds the tenant's lock for longer than the lock timeout; nothing was changed", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid schema name, query or body", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn repair(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(SchemaPath { schema }): ApiPath<SchemaPath>,
    ApiQuery(q): ApiQuery<DryRunQuery>,
    ApiJson(req): ApiJson<RepairRequest>,
) -> Result<Json<RepairReport>, ApiError> {
    user.require(Role::Operator)?;
    let name = parse_schema(&schema)?;
    let opts = RepairOptions {
        mark_applied: req.mark_applied,
        accept_checksums: req.accept_checksums,
        force: req.force,
        dry_run: q.dry_run,
    };
    let actor = user.email;
    // The repair runs to its end (and is recorded) even if the client stops waiting.
    let report = detached(async move {
        let result = state
            .engine
            .repair_tenant(&name, opts)
            .await
            .map_err(repair_error);
        if !opts.dry_run {
            let (outcome, detail) = match &result {
                Ok(r) => (
                    if r.remaining.is_empty() {
                        "ok"
                    } else {
                        "failed"
                    },
                    serde_json::json!({
                        "forgotten": r.forgotten,
                        "marked_applied": r.marked_applied,
                        "checksums_accepted": r.checksums_accepted,
                        "remaining": r.remaining.len(),
                    }),
                ),
                // Nothing to record: there is no such tenant.
                Err(ApiError::NotFound(_)) => return result,
                Err(e) => ("failed", serde_json::json!({ "error": e.to_string() })),
            };
            audit(
                &state,
                &actor,
                "tenant.repair",
                Some(name.as_str()),
                outcome,
                Some(detail),
            )
            .await;
        }
        result
    })
    .await??;
    Ok(Json(report))
}

/// A repair's error as the API answers it: another run holding the lock is a conflict.
fn repair_error(e: EngineError) -> ApiError {
    match e {
        EngineError::Db(DbError::LockTimeout { .. }) => ApiError::Conflict {
            detail: e.to_string(),
            job_id: None,
        },
        other => other.into(),
    }
}
