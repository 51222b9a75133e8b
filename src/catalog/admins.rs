//! `admin_master_users`: the people who run the platform, their role and login throttling.

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
    pub locked_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Changes to an admin user.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AdminPatch {
    pub role: Option<Role>,
    pub is_active: Option<bool>,
}

const COLUMNS: &str = "id, email, password_hash, role, is_active, failed_logins, locked_until, created_at, updated_at";

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
            "INSERT INTO admin_master_users ({COLUMNS}) VALUES (?, ?, ?, ?, ?, 0, NULL, ?, ?)"
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

    /// Counts a failed login; locks the account until `lock_until` once `max_failures` is
    /// reached.
    pub async fn record_failed_login(
        &self,
        id: Uuid,
        max_failures: i64,
        lock_until: DateTime<Utc>,
    ) -> Result<(), DbError> {
        // `locked_until` first: MySQL evaluates SET assignments left to right, so a later
        // clause would already see the incremented count (PostgreSQL and SQLite see old values).
        let sql = "UPDATE admin_master_users SET \
            locked_until = CASE WHEN failed_logins + 1 >= ? THEN ? ELSE locked_until END, \
            failed_logins = failed_logins + 1, updated_at = ? WHERE id = ?";
        with_pool!(&self.pool, |p, b, Id| {
            sqlx::query(placeholders(b, sql))
                .bind(max_failures)
                .bind(lock_until)
                .bind(now())
                .bind(Id::from(id))
                .execute(p)
                .await
                .map(|_| ())
                .map_err(|e| DbError::sqlx("recording failed login", e))
        })
    }

    /// Clears failures after a successful login (or an expired lock).
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

    /// Applies `patch`; `Ok(None)` when the user does not exist.
    pub async fn update_admin(
        &self,
        id: Uuid,
        patch: &AdminPatch,
    ) -> Result<Option<AdminRow>, DbError> {
        let sql = "UPDATE admin_master_users SET role = COALESCE(?, role), \
            is_active = COALESCE(?, is_active), updated_at = ? WHERE id = ?";
        with_pool!(&self.pool, |p, b, Id| {
            sqlx::query(placeholders(b, sql))
                .bind(patch.role.map(Role::as_str))
                .bind(patch.is_active)
                .bind(now())
                .bind(Id::from(id))
                .execute(p)
                .await
                .map(|_| ())
                .map_err(|e| DbError::sqlx("updating admin", e))
        })?;
        self.get_admin(id).await
    }
}
