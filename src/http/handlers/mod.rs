//! Route handlers, one module per resource. Each is a thin layer over `Engine` or the catalog
//! repository: parse and validate input, check the role, call, audit mutating calls, shape
//! the response.

pub mod admins;
pub mod auth;
pub mod health;
pub mod jobs;
pub mod migrations;
pub mod structure;
pub mod tenants;

use serde::Deserialize;

use super::AppState;
use super::error::ApiError;

/// Paging of list endpoints.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Paging {
    /// Page size (1 to 500, default 50).
    pub limit: Option<u64>,
    /// Rows to skip (offset paging).
    pub offset: Option<u64>,
}

pub const MAX_LIMIT: u64 = 500;

impl Paging {
    pub fn limit(&self) -> Result<u64, ApiError> {
        match self.limit {
            None => Ok(50),
            Some(l) if (1..=MAX_LIMIT).contains(&l) => Ok(l),
            Some(l) => Err(ApiError::validation(
                "limit",
                format!("{l} is out of range (1 to {MAX_LIMIT})"),
            )),
        }
    }
}

/// Writes an audit record; a failure to write it is logged, not returned.
pub async fn audit(
    state: &AppState,
    actor: &str,
    action: &str,
    target: Option<&str>,
    outcome: &str,
    detail: Option<serde_json::Value>,
) {
    if let Err(e) = state
        .engine
        .catalog()
        .audit(actor, action, target, outcome, detail.as_ref(), None)
        .await
    {
        tracing::warn!(error = %e, action, "could not write the audit log");
    }
}
