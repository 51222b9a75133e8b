//! `POST /auth/login` and `GET /auth/me`. Five failed logins lock an account for 15 minutes;
//! unknown e-mails are verified against a decoy hash so they cost the same time as known ones;
//! every attempt is audited (never the password).

use axum::Json;
use axum::extract::State;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::audit;
use crate::auth::password::{decoy_hash, verify_password};
use crate::domain::Role;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::ApiJson;
use crate::http::{AppState, AuthUser};

/// Failed logins before an account is locked.
pub const MAX_FAILED_LOGINS: i64 = 5;
/// How long a locked account stays locked.
pub const LOCKOUT_MINUTES: i64 = 15;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(example = "ops@example.com")]
    pub email: String,
    #[schema(example = "a long passphrase")]
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: String,
    /// Seconds until the token expires.
    #[schema(example = 3600)]
    pub expires_in: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
}

fn denied() -> ApiError {
    ApiError::Unauthorized(format!(
        "invalid e-mail or password (an account locks for {LOCKOUT_MINUTES} minutes after {MAX_FAILED_LOGINS} failures)"
    ))
}

async fn verify_off_thread(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false)
}

/// Exchange an admin's e-mail and password for an access token.
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Token issued", body = TokenResponse),
        (status = 401, description = "Wrong e-mail or password, disabled or locked account", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let email = req.email.trim().to_ascii_lowercase();
    let catalog = state.engine.catalog();
    let admin = catalog.find_admin_by_email(&email).await?;
    let hash = admin
        .as_ref()
        .map(|a| a.password_hash.clone())
        .unwrap_or_else(|| decoy_hash().to_owned());
    let password_ok = verify_off_thread(req.password, hash).await;
    let now = Utc::now();
    let Some(mut admin) = admin else {
        audit(
            &state,
            &email,
            "login",
            None,
            "denied",
            Some(serde_json::json!({"reason": "unknown e-mail"})),
        )
        .await;
        return Err(denied());
    };
    if admin.locked_until.is_some_and(|t| t <= now) {
        // The lock ran out: start counting afresh.
        catalog.reset_failed_logins(admin.id).await?;
        admin.failed_logins = 0;
        admin.locked_until = None;
    }
    let reason = if !admin.is_active {
        Some("account disabled")
    } else if admin.locked_until.is_some() {
        Some("account locked")
    } else if !password_ok {
        catalog
            .record_failed_login(
                admin.id,
                MAX_FAILED_LOGINS,
                now + chrono::Duration::minutes(LOCKOUT_MINUTES),
            )
            .await?;
        Some("wrong password")
    } else {
        None
    };
    if let Some(reason) = reason {
        audit(
            &state,
            &email,
            "login",
            None,
            "denied",
            Some(serde_json::json!({"reason": reason})),
        )
        .await;
        return Err(denied());
    }
    if admin.failed_logins > 0 {
        catalog.reset_failed_logins(admin.id).await?;
    }
    let (access_token, expires_in) = state
        .tokens
        .issue(admin.id, &admin.email, admin.role)
        .map_err(|e| ApiError::internal("issuing a token", &e))?;
    audit(&state, &email, "login", None, "ok", None).await;
    Ok(Json(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in,
    }))
}

/// The admin the token belongs to.
#[utoipa::path(
    get,
    path = "/auth/me",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The current admin", body = MeResponse),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn me(user: AuthUser) -> Json<MeResponse> {
    Json(MeResponse {
        id: user.id,
        email: user.email,
        role: user.role,
    })
}
