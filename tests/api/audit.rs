//! `GET /audit`: the audit log newest first, paged by `before`, filtered by actor or action;
//! admins only; bad paging and filters are 422s.

use serde_json::Value;
use tenant_migrator::domain::Role;

use crate::backend_tests;
use crate::common::Backend;
use crate::support::{TestApp, expect_problem};

fn ids(page: &Value) -> Vec<i64> {
    page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["id"].as_i64().expect("id"))
        .collect()
}

async fn audit_is_paged_filtered_and_for_admins(b: Backend) {
    let app = TestApp::spawn(b).await;
    let admin_email = app.admin(Role::Admin).await;
    let admin = app.login(&admin_email).await;
    let operator_email = app.admin(Role::Operator).await;
    let operator = app.login(&operator_email).await;
    let viewer = app.token(Role::Viewer).await;
    // Three more entries: two tenants made by the operator, one by the admin.
    for (token, short) in [(&operator, "a"), (&operator, "b"), (&admin, "c")] {
        let res = app
            .post(
                "/tenants",
                token,
                serde_json::json!({"schema_name": app.env.tenant(short)}),
            )
            .await;
        assert_eq!(res.status(), 201);
    }

    // Newest first, two at a time, each page older than the one before.
    let first = app.get_json("/audit?limit=2", &admin).await;
    let first_ids = ids(&first);
    assert_eq!(first_ids.len(), 2, "{first:#}");
    assert!(first_ids[0] > first_ids[1], "{first:#}");
    assert_eq!(first["entries"][0]["action"], "tenant.create");
    assert_eq!(first["entries"][0]["actor"], admin_email.as_str());
    let before = first["next_before"].as_i64().expect("next_before");
    assert_eq!(before, first_ids[1]);
    let second = app
        .get_json(&format!("/audit?limit=2&before={before}"), &admin)
        .await;
    assert!(ids(&second).iter().all(|id| *id < before), "{second:#}");

    // One actor's, one action's.
    let mine = app
        .get_json(
            &format!("/audit?actor={operator_email}&action=tenant.create"),
            &admin,
        )
        .await;
    let entries = mine["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 2, "{mine:#}");
    assert!(
        entries
            .iter()
            .all(|e| e["actor"] == operator_email.as_str())
    );
    assert_eq!(mine["next_before"], Value::Null);
    let logins = app.get_json("/audit?action=login", &admin).await;
    assert!(
        logins["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .all(|e| e["action"] == "login"),
        "{logins:#}"
    );

    // Admins only.
    for token in [&operator, &viewer] {
        expect_problem(app.get("/audit", token).await, 403).await;
    }
    // Bad paging and filters.
    for query in [
        "limit=0",
        "limit=501",
        "before=0",
        "before=-5",
        "actor=",
        "nonsense=1",
        "before=x",
    ] {
        let problem = expect_problem(app.get(&format!("/audit?{query}"), &admin).await, 422).await;
        assert!(problem["detail"].is_string(), "{query}: {problem:#}");
    }
    let long = "a".repeat(65);
    expect_problem(app.get(&format!("/audit?action={long}"), &admin).await, 422).await;
    app.stop().await;
}

backend_tests!(audit_is_paged_filtered_and_for_admins);
