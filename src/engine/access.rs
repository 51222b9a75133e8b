//! Admin accounts, logins, the audit log and readiness: the catalog rules the HTTP service
//! and the CLI's account commands rely on, so that neither reaches the catalog itself. A
//! rule made of several catalog steps lives here whole: a login's claim on its account (an
//! optimistic compare-and-swap, retried against concurrent logins), creating and unlocking an
//! admin from the CLI with its audit record, readiness (reachable, then migrated).

use std::time::Duration;

use tracing::instrument;
use uuid::Uuid;

use super::{Engine, EngineError};
use crate::catalog::{AdminPatch, AdminRow, AdminUpdate};
use crate::domain::{Email, Role};
use crate::migrate::Scope;

/// Claims tried before a login racing many others on one account gives up (refused).
const CLAIM_TRIES: usize = 8;

/// Whether the service may take traffic, as `/readyz` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// The catalog answers and its migrations are current (its version).
    Ready { catalog_version: Option<i64> },
    /// The catalog does not answer.
    Unreachable,
    /// The catalog answers but its history cannot be read.
    Unreadable,
    /// The catalog's migrations are not current (`upgrade-public` is due).
    NotCurrent,
}

impl Engine {
    /// Every admin account, by e-mail.
    #[instrument(skip_all)]
    pub async fn admins(&self) -> Result<Vec<AdminRow>, EngineError> {
        Ok(self.catalog().list_admins().await?)
    }

    /// Creates an admin account; a taken e-mail is a [`EngineError::Conflict`].
    #[instrument(skip_all, fields(email = %email, role = %role))]
    pub async fn create_admin(
        &self,
        email: &Email,
        password_hash: &str,
        role: Role,
    ) -> Result<AdminRow, EngineError> {
        self.catalog()
            .insert_admin(email, password_hash, role)
            .await?
            .ok_or_else(|| EngineError::Conflict(format!("an admin with e-mail {email} exists")))
    }

    /// Changes an admin's role or active flag (never leaving no active admin).
    #[instrument(skip_all, fields(admin = %id))]
    pub async fn update_admin(
        &self,
        id: Uuid,
        patch: &AdminPatch,
    ) -> Result<AdminUpdate, EngineError> {
        Ok(self.catalog().update_admin(id, patch).await?)
    }

    /// Clears an admin's failed logins and back-off; `None` when there is no such admin.
    #[instrument(skip_all, fields(admin = %id))]
    pub async fn unlock_admin(&self, id: Uuid) -> Result<Option<AdminRow>, EngineError> {
        Ok(self.catalog().unlock_admin(id).await?)
    }

