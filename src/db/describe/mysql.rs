//! MySQL/MariaDB introspection from `information_schema`.

use sqlx::{MySqlPool, Row};

use super::{list, table};
use crate::db::{BOOKKEEPING_TABLES, DbError, foreign_schema};
use crate::schema::{AutoIncrement, Check, Column, ForeignKey, Index, PrimaryKey, Schema};

/// Reads `schema` (a database) into the model.
pub(crate) async fn describe(pool: &MySqlPool, schema: &str) -> Result<Schema, DbError> {
    let err = |e| DbError::sqlx(format!("describing {schema}"), e);
    let [history, alembic] = BOOKKEEPING_TABLES;
    // Each query takes the schema and the two tables it leaves out.
    let read = |sql: &'static str| {
        sqlx::query(sql)
            .bind(schema)
            .bind(history)
            .bind(alembic)
            .fetch_all(pool)
    };
    // Views have columns too: only base tables are part of the model.
    let cols = sqlx::query(
        "SELECT c.TABLE_NAME, c.COLUMN_NAME, c.COLUMN_TYPE, c.IS_NULLABLE, c.COLUMN_DEFAULT, \
         c.EXTRA, c.GENERATION_EXPRESSION, \
         CASE WHEN c.COLLATION_NAME <> t.TABLE_COLLATION THEN \
              CONCAT('CHARACTER SET ', c.CHARACTER_SET_NAME, ' COLLATE ', c.COLLATION_NAME) END \
         FROM information_schema.COLUMNS c \
         JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA \
         AND t.TABLE_NAME = c.TABLE_NAME AND t.TABLE_TYPE = 'BASE TABLE' \
         WHERE c.TABLE_SCHEMA = ? AND c.TABLE_NAME NOT IN (?, ?) \
         ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION",
    )
    .bind(schema)
    .bind(history)
    .bind(alembic)
    .fetch_all(pool)
    .await
    .map_err(err)?;
    let keys = read(
        "SELECT TABLE_NAME, INDEX_NAME, \
         CAST(GROUP_CONCAT(CASE WHEN SUB_PART IS NULL THEN COLUMN_NAME \
              ELSE CONCAT(COLUMN_NAME, '(', SUB_PART, ')') END ORDER BY SEQ_IN_INDEX SEPARATOR ',') AS CHAR), \
         CAST(MIN(NON_UNIQUE) AS SIGNED), MIN(INDEX_TYPE) \
         FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME NOT IN (?, ?) \
         GROUP BY TABLE_NAME, INDEX_NAME ORDER BY TABLE_NAME, INDEX_NAME",
    )
    .await
    .map_err(err)?;
    // Two filtered reads joined here: joining the two views on the server scans every
    // schema's constraints (80 ms with a few hundred databases, against 15).
    let fks = read(
        "SELECT TABLE_NAME, CONSTRAINT_NAME, \
         CAST(GROUP_CONCAT(COLUMN_NAME ORDER BY ORDINAL_POSITION SEPARATOR ',') AS CHAR), \
         MIN(REFERENCED_TABLE_SCHEMA), MIN(REFERENCED_TABLE_NAME), \
         CAST(GROUP_CONCAT(REFERENCED_COLUMN_NAME ORDER BY ORDINAL_POSITION SEPARATOR ',') AS CHAR) \
         FROM information_schema.KEY_COLUMN_USAGE \
         WHERE TABLE_SCHEMA = ? AND TABLE_NAME NOT IN (?, ?) AND REFERENCED_TABLE_NAME IS NOT NULL \
         GROUP BY TABLE_NAME, CONSTRAINT_NAME ORDER BY TABLE_NAME, CONSTRAINT_NAME",
    )
    .await
    .map_err(err)?;
    let rules = sqlx::query(
        "SELECT TABLE_NAME, CONSTRAINT_NAME, UPDATE_RULE, DELETE_RULE \
         FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ?",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .map_err(err)?;
    // MariaDB names checks per table (a column's check is named after the column), so its
    // view has the table; MySQL 8's has not, and its check names are unique per schema.
    let checks = match read(
        "SELECT TABLE_NAME, CONSTRAINT_NAME, CHECK_CLAUSE, LEVEL = 'Column' \
         FROM information_schema.CHECK_CONSTRAINTS \
         WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME NOT IN (?, ?) ORDER BY 1, 2",
    )
    .await
    {
        Ok(rows) => rows,
        Err(_) => read(
            "SELECT tc.TABLE_NAME, cc.CONSTRAINT_NAME, cc.CHECK_CLAUSE, 0 \
             FROM information_schema.TABLE_CONSTRAINTS tc JOIN information_schema.CHECK_CONSTRAINTS cc \
             ON cc.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA AND cc.CONSTRAINT_NAME = tc.CONSTRAINT_NAME \
             WHERE tc.TABLE_SCHEMA = ? AND tc.TABLE_NAME NOT IN (?, ?) AND tc.CONSTRAINT_TYPE = 'CHECK' \
             ORDER BY 1, 2",
        )
        .await
        .map_err(err)?,
    };

    let mut s = Schema::default();
    for r in &cols {
        let t: String = r.try_get(0).map_err(err)?;
        let extra: String = r.try_get::<String, _>(5).map_err(err)?.to_ascii_lowercase();
        let generated: Option<String> = r.try_get(6).map_err(err)?;
        let nullable = r.try_get::<String, _>(3).map_err(err)? == "YES";
        let default: Option<String> = r.try_get(4).map_err(err)?;
        let (auto_increment, on_update, unsupported) = parse_extra(&extra, generated);
        table(&mut s.tables, &t).columns.push(Column {
            name: r.try_get(1).map_err(err)?,
            data_type: r.try_get::<String, _>(2).map_err(err)?.to_ascii_lowercase(),
            nullable,
            // MariaDB prints `NULL` for a nullable column without a default: the same thing.
            default: default.filter(|d| !(nullable && d == "NULL")),
            auto_increment,
            on_update,
            collation: r.try_get(7).map_err(err)?,
            unsupported,
        });
    }
    for r in &keys {
        let t: String = r.try_get(0).map_err(err)?;
        let name: String = r.try_get(1).map_err(err)?;
        let columns = list(&r.try_get::<String, _>(2).map_err(err)?);
        let entry = table(&mut s.tables, &t);
        if name == "PRIMARY" {
            entry.primary_key = Some(PrimaryKey {
                name: None,
                columns,
            });
            continue;
        }
        let kind: String = r.try_get(4).map_err(err)?;
        entry.indexes.insert(
            name.clone(),
            Index {
                name,
                columns,
                unique: r.try_get::<i64, _>(3).map_err(err)? == 0,
                constraint: false,
                predicate: None,
                method: matches!(kind.as_str(), "FULLTEXT" | "SPATIAL")
                    .then(|| kind.to_ascii_lowercase()),
                include: Vec::new(),
            },
        );
    }
    let mut actions = std::collections::HashMap::new();
    for r in &rules {
        let key: (String, String) = (r.try_get(0).map_err(err)?, r.try_get(1).map_err(err)?);
        let update: String = r.try_get(2).map_err(err)?;
        let delete: String = r.try_get(3).map_err(err)?;
        actions.insert(
            key,
            (update.to_ascii_lowercase(), delete.to_ascii_lowercase()),
        );
    }
    for r in &fks {
        let t: String = r.try_get(0).map_err(err)?;
        let name: String = r.try_get(1).map_err(err)?;
        let (on_update, on_delete) = actions
            .remove(&(t.clone(), name.clone()))
            .unwrap_or_default();
        table(&mut s.tables, &t).add_foreign_key(ForeignKey {
            name: Some(name),
            columns: list(&r.try_get::<String, _>(2).map_err(err)?),
            ref_schema: foreign_schema(r.try_get(3).map_err(err)?, schema),
            ref_table: r.try_get(4).map_err(err)?,
            ref_columns: list(&r.try_get::<String, _>(5).map_err(err)?),
            on_update,
            on_delete,
        });
    }
    for r in &checks {
        let t: String = r.try_get(0).map_err(err)?;
        table(&mut s.tables, &t).add_check(Check {
            name: Some(r.try_get(1).map_err(err)?),
            expression: r.try_get(2).map_err(err)?,
            column_level: r.try_get::<Option<i64>, _>(3).map_err(err)?.unwrap_or(0) != 0,
        });
    }
    Ok(s)
}

