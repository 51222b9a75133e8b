//! MySQL/MariaDB DDL: indexes and checks inside `CREATE TABLE`, `MODIFY COLUMN` with the
//! whole new definition, foreign keys by `ALTER TABLE` once every table exists.

use super::{Rendered, check_def, create_table, drop_name, foreign_key_def, key_parts};
use crate::backend::Backend;
use crate::schema::diff::Change;
use crate::schema::model::{Check, Column, ForeignKey, Index, Schema, Table};

const B: Backend = Backend::MySql;

fn column(c: &Column) -> String {
    let mut s = format!("{} {}", B.quote(&c.name), c.data_type);
    if let Some(collation) = &c.collation {
        s.push(' ');
        s.push_str(collation);
    }
    s.push_str(if c.nullable { " NULL" } else { " NOT NULL" });
    if let Some(d) = &c.default {
        s.push_str(" DEFAULT ");
        s.push_str(d);
    }
    if c.auto_increment.is_some() {
        s.push_str(" AUTO_INCREMENT");
    }
    if let Some(u) = &c.on_update {
        s.push_str(" ON UPDATE ");
        s.push_str(u);
    }
    s
}

fn index_kind(i: &Index) -> &'static str {
    match (i.method.as_deref(), i.unique) {
        (Some("fulltext"), _) => "FULLTEXT ",
        (Some("spatial"), _) => "SPATIAL ",
        (_, true) => "UNIQUE ",
        _ => "",
    }
}

fn alter(table: &str, what: String) -> String {
    format!("ALTER TABLE {} {what}", B.quote(table))
}

/// MariaDB keeps a column's own check (named after the column) with the column's
/// definition: `MODIFY COLUMN` without it drops it. The check of column `column` in `to`.
fn own_check<'a>(table: &'a Table, column: &str) -> Option<&'a Check> {
    table
        .checks
        .values()
        .find(|c| c.column_level && c.name.as_deref() == Some(column))
}

/// ` CHECK (…)` for a column whose own check `table` has.
fn inline_check(table: Option<&Table>, column: &str) -> String {
    table
        .and_then(|t| own_check(t, column))
        .map(|c| format!(" CHECK ({})", c.expression))
        .unwrap_or_default()
}

/// True when `changes` give `table` a primary key (`add`) or take its key away (`!add`).
fn touches_key(changes: &[Change], table: &str, add: bool) -> bool {
    changes.iter().any(|c| match c {
        Change::AddPrimaryKey { table: t, .. } => add && t == table,
        Change::DropPrimaryKey { table: t, .. } => !add && t == table,
        _ => false,
    })
}

