//! Command output on stdout: aligned text for people, one JSON document for scripts.

use serde::Serialize;

use super::OutputFormat;
use crate::catalog::TenantPage;
use crate::engine::{DriftReport, EngineError, RepairReport, TenantState};
use crate::jobs::FleetReport;

fn json<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: could not encode the report: {e}"),
    }
}

fn version(v: Option<i64>) -> String {
    v.map(|v| format!("{v:04}")).unwrap_or_else(|| "-".into())
}

/// A failed command: the message on stderr, and in JSON mode a document on stdout too.
pub fn error(output: OutputFormat, e: &EngineError) {
    eprintln!("error: {e}");
    if output == OutputFormat::Json {
        json(&serde_json::json!({ "error": e.to_string(), "exit_code": e.exit_code() }));
    }
}

pub fn fleet(output: OutputFormat, r: &FleetReport) {
    if output == OutputFormat::Json {
        return json(r);
    }
    let width = r
        .tenants
        .iter()
        .map(|t| t.schema.len())
        .max()
        .unwrap_or(6)
        .max(6);
    for t in &r.tenants {
        let mut line = format!(
            "{:width$}  {:17}  {:>4} -> {:<4}  {:>6} ms",
            t.schema,
            t.status.as_str(),
            version(t.from),
            version(t.to),
            t.duration_ms,
        );
        if !t.migrations.is_empty() {
            let names: Vec<String> = t
                .migrations
                .iter()
                .map(|m| format!("{:04}_{}", m.version, m.name))
                .collect();
            line.push_str(&format!("  [{}]", names.join(", ")));
        }
        if let Some(e) = &t.error {
            line.push_str(&format!("\n{:width$}  error: {e}", ""));
        }
        println!("{line}");
    }
    let what = if r.dry_run { "dry run: " } else { "" };
    println!(
        "{what}{} succeeded, {} failed, {} skipped, {} not attempted{}; {} migrations applied in {:.1} s",
        r.successful_migrations,
        r.failed,
        r.skipped,
        r.not_attempted,
        if r.dry_run {
            format!(", {} planned", r.planned)
        } else {
            String::new()
        },
        r.migrations_applied,
        r.duration_ms as f64 / 1000.0
    );
}

pub fn tenants(output: OutputFormat, page: &TenantPage) {
    if output == OutputFormat::Json {
        return json(&serde_json::json!({ "total": page.total, "tenants": page.tenants }));
    }
    if page.tenants.is_empty() {
        println!("no tenants");
        return;
    }
    let width = page
        .tenants
        .iter()
        .map(|t| t.schema_name.len())
        .max()
        .unwrap_or(6)
        .max(6);
    println!(
        "{:width$}  {:12}  {:>7}  {:25}  display name",
        "schema", "status", "version", "updated"
    );
    for t in &page.tenants {
        println!(
            "{:width$}  {:12}  {:>7}  {:25}  {}",
            t.schema_name,
            t.status.as_str(),
            version(t.schema_version),
            t.updated_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            // Rows written before display names were checked may hold terminal escapes.
            crate::domain::escape_unprintable(&t.display_name)
        );
    }
    println!("{} tenants", page.total);
}

fn state_line(s: &TenantState) -> String {
    let mut line = format!(
        "{}: version {} of {}",
        s.schema,
        version(s.version),
        version(s.latest)
    );
    if let Some(c) = s.catalog_status {
        line.push_str(&format!(", catalog status {}", c.as_str()));
    }
    if !s.exists {
        line.push_str(", SCHEMA MISSING");
    }
    if !s.pending.is_empty() {
        let p: Vec<String> = s.pending.iter().map(|v| format!("{v:04}")).collect();
        line.push_str(&format!(", pending [{}]", p.join(", ")));
    }
    if s.dirty {
        line.push_str(", DIRTY");
    }
    for p in &s.problems {
        line.push_str(&format!("\n  - {}", p.describe()));
    }
    line
}

pub fn status(output: OutputFormat, catalog: &TenantState, tenants: &[TenantState]) {
    if output == OutputFormat::Json {
        return json(&serde_json::json!({ "catalog": catalog, "tenants": tenants }));
    }
    println!("catalog {}", state_line(catalog));
    for t in tenants {
        println!("{}", state_line(t));
    }
}

pub fn repair(output: OutputFormat, r: &RepairReport) {
    if output == OutputFormat::Json {
        return json(r);
    }
    let list = |v: &[i64]| {
        v.iter()
            .map(|v| format!("{v:04}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let prefix = if r.dry_run { "would " } else { "" };
    println!("{}:", r.schema);
    println!(
        "  {prefix}forget (run again at next upgrade): [{}]",
        list(&r.forgotten)
    );
    println!("  {prefix}mark applied: [{}]", list(&r.marked_applied));
    println!(
        "  {prefix}accept checksums: [{}]",
        list(&r.checksums_accepted)
    );
    if r.remaining.is_empty() {
        println!("  no problems remain");
    }
    for p in &r.remaining {
        println!("  still: {}", p.describe());
    }
}

pub fn drift(output: OutputFormat, r: &DriftReport) {
    if output == OutputFormat::Json {
        return json(r);
    }
    println!(
        "checked {} tenants at version {} ({} not current, skipped)",
        r.checked,
        version(r.version),
        r.not_current.len()
    );
    for d in &r.drifted {
        println!("{}: drifted", d.schema);
        for m in &d.missing {
            println!("  missing    {m}");
        }
        for u in &d.unexpected {
            println!("  unexpected {u}");
        }
        for c in &d.changed {
            println!("  changed    {c}");
        }
    }
    if r.drifted.is_empty() {
        println!("no drift");
    }
}

pub fn created_files(output: OutputFormat, files: &[std::path::PathBuf]) {
    if output == OutputFormat::Json {
        return json(&serde_json::json!({ "created": files }));
    }
    for f in files {
        println!("created {}", f.display());
    }
}
