//! One markdown table row per scenario, printed to stdout and appended to
//! `target/fault-report.md` (the header is written once, by whichever scenario creates the
//! file).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::fleet::Tally;

const HEADER: &str = "| scenario | tenants | faults injected | converged | dirty | silent | double-applied DML | duration | seed |\n|---|---:|---:|---:|---:|---:|---:|---:|---|\n";

/// What a scenario reports.
pub struct Outcome<'a> {
    pub scenario: &'a str,
    pub faults: usize,
    pub tally: &'a Tally,
    pub duration: Duration,
    pub seed: u64,
}

fn report_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("fault-report.md")
}

impl Outcome<'_> {
    pub fn row(&self) -> String {
        let t = self.tally;
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} s | FAULT_SEED={} |\n",
            self.scenario,
            t.tenants,
            self.faults,
            t.converged,
            t.dirty,
            t.silent,
            t.double,
            self.duration.as_secs_f64(),
            self.seed
        )
    }

    /// Prints the row (with the header and the notes) and appends it to the report file.
    pub fn publish(&self) {
        let row = self.row();
        let mut text = format!("\n{HEADER}{row}");
        if let Some(n) = self.tally.resumed {
            text.push_str(&format!(
                "{n} tenants resumed a half-applied migration (history `resumed_after`)\n"
            ));
        }
        if !self.tally.dirty_reasons.is_empty() {
            text.push_str("dirty, by what the tool says:\n");
            for (reason, n) in &self.tally.dirty_reasons {
                text.push_str(&format!("  {n:>4} × {reason}\n"));
            }
        }
        for n in &self.tally.notes {
            text.push_str(&format!("  {n}\n"));
        }
        println!("{text}");
        let path = report_path();
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let mut opts = std::fs::OpenOptions::new();
        let (mut file, first) = match opts.write(true).create_new(true).open(&path) {
            Ok(f) => (f, true),
            Err(_) => match std::fs::OpenOptions::new().append(true).open(&path) {
                Ok(f) => (f, false),
                Err(e) => {
                    eprintln!("cannot append to {}: {e}", path.display());
                    return;
                }
            },
        };
        // One write per row: rows of scenarios running in parallel do not interleave.
        let line = if first { format!("{HEADER}{row}") } else { row };
        if let Err(e) = file.write_all(line.as_bytes()) {
            eprintln!("cannot append to {}: {e}", path.display());
        }
    }
}
