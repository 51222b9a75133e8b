//! Schemas as data: the [`model`] introspection reads a live schema into, the [`diff`] of
//! two of them, and [`render`]ing that diff as each server's DDL. A leaf above
//! [`crate::backend`]: the database layer fills the model, the engine's `diff`, `dump` and
//! drift checks use the rest.

pub mod diff;
pub mod model;
pub mod render;
mod types;

pub use diff::{Change, Direction, diff};
pub use model::{AutoIncrement, Check, Column, ForeignKey, Index, PrimaryKey, Schema, Table};
pub use render::{Rendered, render};
