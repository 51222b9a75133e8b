//! `new-migration`: the next-numbered empty file in every dialect folder of a scope, so the
//! folders never disagree.

use std::path::{Path, PathBuf};

use crate::db::Backend;
use crate::domain::ValidationError;
use crate::engine::EngineError;
use crate::migrate::Scope;
use crate::migrate::source::parse_file_name;

/// Creates `<dir>/<scope>/<dialect>/NNNN_<name>.sql` in each dialect folder (all three when the
/// scope has none yet). Returns the files (not created in a dry run).
pub fn new_migration(
    dir: &Path,
    scope: impl Into<Scope>,
    name: &str,
    dry_run: bool,
) -> Result<Vec<PathBuf>, EngineError> {
    let scope = scope.into();
    if name.is_empty()
        || name.len() > 100
        || !name.starts_with(|c: char| c.is_ascii_lowercase())
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(ValidationError::new(
            "name",
            "must be snake_case: a-z, 0-9 and _, starting with a letter (e.g. add_loyalty_points)",
        )
        .into());
    }
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
    let file = format!("{version:0width$}_{name}.sql");
    let mut created = Vec::new();
    for b in dialects {
        let folder = scope_dir.join(b.folder());
        let path = folder.join(&file);
        if !dry_run {
            std::fs::create_dir_all(&folder).map_err(|e| io_err(&folder, e))?;
            let header = format!(
                "-- {file}: {scope} migration for {b}.\n-- Write the statements below; every dialect folder needs its own version of them.\n"
            );
            std::fs::write(&path, header).map_err(|e| io_err(&path, e))?;
        }
        created.push(path);
    }
    Ok(created)
}

fn io_err(path: &Path, e: std::io::Error) -> EngineError {
    EngineError::Config(crate::config::ConfigError::new(
        "MIGRATIONS_DIR",
        format!("cannot write {}: {e}", path.display()),
    ))
}
