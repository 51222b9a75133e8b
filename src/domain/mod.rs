//! Validated value types shared by every layer: schema names, display names, list cursors,
//! emails, roles.
//!
//! Each newtype is parsed once at the edge (CLI argument, HTTP body, catalog row) and is
//! valid from then on, so no deeper layer re-checks or trusts raw strings.

mod cursor;
mod display_name;
mod email;
mod role;
mod schema_name;
mod text;

pub use cursor::TenantCursor;
pub use display_name::DisplayName;
pub use email::Email;
pub use role::Role;
pub use schema_name::{SchemaName, is_reserved_schema};
pub use text::escape_unprintable;

/// Why a value given by a user was refused. The message is safe to show to that user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// The input the message is about (`schema_name`, `email`, `--target`, …).
    pub field: &'static str,
    /// What is wrong and what would be accepted.
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}
