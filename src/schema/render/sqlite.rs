//! SQLite DDL. `ALTER TABLE` there only adds (simple) columns and renames, so every other
//! change to an existing table rebuilds it the documented way: create the new shape under
//! a scratch name, copy the rows of the columns both shapes have, drop the old table, rename
//! the new one and recreate its indexes. The engine runs SQLite migrations with foreign key
//! enforcement off and checks every key before it commits (`PRAGMA foreign_key_check`), as
//! that procedure requires.

use std::collections::BTreeSet;

use super::{Rendered, check_def, create_table, foreign_key_def, key_parts, names};
use crate::backend::Backend;
use crate::schema::diff::Change;
use crate::schema::model::{AutoIncrement, Column, Index, Schema, Table};

const B: Backend = Backend::Sqlite;

/// Prefix of the scratch name a table is rebuilt under.
const REBUILD_PREFIX: &str = "tm_rebuild_";

fn column(c: &Column, inline_key: bool) -> String {
    let mut s = B.quote(&c.name);
    if !c.data_type.is_empty() {
        s.push(' ');
        s.push_str(&c.data_type);
    }
    if !c.nullable {
        s.push_str(" NOT NULL");
    }
    if inline_key {
        s.push_str(" PRIMARY KEY AUTOINCREMENT");
    }
    if let Some(d) = &c.default {
        s.push_str(" DEFAULT ");
        s.push_str(&default_expression(d));
    }
    s
}

/// A default as SQLite takes it: a single literal as it is, anything else in parentheses
/// (SQLite reports `DEFAULT (strftime(…))` without them).
fn default_expression(d: &str) -> String {
    let number = {
        let digits = d.trim_start_matches(['-', '+']);
        !digits.is_empty()
            && digits.parse::<f64>().is_ok()
            && digits.starts_with(|c: char| c.is_ascii_digit() || c == '.')
    };
    let string = d.len() >= 2
        && d.starts_with('\'')
        && d.ends_with('\'')
        && !d[1..d.len() - 1].replace("''", "").contains('\'');
    let keyword = matches!(
        d.to_ascii_lowercase().as_str(),
        "null" | "true" | "false" | "current_time" | "current_date" | "current_timestamp"
    );
    if number || string || keyword {
        d.to_owned()
    } else {
        format!("({d})")
    }
}

/// `CREATE TABLE` for `t` under `name`, with its keys, unique constraints, checks and
/// foreign keys (SQLite keeps them all in the table's text).
fn table_sql(name: &str, t: &Table, out: &mut Rendered) -> String {
    let inline = t
        .primary_key
        .as_ref()
        .and_then(|k| match k.columns.as_slice() {
            [only]
                if t.column(only).and_then(|c| c.auto_increment)
                    == Some(AutoIncrement::Increment) =>
            {
                Some(only.clone())
            }
            _ => None,
        });
    let mut lines = Vec::new();
    for c in &t.columns {
        out.check_column(&t.name, c);
        lines.push(column(c, inline.as_deref() == Some(c.name.as_str())));
    }
    if let Some(k) = t.primary_key.as_ref().filter(|_| inline.is_none()) {
        lines.push(format!("PRIMARY KEY ({})", names(B, &k.columns)));
    }
    for i in t.indexes.values().filter(|i| i.constraint) {
        lines.push(format!("UNIQUE ({})", key_parts(B, &i.columns)));
    }
    for c in t.checks.values() {
        lines.push(check_def(B, c));
    }
    for k in t.foreign_keys.values() {
        lines.push(foreign_key_def(B, k));
    }
    let sql = create_table(B, name, &lines);
    match &t.options {
        Some(o) => format!("{sql} {o}"),
        None => sql,
    }
}

fn create_index(table: &str, i: &Index) -> String {
    format!(
        "CREATE {}INDEX {} ON {} ({}){}",
        if i.unique { "UNIQUE " } else { "" },
        B.quote(&i.name),
        B.quote(table),
        key_parts(B, &i.columns),
        i.predicate
            .as_ref()
            .map(|p| format!(" WHERE {p}"))
            .unwrap_or_default()
    )
}

/// True when `ALTER TABLE … ADD COLUMN` can add `c`: no key, and a default that is a
/// constant (SQLite refuses an expression there) or none on a nullable column.
fn simple_add(c: &Column) -> bool {
    let constant = c
        .default
        .as_deref()
        .is_none_or(|d| !d.contains('(') && !d.starts_with("current_"));
    c.auto_increment.is_none() && constant && (c.nullable || c.default.is_some())
}

/// True when SQLite says `change` with a statement of its own; false when its table must be
/// rebuilt.
fn direct(change: &Change) -> bool {
    match change {
        Change::CreateTable(_) | Change::DropTable(_) => true,
        Change::AddIndex { index, .. } | Change::DropIndex { index, .. } => !index.constraint,
        Change::AddColumn { column, .. } => simple_add(column),
        _ => false,
    }
}

