//! Names of new migration files: the snake_case name a user gives, and the next version in
//! a scope's dialect folders (`new-migration`, `diff`), so the folders never disagree.

use std::path::Path;

use crate::db::Backend;
use crate::domain::ValidationError;
use crate::migrate::Scope;
use crate::migrate::source::parse_file_name;

/// Checks a new migration's name (`add_loyalty_points`).
pub fn check_name(name: &str) -> Result<(), ValidationError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            "name",
            "must be snake_case: a-z, 0-9 and _, starting with a letter (e.g. add_loyalty_points)",
        ))
    }
}

/// The next migration of `scope` under `dir`: the dialect folders it goes into (those that
/// exist, all three when none does) and its file name (`0004_name.sql`, as wide as the
/// widest version there).
pub fn next_file(dir: &Path, scope: Scope, name: &str) -> (Vec<Backend>, i64, String) {
    let scope_dir = dir.join(scope.folder());
    let mut dialects: Vec<Backend> = Backend::ALL
        .into_iter()
        .filter(|b| scope_dir.join(b.folder()).is_dir())
        .collect();
    if dialects.is_empty() {
        dialects = Backend::ALL.to_vec();
    }
    let mut newest = 0i64;
    let mut width = 4usize;
    for b in &dialects {
        let Ok(entries) = std::fs::read_dir(scope_dir.join(b.folder())) else {
            continue;
        };
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if let Ok((v, _)) = parse_file_name(&file) {
                newest = newest.max(v);
                width = width.max(file.split('_').next().map(str::len).unwrap_or(4));
            }
        }
    }
    let version = newest + 1;
    (dialects, version, format!("{version:0width$}_{name}.sql"))
}
