//! Logging: human-readable text on a terminal, one JSON object per line otherwise (or as
//! `LOG_FORMAT` says), always to stderr so stdout stays the command's output. `RUST_LOG`
//! overrides the levels; `--verbose` adds per-statement timing.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// `LOG_FORMAT=text|json`, else text on a terminal and JSON otherwise.
    pub fn detect() -> Self {
        match std::env::var("LOG_FORMAT").ok().as_deref() {
            Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            _ if std::io::stderr().is_terminal() => LogFormat::Text,
            _ => LogFormat::Json,
        }
    }
}

/// Installs the global subscriber. `quiet_default` lowers the default level to warnings
/// (a progress bar is showing); `verbose` raises it to debug.
pub fn init(verbose: bool, quiet_default: bool) {
    let default = if verbose {
        "tenant_migrator=debug,sqlx=warn,warn"
    } else if quiet_default {
        "tenant_migrator=warn,sqlx=error,warn"
    } else {
        "tenant_migrator=info,sqlx=warn,warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let result = match LogFormat::detect() {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
    // A second init (tests embedding the CLI) keeps the first subscriber.
    let _ = result;
}
