//! Fleet progress on the command line: a progress bar on a terminal, one structured log
//! line per tenant otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::{info, warn};

use super::OutputFormat;
use crate::jobs::{FleetReport, Progress, TenantReport};

/// The sink for this terminal and output format.
pub fn for_run(output: OutputFormat, expected: usize) -> Box<dyn Progress> {
    if output == OutputFormat::Text && std::io::stderr().is_terminal() {
        let bar =
            ProgressBar::with_draw_target(Some(expected as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Box::new(Bar(bar))
    } else {
        Box::new(LogLines)
    }
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn planned(&self, total: usize, work: usize) {
        self.0.set_length(total as u64);
        self.0.set_position((total - work) as u64);
    }

    fn tenant_started(&self, schema: &str) {
        self.0.set_message(schema.to_owned());
    }

    fn tenant_finished(&self, r: &TenantReport) {
        if r.status.is_failure() {
            self.0.println(format!(
                "{}: {} — {}",
                r.schema,
                r.status.as_str(),
                r.error.as_deref().unwrap_or_default()
            ));
        }
        self.0.inc(1);
    }

    fn finished(&self, _report: &FleetReport) {
        self.0.finish_and_clear();
    }
}

struct LogLines;

impl Progress for LogLines {
    fn planned(&self, total: usize, work: usize) {
        info!(total, with_work = work, "fleet run planned");
    }

    fn tenant_finished(&self, r: &TenantReport) {
        if r.status.is_failure() {
            warn!(
                schema = %r.schema,
                status = r.status.as_str(),
                from = r.from,
                to = r.to,
                duration_ms = r.duration_ms,
                error = r.error.as_deref().unwrap_or_default(),
                "tenant done"
            );
        } else {
            info!(
                schema = %r.schema,
                status = r.status.as_str(),
                from = r.from,
                to = r.to,
                duration_ms = r.duration_ms,
                migrations = r.migrations.len(),
                "tenant done"
            );
        }
    }
}
