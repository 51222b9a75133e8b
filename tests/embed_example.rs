//! The README's "Use it from Rust" example (`examples/embed.rs`), run as written against a
//! private SQLite directory: catalog, one tenant, the fleet. `Config::from_env` is checked
//! to read the same variables as the CLI.

#[path = "../examples/embed.rs"]
mod embed;

use tenant_migrator::{Config, OutcomeStatus, Settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_example_provisions_and_migrates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config::from_settings(Settings {
        data_dir: Some(dir.path().join("data")),
        ..Settings::default()
    })
    .expect("config");
    let fleet = embed::run(config.clone()).await.expect("example runs");
    assert!(fleet.all_good(), "{fleet:?}");
    assert_eq!(fleet.tenants.len(), 1);
    assert_eq!(fleet.tenants[0].schema, "salon_bella");
    assert_eq!(fleet.tenants[0].status, OutcomeStatus::UpToDate);
    assert!(dir.path().join("data/tenants/salon_bella.db").is_file());
    // Run twice: everything is already there.
    let again = embed::run(config).await.expect("example runs again");
    assert!(again.all_good(), "{again:?}");
}
