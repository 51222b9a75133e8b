//! The `tenant-migrator` binary: parse the command line, run it, exit with its code.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tenant_migrator::cli::main().await
}
