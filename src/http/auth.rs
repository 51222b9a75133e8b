//! The bearer-token extractor: `AuthUser` is the admin a valid token names. Missing,
//! malformed, expired, wrongly signed or wrongly addressed tokens are 401, and so is a token
//! of a disabled account or one issued before the account's last disable or role change
//! (its token version is older); a valid token whose role is too low for the route is 403
//! (checked by `require`). The account is read through the engine
//! ([`crate::engine::Engine::active_admin`]) and cached for a few seconds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// How long a looked-up account state is trusted. A role change or a disabled account made
/// through this process takes effect at once (the entry is dropped); one made elsewhere (another
/// replica, the CLI, SQL) within this time.
const ACCOUNT_TTL: Duration = Duration::from_secs(2);

/// Recently looked-up admin accounts, so a burst of requests reads each account once per
/// [`ACCOUNT_TTL`] instead of once per request.
#[derive(Default)]
pub struct AccountCache {
    entries: Mutex<HashMap<Uuid, (Instant, Option<Account>)>>,
}

/// An active account as the extractor needs it.
#[derive(Debug, Clone)]
struct Account {
    user: AuthUser,
    token_version: i64,
}

impl AccountCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (Instant, Option<Account>)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, id: Uuid) -> Option<Option<Account>> {
        let entries = self.lock();
        entries
            .get(&id)
            .filter(|(at, _)| at.elapsed() < ACCOUNT_TTL)
            .map(|(_, user)| user.clone())
    }

    fn put(&self, id: Uuid, user: Option<Account>) {
        let mut entries = self.lock();
        if entries.len() > 10_000 {
            entries.retain(|_, (at, _)| at.elapsed() < ACCOUNT_TTL);
        }
        entries.insert(id, (Instant::now(), user));
    }

    /// Drops what is known of an account (after it was changed).
    pub fn forget(&self, id: Uuid) {
        self.lock().remove(&id);
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
        // a role takes effect at once (here) or within seconds (elsewhere), not when the
        // token expires.
        let account = match state.accounts.get(id) {
            Some(cached) => cached,
            None => {
                let account = state.engine.active_admin(id).await?.map(|a| Account {
                    user: AuthUser {
                        id,
                        email: a.email,
                        role: a.role,
                    },
                    token_version: a.token_version,
                });
                state.accounts.put(id, account.clone());
                account
            }
        };
        account
            .filter(|a| a.token_version == claims.tv)
            .map(|a| a.user)
            .ok_or_else(|| ApiError::Unauthorized("invalid or expired token".into()))
    }
}
