//! Canary waves and the failure budget of `upgrade-all`: a passing canary lets the fleet wave
//! run, a failing one halts it (`halted: canary_failed`, the rest `not_attempted`, exit 1),
//! `--canary-tenants` names the wave, `--max-failures` stops starting tenants after K
//! failures, bad input exits 2 and writes nothing, and a dry run shows the planned waves.

mod common;

use serde_json::Value;

use common::{Backend, TestEnv, applied_up_to, tenant_of};

/// A fourth tenant migration; a tenant that already has `loyalty_cards` fails at its first
/// statement, which leaves it clean (not dirty) on every backend.
const LOYALTY: &str = "CREATE TABLE loyalty_cards (\n    id CHAR(36) NOT NULL PRIMARY KEY,\n    points INTEGER NOT NULL DEFAULT 0\n);\n";
const CONFLICT: &str = "CREATE TABLE loyalty_cards (x INTEGER)";

/// Creates `names` at version 3 and adds the loyalty migration as 0004.
fn fleet_with_pending(b: Backend, names: &[&str]) -> (TestEnv, Vec<String>) {
    common::fleet_with_pending(b, names, "0004_loyalty.sql", LOYALTY)
}

/// The report's wave called `name`.
fn wave<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["waves"]
        .as_array()
        .expect("waves array")
        .iter()
        .find(|w| w["name"] == name)
        .unwrap_or_else(|| panic!("no {name} wave:\n{r:#}"))
}

/// A wave's tenants, succeeded, failed and not-attempted counts.
fn counts(w: &Value) -> (Vec<String>, i64, i64, i64) {
    let names = w["tenants"]
        .as_array()
        .expect("tenants array")
        .iter()
        .map(|t| t.as_str().expect("name").to_owned())
        .collect();
    let n = |k: &str| w[k].as_i64().unwrap_or_else(|| panic!("{k} in {w}"));
    (names, n("succeeded"), n("failed"), n("not_attempted"))
}

fn owned(names: &[&String]) -> Vec<String> {
    names.iter().map(|s| (*s).clone()).collect()
}

async fn passing_canary_lets_the_fleet_wave_run(b: Backend) {
    let (env, t) = fleet_with_pending(b, &["a", "b", "c", "d", "e"]);
    // `a` is up to date: the canary is the first tenants *with work*.
    env.cli(&["upgrade", &t[0]]).expect_code(0);
    let run = env.cli(&[
        "--output",
        "json",
        "--concurrency",
        "1",
        "upgrade-all",
        "--canary",
        "2",
    ]);
    run.expect_code(0);
    let r = run.json();
    assert!(r["halted"].is_null(), "{r:#}");
    assert_eq!(r["waves"].as_array().map(Vec::len), Some(2), "{r:#}");
    assert_eq!(r["waves"][0]["name"], "canary");
    assert_eq!(
        counts(wave(&r, "canary")),
        (owned(&[&t[1], &t[2]]), 2, 0, 0)
    );
    assert_eq!(
        counts(wave(&r, "fleet")),
        (owned(&[&t[0], &t[3], &t[4]]), 2, 0, 0)
    );
    assert_eq!(wave(&r, "fleet")["skipped"], 1);
    // The existing fields are unchanged.
    assert_eq!(
        (
            r["successful_migrations"].as_i64(),
            r["failed"].as_i64(),
            r["skipped"].as_i64(),
            r["not_attempted"].as_i64()
        ),
        (Some(4), Some(0), Some(1), Some(0))
    );
    let mut admin = env.admin().await;
    for s in &t {
        assert_eq!(admin.history(&env, s).await, applied_up_to(4), "{s}");
    }
    env.cleanup().await;
}

