//! Command output on stdout: aligned text for people, one JSON document for scripts. Lines go
//! out through [`say!`]: when the reader of stdout went away (`tenant-migrator list-tenants |
//! head`), the command ends quietly with exit 0 instead of dying on a broken pipe.

use std::io::Write;

use serde::Serialize;

use super::OutputFormat;
use crate::catalog::TenantPage;
use crate::config::DEFAULT_SERVER;
use crate::engine::{
    AdoptOutcome, AdoptReport, DriftReport, EngineError, RepairReport, ServerStatus, TenantState,
};
use crate::jobs::{FleetReport, HaltReason};

/// Writes one line to stdout; see the module docs for a closed stdout.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // Nobody is reading any more: there is nothing left to say, and nothing failed.
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// `println!` for command output (see [`line`]).
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::render::line(format_args!($($arg)*))
    };
}
pub(crate) use say;

fn json<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => say!("{s}"),
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
        say!("{line}");
    }
    let what = if r.dry_run { "dry run: " } else { "" };
    say!(
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
    waves(r);
}

/// One line per wave when a run went in more than one, then why it halted, if it did.
fn waves(r: &FleetReport) {
    if r.waves.len() > 1 {
        for w in &r.waves {
            let planned = if r.dry_run {
                format!(", {} planned", w.planned)
            } else {
                String::new()
            };
            let names = if w.name == crate::jobs::waves::CANARY {
                format!(" [{}]", w.tenants.join(", "))
            } else {
                String::new()
            };
            say!(
                "{} wave: {} tenants: {} succeeded, {} failed, {} skipped, {} not attempted{planned}{names}",
                w.name,
                w.tenants.len(),
                w.succeeded,
                w.failed,
                w.skipped,
                w.not_attempted
            );
        }
    }
    match r.halted {
        Some(HaltReason::CanaryFailed) => {
            say!("halted: canary_failed (a canary tenant failed; the fleet wave was not started)")
        }
        Some(HaltReason::MaxFailures) => {
            say!("halted: max_failures (the failure budget was spent; no further tenant started)")
        }
        None => {}
    }
}

