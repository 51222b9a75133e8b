//! A list of [`Change`]s as DDL statements for one server kind. What a server cannot be told
//! (a generated column, a PostgreSQL serial turned on or off) is listed as unsupported and
//! never guessed at.

mod mysql;
mod postgres;
mod sqlite;

use super::diff::Change;
use super::model::{Check, Column, ForeignKey, Schema};
use crate::backend::Backend;

/// Statements, one per entry without a trailing `;`, and what could not be rendered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub statements: Vec<String>,
    pub unsupported: Vec<String>,
}

impl Rendered {
    /// The statements as a script: each ends with `;` on its own line.
    pub fn script(&self) -> String {
        let mut out = String::new();
        for s in &self.statements {
            out.push_str(s);
            out.push_str(";\n\n");
        }
        out
    }

    fn push(&mut self, statement: String) {
        self.statements.push(statement);
    }

    /// Notes a column the model cannot write (see [`Column::unsupported`]).
    fn check_column(&mut self, table: &str, c: &Column) {
        if let Some(u) = &c.unsupported {
            self.unsupported.push(format!(
                "column {table}.{} ({u}) cannot be written by diff; write this change by hand",
                c.name
            ));
        }
    }
}

/// `changes` (from [`super::diff()`] of `from` and `to`) as `backend`'s statements. SQLite
/// needs both schemas: most of its table changes rebuild the table from `to`.
pub fn render(backend: Backend, from: &Schema, to: &Schema, changes: &[Change]) -> Rendered {
    match backend {
        Backend::MySql => mysql::render(to, changes),
        Backend::Postgres => postgres::render(changes),
        Backend::Sqlite => sqlite::render(from, to, changes),
    }
}

/// One key part: a plain column name quoted; MySQL's `name(10)` prefix with the name quoted;
/// an expression as it is.
fn key_part(backend: Backend, part: &str) -> String {
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
            && !s.starts_with(|c: char| c.is_ascii_digit())
    };
    if plain(part) {
        return backend.quote(part);
    }
    if backend == Backend::MySql
        && let Some((name, rest)) = part.split_once('(')
        && plain(name)
        && rest
            .strip_suffix(')')
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
    {
        return format!("{}({rest}", backend.quote(name));
    }
    part.to_owned()
}

fn key_parts(backend: Backend, parts: &[String]) -> String {
    parts
        .iter()
        .map(|p| key_part(backend, p))
        .collect::<Vec<_>>()
        .join(", ")
}

fn names(backend: Backend, names: &[String]) -> String {
    names
        .iter()
        .map(|n| backend.quote(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `[CONSTRAINT name] FOREIGN KEY (…) REFERENCES … (…) ON UPDATE … ON DELETE …`: a key as a
/// table line or after `ADD`.
fn foreign_key_def(backend: Backend, key: &ForeignKey) -> String {
    let target = match &key.ref_schema {
        Some(s) => format!("{}.{}", backend.quote(s), backend.quote(&key.ref_table)),
        None => backend.quote(&key.ref_table),
    };
    format!(
        "{}FOREIGN KEY ({}) REFERENCES {target} ({}) ON UPDATE {} ON DELETE {}",
        constraint_name(backend, key.name.as_deref()),
        names(backend, &key.columns),
        names(backend, &key.ref_columns),
        key.on_update.to_ascii_uppercase(),
        key.on_delete.to_ascii_uppercase()
    )
}

/// `[CONSTRAINT name] CHECK (…)`: a check as a table line or after `ADD`.
fn check_def(backend: Backend, check: &Check) -> String {
    format!(
        "{}CHECK ({})",
        constraint_name(backend, check.name.as_deref()),
        check.expression
    )
}

/// The name of a constraint a statement must name to drop it; noted as unsupported (and
/// `None`) when the server kept none.
fn drop_name<'a>(out: &mut Rendered, change: &Change, name: Option<&'a String>) -> Option<&'a str> {
    if name.is_none() {
        out.unsupported.push(format!(
            "{}: it has no name to drop it by",
            change.describe()
        ));
    }
    name.map(String::as_str)
}

/// `CONSTRAINT "name" ` when there is a name.
fn constraint_name(backend: Backend, name: Option<&str>) -> String {
    name.map(|n| format!("CONSTRAINT {} ", backend.quote(n)))
        .unwrap_or_default()
}

/// `CREATE TABLE name (\n  line,\n  line\n)`.
fn create_table(backend: Backend, name: &str, lines: &[String]) -> String {
    format!(
        "CREATE TABLE {} (\n    {}\n)",
        backend.quote(name),
        lines.join(",\n    ")
    )
}
