//! [`Fact`]: an object whose presence a MySQL/MariaDB session can check in the live schema
//! ([`super::SchemaSession::observe`]); `crate::migrate::observe` derives them from statements.

use serde::Serialize;

/// An object in the live schema. Names are as written in the statement; `schema` is the
/// qualifier when the statement named one (the session's schema otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Fact {
    /// A table or a view.
    Table {
        schema: Option<String>,
        table: String,
    },
    Column {
        schema: Option<String>,
        table: String,
        column: String,
    },
    /// An index or key (`PRIMARY` for the primary key).
    Index {
        schema: Option<String>,
        table: String,
        index: String,
    },
    /// A named constraint: foreign key, unique, check, primary.
    Constraint {
        schema: Option<String>,
        table: String,
        constraint: String,
    },
    /// A foreign key of `table` on exactly `columns` (in order) referencing `referenced`,
    /// whatever its generated name.
    ForeignKeyOn {
        schema: Option<String>,
        table: String,
        columns: Vec<String>,
        referenced: String,
    },
    Trigger {
        schema: Option<String>,
        trigger: String,
    },
    /// A stored procedure or function.
    Routine {
        schema: Option<String>,
        routine: String,
    },
}

impl std::fmt::Display for Fact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fact::Table { table, .. } => write!(f, "table {table}"),
            Fact::Column { table, column, .. } => write!(f, "column {table}.{column}"),
            Fact::Index { table, index, .. } => write!(f, "index {table}.{index}"),
            Fact::Constraint {
                table, constraint, ..
            } => write!(f, "constraint {table}.{constraint}"),
            Fact::ForeignKeyOn {
                table,
                columns,
                referenced,
                ..
            } => write!(
                f,
                "foreign key {table}({}) referencing {referenced}",
                columns.join(", ")
            ),
            Fact::Trigger { trigger, .. } => write!(f, "trigger {trigger}"),
            Fact::Routine { routine, .. } => write!(f, "routine {routine}"),
        }
    }
}
