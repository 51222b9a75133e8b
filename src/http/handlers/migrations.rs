//! Migrations: the available versions, the catalog upgrade, and fleet upgrades as jobs.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{audit, detached};
use crate::catalog::{JobRow, StartJobError};
use crate::db::Backend;
use crate::domain::{Role, SchemaName};
use crate::engine::jobs::UpgradeAllParams;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::ApiJson;
use crate::http::{AppState, AuthUser};
use crate::jobs::{Canary, TenantReport};
use crate::migrate::Scope;

#[derive(Debug, Serialize, ToSchema)]
pub struct MigrationInfo {
    pub version: i64,
    pub name: String,
    /// SHA-256 of the file.
    pub checksum: String,
    pub file: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MigrationList {
    pub backend: Backend,
    pub public: Vec<MigrationInfo>,
    pub tenant: Vec<MigrationInfo>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradeAllRequest {
    /// Plan only: record what would run, change no tenant.
    #[serde(default)]
    pub dry_run: bool,
    /// Attempt every tenant even after one fails.
    #[serde(default)]
    pub continue_on_error: bool,
    /// Tenants at once (1 to 64; default: the tenant pool size).
    #[schema(minimum = 1, maximum = 64)]
    pub concurrency: Option<usize>,
    /// Stop at this version (inclusive); it must be the version of a tenant migration (see
    /// `GET /migrations`), else 422.
    pub target: Option<i64>,
    /// Canary wave: the first N tenants (by schema name) with work run first; the others
    /// start only if none of them failed. Not with `canary_tenants`.
    #[schema(minimum = 1)]
    pub canary: Option<usize>,
    /// Canary wave: these tenants (1 to 100 schema names, each in the catalog) run first.
    /// Not with `canary`.
    #[schema(min_items = 1, max_items = 100)]
    pub canary_tenants: Option<Vec<String>>,
    /// Failure budget: once this many tenants failed, no further tenant starts (tenants in
    /// flight finish). Implies continuing after failures until then.
    #[schema(minimum = 1)]
    pub max_failures: Option<usize>,
}

/// Most canary tenants a request may name.
const MAX_CANARY_TENANTS: usize = 100;

/// The canary wave a request asks for, checked: a count of at least 1, or valid names of
/// tenants in the catalog — not both.
async fn requested_canary(
    state: &AppState,
    req: &UpgradeAllRequest,
) -> Result<Option<Canary>, ApiError> {
    match (req.canary, &req.canary_tenants) {
        (Some(_), Some(_)) => Err(ApiError::validation(
            "canary",
            "give canary (a count) or canary_tenants (names), not both",
        )),
        (Some(0), None) => Err(ApiError::validation("canary", "must be at least 1")),
        (Some(n), None) => Ok(Some(Canary::Count(n))),
        (None, None) => Ok(None),
        (None, Some(raw)) => {
            if raw.is_empty() || raw.len() > MAX_CANARY_TENANTS {
                return Err(ApiError::validation(
                    "canary_tenants",
                    format!("must name 1 to {MAX_CANARY_TENANTS} tenants"),
                ));
            }
            let mut names: Vec<SchemaName> = Vec::with_capacity(raw.len());
            for n in raw {
                let name = SchemaName::parse(n)
                    .map_err(|e| ApiError::validation("canary_tenants", e.to_string()))?;
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            for name in &names {
                if state.engine.tenant(name).await?.is_none() {
                    return Err(ApiError::validation(
                        "canary_tenants",
                        format!("tenant {name} is not in the catalog"),
                    ));
                }
            }
            Ok(Some(Canary::Tenants(names)))
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradePublicRequest {
    #[serde(default)]
    pub dry_run: bool,
}

fn infos(state: &AppState, scope: Scope) -> Vec<MigrationInfo> {
    state
        .engine
        .migrations(scope)
        .migrations
        .iter()
        .map(|m| MigrationInfo {
            version: m.version,
            name: m.name.clone(),
            checksum: m.checksum.clone(),
            file: m.file.clone(),
        })
        .collect()
}

/// The migrations this service runs, per scope, for its database.
#[utoipa::path(
    get,
    path = "/migrations",
    tag = "migrations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Versions with checksums", body = MigrationList),
    )
)]
pub async fn list(State(state): State<AppState>, _user: AuthUser) -> Json<MigrationList> {
    Json(MigrationList {
        backend: state.engine.config().backend(),
        public: infos(&state, Scope::Public),
        tenant: infos(&state, Scope::Tenant),
    })
}

/// Start a fleet upgrade job. One at a time.
#[utoipa::path(
    post,
    path = "/migrations/upgrade-all",
    tag = "migrations",
    security(("bearer" = [])),
    request_body = UpgradeAllRequest,
    responses(
        (status = 202, description = "Job started; follow it at the Location", body = JobRow, headers(("Location" = String, description = "/migrations/jobs/{id}")),
            links(
                ("show" = (operation_id = "jobs_show", parameters(("id" = "$response.body#/id")), description = "The job's state, counts and per-tenant outcomes")),
                ("events" = (operation_id = "jobs_events", parameters(("id" = "$response.body#/id")), description = "Follow the job as server-sent events")),
                ("cancel" = (operation_id = "jobs_cancel", parameters(("id" = "$response.body#/id")), description = "Stop the job at a tenant boundary")),
                ("resume" = (operation_id = "jobs_resume", parameters(("id" = "$response.body#/id")), description = "Continue the job once it is interrupted")),
            )),
        (status = 403, description = "Needs the operator role", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another fleet job is running (its id is in job_id)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid concurrency, target, canary, canary_tenants or max_failures", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn upgrade_all(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(req): ApiJson<UpgradeAllRequest>,
) -> Result<Response, ApiError> {
    user.require(Role::Operator)?;
    let concurrency = match req.concurrency {
        None => state.engine.config().pool_size as usize,
        Some(c) if (1..=64).contains(&c) => c,
        Some(c) => {
            return Err(ApiError::validation(
                "concurrency",
                format!("{c} is out of range (1 to 64)"),
            ));
        }
    };
    state.engine.check_target(Scope::Tenant, req.target)?;
    if req.max_failures == Some(0) {
        return Err(ApiError::validation("max_failures", "must be at least 1"));
    }
    let canary = requested_canary(&state, &req).await?;
    let started = state
        .jobs
        .start_upgrade_all(
            UpgradeAllParams {
                dry_run: req.dry_run,
                continue_on_error: req.continue_on_error,
                concurrency,
                target: req.target,
                canary,
                max_failures: req.max_failures,
            },
            &user.email,
        )
        .await;
    let job = match started {
        Ok(job) => job,
        Err(StartJobError::AlreadyRunning(id)) => {
            return Err(ApiError::Conflict {
                detail: format!("fleet job {id} is running; wait for it or cancel it"),
                job_id: Some(id),
            });
        }
        Err(StartJobError::Db(e)) => return Err(e.into()),
    };
    let detail = serde_json::json!({
        "dry_run": req.dry_run,
        "continue_on_error": req.continue_on_error,
        "concurrency": concurrency,
        "target": req.target,
        "canary": req.canary,
        "canary_tenants": req.canary_tenants,
        "max_failures": req.max_failures,
    });
    audit(
        &state,
        &user.email,
        "migrations.upgrade_all",
        Some(&job.id.to_string()),
        "ok",
        Some(detail),
    )
    .await;
    let location = HeaderValue::from_str(&format!("/migrations/jobs/{}", job.id))
        .map_err(|e| ApiError::internal("building the job location", &e))?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(job),
    )
        .into_response())
}

/// Migrate the catalog (public) schema.
#[utoipa::path(
    post,
    path = "/migrations/upgrade-public",
    tag = "migrations",
    security(("bearer" = [])),
    request_body = UpgradePublicRequest,
    responses(
        (status = 200, description = "What was (or would be) applied to the catalog", body = TenantReport),
        (status = 403, description = "Needs the operator role", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn upgrade_public(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(req): ApiJson<UpgradePublicRequest>,
) -> Result<Json<TenantReport>, ApiError> {
    user.require(Role::Operator)?;
    let actor = user.email;
    // The catalog migration runs to its end (and is recorded) even if the client goes away.
    let report = detached(async move {
        let opts = state.engine.run_options(req.dry_run, None);
        let report = state.engine.upgrade_public(&opts).await?;
        if !req.dry_run {
            audit(
                &state,
                &actor,
                "migrations.upgrade_public",
                None,
                "ok",
                Some(serde_json::json!({"from": report.from, "to": report.to})),
            )
            .await;
        }
        Ok::<_, ApiError>(report)
    })
    .await??;
    Ok(Json(report))
}
