//! The service around the API: OpenAPI and Swagger UI served from the binary, probes, and the
//! audit log of every login attempt and mutating call.

use reqwest::Method;
use serde_json::{Value, json};
use tenant_migrator::domain::Role;

use crate::backend_tests;
use crate::common::Backend;
use crate::support::{Hold, PASSWORD, TestApp, expect_problem, fleet_env};

/// Every route of the API with its methods.
const ROUTES: &[(&str, &[&str])] = &[
    ("/auth/login", &["post"]),
    ("/auth/me", &["get"]),
    ("/admins", &["get", "post"]),
    ("/admins/{id}", &["patch"]),
    ("/admins/{id}/unlock", &["post"]),
    ("/audit", &["get"]),
    ("/fleet", &["get"]),
    ("/tenants", &["get", "post"]),
    ("/tenants/{schema}", &["get"]),
    ("/tenants/{schema}/upgrade", &["post"]),
    ("/tenants/{schema}/history", &["get"]),
    ("/tenants/{schema}/structure", &["get"]),
    ("/tenants/{schema}/repair", &["post"]),
    ("/migrations", &["get"]),
    ("/migrations/upgrade-all", &["post"]),
    ("/migrations/upgrade-public", &["post"]),
    ("/migrations/jobs", &["get"]),
    ("/migrations/jobs/{id}", &["get"]),
    ("/migrations/jobs/{id}/cancel", &["post"]),
    ("/migrations/jobs/{id}/resume", &["post"]),
    ("/migrations/jobs/{id}/events", &["get"]),
    ("/structure/check", &["get"]),
    ("/servers", &["get"]),
    ("/healthz", &["get"]),
    ("/readyz", &["get"]),
    ("/metrics", &["get"]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_lists_every_route_and_docs_are_served_offline() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let res = app
        .request(Method::GET, "/openapi.json", None)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let spec: Value =
        serde_json::from_str(&res.text().await.expect("body")).expect("the spec is JSON");
    assert!(
        spec["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3."),
        "{}",
        spec["openapi"]
    );
    assert_eq!(spec["info"]["version"], env!("CARGO_PKG_VERSION"));
    let paths = spec["paths"].as_object().expect("paths");
    for (route, methods) in ROUTES {
        let item = paths
            .get(*route)
            .unwrap_or_else(|| panic!("{route} is not in the spec"));
        for m in *methods {
            let op = &item[*m];
            assert!(op.is_object(), "{m} {route} is not in the spec");
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{m} {route} has no responses"
            );
        }
    }
    assert_eq!(
        paths.len(),
        ROUTES.len(),
        "unexpected routes: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(spec["components"]["schemas"]["Problem"].is_object());
    // Protected operations say so; login and probes do not.
    assert!(spec["paths"]["/tenants"]["post"]["security"].is_array());
    assert!(spec["paths"]["/auth/login"]["post"]["security"].is_null());
    // What is served is what the binary prints.
    assert_eq!(
        spec,
        serde_json::from_str::<Value>(&tenant_migrator::http::openapi::spec_json()).expect("json")
    );

    // Swagger UI: HTML whose assets all come from this server.
    let res = app
        .request(Method::GET, "/docs/", None)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(ct.starts_with("text/html"), "{ct}");
    let html = res.text().await.expect("html");
    assert!(html.contains("swagger-ui"), "{html}");
    for cdn in ["http://", "https://", "//unpkg", "//cdn"] {
        assert!(!html.contains(cdn), "/docs loads {cdn}: {html}");
    }
    let assets: Vec<String> = html
        .split(['"', '\''])
        .filter(|s| s.ends_with(".js") || s.ends_with(".css"))
        .map(|s| s.trim_start_matches("./").to_owned())
        .collect();
    assert!(assets.len() >= 2, "{html}");
    for asset in assets {
        let path = if asset.starts_with('/') {
            asset.clone()
        } else {
            format!("/docs/{asset}")
        };
        let res = app
            .request(Method::GET, &path, None)
            .send()
            .await
            .expect("asset");
        assert_eq!(res.status(), 200, "{path}");
        let body = res.text().await.expect("asset body");
        assert!(!body.is_empty(), "{path}");
        if path.ends_with("swagger-initializer.js") {
            assert!(
                body.contains("/openapi.json"),
                "the UI does not load this server's spec: {body}"
            );
        }
    }
    let res = app
        .request(Method::GET, "/docs", None)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200, "/docs (redirected) answers");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_without_a_token() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let health: Value = app
        .request(Method::GET, "/healthz", None)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "ok");
    let res = app
        .request(Method::GET, "/readyz", None)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let ready: Value = res.json().await.expect("json");
    assert_eq!(
        (ready["status"].as_str(), ready["catalog_version"].as_i64()),
        (Some("ready"), Some(crate::common::catalog_latest()))
    );
    app.stop().await;
}

