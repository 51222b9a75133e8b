//! `audit_log`: who did what to which target, and how it ended. Details are structured
//! JSON chosen by the caller and must never contain secrets.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Catalog, col, now};
use crate::db::{DbError, placeholders, with_pool};

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Grows with every record: pass the last one's as `before` for the next (older) page.
    pub id: i64,
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
        self.audit_page(&AuditQuery {
            limit,
            ..AuditQuery::default()
        })
        .await
    }

    /// A page of entries, newest first, matching `q`.
    pub async fn audit_page(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, DbError> {
        let mut sql = String::from(
            "SELECT id, at, actor, action, target, outcome, detail, request_id FROM audit_log \
             WHERE 1 = 1",
        );
        if q.before.is_some() {
            sql.push_str(" AND id < ?");
        }
        if q.actor.is_some() {
            sql.push_str(" AND actor = ?");
        }
        if q.action.is_some() {
            sql.push_str(" AND action = ?");
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        let limit = q.limit.min(i64::MAX as u64) as i64;
        with_pool!(&self.pool, |p, b, _Id| {
            let mut query = sqlx::query(placeholders(b, &sql));
            if let Some(before) = q.before {
                query = query.bind(before);
            }
            if let Some(actor) = &q.actor {
                query = query.bind(actor.as_str());
            }
            if let Some(action) = &q.action {
                query = query.bind(action.as_str());
            }
            let rows = query
                .bind(limit)
                .fetch_all(p)
                .await
                .map_err(|e| DbError::sqlx("reading audit log", e))?;
            rows.iter()
                .map(|r| {
                    Ok(AuditEntry {
                        id: col(r, 0)?,
                        at: col(r, 1)?,
                        actor: col(r, 2)?,
                        action: col(r, 3)?,
                        target: col(r, 4)?,
                        outcome: col(r, 5)?,
                        detail: col(r, 6)?,
                        request_id: col(r, 7)?,
                    })
                })
                .collect()
        })
    }
}

/// Which audit entries to read (see [`Catalog::audit_page`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only entries older than this id.
    pub before: Option<i64>,
    /// Only this actor's (an e-mail, or `cli`).
    pub actor: Option<String>,
    /// Only this action (`login`, `tenant.create`, …).
    pub action: Option<String>,
    pub limit: u64,
}
