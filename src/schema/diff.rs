//! Comparing two schemas: the [`Change`]s that turn one into the other, in an order the
//! servers accept (foreign keys dropped before what they use, new tables before the keys
//! that point at them), with what each change risks.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{Check, Column, ForeignKey, Index, PrimaryKey, Schema, Table};
use super::types::narrows;

/// One step from a schema towards another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    CreateTable(Table),
    DropTable(Table),
    AddColumn {
        table: String,
        column: Column,
    },
    DropColumn {
        table: String,
        column: Column,
    },
    AlterColumn {
        table: String,
        from: Column,
        to: Column,
    },
    DropPrimaryKey {
        table: String,
        key: PrimaryKey,
    },
    AddPrimaryKey {
        table: String,
        key: PrimaryKey,
    },
    AddIndex {
        table: String,
        index: Index,
    },
    DropIndex {
        table: String,
        index: Index,
    },
    AddForeignKey {
        table: String,
        key: ForeignKey,
    },
    DropForeignKey {
        table: String,
        key: ForeignKey,
    },
    AddCheck {
        table: String,
        check: Check,
    },
    DropCheck {
        table: String,
        check: Check,
    },
    /// SQLite's table options (`without rowid`, `strict`).
    SetOptions {
        table: String,
        from: Option<String>,
        to: Option<String>,
    },
}

/// Which way a change goes, seen from the schema being changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Something the target has and the schema lacks.
    Missing,
    /// Something the schema has and the target does not.
    Unexpected,
    /// Something both have, differently.
    Changed,
}

impl Change {
    pub fn table(&self) -> &str {
        match self {
            Change::CreateTable(t) | Change::DropTable(t) => &t.name,
            Change::AddColumn { table, .. }
            | Change::DropColumn { table, .. }
            | Change::AlterColumn { table, .. }
            | Change::DropPrimaryKey { table, .. }
            | Change::AddPrimaryKey { table, .. }
            | Change::AddIndex { table, .. }
            | Change::DropIndex { table, .. }
            | Change::AddForeignKey { table, .. }
            | Change::DropForeignKey { table, .. }
            | Change::AddCheck { table, .. }
            | Change::DropCheck { table, .. }
            | Change::SetOptions { table, .. } => table,
        }
    }

    pub fn direction(&self) -> Direction {
        match self {
            Change::CreateTable(_)
            | Change::AddColumn { .. }
            | Change::AddPrimaryKey { .. }
            | Change::AddIndex { .. }
            | Change::AddForeignKey { .. }
            | Change::AddCheck { .. } => Direction::Missing,
            Change::DropTable(_)
            | Change::DropColumn { .. }
            | Change::DropPrimaryKey { .. }
            | Change::DropIndex { .. }
            | Change::DropForeignKey { .. }
            | Change::DropCheck { .. } => Direction::Unexpected,
            Change::AlterColumn { .. } | Change::SetOptions { .. } => Direction::Changed,
        }
    }

    /// The thing changed, in words: `table bookings`, `column bookings.notes text NULL`,
    /// `column bookings.status: varchar(20) NOT NULL, to be varchar(30) NOT NULL`.
    pub fn subject(&self) -> String {
        match self {
            Change::CreateTable(t) | Change::DropTable(t) => format!("table {}", t.name),
            Change::AddColumn { table, column } | Change::DropColumn { table, column } => {
                format!("column {table}.{} {}", column.name, column.shape())
            }
            Change::AlterColumn { table, from, to } => format!(
                "column {table}.{}: {} -> {}",
                from.name,
                from.shape(),
                to.shape()
            ),
            Change::DropPrimaryKey { table, key } | Change::AddPrimaryKey { table, key } => {
                format!("primary key {table} ({})", key.columns.join(", "))
            }
            Change::AddIndex { table, index } | Change::DropIndex { table, index } => format!(
                "{} {table}.{} ({}){}",
                if index.constraint {
                    "unique constraint"
                } else if index.unique {
                    "unique index"
                } else {
                    "index"
                },
                index.name,
                index.columns.join(", "),
                index
                    .predicate
                    .as_ref()
                    .map(|p| format!(" where {p}"))
                    .unwrap_or_default()
            ),
            Change::AddForeignKey { table, key } | Change::DropForeignKey { table, key } => {
                let name = key
                    .name
                    .as_deref()
                    .map(|n| format!(".{n}"))
                    .unwrap_or_default();
                format!("foreign key {table}{name} {}", key.shape())
            }
            Change::SetOptions { table, from, to } => format!(
                "table options of {table}: {} -> {}",
                from.as_deref().unwrap_or("none"),
                to.as_deref().unwrap_or("none")
            ),
            Change::AddCheck { table, check } | Change::DropCheck { table, check } => {
                let name = check
                    .name
                    .as_deref()
                    .map(|n| format!(".{n}"))
                    .unwrap_or_default();
                format!("check {table}{name} ({})", check.expression)
            }
        }
    }

    /// The change as an instruction: `add column …`, `drop index …`, `alter column …`.
    pub fn describe(&self) -> String {
        let verb = match self {
            Change::CreateTable(_) => "create",
            Change::AlterColumn { .. } | Change::SetOptions { .. } => "alter",
            _ => match self.direction() {
                Direction::Missing => "add",
                _ => "drop",
            },
        };
        format!("{verb} {}", self.subject())
    }

