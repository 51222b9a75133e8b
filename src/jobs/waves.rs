//! Canary waves and the failure budget of a fleet run.
//!
//! A run with a canary works on a few tenants first (the **canary** wave) and starts the rest
//! (the **fleet** wave) only when none of them failed; a run without one has a single `fleet`
//! wave. The failure budget ([`Budget`]) stops new tenants from starting once a number of
//! tenants failed: one without `continue_on_error` (the first failure stops the run), none
//! with it, or `max_failures` when given, which implies continuing until that many failed.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub use crate::catalog::{HaltReason, WaveReport};

use super::report::{OutcomeStatus, TenantReport};
use crate::domain::SchemaName;

/// Name of the wave that goes first.
pub const CANARY: &str = "canary";
/// Name of the wave of every other tenant (the only one without a canary).
pub const FLEET: &str = "fleet";

/// Which tenants form the canary wave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Canary {
    /// The first N tenants (by schema name) that have work; at least 1.
    Count(usize),
    /// These tenants, whatever their state; each must be in the catalog.
    Tenants(Vec<SchemaName>),
}

impl Canary {
    /// The canary wave's schema names, given the run's tenants with work in schema-name order.
    pub fn members<'a>(&self, with_work: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
        match self {
            Canary::Count(n) => with_work.take(*n).map(str::to_owned).collect(),
            Canary::Tenants(names) => names.iter().map(|n| n.as_str().to_owned()).collect(),
        }
    }
}

/// Counts failures and says when no tenant may start any more.
#[derive(Debug)]
pub struct Budget {
    /// Failures that stop the run (`None`: never).
    limit: Option<usize>,
    failures: AtomicUsize,
    spent: AtomicBool,
}

impl Budget {
    /// The budget of a run: `max_failures` when given, else 1 without `continue_on_error`
    /// and unlimited with it. `already` failures (found before any tenant started) count.
    pub fn new(max_failures: Option<usize>, continue_on_error: bool, already: usize) -> Self {
        let limit = match max_failures {
            Some(k) => Some(k.max(1)),
            None if continue_on_error => None,
            None => Some(1),
        };
        Self {
            limit,
            failures: AtomicUsize::new(already),
            spent: AtomicBool::new(limit.is_some_and(|k| already >= k)),
        }
    }

    /// Counts a tenant's outcome.
    pub fn record(&self, status: OutcomeStatus) {
        if status.is_failure() {
            let n = self.failures.fetch_add(1, Ordering::SeqCst) + 1;
            if self.limit.is_some_and(|k| n >= k) {
                self.spent.store(true, Ordering::SeqCst);
            }
        }
    }

    /// True once no tenant may start.
    pub fn is_spent(&self) -> bool {
        self.spent.load(Ordering::SeqCst)
    }
}

/// The waves of a finished run, counted from its tenant lines. With a canary, the canary
/// wave comes first and holds `canary`'s members; the fleet wave holds every other tenant.
pub fn summarize(tenants: &[TenantReport], canary: Option<&BTreeSet<String>>) -> Vec<WaveReport> {
    let wave = |name: &str, keep: &dyn Fn(&TenantReport) -> bool| {
        let mut w = WaveReport {
            name: name.to_owned(),
            tenants: Vec::new(),
            succeeded: 0,
            failed: 0,
            skipped: 0,
            planned: 0,
            not_attempted: 0,
        };
        for t in tenants.iter().filter(|t| keep(t)) {
            w.tenants.push(t.schema.clone());
            match t.status {
                OutcomeStatus::Created | OutcomeStatus::Migrated => w.succeeded += 1,
                OutcomeStatus::Planned => w.planned += 1,
                OutcomeStatus::NotAttempted => w.not_attempted += 1,
                s if s.is_failure() => w.failed += 1,
                _ => w.skipped += 1,
            }
        }
        w.tenants.sort();
        w
    };
    match canary {
        None => vec![wave(FLEET, &|_| true)],
        Some(members) => vec![
            wave(CANARY, &|t| members.contains(&t.schema)),
            wave(FLEET, &|t| !members.contains(&t.schema)),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(schema: &str, status: OutcomeStatus) -> TenantReport {
        TenantReport::new(schema, status)
    }

    #[test]
    fn budget_without_continue_on_error_is_one_failure() {
        let b = Budget::new(None, false, 0);
        assert!(!b.is_spent());
        b.record(OutcomeStatus::Migrated);
        assert!(!b.is_spent());
        b.record(OutcomeStatus::Dirty);
        assert!(b.is_spent());
    }

    #[test]
    fn budget_with_continue_on_error_is_unlimited_unless_given() {
        let b = Budget::new(None, true, 3);
        b.record(OutcomeStatus::Failed);
        assert!(!b.is_spent());
        let b = Budget::new(Some(2), false, 1);
        assert!(!b.is_spent());
        b.record(OutcomeStatus::Failed);
        assert!(b.is_spent());
        assert!(Budget::new(Some(2), true, 2).is_spent());
    }

    #[test]
    fn canary_count_takes_the_first_tenants_with_work() {
        let m = Canary::Count(2).members(["a", "b", "c"].into_iter());
        assert_eq!(m.into_iter().collect::<Vec<_>>(), vec!["a", "b"]);
    }

    #[test]
    fn waves_split_and_count_the_tenant_lines() {
        let lines = vec![
            line("a", OutcomeStatus::Migrated),
            line("b", OutcomeStatus::Failed),
            line("c", OutcomeStatus::NotAttempted),
            line("d", OutcomeStatus::UpToDate),
        ];
        let canary: BTreeSet<String> = ["a".to_owned(), "b".to_owned()].into();
        let w = summarize(&lines, Some(&canary));
        assert_eq!(w[0].name, CANARY);
        assert_eq!(w[0].tenants, vec!["a", "b"]);
        assert_eq!((w[0].succeeded, w[0].failed), (1, 1));
        assert_eq!(w[1].tenants, vec!["c", "d"]);
        assert_eq!((w[1].not_attempted, w[1].skipped), (1, 1));
        assert_eq!(summarize(&lines, None).len(), 1);
    }
}
