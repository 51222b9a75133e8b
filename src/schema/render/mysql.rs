//! MySQL/MariaDB DDL: indexes and checks inside `CREATE TABLE`, `MODIFY COLUMN` with the
//! whole new definition, foreign keys by `ALTER TABLE` once every table exists.

use super::{Rendered, constraint_name, create_table, foreign_key_clause, key_parts};
use crate::backend::Backend;
use crate::schema::diff::Change;
use crate::schema::model::{Column, Index};

const B: Backend = Backend::MySql;

fn column(c: &Column) -> String {
    let mut s = format!("{} {}", B.quote(&c.name), c.data_type);
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

pub(super) fn render(changes: &[Change]) -> Rendered {
    let mut out = Rendered::default();
    for change in changes {
        let statement = match change {
            Change::CreateTable(t) => {
                let mut lines: Vec<String> = t
                    .columns
                    .iter()
                    .map(|c| {
                        out.check_column(&t.name, c);
                        column(c)
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
                for c in t.checks.values() {
                    lines.push(format!(
                        "{}CHECK ({})",
                        constraint_name(B, c.name.as_deref()),
                        c.expression
                    ));
                }
                create_table(B, &t.name, &lines)
            }
            Change::DropTable(t) => format!("DROP TABLE {}", B.quote(&t.name)),
            Change::AddColumn { table, column: c } => {
                out.check_column(table, c);
                alter(table, format!("ADD COLUMN {}", column(c)))
            }
            Change::DropColumn { table, column } => {
                alter(table, format!("DROP COLUMN {}", B.quote(&column.name)))
            }
            Change::AlterColumn { table, from, to } => {
                out.check_column(table, from);
                out.check_column(table, to);
                alter(table, format!("MODIFY COLUMN {}", column(to)))
            }
            Change::DropPrimaryKey { table, .. } => alter(table, "DROP PRIMARY KEY".into()),
            Change::AddPrimaryKey { table, key } => alter(
                table,
                format!("ADD PRIMARY KEY ({})", key_parts(B, &key.columns)),
            ),
            Change::AddIndex { table, index } => format!(
                "CREATE {}INDEX {} ON {} ({})",
                index_kind(index),
                B.quote(&index.name),
                B.quote(table),
                key_parts(B, &index.columns)
            ),
            Change::DropIndex { table, index } => {
                format!("DROP INDEX {} ON {}", B.quote(&index.name), B.quote(table))
            }
            Change::AddForeignKey { table, key } => alter(
                table,
                format!(
                    "ADD {}{}",
                    constraint_name(B, key.name.as_deref()),
                    foreign_key_clause(B, key)
                ),
            ),
            Change::DropForeignKey { table, key } => match &key.name {
                Some(n) => alter(table, format!("DROP FOREIGN KEY {}", B.quote(n))),
                None => {
                    out.unsupported
                        .push(format!("{}: the key has no name", change.describe()));
                    continue;
                }
            },
            Change::AddCheck { table, check } => alter(
                table,
                format!(
                    "ADD {}CHECK ({})",
                    constraint_name(B, check.name.as_deref()),
                    check.expression
                ),
            ),
            Change::DropCheck { table, check } => match &check.name {
                Some(n) => alter(table, format!("DROP CONSTRAINT {}", B.quote(n))),
                None => {
                    out.unsupported
                        .push(format!("{}: the check has no name", change.describe()));
                    continue;
                }
            },
        };
        out.push(statement);
    }
    out
}
