//! `new-migration`: the next-numbered empty file in every dialect folder of a scope, so the
//! folders never disagree.

use std::path::{Path, PathBuf};

use crate::engine::EngineError;
use crate::migrate::Scope;
use crate::migrate::naming::{check_name, next_file};

/// Creates `<dir>/<scope>/<dialect>/NNNN_<name>.sql` in each dialect folder (all three when the
/// scope has none yet). Returns the files (not created in a dry run).
pub fn new_migration(
    dir: &Path,
    scope: impl Into<Scope>,
    name: &str,
    dry_run: bool,
) -> Result<Vec<PathBuf>, EngineError> {
    let scope = scope.into();
    check_name(name)?;
    let scope_dir = dir.join(scope.folder());
    let (dialects, _, file) = next_file(dir, scope, name);
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
