//! Introspection: reads a live schema into the [`crate::schema::Schema`] model, one
//! submodule per server kind. Values are kept as the server prints them; the bookkeeping
//! tables ([`super::BOOKKEEPING_TABLES`]) are left out.

pub(crate) mod mysql;
pub(crate) mod postgres;
pub(crate) mod sqlite;
mod sqlite_text;

use std::collections::BTreeMap;

use crate::schema::Table;

/// The table named `name` in `tables`, made empty when first seen.
fn table<'a>(tables: &'a mut BTreeMap<String, Table>, name: &str) -> &'a mut Table {
    tables
        .entry(name.to_owned())
        .or_insert_with(|| Table::new(name))
}

/// Comma-separated names as a list (`GROUP_CONCAT` / `group_concat` output).
fn list(joined: &str) -> Vec<String> {
    if joined.is_empty() {
        Vec::new()
    } else {
        joined.split(',').map(str::to_owned).collect()
    }
}
