//! Driver-independent handles: [`Conn`] (one connection) and [`DbPool`] (a pool), with the
//! `with_conn!` / `with_pool!` macros that run the same sqlx code against whichever driver is
//! inside, and [`placeholders`], which writes `?` parameters the way each backend wants them.

use std::borrow::Cow;

use sqlx::pool::PoolConnection;
use sqlx::{AssertSqlSafe, MySql, Postgres, SqliteConnection};

use super::Backend;

/// One connection of any backend.
pub enum Conn {
    MySql(PoolConnection<MySql>),
    Postgres(PoolConnection<Postgres>),
    Sqlite(Box<SqliteConnection>),
}

impl Conn {
    pub fn backend(&self) -> Backend {
        match self {
            Conn::MySql(_) => Backend::MySql,
            Conn::Postgres(_) => Backend::Postgres,
            Conn::Sqlite(_) => Backend::Sqlite,
        }
    }
}

/// A connection pool of any backend.
#[derive(Clone, Debug)]
pub enum DbPool {
    MySql(sqlx::MySqlPool),
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

impl DbPool {
    pub fn backend(&self) -> Backend {
        match self {
            DbPool::MySql(_) => Backend::MySql,
            DbPool::Postgres(_) => Backend::Postgres,
            DbPool::Sqlite(_) => Backend::Sqlite,
        }
    }

    pub async fn close(&self) {
        match self {
            DbPool::MySql(p) => p.close().await,
            DbPool::Postgres(p) => p.close().await,
            DbPool::Sqlite(p) => p.close().await,
        }
    }
}

/// Runs `$body` with `$c: &mut <Driver>Connection` and `$b: Backend` for whichever driver
/// `$conn: &mut Conn` holds. `$id` names the type used to bind UUIDs (native on PostgreSQL,
/// hyphenated text elsewhere).
macro_rules! with_conn {
    ($conn:expr, |$c:ident, $b:ident| $body:expr) => {
        match $conn {
            $crate::db::Conn::MySql($c) => {
                let $c: &mut sqlx::MySqlConnection = &mut **$c;
                let $b = $crate::db::Backend::MySql;
                $body
            }
            $crate::db::Conn::Postgres($c) => {
                let $c: &mut sqlx::PgConnection = &mut **$c;
                let $b = $crate::db::Backend::Postgres;
                $body
            }
            $crate::db::Conn::Sqlite($c) => {
                let $c: &mut sqlx::SqliteConnection = &mut **$c;
                let $b = $crate::db::Backend::Sqlite;
                $body
            }
        }
    };
}

/// Runs `$body` with `$p: &<Driver>Pool`, `$b: Backend` and the type alias `$id` (how this
/// driver binds and decodes UUID columns) for whichever driver `$pool: &DbPool` holds.
macro_rules! with_pool {
    ($pool:expr, |$p:ident, $b:ident, $id:ident| $body:expr) => {
        match $pool {
            $crate::db::DbPool::MySql($p) => {
                #[allow(dead_code)]
                type $id = uuid::fmt::Hyphenated;
                let $b = $crate::db::Backend::MySql;
                $body
            }
            $crate::db::DbPool::Postgres($p) => {
                #[allow(dead_code)]
                type $id = uuid::Uuid;
                let $b = $crate::db::Backend::Postgres;
                $body
            }
            $crate::db::DbPool::Sqlite($p) => {
                #[allow(dead_code)]
                type $id = uuid::fmt::Hyphenated;
                let $b = $crate::db::Backend::Sqlite;
                $body
            }
        }
    };
}

pub(crate) use {with_conn, with_pool};

/// Rewrites `?` parameters as `$1, $2, …` for PostgreSQL; other backends take `?` as is.
/// Question marks inside single-quoted literals are left alone.
pub fn placeholders(backend: Backend, sql: &str) -> AssertSqlSafe<Cow<'static, str>> {
    if backend != Backend::Postgres {
        return AssertSqlSafe(Cow::Owned(sql.to_owned()));
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    let mut in_str = false;
    for ch in sql.chars() {
        match ch {
            '\'' => {
                in_str = !in_str;
                out.push(ch);
            }
            '?' if !in_str => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(ch),
        }
    }
    AssertSqlSafe(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_gets_numbered_parameters() {
        let AssertSqlSafe(s) = placeholders(Backend::Postgres, "SELECT '?' WHERE a = ? AND b = ?");
        assert_eq!(s, "SELECT '?' WHERE a = $1 AND b = $2");
        let AssertSqlSafe(s) = placeholders(Backend::MySql, "WHERE a = ?");
        assert_eq!(s, "WHERE a = ?");
    }
}
