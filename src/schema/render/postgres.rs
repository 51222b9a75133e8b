//! PostgreSQL DDL: unique constraints and checks inside `CREATE TABLE`, other indexes by
//! `CREATE INDEX`, a column change as one `ALTER COLUMN` action per property.

use super::{
    Rendered, check_def, constraint_name, create_table, drop_name, foreign_key_def, key_parts,
    names,
};
use crate::backend::Backend;
use crate::schema::diff::Change;
use crate::schema::model::{AutoIncrement, Column, Index};

const B: Backend = Backend::Postgres;

/// The type a serial column is declared with.
fn serial(data_type: &str) -> Option<&'static str> {
    match data_type {
        "integer" => Some("serial"),
        "bigint" => Some("bigserial"),
        "smallint" => Some("smallserial"),
        _ => None,
    }
}

fn identity(a: AutoIncrement) -> &'static str {
    match a {
        AutoIncrement::IdentityAlways => "ALWAYS",
        _ => "BY DEFAULT",
    }
}

fn column(table: &str, c: &Column, out: &mut Rendered) -> String {
    let data_type = match c.auto_increment {
        Some(AutoIncrement::Increment) => serial(&c.data_type).unwrap_or_else(|| {
            out.unsupported.push(format!(
                "column {table}.{}: a serial of type {}",
                c.name, c.data_type
            ));
            "serial"
        }),
        _ => &c.data_type,
    };
    let mut s = format!("{} {data_type}", B.quote(&c.name));
    if let Some(collation) = &c.collation {
        s.push(' ');
        s.push_str(collation);
    }
    if !c.nullable {
        s.push_str(" NOT NULL");
    }
    if let Some(d) = &c.default {
        s.push_str(" DEFAULT ");
        s.push_str(d);
    }
    if let Some(a @ (AutoIncrement::IdentityAlways | AutoIncrement::IdentityByDefault)) =
        c.auto_increment
    {
        s.push_str(&format!(" GENERATED {} AS IDENTITY", identity(a)));
    }
    s
}

fn create_index(table: &str, i: &Index) -> String {
    format!(
        "CREATE {}INDEX {} ON {}{} ({}){}{}",
        if i.unique { "UNIQUE " } else { "" },
        B.quote(&i.name),
        B.quote(table),
        i.method
            .as_ref()
            .map(|m| format!(" USING {m}"))
            .unwrap_or_default(),
        key_parts(B, &i.columns),
        if i.include.is_empty() {
            String::new()
        } else {
            format!(" INCLUDE ({})", key_parts(B, &i.include))
        },
        i.predicate
            .as_ref()
            .map(|p| format!(" WHERE {p}"))
            .unwrap_or_default()
    )
}

fn alter(table: &str, what: String) -> String {
    format!("ALTER TABLE {} {what}", B.quote(table))
}

/// The statements that change column `from` into `to`.
fn alter_column(table: &str, from: &Column, to: &Column, out: &mut Rendered) {
    let col = B.quote(&to.name);
    let mut actions = Vec::new();
    let serial_changes = (from.auto_increment == Some(AutoIncrement::Increment))
        != (to.auto_increment == Some(AutoIncrement::Increment));
    if serial_changes || from.unsupported != to.unsupported {
        out.unsupported.push(format!(
            "alter column {table}.{}: {} to {} (a serial or generated column turned on or off)",
            to.name,
            from.shape(),
            to.shape()
        ));
        return;
    }
    if from.default.is_some() && from.default != to.default {
        actions.push(format!("ALTER COLUMN {col} DROP DEFAULT"));
    }
    if from.data_type != to.data_type || from.collation != to.collation {
        // Without its COLLATE clause, a new type takes the type's default collation.
        let collate = to
            .collation
            .as_ref()
            .map(|c| format!(" {c}"))
            .unwrap_or_default();
        actions.push(format!(
            "ALTER COLUMN {col} TYPE {t}{collate} USING {col}::{t}",
            t = to.data_type
        ));
    }
    if let Some(d) = to.default.as_ref().filter(|_| from.default != to.default) {
        actions.push(format!("ALTER COLUMN {col} SET DEFAULT {d}"));
    }
    if from.nullable != to.nullable {
        let verb = if to.nullable { "DROP" } else { "SET" };
        actions.push(format!("ALTER COLUMN {col} {verb} NOT NULL"));
    }
    match (from.auto_increment, to.auto_increment) {
        (a, b) if a == b => {}
        (None, Some(b)) => actions.push(format!(
            "ALTER COLUMN {col} ADD GENERATED {} AS IDENTITY",
            identity(b)
        )),
        (Some(_), None) => actions.push(format!("ALTER COLUMN {col} DROP IDENTITY")),
        (Some(_), Some(b)) => {
            actions.push(format!("ALTER COLUMN {col} SET GENERATED {}", identity(b)))
        }
        (None, None) => {}
    }
    if !actions.is_empty() {
        out.push(alter(table, actions.join(", ")));
    }
    // A serial's sequence has a type of its own: widened with the column, or the column's
    // values stop at the old type's limit.
    if from.data_type != to.data_type && to.auto_increment == Some(AutoIncrement::Increment) {
        out.push(format!(
            "DO $$ BEGIN EXECUTE format('ALTER SEQUENCE %s AS {}', \
             pg_get_serial_sequence('{}', '{}')); END $$",
            to.data_type,
            B.quote(table).replace('\'', "''"),
            to.name.replace('\'', "''")
        ));
    }
}

