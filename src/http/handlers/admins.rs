//! Admin master users (admin role only): list, create, change role, disable, unlock. A change
//! that would leave no active admin is refused (409); disabling an account or changing its
//! role retires its tokens.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::audit;
use crate::auth::password::{PasswordError, hash_password};
use crate::catalog::{AdminPatch, AdminRow, AdminUpdate};
use crate::domain::{Email, Role};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{ApiJson, ApiPath};
use crate::http::{AppState, AuthUser};

/// An admin user as the API shows it (never the password hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminView {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    pub is_active: bool,
    pub failed_logins: i64,
    pub locked_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<AdminRow> for AdminView {
    fn from(a: AdminRow) -> Self {
        Self {
            id: a.id,
            email: a.email,
            role: a.role,
            is_active: a.is_active,
            failed_logins: a.failed_logins,
            locked_until: a.locked_until,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAdminRequest {
    /// `local@domain.tld` (at most 254 characters; surrounding whitespace is trimmed and the
    /// address lowercased).
    #[schema(
        example = "operator@example.com",
        pattern = r"^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?=[!-~]{5,254}[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$)[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9-][A-Za-z0-9.-]*\.[A-Za-z0-9.-]*[A-Za-z0-9-][\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub email: String,
    /// 12 to 1024 characters.
    #[schema(min_length = 12, max_length = 1024)]
    pub password: String,
    pub role: Role,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAdminRequest {
    pub role: Option<Role>,
    pub is_active: Option<bool>,
}

/// All admin users.
#[utoipa::path(
    get,
    path = "/admins",
    tag = "admins",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Admin users by e-mail", body = Vec<AdminView>),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the admin role", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Vec<AdminView>>, ApiError> {
    user.require(Role::Admin)?;
    let admins = state.engine.admins().await?;
    Ok(Json(admins.into_iter().map(AdminView::from).collect()))
}

/// Create an admin user.
#[utoipa::path(
    post,
    path = "/admins",
    tag = "admins",
    security(("bearer" = [])),
    request_body = CreateAdminRequest,
    responses(
        (status = 201, description = "Created", body = AdminView),
        (status = 409, description = "The e-mail is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid e-mail, short password, unknown role", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the admin role", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(req): ApiJson<CreateAdminRequest>,
) -> Result<(StatusCode, Json<AdminView>), ApiError> {
    user.require(Role::Admin)?;
    let email = Email::parse(&req.email).map_err(|e| ApiError::validation(e.field, e.message))?;
    let password = req.password;
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ApiError::internal("hashing a password", &e))?
        .map_err(|e| match e {
            PasswordError::TooShort | PasswordError::TooLong => {
                ApiError::validation("password", e.to_string())
            }
            other => ApiError::internal("hashing a password", &other),
        })?;
    let admin = state.engine.create_admin(&email, &hash, req.role).await?;
    audit(
        &state,
        &user.email,
        "admin.create",
        Some(email.as_str()),
        "ok",
        Some(serde_json::json!({"role": req.role})),
    )
    .await;
    Ok((StatusCode::CREATED, Json(admin.into())))
}

/// Change an admin user's role or disable them.
#[utoipa::path(
    patch,
    path = "/admins/{id}",
    tag = "admins",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Admin user id")),
    request_body = UpdateAdminRequest,
    responses(
        (status = 200, description = "Updated", body = AdminView),
        (status = 404, description = "No such admin", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Disabling or demoting yourself, or a change that would leave no active admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the admin role", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<UpdateAdminRequest>,
) -> Result<Json<AdminView>, ApiError> {
    user.require(Role::Admin)?;
    if id == user.id && (req.is_active == Some(false) || req.role.is_some_and(|r| r != Role::Admin))
    {
        // A well-formed request refused for who sends it: a conflict, not bad input.
        return Err(ApiError::Conflict {
            detail: "you cannot disable yourself or give up your own admin role; ask another admin"
                .into(),
            job_id: None,
        });
    }
    let patch = AdminPatch {
        role: req.role,
        is_active: req.is_active,
    };
    let updated = state.engine.update_admin(id, &patch).await?;
    state.accounts.forget(id);
    let admin = match updated {
        AdminUpdate::Updated(admin) => admin,
        AdminUpdate::NotFound => return Err(ApiError::NotFound(format!("no admin user {id}"))),
        AdminUpdate::LastAdmin => {
            return Err(ApiError::Conflict {
                detail:
                    "this would leave no active admin; give another account the admin role first"
                        .into(),
                job_id: None,
            });
        }
    };
    audit(
        &state,
        &user.email,
        "admin.update",
        Some(&admin.email),
        "ok",
        serde_json::to_value(&patch).ok(),
    )
    .await;
    Ok(Json(admin.into()))
}

/// Clear an admin user's failed logins and login back-off.
#[utoipa::path(
    post,
    path = "/admins/{id}/unlock",
    tag = "admins",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Admin user id")),
    responses(
        (status = 200, description = "Unlocked", body = AdminView),
        (status = 404, description = "No such admin", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the admin role", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn unlock(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<AdminView>, ApiError> {
    user.require(Role::Admin)?;
    let admin = state
        .engine
        .unlock_admin(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no admin user {id}")))?;
    audit(
        &state,
        &user.email,
        "admin.unlock",
        Some(&admin.email),
        "ok",
        None,
    )
    .await;
    Ok(Json(admin.into()))
}
