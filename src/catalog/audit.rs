//! `audit_log`: who did what to which target, and how it ended. Details are structured
//! JSON chosen by the caller and must never contain secrets.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Catalog, col, now};
use crate::db::{DbError, placeholders, with_pool};

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    /// E-mail of the admin, `cli`, or the e-mail tried at a failed login.
    pub actor: String,
    /// `login`, `tenant.create`, `migrations.upgrade_all`, …
    pub action: String,
    pub target: Option<String>,
    /// `ok`, `denied`, `failed`.
    pub outcome: String,
    pub detail: Option<String>,
    pub request_id: Option<String>,
}

impl Catalog {
    /// Appends an entry (its `at` is set now).
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        outcome: &str,
        detail: Option<&serde_json::Value>,
        request_id: Option<&str>,
    ) -> Result<(), DbError> {
        let sql = "INSERT INTO audit_log (at, actor, action, target, outcome, detail, request_id) \
            VALUES (?, ?, ?, ?, ?, ?, ?)";
        let detail = detail.map(|d| d.to_string());
        with_pool!(&self.pool, |p, b, _Id| {
            sqlx::query(placeholders(b, sql))
                .bind(now())
                .bind(actor)
                .bind(action)
                .bind(target)
                .bind(outcome)
                .bind(detail.as_deref())
                .bind(request_id)
                .execute(p)
                .await
                .map(|_| ())
                .map_err(|e| DbError::sqlx("writing audit log", e))
        })
    }

    /// The newest entries first.
    pub async fn recent_audit(&self, limit: u64) -> Result<Vec<AuditEntry>, DbError> {
        let sql = "SELECT at, actor, action, target, outcome, detail, request_id FROM audit_log \
             ORDER BY id DESC LIMIT ?";
        let limit = limit.min(i64::MAX as u64) as i64;
        with_pool!(&self.pool, |p, b, _Id| {
            let rows = sqlx::query(placeholders(b, sql))
                .bind(limit)
                .fetch_all(p)
                .await
                .map_err(|e| DbError::sqlx("reading audit log", e))?;
            rows.iter()
                .map(|r| {
                    Ok(AuditEntry {
                        at: col(r, 0)?,
                        actor: col(r, 1)?,
                        action: col(r, 2)?,
                        target: col(r, 3)?,
                        outcome: col(r, 4)?,
                        detail: col(r, 5)?,
                        request_id: col(r, 6)?,
                    })
                })
                .collect()
        })
    }
}
