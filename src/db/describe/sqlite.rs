//! SQLite introspection from `sqlite_master`, its pragmas and the `CREATE` texts it keeps.

use sqlx::{AssertSqlSafe, Row, SqliteConnection};

use super::sqlite_text::{self, normalize};
use super::{list, table};
use crate::db::{BOOKKEEPING_TABLES, DbError};
use crate::schema::{AutoIncrement, Check, Column, ForeignKey, Index, PrimaryKey, Schema};

/// Reads the database on `conn` into the model. `label` names it in errors.
pub(crate) async fn describe(conn: &mut SqliteConnection, label: &str) -> Result<Schema, DbError> {
    let err = |e| DbError::sqlx(format!("describing {label}"), e);
    let [history, alembic] = BOOKKEEPING_TABLES;
    // Every user table, joined with one of its pragmas.
    let tables = |pragma: &str| {
        format!(
            "FROM sqlite_master m JOIN {pragma} WHERE m.type = 'table' \
             AND m.name NOT LIKE 'sqlite_%' AND m.name NOT IN (?, ?)"
        )
    };
    let triggers: Vec<(String, String)> = sqlx::query_as(
        "SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger' ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(err)?;
    let texts = sqlx::query(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name NOT IN (?, ?) ORDER BY name",
    )
    .bind(history)
    .bind(alembic)
    .fetch_all(&mut *conn)
    .await
    .map_err(err)?;
    let cols = sqlx::query(AssertSqlSafe(format!(
        "SELECT m.name, p.name, p.type, p.\"notnull\", p.dflt_value, p.pk, p.hidden {} \
         ORDER BY m.name, p.cid",
        tables("pragma_table_xinfo(m.name) p")
    )))
    .bind(history)
    .bind(alembic)
    .fetch_all(&mut *conn)
    .await
    .map_err(err)?;
    let idx = sqlx::query(AssertSqlSafe(format!(
        "SELECT m.name, il.name, il.\"unique\", il.origin, \
         (SELECT group_concat(name, ',') FROM \
            (SELECT name FROM pragma_index_info(il.name) ORDER BY seqno)), \
         (SELECT s.sql FROM sqlite_master s WHERE s.type = 'index' AND s.name = il.name) {} \
         ORDER BY m.name, il.name",
        tables("pragma_index_list(m.name) il")
    )))
    .bind(history)
    .bind(alembic)
    .fetch_all(&mut *conn)
    .await
    .map_err(err)?;
    let fks = sqlx::query(AssertSqlSafe(format!(
        "SELECT m.name, f.id, f.\"from\", f.\"table\", coalesce(f.\"to\", ''), f.on_update, \
         f.on_delete {} ORDER BY m.name, f.id, f.seq",
        tables("pragma_foreign_key_list(m.name) f")
    )))
    .bind(history)
    .bind(alembic)
    .fetch_all(&mut *conn)
    .await
    .map_err(err)?;

    let mut s = Schema::default();
    let mut auto_tables = Vec::new();
    for r in &texts {
        let name: String = r.try_get(0).map_err(err)?;
        let sql: String = r
            .try_get::<Option<String>, _>(1)
            .map_err(err)?
            .unwrap_or_default();
        let t = table(&mut s.tables, &name);
        for (name, expression) in sqlite_text::checks(&sql) {
            t.add_check(Check {
                name,
                expression,
                column_level: false,
            });
        }
        t.options = sqlite_text::table_options(&sql);
        if sqlite_text::collates(&sql) {
            t.rebuild_hazards.push("its column collations".into());
        }
        for (_, trigger) in triggers.iter().filter(|(on, _)| *on == name) {
            t.rebuild_hazards.push(format!("trigger {trigger}"));
        }
        if sqlite_text::autoincrement(&sql) {
            auto_tables.push(name);
        }
    }
    let mut keys: Vec<(String, i64, String)> = Vec::new();
    for r in &cols {
        let t: String = r.try_get(0).map_err(err)?;
        let name: String = r.try_get(1).map_err(err)?;
        let hidden: i64 = r.try_get(6).map_err(err)?;
        let pk: i64 = r.try_get(5).map_err(err)?;
        if pk > 0 {
            keys.push((t.clone(), pk, name.clone()));
        }
        let declared: String = r.try_get(2).map_err(err)?;
        table(&mut s.tables, &t).columns.push(Column {
            name,
            data_type: normalize(&declared),
            nullable: r.try_get::<i64, _>(3).map_err(err)? == 0,
            default: r
                .try_get::<Option<String>, _>(4)
                .map_err(err)?
                .map(|d| normalize(&d)),
            auto_increment: None,
            on_update: None,
            // Kept only in the table's text: a rebuild hazard (see above).
            collation: None,
            unsupported: (hidden != 0).then(|| "generated".to_owned()),
        });
    }
    keys.sort();
    for (t, _, column) in keys {
        let entry = table(&mut s.tables, &t);
        entry
            .primary_key
            .get_or_insert_with(|| PrimaryKey {
                name: None,
                columns: Vec::new(),
            })
            .columns
            .push(column);
    }
    for t in auto_tables {
        let entry = table(&mut s.tables, &t);
        if let Some([only]) = entry.primary_key.as_ref().map(|k| k.columns.as_slice()) {
            let only = only.clone();
            if let Some(c) = entry.columns.iter_mut().find(|c| c.name == only) {
                c.auto_increment = Some(AutoIncrement::Increment);
            }
        }
    }
    for r in &idx {
        let t: String = r.try_get(0).map_err(err)?;
        let origin: String = r.try_get(3).map_err(err)?;
        if origin == "pk" {
            continue;
        }
        let named: Option<String> = r.try_get(4).map_err(err)?;
        let text: Option<String> = r.try_get(5).map_err(err)?;
        let (columns, predicate) = match &text {
            Some(sql) => sqlite_text::index_parts(sql),
            None => (list(&named.unwrap_or_default()), None),
        };
        let constraint = origin == "u";
        // A `UNIQUE` constraint's index is named by its position; name it by its columns.
        let name = if constraint {
            format!("{t}_{}_key", columns.join("_"))
        } else {
            r.try_get(1).map_err(err)?
        };
        table(&mut s.tables, &t).indexes.insert(
            name.clone(),
            Index {
                name,
                columns,
                unique: r.try_get::<i64, _>(2).map_err(err)? != 0,
                constraint,
                predicate,
                method: None,
                include: Vec::new(),
            },
        );
    }
    let mut current: Option<(String, i64, ForeignKey)> = None;
    let mut done = Vec::new();
    for r in &fks {
        let t: String = r.try_get(0).map_err(err)?;
        let id: i64 = r.try_get(1).map_err(err)?;
        let from: String = r.try_get(2).map_err(err)?;
        let to: String = r.try_get(4).map_err(err)?;
        match &mut current {
            Some((ct, cid, fk)) if *ct == t && *cid == id => {
                fk.columns.push(from);
                fk.ref_columns.push(to);
            }
            _ => {
                done.extend(current.take());
                current = Some((
                    t,
                    id,
                    ForeignKey {
                        name: None,
                        columns: vec![from],
                        ref_schema: None,
                        ref_table: r.try_get(3).map_err(err)?,
                        ref_columns: vec![to],
                        on_update: r.try_get::<String, _>(5).map_err(err)?.to_ascii_lowercase(),
                        on_delete: r.try_get::<String, _>(6).map_err(err)?.to_ascii_lowercase(),
                    },
                ));
            }
        }
    }
    done.extend(current);
    for (t, _, mut fk) in done {
        // `REFERENCES parent` without columns means the parent's primary key.
        if fk.ref_columns.iter().all(String::is_empty) {
            fk.ref_columns = s
                .tables
                .get(&fk.ref_table)
                .and_then(|p| p.primary_key.as_ref())
                .map(|k| k.columns.clone())
                .unwrap_or_default();
        }
        table(&mut s.tables, &t).add_foreign_key(fk);
    }
    Ok(s)
}
