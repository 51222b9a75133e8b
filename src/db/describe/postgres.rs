//! PostgreSQL introspection from `pg_catalog`.

use sqlx::{PgPool, Row};

use super::table;
use crate::db::{BOOKKEEPING_TABLES, DbError, foreign_schema};
use crate::schema::{AutoIncrement, Check, Column, ForeignKey, Index, PrimaryKey, Schema};

/// Reads `schema` into the model.
pub(crate) async fn describe(pool: &PgPool, schema: &str) -> Result<Schema, DbError> {
    let err = |e| DbError::sqlx(format!("describing {schema}"), e);
    let ignored: Vec<&str> = BOOKKEEPING_TABLES.to_vec();
    // Each query takes the schema and the tables it leaves out.
    let read = |sql: &'static str| {
        sqlx::query(sql)
            .bind(schema)
            .bind(ignored.clone())
            .fetch_all(pool)
    };
    let cols = read(
        "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), \
         NOT a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity::text, a.attgenerated::text, \
         a.attidentity = '' AND a.attgenerated = '' AND pg_get_serial_sequence( \
             quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname) IS NOT NULL, \
         CASE WHEN a.attcollation <> 0 AND a.attcollation <> ty.typcollation THEN \
              'COLLATE ' || quote_ident(co.collname) END \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
         JOIN pg_type ty ON ty.oid = a.atttypid \
         LEFT JOIN pg_collation co ON co.oid = a.attcollation \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0 \
         AND NOT a.attisdropped AND c.relname <> ALL($2) ORDER BY c.relname, a.attnum",
    )
    .await
    .map_err(err)?;
    let idx = read(
        "SELECT t.relname::text, i.relname::text, ix.indisunique, \
         EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = ix.indexrelid AND k.contype = 'u'), \
         ARRAY(SELECT pg_get_indexdef(ix.indexrelid, k, true) \
                      || CASE ix.indoption[k - 1] & 3 WHEN 1 THEN ' DESC NULLS LAST' \
                         WHEN 2 THEN ' NULLS FIRST' WHEN 3 THEN ' DESC' ELSE '' END \
               FROM generate_series(1, ix.indnkeyatts::int) AS k ORDER BY k)::text[], \
         pg_get_expr(ix.indpred, ix.indrelid, true), am.amname::text, \
         ARRAY(SELECT pg_get_indexdef(ix.indexrelid, k, true) \
               FROM generate_series(ix.indnkeyatts::int + 1, ix.indnatts::int) AS k ORDER BY k)::text[] \
         FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid \
         JOIN pg_class t ON t.oid = ix.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
         JOIN pg_am am ON am.oid = i.relam \
         WHERE n.nspname = $1 AND t.relname <> ALL($2) AND NOT ix.indisprimary ORDER BY 1, 2",
    )
    .await
    .map_err(err)?;
    let cons = read(
        "SELECT t.relname::text, c.conname::text, c.contype::text, \
         ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord) \
               JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.ord)::text[], \
         rn.nspname::text, rt.relname::text, \
         ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, ord) \
               JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum ORDER BY k.ord)::text[], \
         c.confupdtype::text, c.confdeltype::text, pg_get_constraintdef(c.oid, true) \
         FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         LEFT JOIN pg_class rt ON rt.oid = c.confrelid LEFT JOIN pg_namespace rn ON rn.oid = rt.relnamespace \
         WHERE c.contype IN ('p', 'f', 'c') AND n.nspname = $1 AND t.relname <> ALL($2) ORDER BY 1, 2",
    )
    .await
    .map_err(err)?;

    let mut s = Schema::default();
    for r in &cols {
        let t: String = r.try_get(0).map_err(err)?;
        let identity: String = r.try_get(5).map_err(err)?;
        let generated: String = r.try_get(6).map_err(err)?;
        let serial: bool = r.try_get(7).map_err(err)?;
        let default = r
            .try_get::<Option<String>, _>(4)
            .map_err(err)?
            .map(|d| unqualified(&d, schema));
        let (auto_increment, default, unsupported) = match (identity.as_str(), serial) {
            ("a", _) => (Some(AutoIncrement::IdentityAlways), default, None),
            ("d", _) => (Some(AutoIncrement::IdentityByDefault), default, None),
            // A serial's `nextval` is its sequence's, named after the table.
            (_, true) => (Some(AutoIncrement::Increment), None, None),
            _ if generated == "s" => (
                None,
                None,
                Some(format!(
                    "generated always as ({}) stored",
                    default.unwrap_or_default()
                )),
            ),
            _ => (None, default, None),
        };
        table(&mut s.tables, &t).columns.push(Column {
            name: r.try_get(1).map_err(err)?,
            data_type: unqualified_type(&r.try_get::<String, _>(2).map_err(err)?, schema),
            nullable: r.try_get(3).map_err(err)?,
            default,
            auto_increment,
            on_update: None,
            collation: r.try_get(8).map_err(err)?,
            unsupported,
        });
    }
    for r in &idx {
        let t: String = r.try_get(0).map_err(err)?;
        let name: String = r.try_get(1).map_err(err)?;
        let method: String = r.try_get(6).map_err(err)?;
        table(&mut s.tables, &t).indexes.insert(
            name.clone(),
            Index {
                name,
                unique: r.try_get(2).map_err(err)?,
                constraint: r.try_get(3).map_err(err)?,
                columns: r.try_get(4).map_err(err)?,
                predicate: r.try_get(5).map_err(err)?,
                method: (method != "btree").then_some(method),
                include: r.try_get(7).map_err(err)?,
            },
        );
    }
    for r in &cons {
        let t: String = r.try_get(0).map_err(err)?;
        let name: String = r.try_get(1).map_err(err)?;
        let kind: String = r.try_get(2).map_err(err)?;
        let columns: Vec<String> = r.try_get(3).map_err(err)?;
        let entry = table(&mut s.tables, &t);
        match kind.as_str() {
            "p" => {
                entry.primary_key = Some(PrimaryKey {
                    name: Some(name),
                    columns,
                })
            }
            "f" => entry.add_foreign_key(ForeignKey {
                name: Some(name),
                columns,
                ref_schema: foreign_schema(r.try_get(4).map_err(err)?, schema),
                ref_table: r.try_get(5).map_err(err)?,
                ref_columns: r.try_get(6).map_err(err)?,
                on_update: referential_action(&r.try_get::<String, _>(7).map_err(err)?),
                on_delete: referential_action(&r.try_get::<String, _>(8).map_err(err)?),
            }),
            _ => {
                let def: String = r.try_get(9).map_err(err)?;
                entry.add_check(Check {
                    name: Some(name),
                    expression: check_expression(&def),
                    column_level: false,
                })
            }
        }
    }
    Ok(s)
}