/// `EXTRA` in parts: `auto_increment`, `on update …`, and whatever else it says.
fn parse_extra(
    extra: &str,
    generated: Option<String>,
) -> (Option<AutoIncrement>, Option<String>, Option<String>) {
    let mut auto = None;
    let mut on_update = None;
    let mut rest = Vec::new();
    let mut words = extra;
    if let Some(i) = words.find("on update ") {
        on_update = Some(words[i + "on update ".len()..].trim().to_owned());
        words = &words[..i];
    }
    for w in words.split_whitespace() {
        match w {
            "auto_increment" => auto = Some(AutoIncrement::Increment),
            // MySQL 8 marks expression defaults; the default itself says it.
            "default_generated" => {}
            other => rest.push(other.to_owned()),
        }
    }
    if let Some(g) = generated.filter(|g| !g.is_empty()) {
        rest.push(format!("as ({g})"));
    }
    (auto, on_update, (!rest.is_empty()).then(|| rest.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_is_split_into_its_parts() {
        assert_eq!(
            parse_extra("auto_increment", None),
            (Some(AutoIncrement::Increment), None, None)
        );
        assert_eq!(
            parse_extra("on update current_timestamp()", None),
            (None, Some("current_timestamp()".into()), None)
        );
        assert_eq!(
            parse_extra("stored generated", Some("`a` + 1".into())),
            (None, None, Some("stored generated as (`a` + 1)".into()))
        );
    }
}
