//! `admin_master_users`: the people who run the platform, their role, their token version
//! and login back-off. Changes that could leave the platform without an active admin run in
//! one transaction that holds the active admins' rows, so two admins disabling each other at
//! once cannot both succeed.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{Catalog, col, now, uuid_of};
use crate::db::{DbError, placeholders, with_pool};
use crate::domain::{Email, Role};

/// One admin master user. The password hash never leaves the repository's callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminRow {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub role: Role,
    pub is_active: bool,
    pub failed_logins: i64,
    /// Until when login attempts are refused without checking the password (back-off).
    pub locked_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Raised when the account is disabled or its role changes; tokens carry it.
    pub token_version: i64,
}

/// What [`Catalog::update_admin`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminUpdate {
    Updated(AdminRow),
    NotFound,
    /// Refused: the change would leave no active admin with the admin role.
    LastAdmin,
}

/// Changes to an admin user.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AdminPatch {
    pub role: Option<Role>,
    pub is_active: Option<bool>,
}

const COLUMNS: &str = "id, email, password_hash, role, is_active, failed_logins, locked_until, created_at, updated_at, token_version";

macro_rules! decode_admin {
    ($r:expr, $Id:ty) => {{
        let r = $r;
        let role: String = col(r, 3)?;
        Ok::<AdminRow, DbError>(AdminRow {
            id: uuid_of(col::<_, $Id>(r, 0)?),
            email: col(r, 1)?,
            password_hash: col(r, 2)?,
            role: role.parse().unwrap_or(Role::Viewer),
            is_active: col(r, 4)?,
            failed_logins: col(r, 5)?,
            locked_until: col(r, 6)?,
            created_at: col(r, 7)?,
            updated_at: col(r, 8)?,
            token_version: col(r, 9)?,
        })
    }};
}

