//! What `adopt alembic` says about each schema: verdicts, outcomes and counts.

use serde::Serialize;

/// What happened to one schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Recorded as baselined and registered.
    Adopted,
    /// Would be adopted (dry run).
    WouldAdopt,
    /// Had a history already: adopted (or created) before.
    AlreadyAdopted,
    /// Its state does not allow adoption (unmapped revision, drift, no `alembic_version`…).
    Refused,
    /// An error (a lost connection…) stopped the work; run again.
    Failed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Adopted => "adopted",
            Verdict::WouldAdopt => "would_adopt",
            Verdict::AlreadyAdopted => "already_adopted",
            Verdict::Refused => "refused",
            Verdict::Failed => "failed",
        }
    }
}

/// The verdict on one schema and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AdoptOutcome {
    pub schema: String,
    pub verdict: Verdict,
    /// The Alembic revision found.
    pub revision: Option<String>,
    /// The version it maps to (for `already_adopted`: the version its history shows).
    pub version: Option<i64>,
    pub display_name: Option<String>,
    /// Why it was refused (or failed).
    pub reason: Option<String>,
    /// Structure differences from the reference at `version`, one per line.
    pub differences: Vec<String>,
}

impl AdoptOutcome {
    pub(super) fn new(schema: &str, verdict: Verdict) -> Self {
        Self {
            schema: schema.to_owned(),
            verdict,
            revision: None,
            version: None,
            display_name: None,
            reason: None,
            differences: Vec::new(),
        }
    }

    pub(super) fn refused(schema: &str, reason: impl Into<String>) -> Self {
        Self {
            reason: Some(reason.into()),
            ..Self::new(schema, Verdict::Refused)
        }
    }

    pub(super) fn failed(schema: &str, e: &dyn std::fmt::Display) -> Self {
        Self {
            reason: Some(e.to_string()),
            ..Self::new(schema, Verdict::Failed)
        }
    }
}

/// How many schemas got each verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AdoptCounts {
    pub adopted: usize,
    pub would_adopt: usize,
    pub already_adopted: usize,
    pub refused: usize,
    pub failed: usize,
}

/// The result of `adopt alembic`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AdoptReport {
    pub dry_run: bool,
    /// The catalog's own adoption, when the map has a `[public]` section.
    pub catalog: Option<AdoptOutcome>,
    /// One outcome per schema, sorted by name.
    pub tenants: Vec<AdoptOutcome>,
    pub counts: AdoptCounts,
}

impl AdoptReport {
    /// True when nothing was refused or failed.
    pub fn all_good(&self) -> bool {
        self.counts.refused == 0
            && self.counts.failed == 0
            && self
                .catalog
                .as_ref()
                .is_none_or(|c| !matches!(c.verdict, Verdict::Refused | Verdict::Failed))
    }
}

pub(super) fn finish(
    dry_run: bool,
    catalog: Option<AdoptOutcome>,
    tenants: Vec<AdoptOutcome>,
) -> AdoptReport {
    let mut counts = AdoptCounts::default();
    for t in &tenants {
        *match t.verdict {
            Verdict::Adopted => &mut counts.adopted,
            Verdict::WouldAdopt => &mut counts.would_adopt,
            Verdict::AlreadyAdopted => &mut counts.already_adopted,
            Verdict::Refused => &mut counts.refused,
            Verdict::Failed => &mut counts.failed,
        } += 1;
    }
    AdoptReport {
        dry_run,
        catalog,
        tenants,
        counts,
    }
}