pub fn tenants(output: OutputFormat, page: &TenantPage) {
    if output == OutputFormat::Json {
        return json(&serde_json::json!({ "total": page.total, "tenants": page.tenants }));
    }
    if page.tenants.is_empty() {
        say!("no tenants");
        return;
    }
    let width = page
        .tenants
        .iter()
        .map(|t| t.schema_name.len())
        .max()
        .unwrap_or(6)
        .max(6);
    say!(
        "{:width$}  {:12}  {:>7}  {:25}  display name",
        "schema",
        "status",
        "version",
        "updated"
    );
    for t in &page.tenants {
        say!(
            "{:width$}  {:12}  {:>7}  {:25}  {}",
            t.schema_name,
            t.status.as_str(),
            version(t.schema_version),
            t.updated_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            // Rows written before display names were checked may hold terminal escapes.
            crate::domain::escape_unprintable(&t.display_name)
        );
    }
    say!("{} tenants", page.total);
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
    if let Some(server) = s.server.as_deref().filter(|s| *s != DEFAULT_SERVER) {
        line.push_str(&format!(", server {server}"));
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

/// One server's line: reachability, tenants by version, pool.
fn server_line(s: &ServerStatus) -> String {
    let versions: Vec<String> = s
        .versions
        .iter()
        .map(|v| format!("{}: {}", version(v.version), v.tenants))
        .collect();
    format!(
        "server {} ({}): {}{}, {} tenant{}{}, pool {}",
        s.name,
        s.location,
        match &s.error {
            None => "reachable".to_owned(),
            Some(e) => format!("UNREACHABLE ({e})"),
        },
        if s.draining { ", draining" } else { "" },
        s.tenants,
        if s.tenants == 1 { "" } else { "s" },
        if versions.is_empty() {
            String::new()
        } else {
            format!(" (by version {})", versions.join(", "))
        },
        s.pool_size
    )
}

pub fn status(
    output: OutputFormat,
    catalog: &TenantState,
    servers: &[ServerStatus],
    tenants: &[TenantState],
) {
    if output == OutputFormat::Json {
        return json(
            &serde_json::json!({ "catalog": catalog, "servers": servers, "tenants": tenants }),
        );
    }
    say!("catalog {}", state_line(catalog));
    for s in servers {
        say!("{}", server_line(s));
    }
    for t in tenants {
        say!("{}", state_line(t));
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
    say!("{}:", r.schema);
    say!(
        "  {prefix}forget (run again at next upgrade): [{}]",
        list(&r.forgotten)
    );
    say!("  {prefix}mark applied: [{}]", list(&r.marked_applied));
    say!(
        "  {prefix}accept checksums: [{}]",
        list(&r.checksums_accepted)
    );
    if r.remaining.is_empty() {
        say!("  no problems remain");
    }
    for p in &r.remaining {
        say!("  still: {}", p.describe());
    }
}

pub fn drift(output: OutputFormat, r: &DriftReport) {
    if output == OutputFormat::Json {
        return json(r);
    }
    say!(
        "checked {} tenants at version {} ({} not current, skipped)",
        r.checked,
        version(r.version),
        r.not_current.len()
    );
    for d in &r.drifted {
        say!("{}: drifted", d.schema);
        for m in &d.missing {
            say!("  missing    {m}");
        }
        for u in &d.unexpected {
            say!("  unexpected {u}");
        }
        for c in &d.changed {
            say!("  changed    {c}");
        }
    }
    if r.drifted.is_empty() {
        say!("no drift");
    }
}

pub fn adopt(output: OutputFormat, r: &AdoptReport) {
    if output == OutputFormat::Json {
        return json(r);
    }
    let width = r
        .tenants
        .iter()
        .chain(&r.catalog)
        .map(|t| t.schema.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let line = |t: &AdoptOutcome| {
        let mut l = format!(
            "{:width$}  {:15}  {:>4}",
            t.schema,
            t.verdict.as_str(),
            version(t.version)
        );
        if let Some(rev) = t.revision.as_ref().filter(|_| t.reason.is_none()) {
            l.push_str(&format!("  revision {rev}"));
        }
        if let Some(why) = &t.reason {
            l.push_str(&format!("  {why}"));
        }
        say!("{l}");
        for d in &t.differences {
            say!("{:width$}    {d}", "");
        }
    };
    if let Some(c) = &r.catalog {
        say!("catalog:");
        line(c);
    }
    for t in &r.tenants {
        line(t);
    }
    let c = &r.counts;
    let first = if r.dry_run {
        format!(
            "dry run, nothing was written: {} would be adopted",
            c.would_adopt
        )
    } else {
        format!("{} adopted", c.adopted)
    };
    say!(
        "{first}, {} already adopted, {} refused, {} failed",
        c.already_adopted,
        c.refused,
        c.failed
    );
}

pub fn created_files(output: OutputFormat, files: &[std::path::PathBuf]) {
    if output == OutputFormat::Json {
        return json(&serde_json::json!({ "created": files }));
    }
    for f in files {
        say!("created {}", f.display());
    }
}

/// The statements of a script, each ending with `;` (ready for the database's own client).
fn script(statements: &[String]) {
    for s in statements {
        say!("{s};\n");
    }
}

pub fn diff(output: OutputFormat, r: &crate::engine::autogen::DiffReport) {
    if output == OutputFormat::Json {
        return json(r);
    }
    for d in &r.dialects {
        if d.changes.is_empty() {
            say!(
                "{}/{}: no differences from {}",
                r.scope,
                d.dialect,
                d.desired
            );
            continue;
        }
        say!(
            "{}/{}: {} change(s) from the migrations to {}",
            r.scope,
            d.dialect,
            d.changes.len(),
            d.desired
        );
        for c in &d.changes {
            say!("  {c}");
        }
        for c in &d.cautions {
            say!("  caution: {c}");
        }
    }
    if let Some(why) = &r.refused {
        say!("nothing was written:");
        for line in why.lines() {
            say!("  {line}");
        }
        return;
    }
    if r.version.is_none() {
        say!("no differences: nothing written");
        return;
    }
    let verb = if r.written {
        "wrote"
    } else {
        "would write (dry run)"
    };
    for d in &r.dialects {
        if let Some(f) = &d.file {
            say!("{verb} {f}");
        }
    }
    for p in &r.placeholders {
        say!("{verb} {p} (no desired file for this dialect: write its statements by hand)");
    }
    if !r.written {
        for d in r.dialects.iter().filter(|d| !d.statements.is_empty()) {
            say!("-- {}", d.dialect);
            script(&d.statements);
        }
    }
}

pub fn dump(output: OutputFormat, d: &crate::engine::autogen::Dump) {
    if output == OutputFormat::Json {
        return json(d);
    }
    say!(
        "-- {}: structure of {} as written by `tenant-migrator dump`.",
        d.dialect,
        d.schema
    );
    for u in &d.unsupported {
        say!("-- not written: {u}");
    }
    say!("");
    script(&d.statements);
}

pub fn tenant_fix(output: OutputFormat, f: &crate::engine::TenantFix, fix_sql: bool) {
    if output == OutputFormat::Json {
        return json(f);
    }
    let Some(d) = &f.drift else {
        say!("{}: matches version {}", f.schema, version(f.version));
        return;
    };
    if !fix_sql {
        say!("{}: drifted from version {}", f.schema, version(f.version));
        for line in d.lines() {
            say!("  {line}");
        }
        return;
    }
    say!(
        "-- {}: statements that bring it back to version {} (printed, never run; review first;\n\
         -- run them with the database's own client, stopping at the first error: sqlite3 -bail,\n\
         -- psql -v ON_ERROR_STOP=1, mysql without --force).",
        f.schema,
        version(f.version)
    );
    for line in d.lines() {
        say!("--   {line}");
    }
    for x in &f.destructive {
        say!("-- destructive: {x}");
    }
    for u in &f.unsupported {
        say!("-- not written: {u}");
    }
    say!("");
    script(&f.statements);
}
