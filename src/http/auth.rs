//! The bearer-token extractor: `AuthUser` is the admin a valid token names. Missing,
//! malformed, expired, wrongly signed or wrongly addressed tokens are 401; a valid token
//! whose role is too low for the route is 403 (checked by `require`).

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use crate::domain::Role;

/// The authenticated admin making the request.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
}

impl AuthUser {
    /// 403 unless this user's role includes `needed`.
    pub fn require(&self, needed: Role) -> Result<(), ApiError> {
        if self.role.allows(needed) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this needs the {needed} role; you are {}",
                self.role
            )))
        }
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("missing Authorization: Bearer token".into()))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("expected Authorization: Bearer <token>".into())
            })?;
        let claims = state
            .tokens
            .verify(token)
            .map_err(|_| ApiError::Unauthorized("invalid or expired token".into()))?;
        let id = Uuid::parse_str(&claims.sub)
            .map_err(|_| ApiError::Unauthorized("invalid or expired token".into()))?;
        // The account's current state wins over the token's: disabling a user or changing
        // a role takes effect at once, not when the token expires.
        let admin = state.engine.catalog().get_admin(id).await?;
        match admin {
            Some(a) if a.is_active => Ok(AuthUser {
                id,
                email: a.email,
                role: a.role,
            }),
            _ => Err(ApiError::Unauthorized("invalid or expired token".into())),
        }
    }
}
