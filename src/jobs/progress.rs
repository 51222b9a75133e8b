//! Progress of a fleet run as events, so the CLI (progress bar or log lines), the HTTP
//! service (server-sent events) and tests can each follow it their own way.

use super::report::{FleetReport, TenantReport};

/// Receives progress of a fleet run. Called from the runner's tasks; must not block.
pub trait Progress: Send + Sync {
    /// The run knows how many tenants need work (after the batched history check).
    fn planned(&self, _total: usize, _work: usize) {}
    /// A tenant is being worked on.
    fn tenant_started(&self, _schema: &str) {}
    /// A tenant is done (whatever the outcome).
    fn tenant_finished(&self, _report: &TenantReport) {}
    /// The run is over.
    fn finished(&self, _report: &FleetReport) {}
}

/// Ignores every event.
pub struct NoProgress;

impl Progress for NoProgress {}
