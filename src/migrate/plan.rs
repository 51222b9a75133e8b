//! What to run: compares a schema's history with the migration set and a target version.
//! The same `Plan` drives `--dry-run` (printed) and apply (executed), so a dry run shows
//! exactly what would happen.

use serde::Serialize;

use super::history::{HistoryRow, RowState};
use super::source::MigrationSet;

/// Something in a schema's history that stops the engine from touching it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
// `MigrationProblem` in the OpenAPI document, where `Problem` is the RFC 9457 error body.
#[schema(as = MigrationProblem)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// A migration failed or was interrupted after some statements committed (MySQL). A human
    /// must look, then run `repair`.
    Dirty {
        version: i64,
        name: String,
        state: RowState,
        error: Option<String>,
    },
    /// An applied migration's file changed since it ran.
    ChecksumMismatch {
        version: i64,
        name: String,
        applied: String,
        file: String,
    },
    /// An applied migration has no file any more.
    MissingFile { version: i64, name: String },
    /// A file older than the newest applied version was never applied (added out of order).
    OutOfOrder { version: i64, name: String },
    /// The schema's history cannot be read (the reason); nothing is known about its version.
    Unreadable { error: String },
    /// A migration is running now: a live session holds the schema's lock.
    InProgress {
        version: i64,
        name: String,
        /// The session holding the lock (`connection 42`).
        holder: Option<String>,
    },
    /// A migration's process died mid-way and nobody holds the lock. When `resumable`, the
    /// next run resumes it after its `statements_done`; otherwise a person decides (`reason`).
    Interrupted {
        version: i64,
        name: String,
        statements_done: Option<i64>,
        /// Statements in the migration's file.
        statements: usize,
        resumable: bool,
        reason: Option<String>,
    },
    /// `repair` will not forget a migration whose effects are (or may be) in the live schema.
    PartlyApplied {
        version: i64,
        name: String,
        /// What shows it, or why nothing can tell.
        evidence: String,
    },
}

impl Problem {
    pub fn describe(&self) -> String {
        match self {
            Problem::Dirty {
                version,
                name,
                state,
                error,
            } => format!(
                "dirty: migration {version:04}_{name} is {}{}; fix the schema by hand, then run `repair`",
                state.as_str(),
                error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ),
            Problem::ChecksumMismatch { version, name, .. } => {
                format!("checksum mismatch: {version:04}_{name} was changed after it was applied")
            }
            Problem::MissingFile { version, name } => {
                format!("applied migration {version:04}_{name} has no file any more")
            }
            Problem::OutOfOrder { version, name } => format!(
                "migration {version:04}_{name} is older than the newest applied one and was never applied"
            ),
            Problem::Unreadable { error } => format!(
                "its migration history cannot be read: {error}; restore or remove the schema"
            ),
            Problem::InProgress {
                version,
                name,
                holder,
            } => format!(
                "in progress: migration {version:04}_{name} is running (lock held by a live session{})",
                holder
                    .as_deref()
                    .map(|h| format!(": {h}"))
                    .unwrap_or_default()
            ),
            Problem::Interrupted {
                version,
                name,
                statements_done,
                statements,
                resumable,
                reason,
            } => {
                let done = statements_done
                    .map(|d| format!(" after statement {d} of {statements}"))
                    .unwrap_or_default();
                if *resumable {
                    format!(
                        "interrupted (no owner): migration {version:04}_{name} stopped{done}; the next run resumes it"
                    )
                } else {
                    format!(
                        "interrupted (no owner): migration {version:04}_{name} stopped{done} and cannot be resumed: {}; check the schema by hand, then `repair`",
                        reason.as_deref().unwrap_or("its progress is unknown")
                    )
                }
            }
            Problem::PartlyApplied {
                version,
                name,
                evidence,
            } => format!(
                "not forgotten: migration {version:04}_{name} may be partly applied ({evidence}); `upgrade` resumes an interrupted migration, `repair --mark-applied` records one completed by hand, `repair --force` forgets it once its statements were undone by hand"
            ),
        }
    }

    /// True when a person must act before the schema migrates again.
    pub fn is_dirty(&self) -> bool {
        match self {
            Problem::Dirty { .. } | Problem::PartlyApplied { .. } => true,
            Problem::Interrupted { resumable, .. } => !resumable,
            _ => false,
        }
    }
}

/// The work for one schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Newest applied version (`None` for a fresh schema).
    pub from: Option<i64>,
    /// Version the schema will be at once `pending` ran (equal to `from` when nothing runs).
    pub to: Option<i64>,
    /// Versions to run, in order.
    pub pending: Vec<i64>,
    /// Why nothing may run. Non-empty means `pending` is ignored.
    pub problems: Vec<Problem>,
}