async fn failing_canary_halts_the_fleet_wave(b: Backend) {
    let (env, t) = fleet_with_pending(b, &["a", "b", "c", "d"]);
    let mut admin = env.admin().await;
    admin.exec_in(&env, &t[1], CONFLICT).await;
    // Even with --continue-on-error, a failed canary stops the fleet wave.
    let run = env.cli(&[
        "--output",
        "json",
        "--continue-on-error",
        "upgrade-all",
        "--canary",
        "2",
    ]);
    run.expect_code(1);
    let r = run.json();
    assert_eq!(r["halted"], "canary_failed", "{r:#}");
    assert_eq!(tenant_of(&r, &t[0])["status"], "migrated");
    assert_eq!(tenant_of(&r, &t[1])["status"], "failed");
    for later in &t[2..] {
        let line = tenant_of(&r, later);
        assert_eq!(line["status"], "not_attempted", "{line:#}");
        assert_eq!(admin.history(&env, later).await, applied_up_to(3));
    }
    assert_eq!(
        (r["failed"].as_i64(), r["not_attempted"].as_i64()),
        (Some(1), Some(2))
    );
    assert_eq!(
        counts(wave(&r, "canary")),
        (owned(&[&t[0], &t[1]]), 1, 1, 0)
    );
    assert_eq!(counts(wave(&r, "fleet")), (owned(&[&t[2], &t[3]]), 0, 0, 2));

    // Again, in text: `a` is up to date now, so the canary is the next two with work (b
    // fails again, c migrates); one line per wave and the reason.
    let text = env.cli(&["--continue-on-error", "upgrade-all", "--canary", "2"]);
    text.expect_code(1);
    let out = text.stdout();
    assert!(
        out.contains(&format!(
            "canary wave: 2 tenants: 1 succeeded, 1 failed, 0 skipped, 0 not attempted [{}, {}]",
            t[1], t[2]
        )),
        "{out}"
    );
    assert!(
        out.contains("fleet wave: 2 tenants: 0 succeeded, 0 failed, 1 skipped, 1 not attempted"),
        "{out}"
    );
    assert!(out.contains("halted: canary_failed"), "{out}");
    assert_eq!(admin.history(&env, &t[2]).await, applied_up_to(4));
    assert_eq!(admin.history(&env, &t[3]).await, applied_up_to(3));
    env.cleanup().await;
}

async fn canary_tenants_name_the_wave(b: Backend) {
    let (env, t) = fleet_with_pending(b, &["a", "b", "c", "d"]);
    let mut admin = env.admin().await;
    admin.exec_in(&env, &t[3], CONFLICT).await;
    // The last tenant by name goes first when named; it fails, so nothing else starts.
    let run = env.cli(&["--output", "json", "upgrade-all", "--canary-tenants", &t[3]]);
    run.expect_code(1);
    let r = run.json();
    assert_eq!(r["halted"], "canary_failed", "{r:#}");
    assert_eq!(counts(wave(&r, "canary")), (owned(&[&t[3]]), 0, 1, 0));
    assert_eq!(
        counts(wave(&r, "fleet")),
        (owned(&[&t[0], &t[1], &t[2]]), 0, 0, 3)
    );
    for s in &t[..3] {
        assert_eq!(admin.history(&env, s).await, applied_up_to(3), "{s}");
    }

    // Named as a comma list and repeated; duplicates count once.
    admin.exec_in(&env, &t[3], "DROP TABLE loyalty_cards").await;
    let list = format!("{},{}", t[2], t[0]);
    let run = env.cli(&[
        "--output",
        "json",
        "upgrade-all",
        "--canary-tenants",
        &list,
        "--canary-tenants",
        &t[0],
    ]);
    run.expect_code(0);
    let r = run.json();
    assert!(r["halted"].is_null(), "{r:#}");
    assert_eq!(
        counts(wave(&r, "canary")),
        (owned(&[&t[0], &t[2]]), 2, 0, 0)
    );
    assert_eq!(counts(wave(&r, "fleet")), (owned(&[&t[1], &t[3]]), 2, 0, 0));
    for s in &t {
        assert_eq!(admin.history(&env, s).await, applied_up_to(4), "{s}");
    }
    env.cleanup().await;
}