async fn audit_log_records_every_attempt_and_mutation(b: Backend) {
    let (env, t) = fleet_env(b, &[("a", Some(3)), ("b", Some(3))]).await;
    let app = TestApp::spawn_env(env).await;
    let admin_email = app.admin(Role::Admin).await;
    let admin = app.login(&admin_email).await;
    let op_email = app.admin(Role::Operator).await;
    let op = app.login(&op_email).await;

    // Login attempts: wrong password, unknown e-mail, an e-mail longer than the column.
    let wrong = "wrong-password-that-must-not-be-logged";
    let ghost = format!("{}ghost@example.com", app.env.prefix);
    let long = format!("{}{}@example.com", app.env.prefix, "l".repeat(400));
    for (email, password) in [(&op_email, wrong), (&ghost, PASSWORD), (&long, wrong)] {
        let res = app
            .request(Method::POST, "/auth/login", None)
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("login");
        expect_problem(res, 401).await;
    }

    // Admin users.
    let new_email = format!("{}new@example.com", app.env.prefix);
    let new_password = "new-admin-password-not-to-be-logged";
    let res = app
        .post(
            "/admins",
            &admin,
            json!({"email": new_email, "password": new_password, "role": "viewer"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let new_id = res.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(
        app.patch(
            &format!("/admins/{new_id}"),
            &admin,
            json!({"role": "operator"})
        )
        .await
        .status(),
        200
    );

    // Tenants and migrations, one request carrying a request id the audit entry must keep.
    let c = app.env.tenant("c");
    let res = app
        .request(Method::POST, "/tenants", Some(&op))
        .header("x-request-id", "audit-me-1")
        .json(&json!({"schema_name": c}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 201);
    // An over-long request id does not cost the record.
    let res = app
        .request(
            Method::POST,
            &format!("/tenants/{}/upgrade", t[0]),
            Some(&op),
        )
        .header("x-request-id", "r".repeat(200))
        .json(&json!({}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    assert_eq!(
        app.post("/migrations/upgrade-public", &op, json!({}))
            .await
            .status(),
        200
    );
    let hold = Hold::tenant_lock(&app.env, &t[1]).await;
    let job = app.start_upgrade_all(&op, json!({"concurrency": 1})).await;
    assert_eq!(
        app.post(&format!("/migrations/jobs/{job}/cancel"), &op, json!({}))
            .await
            .status(),
        202
    );
    hold.release().await;
    app.wait_job_finished(&op, &job).await;
    // Dry runs change nothing and are not mutations.
    assert_eq!(
        app.post(
            "/tenants?dry_run=true",
            &op,
            json!({"schema_name": app.env.tenant("d")})
        )
        .await
        .status(),
        200
    );

    let entries = app
        .engine
        .catalog()
        .recent_audit(500)
        .await
        .expect("audit log");
    let find = |action: &str, actor: &str, outcome: &str| {
        entries
            .iter()
            .find(|e| e.action == action && e.actor == actor && e.outcome == outcome)
            .unwrap_or_else(|| panic!("no {action} by {actor} ({outcome}) in {entries:#?}"))
    };
    find("login", &admin_email, "ok");
    find("login", &op_email, "ok");
    find("login", &op_email, "denied");
    find("login", &ghost, "denied");
    let clipped: String = long.chars().take(254).collect();
    find("login", &clipped, "denied");
    assert_eq!(
        find("admin.create", &admin_email, "ok").target.as_deref(),
        Some(new_email.as_str())
    );
    assert_eq!(
        find("admin.update", &admin_email, "ok").target.as_deref(),
        Some(new_email.as_str())
    );
    let created = find("tenant.create", &op_email, "ok");
    assert_eq!(created.target.as_deref(), Some(c.as_str()));
    // The server's own request id, never the client's; the client's is kept beside it.
    let server_id = created.request_id.as_deref().expect("request id");
    assert!(uuid::Uuid::parse_str(server_id).is_ok(), "{created:?}");
    let detail: Value =
        serde_json::from_str(created.detail.as_deref().expect("detail")).expect("JSON detail");
    assert_eq!(detail["client_request_id"], "audit-me-1", "{created:?}");
    let upgraded = find("tenant.upgrade", &op_email, "ok");
    assert_eq!(upgraded.target.as_deref(), Some(t[0].as_str()));
    assert!(
        uuid::Uuid::parse_str(upgraded.request_id.as_deref().expect("request id")).is_ok(),
        "{upgraded:?}"
    );
    let detail: Value =
        serde_json::from_str(upgraded.detail.as_deref().expect("detail")).expect("JSON detail");
    assert_eq!(
        detail["client_request_id"].as_str().map(str::len),
        Some(64),
        "a long client id is cut: {upgraded:?}"
    );
    find("migrations.upgrade_public", &op_email, "ok");
    assert_eq!(
        find("migrations.upgrade_all", &op_email, "ok")
            .target
            .as_deref(),
        Some(job.as_str())
    );
    assert_eq!(
        find("job.cancel", &op_email, "ok").target.as_deref(),
        Some(job.as_str())
    );
    assert!(
        !entries.iter().any(|e| e.action == "tenant.create"
            && e.target.as_deref() == Some(app.env.tenant("d").as_str())),
        "a dry run was audited as a mutation"
    );
    // Every entry is attributed, and none holds a password or a hash.
    for e in &entries {
        assert!(!e.actor.is_empty(), "{e:?}");
        let text = format!("{} {} {:?} {:?}", e.actor, e.action, e.target, e.detail);
        for secret in [PASSWORD, wrong, new_password, "argon2"] {
            assert!(
                !text.contains(secret),
                "the audit log holds {secret:?}: {e:?}"
            );
        }
    }
    app.stop().await;
}

backend_tests!(audit_log_records_every_attempt_and_mutation);
