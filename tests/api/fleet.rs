//! `GET /fleet`: counts by status and by schema version, and the tenants that need
//! attention (failed first, then behind), for any signed-in user.

use serde_json::{Value, json};
use tenant_migrator::domain::Role;

use crate::backend_tests;
use crate::common::Backend;
use crate::support::{CatalogArg, TestApp, fleet_env};

async fn fleet_counts_versions_and_lists_tenants_needing_attention(b: Backend) {
    let (env, names) = fleet_env(b, &[("a", None), ("b", Some(3)), ("c", None)]).await;
    let app = TestApp::spawn_env(env).await;
    app.catalog_exec(
        "UPDATE tenants SET status = 'failed', last_error = 'boom' WHERE schema_name = ?",
        &[CatalogArg::Text(names[2].clone())],
    )
    .await;
    let viewer = app.token(Role::Viewer).await;
    let fleet = app.get_json("/fleet", &viewer).await;
    assert_eq!(fleet["total"], 3, "{fleet:#}");
    assert_eq!(fleet["latest"], 4, "{fleet:#}");
    let count = |status: &str| -> i64 {
        fleet["by_status"]
            .as_array()
            .expect("by_status")
            .iter()
            .find(|s| s["status"] == status)
            .and_then(|s| s["tenants"].as_i64())
            .expect("every status listed")
    };
    assert_eq!(
        (
            count("active"),
            count("failed"),
            count("provisioning"),
            count("archived")
        ),
        (2, 1, 0, 0)
    );
    let versions: Vec<(i64, i64)> = fleet["by_version"]
        .as_array()
        .expect("by_version")
        .iter()
        .map(|v| {
            (
                v["version"].as_i64().expect("version"),
                v["tenants"].as_i64().expect("n"),
            )
        })
        .collect();
    assert_eq!(versions, vec![(3, 1), (4, 2)], "{fleet:#}");
    let attention: Vec<&Value> = fleet["attention"]
        .as_array()
        .expect("attention")
        .iter()
        .collect();
    let listed: Vec<&str> = attention
        .iter()
        .map(|t| t["schema_name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        listed,
        vec![names[2].as_str(), names[1].as_str()],
        "failed first, then behind"
    );
    assert_eq!(attention[0]["last_error"], "boom");
    // The summary is a snapshot of at most a second, but a write of this process is seen at
    // once: after upgrading b, b is at the newest version and no longer behind.
    let operator = app.token(Role::Operator).await;
    let res = app
        .post(
            &format!("/tenants/{}/upgrade", names[1]),
            &operator,
            json!({}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let fleet = app.get_json("/fleet", &viewer).await;
    assert_eq!(
        fleet["by_version"],
        json!([{"version": 4, "tenants": 3}]),
        "{fleet:#}"
    );
    assert_eq!(
        fleet["attention"].as_array().map(Vec::len),
        Some(1),
        "{fleet:#}"
    );
    // Signed-in users only.
    let res = app
        .request(reqwest::Method::GET, "/fleet", None)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 401);
    app.stop().await;
}

/// `GET /tenants?search=` finds tenants by the start of their name (`_` is itself, not a
/// wildcard), with the total of matches; a search that cannot start a name is a 422.
async fn tenants_are_found_by_the_start_of_their_name(b: Backend) {
    let (env, names) = fleet_env(b, &[("a_b", None), ("axb", None), ("c", None)]).await;
    let app = TestApp::spawn_env(env).await;
    let viewer = app.token(Role::Viewer).await;
    let found = |page: &Value| -> Vec<String> {
        page["tenants"]
            .as_array()
            .expect("tenants")
            .iter()
            .map(|t| t["schema_name"].as_str().expect("name").to_owned())
            .collect()
    };
    let prefix = app.env.tenant("");
    let page = app
        .get_json(&format!("/tenants?limit=10&search={prefix}a_"), &viewer)
        .await;
    assert_eq!(found(&page), vec![names[0].clone()], "{page:#}");
    assert_eq!(page["total"], 1);
    let page = app
        .get_json(&format!("/tenants?limit=10&search={prefix}"), &viewer)
        .await;
    let mut all = names.clone();
    all.sort();
    assert_eq!(found(&page), all);
    assert_eq!(page["total"], 3);
    let page = app
        .get_json(
            &format!("/tenants?limit=10&status=failed&search={prefix}"),
            &viewer,
        )
        .await;
    assert_eq!(page["total"], 0);
    for bad in ["A", "", "a%25", "a-b"] {
        crate::support::expect_problem(
            app.get(&format!("/tenants?search={bad}"), &viewer).await,
            422,
        )
        .await;
    }
    app.stop().await;
}

backend_tests!(
    fleet_counts_versions_and_lists_tenants_needing_attention,
    tenants_are_found_by_the_start_of_their_name,
);