/// An expression with the schema's own name left out of quoted object names
/// (`nextval('tenant_a.seq'::regclass)` → `nextval('seq'::regclass)`), so a tenant and a
/// scratch schema compare equal.
pub(crate) fn unqualified(expr: &str, schema: &str) -> String {
    expr.replace(&format!("'{schema}."), "'")
        .replace(&format!("'\"{schema}\"."), "'")
}

/// A type of the schema's own (an enum, a domain) without the schema's name, which
/// `format_type` adds when the schema is not on the search path.
fn unqualified_type(data_type: &str, schema: &str) -> String {
    data_type
        .strip_prefix(&format!("\"{schema}\"."))
        .or_else(|| data_type.strip_prefix(&format!("{schema}.")))
        .unwrap_or(data_type)
        .to_owned()
}

/// `pg_constraint`'s action letter in words, as MySQL's information_schema spells them.
fn referential_action(code: &str) -> String {
    match code {
        "a" => "no action",
        "r" => "restrict",
        "c" => "cascade",
        "n" => "set null",
        "d" => "set default",
        other => other,
    }
    .to_owned()
}

/// `CHECK ((price > 0))` → `(price > 0)`: what goes between `CHECK (` and `)`.
fn check_expression(def: &str) -> String {
    let body = def.trim().strip_prefix("CHECK ").unwrap_or(def).trim();
    let body = body.strip_suffix(" NOT VALID").unwrap_or(body);
    match body.strip_prefix('(').and_then(|b| b.strip_suffix(')')) {
        Some(inner) if balanced(inner) => inner.to_owned(),
        _ => body.to_owned(),
    }
}

/// True when the parentheses of `s` (outside string literals) never close more than opened.
fn balanced(s: &str) -> bool {
    let mut depth = 0i32;
    let mut quoted = false;
    for ch in s.chars() {
        match ch {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_definitions_lose_their_wrapper_only() {
        assert_eq!(check_expression("CHECK ((price > 0))"), "(price > 0)");
        assert_eq!(check_expression("CHECK (a > 0)"), "a > 0");
        assert_eq!(
            check_expression("CHECK ((a > 0) AND (b > 0))"),
            "(a > 0) AND (b > 0)"
        );
        assert_eq!(check_expression("CHECK (a > 0) NOT VALID"), "a > 0");
    }
}