pub(super) fn render(to: &Schema, changes: &[Change]) -> Rendered {
    let mut out = Rendered::default();
    // Columns whose `MODIFY` carries their own check: no separate `ADD CONSTRAINT` for it.
    let modified: Vec<(&str, &str)> = changes
        .iter()
        .filter_map(|c| match c {
            Change::AlterColumn { table, to, .. } => Some((table.as_str(), to.name.as_str())),
            Change::AddColumn { table, column } => Some((table.as_str(), column.name.as_str())),
            _ => None,
        })
        .collect();
    let dropped_columns: Vec<(&str, &str)> = changes
        .iter()
        .filter_map(|c| match c {
            Change::DropColumn { table, column } => Some((table.as_str(), column.name.as_str())),
            _ => None,
        })
        .collect();
    let adds_index = |table: &str| {
        changes
            .iter()
            .any(|c| matches!(c, Change::AddIndex { table: t, .. } if t == table))
    };
    // An index dropped where others are added goes after them: a foreign key may need the
    // old one until its replacement exists (error 1553). Not when a dropped column takes
    // part of it, which the column's drop would change first.
    let deferred = |table: &str, index: &Index| {
        adds_index(table)
            && !index
                .columns
                .iter()
                .any(|c| dropped_columns.contains(&(table, c.as_str())))
    };
    let mut later: Vec<String> = Vec::new();
    // Tables whose new primary key went with a new AUTO_INCREMENT column (error 1075).
    let mut keyed: Vec<&str> = Vec::new();
    // Foreign keys dropped around a column's type change, added back at the end.
    let mut readd: Vec<(&str, &ForeignKey)> = Vec::new();
    for change in changes {
        let statement = match change {
            Change::CreateTable(t) => {
                let mut lines: Vec<String> = t
                    .columns
                    .iter()
                    .map(|c| {
                        out.check_column(&t.name, c);
                        column(c) + &inline_check(Some(t), &c.name)
                    })
                    .collect();
                if let Some(k) = &t.primary_key {
                    lines.push(format!("PRIMARY KEY ({})", key_parts(B, &k.columns)));
                }
                for i in t.indexes.values() {
                    lines.push(format!(
                        "{}KEY {} ({})",
                        index_kind(i),
                        B.quote(&i.name),
                        key_parts(B, &i.columns)
                    ));
                }
                for c in t.checks.values().filter(|c| !c.column_level) {
                    lines.push(check_def(B, c));
                }
                create_table(B, &t.name, &lines)
            }
            Change::DropTable(t) => format!("DROP TABLE {}", B.quote(&t.name)),
            Change::AddColumn { table, column: c } => {
                out.check_column(table, c);
                let check = inline_check(to.tables.get(table), &c.name);
                let mut sql = format!("ADD COLUMN {}{check}", column(c));
                // An AUTO_INCREMENT column must be a key as it is added.
                if c.auto_increment.is_some()
                    && let Some(key) = to.tables.get(table).and_then(|t| t.primary_key.as_ref())
                    && touches_key(changes, table, true)
                {
                    if touches_key(changes, table, false) {
                        sql.push_str(", DROP PRIMARY KEY");
                    }
                    sql.push_str(&format!(
                        ", ADD PRIMARY KEY ({})",
                        key_parts(B, &key.columns)
                    ));
                    keyed.push(table);
                }
                alter(table, sql)
            }
            Change::DropColumn { table, column } => {
                alter(table, format!("DROP COLUMN {}", B.quote(&column.name)))
            }
            Change::AlterColumn {
                table,
                from,
                to: col,
            } => {
                out.check_column(table, from);
                out.check_column(table, col);
                if from.data_type != col.data_type {
                    for (owner, key) in keys_on(to, table, &col.name, changes) {
                        if !readd
                            .iter()
                            .any(|(o, k)| *o == owner && k.key() == key.key())
                            && let Some(n) = &key.name
                        {
                            out.push(alter(owner, format!("DROP FOREIGN KEY {}", B.quote(n))));
                            readd.push((owner, key));
                        }
                    }
                }
                let check = inline_check(to.tables.get(table), &col.name);
                alter(table, format!("MODIFY COLUMN {}{check}", column(col)))
            }
            // A key replaced in one statement, where the new one is added (after new
            // columns): an AUTO_INCREMENT column must stay a key throughout.
            Change::DropPrimaryKey { table, .. } if touches_key(changes, table, true) => {
                continue;
            }
            Change::DropPrimaryKey { table, .. } => alter(table, "DROP PRIMARY KEY".into()),
            Change::AddPrimaryKey { table, .. } if keyed.contains(&table.as_str()) => continue,
            Change::AddPrimaryKey { table, key } if touches_key(changes, table, false) => alter(
                table,
                format!(
                    "DROP PRIMARY KEY, ADD PRIMARY KEY ({})",
                    key_parts(B, &key.columns)
                ),
            ),
            Change::AddPrimaryKey { table, key } => alter(
                table,
                format!("ADD PRIMARY KEY ({})", key_parts(B, &key.columns)),
            ),
            // Replaced under the same name: one statement, so a key never lacks its index.
            Change::AddIndex { table, index }
                if changes.iter().any(|c| {
                    matches!(c, Change::DropIndex { table: t, index: i }
                        if t == table && i.name == index.name && deferred(t, i))
                }) =>
            {
                alter(
                    table,
                    format!(
                        "DROP INDEX {name}, ADD {}INDEX {name} ({})",
                        index_kind(index),
                        key_parts(B, &index.columns),
                        name = B.quote(&index.name)
                    ),
                )
            }
            Change::AddIndex { table, index } => format!(
                "CREATE {}INDEX {} ON {} ({})",
                index_kind(index),
                B.quote(&index.name),
                B.quote(table),
                key_parts(B, &index.columns)
            ),
            Change::DropIndex { table, index } if deferred(table, index) => {
                let replaced = changes.iter().any(|c| {
                    matches!(c, Change::AddIndex { table: t, index: i } if t == table && i.name == index.name)
                });
                if !replaced {
                    // MariaDB drops a key's implicit index by itself once another index
                    // serves the key, hence IF EXISTS.
                    later.push(format!(
                        "DROP INDEX IF EXISTS {} ON {}",
                        B.quote(&index.name),
                        B.quote(table)
                    ));
                }
                continue;
            }
            Change::DropIndex { table, index } => {
                format!("DROP INDEX {} ON {}", B.quote(&index.name), B.quote(table))
            }
            Change::AddForeignKey { table, key } => {
                alter(table, format!("ADD {}", foreign_key_def(B, key)))
            }
            Change::SetOptions { .. } => {
                out.unsupported.push(change.describe());
                continue;
            }
            Change::DropForeignKey { table, key } => {
                let Some(n) = drop_name(&mut out, change, key.name.as_ref()) else {
                    continue;
                };
                alter(table, format!("DROP FOREIGN KEY {}", B.quote(n)))
            }
            Change::AddCheck { table, check }
                if check.column_level
                    && check
                        .name
                        .as_deref()
                        .is_some_and(|n| modified.contains(&(table.as_str(), n))) =>
            {
                continue;
            }
            Change::AddCheck { table, check } => {
                alter(table, format!("ADD {}", check_def(B, check)))
            }
            Change::DropCheck { table, check } => {
                let Some(n) = drop_name(&mut out, change, check.name.as_ref()) else {
                    continue;
                };
                alter(table, format!("DROP CONSTRAINT {}", B.quote(n)))
            }
        };
        out.push(statement);
    }
    for statement in later {
        out.push(statement);
    }
    for (owner, key) in readd {
        out.push(alter(owner, format!("ADD {}", foreign_key_def(B, key))));
    }
    out
}

/// The foreign keys of `to` (with their tables) that use column `column` of `table` on
/// either side and that `changes` leave as they are: MySQL refuses a type change of a column
/// a key uses, so they are dropped around it.
fn keys_on<'a>(
    to: &'a Schema,
    table: &str,
    column: &str,
    changes: &[Change],
) -> Vec<(&'a str, &'a ForeignKey)> {
    let touched = |owner: &str, key: &ForeignKey| {
        changes.iter().any(|c| match c {
            Change::AddForeignKey { table: t, key: k }
            | Change::DropForeignKey { table: t, key: k } => t == owner && k.key() == key.key(),
            _ => false,
        })
    };
    to.tables
        .values()
        .flat_map(|t| t.foreign_keys.values().map(move |k| (t.name.as_str(), k)))
        .filter(|(owner, k)| {
            let referencing = *owner == table && k.columns.iter().any(|c| c == column);
            let referenced = k.ref_schema.is_none()
                && k.ref_table == table
                && k.ref_columns.iter().any(|c| c == column);
            (referencing || referenced) && !touched(owner, k)
        })
        .collect()
}