pub(super) fn render(from: &Schema, to: &Schema, changes: &[Change]) -> Rendered {
    let mut out = Rendered::default();
    let created: BTreeSet<&str> = changes
        .iter()
        .filter_map(|c| match c {
            Change::CreateTable(t) => Some(t.name.as_str()),
            _ => None,
        })
        .collect();
    let dropped: BTreeSet<&str> = changes
        .iter()
        .filter_map(|c| match c {
            Change::DropTable(t) => Some(t.name.as_str()),
            _ => None,
        })
        .collect();
    // Tables whose changes need a rebuild: everything else said of them is part of it.
    let rebuilt: BTreeSet<&str> = changes
        .iter()
        .filter(|c| !direct(c))
        .map(Change::table)
        .filter(|t| !created.contains(t) && !dropped.contains(t))
        .collect();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    for change in changes {
        let table = change.table();
        if rebuilt.contains(table) {
            if done.insert(table)
                && let (Some(old), Some(new)) = (from.tables.get(table), to.tables.get(table))
            {
                rebuild(old, new, &mut out);
            }
            continue;
        }
        match change {
            Change::CreateTable(t) => {
                let sql = table_sql(&t.name, t, &mut out);
                out.push(sql);
                for i in t.indexes.values().filter(|i| !i.constraint) {
                    out.push(create_index(&t.name, i));
                }
            }
            Change::DropTable(t) => out.push(format!("DROP TABLE {}", B.quote(&t.name))),
            Change::AddColumn { table, column: c } => {
                out.check_column(table, c);
                out.push(format!(
                    "ALTER TABLE {} ADD COLUMN {}",
                    B.quote(table),
                    column(c, false)
                ));
            }
            Change::AddIndex { table, index } => out.push(create_index(table, index)),
            Change::DropIndex { index, .. } => {
                out.push(format!("DROP INDEX {}", B.quote(&index.name)))
            }
            // A new table's keys are in its CREATE TABLE; a dropped table's go with it.
            Change::AddForeignKey { .. } | Change::DropForeignKey { .. } => {}
            other => out
                .unsupported
                .push(format!("{} (no SQLite statement for it)", other.describe())),
        }
    }
    out
}

/// The documented rebuild of `old` into the shape of `new`.
fn rebuild(old: &Table, new: &Table, out: &mut Rendered) {
    if !old.rebuild_hazards.is_empty() {
        out.unsupported.push(format!(
            "table {}: the change needs a rebuild, which would lose {}; write it by hand",
            old.name,
            old.rebuild_hazards.join(", ")
        ));
        return;
    }
    let scratch = format!("{REBUILD_PREFIX}{}", new.name);
    let sql = table_sql(&scratch, new, out);
    out.push(sql);
    let kept: Vec<String> = new
        .columns
        .iter()
        .filter(|c| old.column(&c.name).is_some())
        .map(|c| c.name.clone())
        .collect();
    if !kept.is_empty() {
        let cols = names(B, &kept);
        out.push(format!(
            "INSERT INTO {} ({cols}) SELECT {cols} FROM {}",
            B.quote(&scratch),
            B.quote(&old.name)
        ));
    }
    let counts = |t: &Table| {
        t.columns
            .iter()
            .any(|c| c.auto_increment == Some(AutoIncrement::Increment))
    };
    if counts(old) && counts(new) {
        // AUTOINCREMENT never hands out a number twice: the old table's counter goes along.
        out.push(format!(
            "DELETE FROM sqlite_sequence WHERE name = '{}'",
            scratch.replace('\'', "''")
        ));
        out.push(format!(
            "INSERT INTO sqlite_sequence (name, seq) SELECT '{}', seq FROM sqlite_sequence \
             WHERE name = '{}'",
            scratch.replace('\'', "''"),
            old.name.replace('\'', "''")
        ));
    }
    out.push(format!("DROP TABLE {}", B.quote(&old.name)));
    // Views naming the table are not rewritten (nor checked against its absence).
    out.push("PRAGMA legacy_alter_table = ON".into());
    out.push(format!(
        "ALTER TABLE {} RENAME TO {}",
        B.quote(&scratch),
        B.quote(&new.name)
    ));
    out.push("PRAGMA legacy_alter_table = OFF".into());
    for i in new.indexes.values().filter(|i| !i.constraint) {
        out.push(create_index(&new.name, i));
    }
}

#[cfg(test)]
mod tests {
    use super::default_expression;

    #[test]
    fn only_single_literals_go_without_parentheses() {
        for literal in ["0", "-1.5", "'a'", "'it''s'", "NULL", "current_timestamp"] {
            assert_eq!(default_expression(literal), literal);
        }
        for expression in [
            "1 + 2",
            "'a' || 'b'",
            "strftime('%Y', 'now')",
            "'a' || 'b''",
        ] {
            assert_eq!(default_expression(expression), format!("({expression})"));
        }
    }
}