pub(super) fn render(changes: &[Change]) -> Rendered {
    let mut out = Rendered::default();
    for change in changes {
        let statement = match change {
            Change::CreateTable(t) => {
                let mut lines = Vec::new();
                for c in &t.columns {
                    out.check_column(&t.name, c);
                    lines.push(column(&t.name, c, &mut out));
                }
                if let Some(k) = &t.primary_key {
                    lines.push(format!(
                        "{}PRIMARY KEY ({})",
                        constraint_name(B, k.name.as_deref()),
                        names(B, &k.columns)
                    ));
                }
                for i in t.indexes.values().filter(|i| i.constraint) {
                    lines.push(format!(
                        "CONSTRAINT {} UNIQUE ({})",
                        B.quote(&i.name),
                        key_parts(B, &i.columns)
                    ));
                }
                for c in t.checks.values() {
                    lines.push(check_def(B, c));
                }
                out.push(create_table(B, &t.name, &lines));
                for i in t.indexes.values().filter(|i| !i.constraint) {
                    out.push(create_index(&t.name, i));
                }
                continue;
            }
            Change::DropTable(t) => format!("DROP TABLE {}", B.quote(&t.name)),
            Change::AddColumn { table, column: c } => {
                out.check_column(table, c);
                let def = column(table, c, &mut out);
                alter(table, format!("ADD COLUMN {def}"))
            }
            Change::DropColumn { table, column } => {
                alter(table, format!("DROP COLUMN {}", B.quote(&column.name)))
            }
            Change::AlterColumn { table, from, to } => {
                alter_column(table, from, to, &mut out);
                continue;
            }
            Change::DropPrimaryKey { table, key } => {
                let name = key.name.clone().unwrap_or_else(|| format!("{table}_pkey"));
                alter(table, format!("DROP CONSTRAINT {}", B.quote(&name)))
            }
            Change::AddPrimaryKey { table, key } => alter(
                table,
                format!(
                    "ADD {}PRIMARY KEY ({})",
                    constraint_name(B, key.name.as_deref()),
                    names(B, &key.columns)
                ),
            ),
            Change::AddIndex { table, index } if index.constraint => alter(
                table,
                format!(
                    "ADD CONSTRAINT {} UNIQUE ({})",
                    B.quote(&index.name),
                    key_parts(B, &index.columns)
                ),
            ),
            Change::AddIndex { table, index } => create_index(table, index),
            Change::DropIndex { table, index } if index.constraint => {
                alter(table, format!("DROP CONSTRAINT {}", B.quote(&index.name)))
            }
            Change::DropIndex { index, .. } => format!("DROP INDEX {}", B.quote(&index.name)),
            Change::AddForeignKey { table, key } => {
                alter(table, format!("ADD {}", foreign_key_def(B, key)))
            }
            Change::AddCheck { table, check } => {
                alter(table, format!("ADD {}", check_def(B, check)))
            }
            Change::SetOptions { .. } => {
                out.unsupported.push(change.describe());
                continue;
            }
            Change::DropForeignKey { table, key } => {
                let Some(n) = drop_name(&mut out, change, key.name.as_ref()) else {
                    continue;
                };
                alter(table, format!("DROP CONSTRAINT {}", B.quote(n)))
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
    out
}
