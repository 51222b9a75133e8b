//! Canary waves and the failure budget of fleet jobs over HTTP: `canary`, `canary_tenants`
//! and `max_failures` in the upgrade-all body, the job showing what it asked for, its waves
//! and why it halted, and bad values refused as 422 problems with no job started.

use serde_json::{Value, json};
use tenant_migrator::domain::Role;

use crate::backend_tests;
use crate::common::{Backend, applied_up_to};
use crate::support::{TestApp, expect_problem, fleet_env, tenant_version};

/// Makes the loyalty migration (0004) fail at its first statement on this tenant.
const CONFLICT: &str = "CREATE TABLE loyalty_cards (x INTEGER)";

/// The job's wave called `name`: its tenants, succeeded, failed and not-attempted counts.
fn wave(job: &Value, name: &str) -> (Vec<String>, i64, i64, i64) {
    let w = job["waves"]
        .as_array()
        .unwrap_or_else(|| panic!("no waves: {job:#}"))
        .iter()
        .find(|w| w["name"] == name)
        .unwrap_or_else(|| panic!("no {name} wave: {job:#}"));
    let names = w["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .map(|t| t.as_str().expect("name").to_owned())
        .collect();
    let n = |k: &str| w[k].as_i64().unwrap_or_else(|| panic!("{k} in {w}"));
    (names, n("succeeded"), n("failed"), n("not_attempted"))
}

async fn job_with_a_failing_canary_halts_the_fleet(b: Backend) {
    let (env, t) = fleet_env(
        b,
        &[
            ("a", Some(3)),
            ("b", Some(3)),
            ("c", Some(3)),
            ("d", Some(3)),
        ],
    )
    .await;
    env.admin().await.exec_in(&env, &t[1], CONFLICT).await;
    let app = TestApp::spawn_env(env).await;
    let token = app.token(Role::Operator).await;

    let id = app
        .start_upgrade_all(
            &token,
            json!({"canary": 2, "concurrency": 1, "continue_on_error": true}),
        )
        .await;
    let detail = app.wait_job_finished(&token, &id).await;
    let job = &detail["job"];
    assert_eq!(job["state"], "failed", "{detail:#}");
    assert_eq!(job["canary"], 2);
    assert!(job["canary_tenants"].is_null(), "{job:#}");
    assert_eq!(job["halted"], "canary_failed", "{job:#}");
    assert_eq!(
        (
            job["succeeded"].as_i64(),
            job["failed"].as_i64(),
            job["not_attempted"].as_i64()
        ),
        (Some(1), Some(1), Some(2)),
        "{job:#}"
    );
    assert_eq!(
        wave(job, "canary"),
        (vec![t[0].clone(), t[1].clone()], 1, 1, 0)
    );
    assert_eq!(
        wave(job, "fleet"),
        (vec![t[2].clone(), t[3].clone()], 0, 0, 2)
    );
    for s in &t[2..] {
        assert_eq!(tenant_version(&app.env, s).await, (applied_up_to(3), false));
    }
    // The list shows the same row.
    let list = app.get_json("/migrations/jobs", &token).await;
    assert_eq!(list["jobs"][0]["halted"], "canary_failed", "{list:#}");
    app.stop().await;
}

async fn job_with_canary_tenants_and_a_budget_runs_both_waves(b: Backend) {
    let (env, t) = fleet_env(b, &[("a", Some(3)), ("b", Some(3)), ("c", Some(3))]).await;
    let app = TestApp::spawn_env(env).await;
    let token = app.token(Role::Operator).await;

    let id = app
        .start_upgrade_all(
            &token,
            json!({"canary_tenants": [t[2], t[2]], "max_failures": 1}),
        )
        .await;
    let detail = app.wait_job_finished(&token, &id).await;
    let job = &detail["job"];
    assert_eq!(job["state"], "succeeded", "{detail:#}");
    assert_eq!(job["canary_tenants"], json!([t[2]]), "{job:#}");
    assert_eq!(job["max_failures"], 1);
    assert!(job["halted"].is_null(), "{job:#}");
    assert_eq!(wave(job, "canary"), (vec![t[2].clone()], 1, 0, 0));
    assert_eq!(
        wave(job, "fleet"),
        (vec![t[0].clone(), t[1].clone()], 2, 0, 0)
    );
    for s in &t {
        assert_eq!(tenant_version(&app.env, s).await, (applied_up_to(4), true));
    }
    app.stop().await;
}

async fn bad_canary_or_budget_is_a_problem_and_starts_nothing(b: Backend) {
    let (env, t) = fleet_env(b, &[("a", Some(3))]).await;
    let unknown = env.tenant("zz");
    let app = TestApp::spawn_env(env).await;
    let token = app.token(Role::Operator).await;
    for (body, field) in [
        (json!({"canary": 0}), "canary"),
        (json!({"canary": -1}), "canary"),
        (json!({"canary": "two"}), "canary"),
        (json!({"max_failures": 0}), "max_failures"),
        (json!({"canary": 1, "canary_tenants": [t[0]]}), "canary"),
        (json!({"canary_tenants": []}), "canary_tenants"),
        (json!({"canary_tenants": "a"}), "canary_tenants"),
        (json!({"canary_tenants": ["Not-A-Name"]}), "canary_tenants"),
        (json!({"canary_tenants": [t[0], unknown]}), "canary_tenants"),
    ] {
        let res = app
            .post("/migrations/upgrade-all", &token, body.clone())
            .await;
        let p = expect_problem(res, 422).await;
        assert_eq!(p["field"], field, "{body}: {p}");
        assert_eq!(p["type"], "urn:tenant-migrator:problem:validation");
    }
    assert_eq!(app.get_json("/migrations/jobs", &token).await["total"], 0);
    assert_eq!(
        tenant_version(&app.env, &t[0]).await,
        (applied_up_to(3), false)
    );
    app.stop().await;
}

backend_tests!(
    job_with_a_failing_canary_halts_the_fleet,
    job_with_canary_tenants_and_a_budget_runs_both_waves,
    bad_canary_or_budget_is_a_problem_and_starts_nothing,
);
