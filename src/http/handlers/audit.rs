//! `GET /audit`: who did what, when, newest first (admins only: failed logins show the
//! e-mails people tried).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::page_limit;
use crate::catalog::{AuditEntry, AuditQuery};
use crate::domain::Role;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::ApiQuery;
use crate::http::{AppState, AuthUser};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditListQuery {
    /// Page size (1 to 500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u64>,
    /// Only entries older than this id (use `next_before`).
    #[param(minimum = 1)]
    pub before: Option<i64>,
    /// Only this actor's entries (an e-mail, or `cli`).
    #[param(min_length = 1, max_length = 254)]
    pub actor: Option<String>,
    /// Only this action (`login`, `tenant.create`, `migrations.upgrade_all`, …).
    #[param(min_length = 1, max_length = 64)]
    pub action: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

/// The audit log, newest first, optionally one actor's or one action's.
#[utoipa::path(
    get,
    path = "/audit",
    tag = "admins",
    operation_id = "list_audit",
    security(("bearer" = [])),
    params(AuditListQuery),
    responses(
        (status = 200, description = "A page of audit entries, newest first", body = AuditPage),
        (status = 403, description = "Needs the admin role", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid paging or filter", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<AuditListQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    user.require(Role::Admin)?;
    let limit = page_limit(q.limit)?;
    if let Some(b) = q.before.filter(|b| *b < 1) {
        return Err(ApiError::validation(
            "before",
            format!("{b} is out of range (at least 1)"),
        ));
    }
    for (field, value, max) in [("actor", &q.actor, 254), ("action", &q.action, 64)] {
        if let Some(v) = value
            && (v.is_empty() || v.chars().count() > max)
        {
            return Err(ApiError::validation(
                field,
                format!("must be 1 to {max} characters"),
            ));
        }
    }
    let entries = state
        .engine
        .audit_page(&AuditQuery {
            before: q.before,
            actor: q.actor,
            action: q.action,
            limit,
        })
        .await?;
    let next_before = (entries.len() as u64 == limit)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(Json(AuditPage {
        entries,
        next_before,
    }))
}