impl Catalog {
    /// Inserts an admin; `Ok(None)` when the e-mail is taken.
    pub async fn insert_admin(
        &self,
        email: &Email,
        password_hash: &str,
        role: Role,
    ) -> Result<Option<AdminRow>, DbError> {
        let id = Uuid::new_v4();
        let t = now();
        let sql = format!(
            "INSERT INTO admin_master_users ({COLUMNS}) VALUES (?, ?, ?, ?, ?, 0, NULL, ?, ?, 0)"
        );
        let inserted = with_pool!(&self.pool, |p, b, Id| {
            sqlx::query(placeholders(b, &sql))
                .bind(Id::from(id))
                .bind(email.as_str())
                .bind(password_hash)
                .bind(role.as_str())
                .bind(true)
                .bind(t)
                .bind(t)
                .execute(p)
                .await
                .map(|_| ())
                .map_err(|e| DbError::sqlx("creating admin", e))
        });
        match inserted {
            Ok(_) => self.get_admin(id).await,
            Err(e) if e.is_unique_violation() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn get_admin(&self, id: Uuid) -> Result<Option<AdminRow>, DbError> {
        let sql = format!("SELECT {COLUMNS} FROM admin_master_users WHERE id = ?");
        with_pool!(&self.pool, |p, b, Id| {
            let row = sqlx::query(placeholders(b, &sql))
                .bind(Id::from(id))
                .fetch_optional(p)
                .await
                .map_err(|e| DbError::sqlx("reading admin", e))?;
            match row {
                Some(r) => Ok(Some(decode_admin!(&r, Id)?)),
                None => Ok(None),
            }
        })
    }

    pub async fn find_admin_by_email(&self, email: &str) -> Result<Option<AdminRow>, DbError> {
        let sql = format!("SELECT {COLUMNS} FROM admin_master_users WHERE email = ?");
        with_pool!(&self.pool, |p, b, Id| {
            let row = sqlx::query(placeholders(b, &sql))
                .bind(email)
                .fetch_optional(p)
                .await
                .map_err(|e| DbError::sqlx("reading admin", e))?;
            match row {
                Some(r) => Ok(Some(decode_admin!(&r, Id)?)),
                None => Ok(None),
            }
        })
    }

    pub async fn list_admins(&self) -> Result<Vec<AdminRow>, DbError> {
        let sql = format!("SELECT {COLUMNS} FROM admin_master_users ORDER BY email");
        with_pool!(&self.pool, |p, _b, Id| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(p)
                .await
                .map_err(|e| DbError::sqlx("listing admins", e))?;
            rows.iter().map(|r| decode_admin!(r, Id)).collect()
        })
    }

    /// Claims one login attempt before its password is checked, atomically: succeeds only
    /// when the account is not in back-off (`locked_until` past or unset) and nobody else
    /// claimed since `seen` was read (its failure count is unchanged). The claim counts the
    /// attempt as failed and sets the back-off it would earn; a right password then clears
    /// both ([`Catalog::reset_failed_logins`]). `Ok(false)`: refused, do not check.
    pub async fn claim_login_attempt(
        &self,
        seen: &AdminRow,
        backoff_until: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    ) -> Result<bool, DbError> {
        let sql = "UPDATE admin_master_users SET failed_logins = ?, locked_until = ?, \
            updated_at = ? WHERE id = ? AND failed_logins = ? \
            AND (locked_until IS NULL OR locked_until <= ?)";
        let affected = with_pool!(&self.pool, |p, b, Id| {
            sqlx::query(placeholders(b, sql))
                .bind(seen.failed_logins + 1)
                .bind(backoff_until)
                .bind(at)
                .bind(Id::from(seen.id))
                .bind(seen.failed_logins)
                .bind(at)
                .execute(p)
                .await
                .map(|r| r.rows_affected())
                .map_err(|e| DbError::sqlx("claiming a login attempt", e))
        })?;
        Ok(affected == 1)
    }

    /// Clears failures and back-off (a successful login, or an unlock by an admin).
    pub async fn reset_failed_logins(&self, id: Uuid) -> Result<(), DbError> {
        let sql = "UPDATE admin_master_users SET failed_logins = 0, locked_until = NULL, \
            updated_at = ? WHERE id = ?";
        with_pool!(&self.pool, |p, b, Id| {
            sqlx::query(placeholders(b, sql))
                .bind(now())
                .bind(Id::from(id))
                .execute(p)
                .await
                .map(|_| ())
                .map_err(|e| DbError::sqlx("resetting failed logins", e))
        })
    }

    /// Applies `patch` in one transaction that first locks every active admin's row, then
    /// refuses the change when no active admin with the admin role would remain. Disabling
    /// the account or changing its role raises its token version.
    pub async fn update_admin(&self, id: Uuid, patch: &AdminPatch) -> Result<AdminUpdate, DbError> {
        let lock_admins =
            "SELECT id FROM admin_master_users WHERE role = 'admin' AND is_active = ?";
        let current = format!("SELECT {COLUMNS} FROM admin_master_users WHERE id = ?");
        let update = "UPDATE admin_master_users SET role = ?, is_active = ?, \
            token_version = ?, updated_at = ? WHERE id = ?";
        let remaining =
            "SELECT COUNT(*) FROM admin_master_users WHERE role = 'admin' AND is_active = ?";
        with_pool!(&self.pool, |p, b, Id| {
            let fail = |what: &'static str| move |e| DbError::sqlx(what, e);
            // SQLite: the write lock from the start; the others: the admins' rows, so a
            // concurrent change waits here and then counts what this one committed.
            let (begun, for_update) = match b {
                crate::db::Backend::Sqlite => (p.begin_with("BEGIN IMMEDIATE").await, ""),
                _ => (p.begin().await, " FOR UPDATE"),
            };
            let mut tx = begun.map_err(fail("starting a transaction"))?;
            sqlx::query(placeholders(b, &format!("{lock_admins}{for_update}")))
                .bind(true)
                .fetch_all(&mut *tx)
                .await
                .map_err(fail("locking the active admins"))?;
            let row = sqlx::query(placeholders(b, &format!("{current}{for_update}")))
                .bind(Id::from(id))
                .fetch_optional(&mut *tx)
                .await
                .map_err(fail("reading admin"))?;
            let Some(row) = row else {
                return Ok(AdminUpdate::NotFound);
            };
            let before = decode_admin!(&row, Id)?;
            let role = patch.role.unwrap_or(before.role);
            let is_active = patch.is_active.unwrap_or(before.is_active);
            let retire_tokens = role != before.role || (before.is_active && !is_active);
            let token_version = before.token_version + i64::from(retire_tokens);
            sqlx::query(placeholders(b, update))
                .bind(role.as_str())
                .bind(is_active)
                .bind(token_version)
                .bind(now())
                .bind(Id::from(id))
                .execute(&mut *tx)
                .await
                .map_err(fail("updating admin"))?;
            let left: i64 = sqlx::query_scalar(placeholders(b, remaining))
                .bind(true)
                .fetch_one(&mut *tx)
                .await
                .map_err(fail("counting active admins"))?;
            if left == 0 {
                // Dropping the transaction rolls it back.
                return Ok(AdminUpdate::LastAdmin);
            }
            let row = sqlx::query(placeholders(b, &current))
                .bind(Id::from(id))
                .fetch_one(&mut *tx)
                .await
                .map_err(fail("reading admin"))?;
            let after = decode_admin!(&row, Id)?;
            tx.commit()
                .await
                .map_err(fail("committing the admin change"))?;
            Ok(AdminUpdate::Updated(after))
        })
    }

    /// Clears an account's failures and back-off; `Ok(None)` when it does not exist.
    pub async fn unlock_admin(&self, id: Uuid) -> Result<Option<AdminRow>, DbError> {
        self.reset_failed_logins(id).await?;
        self.get_admin(id).await
    }
}
