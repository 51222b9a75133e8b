//! The migration engine: loading and checksumming files (`source`), splitting them
//! (`split`), substituting their placeholders (`placeholders`), deciding what to run
//! (`plan`), running it under a lock (`apply`). The history table it all rests on
//! (`history`) and the lock names (`lock`) belong to the database layer (`crate::db`).

pub mod apply;
pub mod error;
pub mod naming;
pub mod observe;
pub mod placeholders;
pub mod plan;
pub mod provision;
pub mod source;
pub mod split;

// The history table and the lock names live in the database layer; their old paths stay.
pub use crate::db::{history, lock};

pub use apply::{RunOptions, StepReport, TargetResult, migrate_target, migrate_target_counted};
pub use error::MigrateError;
pub use plan::{Plan, Problem};
pub use provision::{RowOrigin, provision_target_counted};
pub use source::{Migration, MigrationSet, MigrationSource, Scope};
