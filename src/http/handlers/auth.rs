//! `POST /auth/login` and `GET /auth/me`.
//!
//! A login is admitted by the process's [`LoginThrottle`] (rate and back-off per client
//! address, a bound on password checks at once), then claims one attempt on the account
//! ([`crate::engine::Engine::claim_login_attempt`]) *before* its password is checked,
//! atomically: an account in back-off (1 s
//! after its fifth failure, doubling up to 30 s) is refused without a check, so parallel
//! guesses cannot outrun the count. Unknown e-mails are checked against a decoy hash and
//! refusals without a check wait as long as a check takes, so timing tells nothing. Every
//! attempt that reaches the account is audited (never the password); refusals by the
//! throttle are not, so a flood costs no writes.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::audit;
use crate::auth::password::decoy_hash;
use crate::catalog::AdminRow;
use crate::domain::Role;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::ApiJson;
use crate::http::throttle::{
    ACCOUNT_FREE_FAILURES, ACCOUNT_MAX_BACKOFF, ClientIp, Refusal, backoff,
};
use crate::http::{AppState, AuthUser};

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
    ApiError::Unauthorized(
        "invalid e-mail or password, or too many recent failures for this account (it may be \
         tried again after a short back-off)"
            .into(),
    )
}

fn refused(r: Refusal) -> ApiError {
    let (detail, retry_after, busy) = match r {
        Refusal::Client { retry_after } => (
            "too many login attempts from this address; try again later",
            retry_after,
            false,
        ),
        Refusal::Busy { retry_after } => (
            "too many logins at once; try again in a moment",
            retry_after,
            true,
        ),
    };
    ApiError::RetryLater {
        detail: detail.into(),
        retry_after_secs: retry_after.as_secs_f64().ceil() as u64,
        busy,
    }
}

/// Claims one attempt on `admin`'s account (see the module docs and
/// [`crate::engine::Engine::claim_login_attempt`]), with the account back-off of
/// [`crate::http::throttle`]. `Ok(false)`: the account is in back-off, or too many logins
/// raced for it.
async fn claim_attempt(state: &AppState, admin: AdminRow) -> Result<bool, ApiError> {
    Ok(state
        .engine
        .claim_login_attempt(admin, |failures| {
            backoff(failures, ACCOUNT_FREE_FAILURES as u64, ACCOUNT_MAX_BACKOFF)
        })
        .await?)
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
        (status = 429, description = "Too many login attempts from this client address; retry after the given delay", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
        (status = 503, description = "Too many password checks at once, or the catalog is unavailable; retry after the given delay", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again (sent when the server is busy checking passwords)"))),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let throttle = &state.login;
    let mut permit = throttle.admit(client).await.map_err(refused)?;
    let email = req.email.trim().to_ascii_lowercase();
    let admin = state.engine.login_account(&email).await?;
    let reason = match admin {
        None => {
            permit
                .check(req.password, decoy_hash().to_owned(), throttle)
                .await;
            Some("unknown e-mail")
        }
        Some(ref a) if !claim_attempt(&state, a.clone()).await? => {
            drop(permit);
            tokio::time::sleep(throttle.check_duration()).await;
            Some("account in back-off")
        }
        Some(ref a) => {
            let ok = permit
                .check(req.password, a.password_hash.clone(), throttle)
                .await;
            if !ok {
                Some("wrong password")
            } else if !a.is_active {
                Some("account disabled")
            } else {
                None
            }
        }
    };
    let (Some(admin), None) = (admin, reason) else {
        throttle.failed(client);
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
    };
    throttle.succeeded(client);
    state.engine.login_succeeded(admin.id).await?;
    let (access_token, expires_in) = state
        .tokens
        .issue(admin.id, &admin.email, admin.role, admin.token_version)
        .map_err(|e| ApiError::internal("issuing a token", &e))?;
    audit(&state, &email, "login", None, "ok", None).await;
    let mut res = Json(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in,
    })
    .into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
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
