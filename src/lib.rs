//! tenant-migrator: owns the database schemas of a schema-per-tenant SaaS.
//!
//! The Rust API is [`Engine`]: built from a [`Config`], it provisions tenants
//! ([`Engine::create_tenants`]), upgrades the fleet ([`Engine::upgrade_all`]) and the catalog
//! ([`Engine::upgrade_public`]), reports [`Engine::status`], [`Engine::repair`]s dirty schemas
//! and checks drift. The CLI ([`cli`]) and the HTTP service are thin layers over it.

pub mod auth;
pub mod backend;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod engine;
pub mod http;
pub mod jobs;
pub mod migrate;
pub mod schema;
pub mod telemetry;

pub use config::{Config, ConfigError, Settings};
pub use domain::{Email, Role, SchemaName, ValidationError};
pub use engine::{Engine, EngineError, RepairOptions, RepairReport, TenantState};
pub use jobs::{FleetOptions, FleetReport, OutcomeStatus, Progress, TenantReport};
pub use migrate::{MigrationSource, RunOptions, Scope};
