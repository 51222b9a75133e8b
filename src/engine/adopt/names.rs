//! Display names for adopted tenants: `--tenants-query`, run read-only where `--tenants-url`
//! (or the catalog's server) says.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection, Row};

use crate::config::{ConfigError, DbLocation};
use crate::engine::EngineError;

/// How long `--tenants-query` may run.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// A text column, also when the server sends it as bytes (MySQL's binary collations).
pub(super) fn text_column<R>(row: &R, i: usize) -> Result<String, sqlx::Error>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    match row.try_get::<String, _>(i) {
        Ok(s) => Ok(s),
        Err(e) => match row.try_get::<Vec<u8>, _>(i) {
            Ok(b) => String::from_utf8(b).map_err(|u| sqlx::Error::Decode(Box::new(u))),
            Err(_) => Err(e),
        },
    }
}

fn query_error(message: impl Into<String>) -> EngineError {
    EngineError::Config(ConfigError::new("--tenants-query", message))
}

/// Runs `--tenants-query` read-only where `location` says: schema name → display name.
pub(super) async fn display_names(
    query: &str,
    location: &DbLocation,
) -> Result<HashMap<String, String>, EngineError> {
    let run = async {
        match location {
            DbLocation::MySql { url, .. } => {
                let mut c = sqlx::MySqlConnection::connect(url.as_str()).await?;
                sqlx::raw_sql("START TRANSACTION READ ONLY")
                    .execute(&mut c)
                    .await?;
                let rows = sqlx::raw_sql(AssertSqlSafe(query.to_owned()))
                    .fetch_all(&mut c)
                    .await;
                let _ = c.close().await;
                pairs(&rows?)
            }
            DbLocation::Postgres { url, .. } => {
                let schemas = search_path(url);
                let mut plain = url.clone();
                let rest: Vec<(String, String)> = url
                    .query_pairs()
                    .filter(|(k, _)| k != "search_path")
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                plain.set_query(None);
                if !rest.is_empty() {
                    plain.query_pairs_mut().extend_pairs(rest);
                }
                let mut c = sqlx::PgConnection::connect(plain.as_str()).await?;
                sqlx::raw_sql("BEGIN READ ONLY").execute(&mut c).await?;
                if !schemas.is_empty() {
                    let list: Vec<String> = schemas
                        .iter()
                        .map(|s| crate::db::Backend::Postgres.quote(s))
                        .collect();
                    sqlx::raw_sql(AssertSqlSafe(format!(
                        "SET LOCAL search_path TO {}",
                        list.join(", ")
                    )))
                    .execute(&mut c)
                    .await?;
                }
                let rows = sqlx::raw_sql(AssertSqlSafe(query.to_owned()))
                    .fetch_all(&mut c)
                    .await;
                let _ = c.close().await;
                pairs(&rows?)
            }
            DbLocation::Sqlite { path } => {
                let opts = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(false)
                    .read_only(true);
                let mut c = sqlx::SqliteConnection::connect_with(&opts).await?;
                let rows = sqlx::raw_sql(AssertSqlSafe(query.to_owned()))
                    .fetch_all(&mut c)
                    .await;
                let _ = c.close().await;
                pairs(&rows?)
            }
        }
    };
    match tokio::time::timeout(QUERY_TIMEOUT, run).await {
        Err(_) => Err(query_error(format!(
            "did not finish within {} s",
            QUERY_TIMEOUT.as_secs()
        ))),
        Ok(Err(e)) => Err(query_error(match e.as_database_error() {
            Some(db) => db.message().to_owned(),
            None => e.to_string(),
        })),
        Ok(Ok(map)) => Ok(map),
    }
}

/// The schemas a PostgreSQL URL's `search_path` parameter names (the README's way of naming
/// a schema in a URL), in order.
pub(super) fn search_path(url: &url::Url) -> Vec<String> {
    url.query_pairs()
        .filter(|(k, _)| k == "search_path")
        .flat_map(|(_, v)| {
            v.split(',')
                .map(|s| s.trim().trim_matches('"').to_owned())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Where `--tenants-query` runs by default: the catalog's server. On MySQL no database is
/// selected (the catalog's may not exist before the first adoption); the query names its
/// tables' database, as `torri_app_public.tenants`.
pub(super) fn server_of(catalog: &DbLocation) -> DbLocation {
    match catalog {
        DbLocation::MySql { url, .. } => {
            let mut server = url.clone();
            server.set_path("");
            DbLocation::MySql {
                url: server,
                database: String::new(),
            }
        }
        other => other.clone(),
    }
}

/// The first two columns of every row, as schema name and display name.
fn pairs<R>(rows: &[R]) -> Result<HashMap<String, String>, sqlx::Error>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    if let Some(first) = rows.first()
        && first.len() < 2
    {
        return Err(sqlx::Error::Protocol(
            "it must return two columns: the schema name, then the display name".into(),
        ));
    }
    rows.iter()
        .map(|r| Ok((text_column(r, 0)?, text_column(r, 1)?)))
        .collect()
}