async fn max_failures_stops_starting_tenants_after_k(b: Backend) {
    let (env, t) = fleet_with_pending(b, &["a", "b", "c", "d", "e"]);
    let mut admin = env.admin().await;
    for bad in [&t[1], &t[2]] {
        admin.exec_in(&env, bad, CONFLICT).await;
    }
    // One at a time, in name order: a migrates, b and c fail, then the budget is spent.
    let args = [
        "--output",
        "json",
        "--concurrency",
        "1",
        "upgrade-all",
        "--max-failures",
        "2",
    ];
    let mut with_continue = vec!["--continue-on-error"];
    with_continue.extend(args);
    let run = env.cli(&with_continue);
    run.expect_code(1);
    let r = run.json();
    assert_eq!(r["halted"], "max_failures", "{r:#}");
    assert_eq!(tenant_of(&r, &t[0])["status"], "migrated");
    for bad in [&t[1], &t[2]] {
        assert_eq!(tenant_of(&r, bad)["status"], "failed");
    }
    for later in &t[3..] {
        assert_eq!(tenant_of(&r, later)["status"], "not_attempted");
        assert_eq!(admin.history(&env, later).await, applied_up_to(3));
    }
    assert_eq!(
        (r["failed"].as_i64(), r["not_attempted"].as_i64()),
        (Some(2), Some(2))
    );
    assert_eq!(r["waves"].as_array().map(Vec::len), Some(1), "{r:#}");
    assert_eq!(counts(wave(&r, "fleet")).3, 2);

    // Without --continue-on-error, --max-failures still continues until K failed.
    let run = env.cli(&args);
    run.expect_code(1);
    let r = run.json();
    assert_eq!(r["halted"], "max_failures", "{r:#}");
    assert_eq!(
        (r["failed"].as_i64(), r["not_attempted"].as_i64()),
        (Some(2), Some(2)),
        "{r:#}"
    );
    // A budget larger than the failures halts nothing: every other tenant is migrated.
    let run = env.cli(&[
        "--output",
        "json",
        "--concurrency",
        "1",
        "upgrade-all",
        "--max-failures",
        "3",
    ]);
    run.expect_code(1);
    let r = run.json();
    assert!(r["halted"].is_null(), "{r:#}");
    assert_eq!(
        (r["failed"].as_i64(), r["not_attempted"].as_i64()),
        (Some(2), Some(0))
    );
    for s in [&t[0], &t[3], &t[4]] {
        assert_eq!(admin.history(&env, s).await, applied_up_to(4), "{s}");
    }
    env.cleanup().await;
}

async fn bad_input_exits_2_and_writes_nothing(b: Backend) {
    // Before any catalog exists: refused by the flags alone.
    let env = TestEnv::new(b);
    for args in [
        vec!["upgrade-all", "--canary", "0"],
        vec!["upgrade-all", "--max-failures", "0"],
        vec!["upgrade-all", "--canary", "-1"],
        vec!["upgrade-all", "--canary", "1", "--canary-tenants", "x"],
        vec!["upgrade-all", "--canary-tenants", "Not-A-Name"],
        vec!["upgrade-all", "--canary-tenants", ""],
        vec!["upgrade-all", "--canary-tenants", "nobody_here"],
    ] {
        let run = env.cli(&args);
        assert_eq!(run.code(), 2, "{args:?}: {}", run.stderr());
        assert!(env.schemas().await.is_empty(), "{args:?} created a schema");
    }
    env.cleanup().await;

    // With a fleet: a canary tenant not in the catalog stops the run before it starts.
    let (env, t) = fleet_with_pending(b, &["a", "b"]);
    let before = env.snapshot().await;
    let unknown = env.tenant("zz");
    let list = format!("{},{unknown}", t[0]);
    let run = env.cli(&["--output", "json", "upgrade-all", "--canary-tenants", &list]);
    run.expect_code(2);
    assert!(run.stderr().contains(&unknown), "{}", run.stderr());
    assert_eq!(run.json()["exit_code"], 2);
    assert!(env.snapshot().await == before, "the refused run wrote");
    env.cleanup().await;
}

async fn dry_run_shows_the_planned_waves(b: Backend) {
    let (env, t) = fleet_with_pending(b, &["a", "b", "c"]);
    let before = env.snapshot().await;
    let run = env.cli(&[
        "--output",
        "json",
        "--dry-run",
        "upgrade-all",
        "--canary",
        "1",
    ]);
    run.expect_code(0);
    let r = run.json();
    assert!(r["halted"].is_null(), "{r:#}");
    let canary = wave(&r, "canary");
    assert_eq!(counts(canary), (owned(&[&t[0]]), 0, 0, 0));
    assert_eq!(canary["planned"], 1);
    let fleet = wave(&r, "fleet");
    assert_eq!(counts(fleet), (owned(&[&t[1], &t[2]]), 0, 0, 0));
    assert_eq!(fleet["planned"], 2);
    assert_eq!(r["planned"], 3);

    let text = env.cli(&["--dry-run", "upgrade-all", "--canary", "1"]);
    text.expect_code(0);
    let out = text.stdout();
    assert!(out.contains("canary wave: 1 tenants"), "{out}");
    assert!(out.contains(", 1 planned ["), "{out}");
    assert!(out.contains("fleet wave: 2 tenants"), "{out}");
    assert!(env.snapshot().await == before, "the dry run wrote");
    env.cleanup().await;
}

backend_tests!(
    passing_canary_lets_the_fleet_wave_run,
    failing_canary_halts_the_fleet_wave,
    canary_tenants_name_the_wave,
    max_failures_stops_starting_tenants_after_k,
    bad_input_exits_2_and_writes_nothing,
    dry_run_shows_the_planned_waves,
);
