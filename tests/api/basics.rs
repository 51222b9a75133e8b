//! Login and tenant basics.

use reqwest::Method;
use serde_json::json;
use tenant_migrator::domain::Role;

use crate::backend_tests;
use crate::common::Backend;
use crate::support::{TestApp, expect_problem};

async fn login_and_create_tenant(b: Backend) {
    let app = TestApp::spawn(b).await;
    let token = app.token(Role::Operator).await;
    let me: serde_json::Value = app
        .get("/auth/me", &token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(me["role"], "operator");
    let schema = app.env.tenant("a");
    let res = app
        .post(
            "/tenants",
            &token,
            json!({"schema_name": schema, "display_name": "Salão A"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(
        res.headers().get("location").and_then(|v| v.to_str().ok()),
        Some(format!("/tenants/{schema}").as_str())
    );
    let again = app
        .post("/tenants", &token, json!({"schema_name": schema}))
        .await;
    assert_eq!(again.status(), 200);
    let list: serde_json::Value = app
        .get("/tenants", &token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list["total"], 1);
    assert_eq!(list["tenants"][0]["schema_name"], schema.as_str());
    let bad = app
        .post(
            "/tenants",
            &token,
            json!({"schema_name": "Robert'); DROP DATABASE x;--"}),
        )
        .await;
    let p = expect_problem(bad, 422).await;
    assert_eq!(p["field"], "schema_name");
    let anon = app
        .request(Method::GET, "/tenants", None)
        .send()
        .await
        .expect("request");
    expect_problem(anon, 401).await;
    app.stop().await;
}

backend_tests!(login_and_create_tenant);
