//! Use tenant-migrator from Rust, as the seed's Python module was used: migrate the catalog
//! (`migrate_public`), provision a tenant (`create_schema_and_migrate`) and bring the whole
//! fleet up to date (`migrate_all`), with the CLI's exact configuration (environment and
//! `.env`). Run it with `cargo run --example embed` (SQLite under `./data` by default).

use tenant_migrator::jobs::NoProgress;
use tenant_migrator::{Config, Engine, FleetReport, SchemaName};

/// The three calls of the seed, through [`Engine`].
pub async fn run(config: Config) -> Result<FleetReport, Box<dyn std::error::Error>> {
    let engine = Engine::connect(config).await?;

    // migrate_public(): the catalog to its newest version.
    let public = engine
        .upgrade_public(&engine.run_options(false, None))
        .await?;
    println!("catalog at version {:?}", public.to);

    // create_schema_and_migrate("salon_bella"): catalog row, schema, every migration.
    let opts = engine.fleet_options(false, None);
    let salon = SchemaName::parse("salon_bella")?;
    let created = engine.create_tenant(&salon, None, &opts).await?;
    println!("{}: {:?}", created.schema, created.status);

    // migrate_all(): every tenant to the newest version, `opts.concurrency` at a time.
    let fleet = engine.upgrade_all(&opts, &NoProgress).await?;
    println!(
        "{} migrated, {} failed, {} up to date",
        fleet.successful_migrations, fleet.failed, fleet.skipped
    );
    engine.close().await;
    Ok(fleet)
}

#[allow(dead_code)] // the test that runs `run` does not use `main`
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fleet = run(Config::from_env()?).await?;
    std::process::exit(if fleet.all_good() { 0 } else { 1 });
}