    /// Why the change can lose data, when it can: dropped tables, columns and indexes, and
    /// types that narrow. Such changes are written only when asked for.
    pub fn destructive(&self) -> Option<String> {
        match self {
            Change::DropTable(_) | Change::DropColumn { .. } => {
                Some(format!("{} (its data is lost)", self.describe()))
            }
            Change::DropIndex { .. } => Some(self.describe()),
            Change::AlterColumn { table, from, to } if narrows(&from.data_type, &to.data_type) => {
                Some(format!(
                    "alter column {table}.{}: {} to {} narrows the type (values may be cut or refused)",
                    from.name, from.data_type, to.data_type
                ))
            }
            _ => None,
        }
    }

    /// What may make the change fail on a table with rows, for the reviewer.
    pub fn caution(&self) -> Option<String> {
        match self {
            Change::AddColumn { table, column }
                if !column.nullable
                    && column.default.is_none()
                    && column.auto_increment.is_none() =>
            {
                Some(format!(
                    "column {table}.{} is NOT NULL without a default: adding it fails on a table with rows",
                    column.name
                ))
            }
            Change::AlterColumn { table, from, to } if from.nullable && !to.nullable => {
                Some(format!(
                    "column {table}.{} becomes NOT NULL: this fails while a row holds NULL there",
                    to.name
                ))
            }
            _ => None,
        }
    }

    /// Position in the order changes are made (see the module's documentation).
    fn phase(&self) -> u8 {
        match self {
            Change::DropForeignKey { .. } => 0,
            Change::DropCheck { .. } | Change::DropIndex { .. } => 1,
            Change::DropPrimaryKey { .. } => 2,
            Change::CreateTable(_) => 3,
            Change::AddColumn { .. } | Change::AlterColumn { .. } | Change::SetOptions { .. } => 4,
            Change::DropColumn { .. } => 5,
            Change::AddPrimaryKey { .. } => 6,
            Change::AddIndex { .. } | Change::AddCheck { .. } => 7,
            Change::DropTable(_) => 8,
            Change::AddForeignKey { .. } => 9,
        }
    }
}

/// The changes that turn `from` into `to`, in the order they can be made. A new table's
/// foreign keys come as [`Change::AddForeignKey`]s after every table exists; a dropped table's
/// as [`Change::DropForeignKey`]s before any table goes.
pub fn diff(from: &Schema, to: &Schema) -> Vec<Change> {
    let mut out = Vec::new();
    for (name, t) in &to.tables {
        match from.tables.get(name) {
            None => {
                out.push(Change::CreateTable(t.clone()));
                out.extend(t.foreign_keys.values().map(|k| Change::AddForeignKey {
                    table: name.clone(),
                    key: k.clone(),
                }));
            }
            Some(f) => diff_table(f, t, &mut out),
        }
    }
    for (name, f) in &from.tables {
        if !to.tables.contains_key(name) {
            out.extend(f.foreign_keys.values().map(|k| Change::DropForeignKey {
                table: name.clone(),
                key: k.clone(),
            }));
            out.push(Change::DropTable(f.clone()));
        }
    }
    // Stable: within a phase, tables stay in name order and a table's changes together.
    out.sort_by_key(Change::phase);
    out
}

fn diff_table(from: &Table, to: &Table, out: &mut Vec<Change>) {
    let table = || to.name.clone();
    if from.options != to.options {
        out.push(Change::SetOptions {
            table: table(),
            from: from.options.clone(),
            to: to.options.clone(),
        });
    }
    for c in &to.columns {
        match from.column(&c.name) {
            None => out.push(Change::AddColumn {
                table: table(),
                column: c.clone(),
            }),
            Some(f) if f != c => out.push(Change::AlterColumn {
                table: table(),
                from: f.clone(),
                to: c.clone(),
            }),
            Some(_) => {}
        }
    }
    for c in &from.columns {
        if to.column(&c.name).is_none() {
            out.push(Change::DropColumn {
                table: table(),
                column: c.clone(),
            });
        }
    }
    if from.primary_key != to.primary_key {
        if let Some(key) = &from.primary_key {
            out.push(Change::DropPrimaryKey {
                table: table(),
                key: key.clone(),
            });
        }
        if let Some(key) = &to.primary_key {
            out.push(Change::AddPrimaryKey {
                table: table(),
                key: key.clone(),
            });
        }
    }
    let t = table();
    pairs(&from.indexes, &to.indexes, out, |index, add| {
        let table = t.clone();
        if add {
            Change::AddIndex { table, index }
        } else {
            Change::DropIndex { table, index }
        }
    });
    pairs(&from.foreign_keys, &to.foreign_keys, out, |key, add| {
        let table = t.clone();
        if add {
            Change::AddForeignKey { table, key }
        } else {
            Change::DropForeignKey { table, key }
        }
    });
    pairs(&from.checks, &to.checks, out, |check, add| {
        let table = t.clone();
        if add {
            Change::AddCheck { table, check }
        } else {
            Change::DropCheck { table, check }
        }
    });
}

/// For each key of either map whose values differ: the old one dropped (`make(v, false)`),
/// the new one added (`make(v, true)`).
fn pairs<V: Clone + PartialEq>(
    from: &BTreeMap<String, V>,
    to: &BTreeMap<String, V>,
    out: &mut Vec<Change>,
    make: impl Fn(V, bool) -> Change,
) {
    let keys: BTreeSet<&String> = from.keys().chain(to.keys()).collect();
    for k in keys {
        let (f, t) = (from.get(k), to.get(k));
        if f == t {
            continue;
        }
        out.extend(f.map(|v| make(v.clone(), false)));
        out.extend(t.map(|v| make(v.clone(), true)));
    }
}