impl Plan {
    pub fn is_noop(&self) -> bool {
        self.pending.is_empty() && self.problems.is_empty()
    }
}

/// Builds the plan for `history` against `set`, up to `target` (inclusive) or the newest file.
pub fn plan(set: &MigrationSet, history: &[HistoryRow], target: Option<i64>) -> Plan {
    let mut problems = Vec::new();
    for row in history {
        if !row.state.is_applied() {
            problems.push(Problem::Dirty {
                version: row.version,
                name: row.name.clone(),
                state: row.state,
                error: row.error.clone(),
            });
            continue;
        }
        match set.get(row.version) {
            None => problems.push(Problem::MissingFile {
                version: row.version,
                name: row.name.clone(),
            }),
            Some(m) if m.checksum != row.checksum => problems.push(Problem::ChecksumMismatch {
                version: row.version,
                name: row.name.clone(),
                applied: row.checksum.clone(),
                file: m.checksum.clone(),
            }),
            Some(_) => {}
        }
    }
    let applied: std::collections::BTreeSet<i64> = history
        .iter()
        .filter(|r| r.state.is_applied())
        .map(|r| r.version)
        .collect();
    let from = applied.last().copied();
    let recorded: std::collections::BTreeSet<i64> = history.iter().map(|r| r.version).collect();
    for m in &set.migrations {
        if from.is_some_and(|f| m.version < f) && !recorded.contains(&m.version) {
            problems.push(Problem::OutOfOrder {
                version: m.version,
                name: m.name.clone(),
            });
        }
    }
    let limit = target.or(set.latest());
    let pending: Vec<i64> = set
        .migrations
        .iter()
        .map(|m| m.version)
        .filter(|v| from.is_none_or(|f| *v > f) && limit.is_some_and(|l| *v <= l))
        .collect();
    let to = pending.last().copied().or(from);
    Plan {
        from,
        to,
        pending,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Backend;
    use crate::migrate::source::{Migration, Scope};

    fn set(versions: &[i64]) -> MigrationSet {
        MigrationSet {
            scope: Scope::Tenant,
            backend: Backend::Sqlite,
            migrations: versions
                .iter()
                .map(|v| Migration {
                    version: *v,
                    name: format!("m{v}"),
                    file: format!("tenant/sqlite/{v:04}_m{v}.sql"),
                    checksum: format!("c{v}"),
                    statements: vec![],
                })
                .collect(),
        }
    }

    fn row(v: i64, checksum: &str, state: RowState) -> HistoryRow {
        HistoryRow {
            version: v,
            name: format!("m{v}"),
            checksum: checksum.into(),
            state,
            started_at: None,
            finished_at: None,
            duration_ms: None,
            error: None,
            statements_done: None,
            resumed_after: None,
        }
    }

    #[test]
    fn fresh_schema_gets_everything_up_to_target() {
        let p = plan(&set(&[1, 2, 3]), &[], None);
        assert_eq!(
            (p.from, p.to, p.pending.clone()),
            (None, Some(3), vec![1, 2, 3])
        );
        let p = plan(&set(&[1, 2, 3]), &[], Some(2));
        assert_eq!(p.pending, vec![1, 2]);
    }

    #[test]
    fn up_to_date_is_a_noop() {
        let h = [
            row(1, "c1", RowState::Applied),
            row(2, "c2", RowState::Applied),
        ];
        let p = plan(&set(&[1, 2]), &h, None);
        assert!(p.is_noop());
        assert_eq!((p.from, p.to), (Some(2), Some(2)));
    }

    #[test]
    fn problems_block_and_are_all_reported() {
        let h = [
            row(1, "changed", RowState::Applied),
            row(3, "c3", RowState::Applied),
            row(4, "c4", RowState::Failed),
            row(9, "c9", RowState::Applied),
        ];
        let p = plan(&set(&[1, 2, 3, 4, 5]), &h, None);
        let kinds: Vec<_> = p.problems.iter().map(|p| p.describe()).collect();
        // 0001 changed, 0004 failed, 0009 has no file, 0002 and 0005 skipped below 0009.
        assert_eq!(p.problems.len(), 5, "{kinds:?}");
        assert!(kinds.iter().any(|k| k.starts_with("checksum mismatch")));
        assert!(kinds.iter().any(|k| k.starts_with("dirty")));
        assert!(kinds.iter().any(|k| k.contains("no file")));
        assert!(kinds.iter().any(|k| k.contains("older than")));
    }
}
