//! The migration engine: loading and checksumming files (`source`), splitting them
//! (`split`), substituting their placeholders (`placeholders`), deciding what to run
//! (`plan`), running it under a lock (`apply`), and the history table it all rests on
//! (`history`).

pub mod apply;
pub mod error;
pub mod history;
pub mod lock;
pub mod observe;
pub mod placeholders;
pub mod plan;
pub mod provision;
pub mod source;
pub mod split;

pub use apply::{RunOptions, StepReport, TargetResult, migrate_target, migrate_target_counted};
pub use error::MigrateError;
pub use plan::{Plan, Problem};
pub use provision::{RowOrigin, provision_target_counted};
pub use source::{Migration, MigrationSet, MigrationSource, Scope};