    /// Unlocks the admin with `email` (it must exist) and records it in the audit log as done
    /// by `actor`.
    #[instrument(skip_all, fields(email = %email, actor))]
    pub async fn unlock_admin_by_email(
        &self,
        email: &Email,
        actor: &str,
    ) -> Result<AdminRow, EngineError> {
        let catalog = self.catalog();
        let admin = catalog
            .find_admin_by_email(email.as_str())
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("no admin with e-mail {email}")))?;
        let admin = catalog.unlock_admin(admin.id).await?.unwrap_or(admin);
        self.audit(
            actor,
            "admin.unlock",
            Some(email.as_str()),
            "ok",
            None,
            None,
        )
        .await;
        Ok(admin)
    }

    /// Creates an admin from the command line and records it in the audit log as done by
    /// `actor` (`cli`).
    #[instrument(skip_all, fields(email = %email, role = %role, actor))]
    pub async fn create_admin_audited(
        &self,
        email: &Email,
        password_hash: &str,
        role: Role,
        actor: &str,
    ) -> Result<AdminRow, EngineError> {
        let admin = self.create_admin(email, password_hash, role).await?;
        let detail = serde_json::json!({"role": role});
        self.audit(
            actor,
            "admin.create",
            Some(email.as_str()),
            "ok",
            Some(&detail),
            None,
        )
        .await;
        Ok(admin)
    }

    /// The account a login names (e-mail as typed, compared lower-cased by the caller).
    #[instrument(skip_all)]
    pub async fn login_account(&self, email: &str) -> Result<Option<AdminRow>, EngineError> {
        Ok(self.catalog().find_admin_by_email(email).await?)
    }

    /// The active account a token names; `None` when it is gone or disabled.
    #[instrument(skip_all, fields(admin = %id))]
    pub async fn active_admin(&self, id: Uuid) -> Result<Option<AdminRow>, EngineError> {
        Ok(self.catalog().get_admin(id).await?.filter(|a| a.is_active))
    }

    /// Claims one login attempt on `admin`'s account before its password is checked: refused
    /// (`Ok(false)`) while the account is in back-off, or when too many logins race for it.
    /// The claim counts the attempt as a failure and sets the back-off it would earn —
    /// `backoff(failures)` after this many consecutive failures — so parallel guesses cannot
    /// slip past it; [`Engine::login_succeeded`] clears both. Concurrent claims are settled by
    /// the catalog (compare-and-swap on the failure count), re-read and retried.
    #[instrument(skip_all, fields(admin = %admin.id))]
    pub async fn claim_login_attempt(
        &self,
        mut admin: AdminRow,
        backoff: impl Fn(u64) -> Option<Duration>,
    ) -> Result<bool, EngineError> {
        let catalog = self.catalog();
        for _ in 0..CLAIM_TRIES {
            let now = crate::catalog::now();
            if admin.locked_until.is_some_and(|t| t > now) {
                return Ok(false);
            }
            let failures = u64::try_from(admin.failed_logins + 1).unwrap_or(u64::MAX);
            let until = backoff(failures)
                .and_then(|d| chrono::Duration::from_std(d).ok())
                .map(|d| now + d);
            if catalog.claim_login_attempt(&admin, until, now).await? {
                return Ok(true);
            }
            match catalog.get_admin(admin.id).await? {
                Some(fresh) => admin = fresh,
                None => return Ok(false),
            }
        }
        Ok(false)
    }

    /// A login's password was right: clears the account's failures and back-off.
    #[instrument(skip_all, fields(admin = %id))]
    pub async fn login_succeeded(&self, id: Uuid) -> Result<(), EngineError> {
        Ok(self.catalog().reset_failed_logins(id).await?)
    }

    /// Writes an audit record. Never fails the caller: a failure is logged.
    #[instrument(skip_all, fields(action, outcome))]
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        outcome: &str,
        detail: Option<&serde_json::Value>,
        request_id: Option<&str>,
    ) {
        if let Err(e) = self
            .catalog()
            .audit(actor, action, target, outcome, detail, request_id)
            .await
        {
            tracing::warn!(error = %e, action, "could not write the audit log");
        }
    }

    /// A page of the audit log, newest first.
    #[instrument(skip_all, fields(limit = q.limit))]
    pub async fn audit_page(
        &self,
        q: &crate::catalog::AuditQuery,
    ) -> Result<Vec<crate::catalog::AuditEntry>, EngineError> {
        Ok(self.catalog().audit_page(q).await?)
    }

    /// Tenants per catalog status (`provisioning`, `active`, …).
    #[instrument(skip_all)]
    pub async fn tenant_counts(&self) -> Result<Vec<(String, i64)>, EngineError> {
        Ok(self.catalog().count_by_status().await?)
    }

    /// Whether the service may take traffic: the catalog answers, and its migrations are
    /// current.
    #[instrument(skip_all)]
    pub async fn readiness(&self) -> Readiness {
        if self.catalog().ping().await.is_err() {
            return Readiness::Unreachable;
        }
        let Ok((catalog, _)) = self.status(None).await else {
            return Readiness::Unreadable;
        };
        if !catalog.pending.is_empty() || !catalog.problems.is_empty() {
            return Readiness::NotCurrent;
        }
        Readiness::Ready {
            catalog_version: catalog.version.or(self.migrations(Scope::Public).latest()),
        }
    }
}
