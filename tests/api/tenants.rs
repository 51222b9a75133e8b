//! Tenants over HTTP: provisioning (201, then 200 on repeat), listing and showing, dry runs,
//! invalid names (422 and nothing created anywhere), roles, and paging.

use serde_json::{Value, json};
use tenant_migrator::domain::Role;

use crate::backend_tests;
use crate::common::{Backend, Deadline, applied_up_to};
use crate::support::{
    CatalogArg, Hold, TestApp, assert_nothing_created, expect_problem, fleet_env, tenant_version,
};

async fn create_list_show_and_repeat(b: Backend) {
    let app = TestApp::spawn(b).await;
    let token = app.token(Role::Operator).await;
    let viewer = app.token(Role::Viewer).await;
    let schema = app.env.tenant("bella");

    let res = app
        .post(
            "/tenants",
            &token,
            json!({"schema_name": schema, "display_name": "Salão Bella"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let location = format!("/tenants/{schema}");
    assert_eq!(
        res.headers().get("location").and_then(|v| v.to_str().ok()),
        Some(location.as_str())
    );
    let created: Value = res.json().await.expect("json");
    assert_eq!(created["tenant"]["schema_name"], schema.as_str());
    assert_eq!(created["tenant"]["display_name"], "Salão Bella");
    assert_eq!(created["tenant"]["status"], "active");
    assert_eq!(created["tenant"]["schema_version"], 3);
    assert_eq!(created["result"]["status"], "created");
    assert_eq!(
        (
            created["result"]["from"].clone(),
            created["result"]["to"].clone()
        ),
        (Value::Null, json!(3))
    );
    // It is real: the schema, its tables, its history, its catalog row.
    let mut admin = app.env.admin().await;
    assert_eq!(admin.history(&app.env, &schema).await, applied_up_to(3));
    assert!(
        admin
            .tables(&app.env, &schema)
            .await
            .contains(&"appointments".to_owned())
    );
    let row = admin
        .catalog_tenant(&app.env, &schema)
        .await
        .expect("catalog row");
    assert_eq!(
        (row.status.as_str(), row.schema_version),
        ("active", Some(3))
    );

    // Listed, and shown with its schema state (to a viewer too).
    let list = app.get_json("/tenants", &viewer).await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["tenants"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["tenants"][0]["schema_name"], schema.as_str());
    let shown = app.get_json(&location, &viewer).await;
    assert_eq!(shown["tenant"]["schema_name"], schema.as_str());
    assert_eq!(shown["state"]["version"], 3, "{shown:#}");
    assert_eq!(shown["state"]["pending"], json!([]), "{shown:#}");
    assert_eq!(shown["state"]["dirty"], false, "{shown:#}");

    // The same request again: 200 with the existing tenant, nothing changed.
    let before = app.env.snapshot().await;
    let res = app
        .post(
            "/tenants",
            &token,
            json!({"schema_name": schema, "display_name": "Salão Bella"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("location").is_none());
    let again: Value = res.json().await.expect("json");
    assert_eq!(again["result"]["status"], "exists");
    assert_eq!(again["tenant"]["id"], created["tenant"]["id"]);
    let mut after = app.env.snapshot().await;
    // Only the audit log may grow.
    let mut before = before;
    for s in [&mut before, &mut after] {
        s.get_mut(&app.env.catalog)
            .expect("catalog")
            .remove("audit_log");
    }
    assert_eq!(after, before);
    assert_eq!(app.get_json("/tenants", &viewer).await["total"], 1);

    // Upgrading an up-to-date tenant is a no-op report; unknown tenants are 404.
    let res = app
        .post(&format!("/tenants/{schema}/upgrade"), &token, json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let r: Value = res.json().await.expect("json");
    assert_eq!(r["status"], "up_to_date", "{r}");
    let ghost = app.env.tenant("ghost");
    expect_problem(app.get(&format!("/tenants/{ghost}"), &viewer).await, 404).await;
    expect_problem(
        app.post(&format!("/tenants/{ghost}/upgrade"), &token, json!({}))
            .await,
        404,
    )
    .await;
    let p = expect_problem(
        app.post(
            &format!("/tenants/{schema}/upgrade"),
            &token,
            json!({"target": 99}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(p["field"], "target");
    app.stop().await;
}

async fn dry_run_create_plans_and_writes_nothing(b: Backend) {
    let app = TestApp::spawn(b).await;
    let token = app.token(Role::Operator).await;
    let schema = app.env.tenant("plan");
    let res = app
        .post(
            "/tenants?dry_run=true",
            &token,
            json!({"schema_name": schema}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let plan: Value = res.json().await.expect("json");
    assert_eq!(plan["result"]["status"], "planned", "{plan}");
    assert_eq!(plan["tenant"], Value::Null);
    let versions: Vec<i64> = plan["result"]["migrations"]
        .as_array()
        .expect("migrations")
        .iter()
        .filter_map(|m| m["version"].as_i64())
        .collect();
    assert_eq!(versions, vec![1, 2, 3]);
    assert_nothing_created(&app, "dry run").await;
    let p = expect_problem(
        app.post(
            "/tenants?dry_run=maybe",
            &token,
            json!({"schema_name": schema}),
        )
        .await,
        422,
    )
    .await;
    assert!(p["detail"].is_string());
    assert_nothing_created(&app, "dry_run=maybe").await;
    app.stop().await;
}

async fn invalid_schema_names_are_422_and_create_nothing(b: Backend) {
    let app = TestApp::spawn(b).await;
    let token = app.token(Role::Operator).await;
    let p = &app.env.prefix;
    let names = vec![
        format!("{p}Upper"),
        format!("{p}with-dash"),
        format!("{p}dot.ted"),
        format!("{p}sp ace"),
        format!("{p}{}", "x".repeat(64 - p.len())),
        format!("{p}quote\"d"),
        format!("{p}back`tick"),
        format!("{p}semi;colon"),
        format!("{p}ção"),
        format!("9{p}"),
        format!("_{p}"),
        String::new(),
        format!("pg_{p}"),
        "information_schema".into(),
        "public".into(),
        "mysql".into(),
        // The catalog's own schema is not a tenant.
        app.env.catalog.clone(),
    ];
    for name in names {
        let res = app
            .post(
                "/tenants",
                &token,
                json!({"schema_name": name, "display_name": "x"}),
            )
            .await;
        let problem = expect_problem(res, 422).await;
        assert_eq!(problem["field"], "schema_name", "{name:?}: {problem}");
        let res = app
            .post(
                "/tenants?dry_run=true",
                &token,
                json!({"schema_name": name}),
            )
            .await;
        expect_problem(res, 422).await;
        assert_nothing_created(&app, &name).await;
    }
    // Through the path too.
    for path in ["/tenants/Bad-Name", "/tenants/pg_catalog"] {
        expect_problem(app.get(path, &token).await, 422).await;
    }
    expect_problem(
        app.post("/tenants/Bad-Name/upgrade", &token, json!({}))
            .await,
        422,
    )
    .await;
    // A display name is checked as well.
    let schema = app.env.tenant("ok");
    for display in [json!(""), json!("   "), json!("x".repeat(256))] {
        let res = app
            .post(
                "/tenants",
                &token,
                json!({"schema_name": schema, "display_name": display}),
            )
            .await;
        assert_eq!(expect_problem(res, 422).await["field"], "display_name");
    }
    // The wrong type names the field too.
    let res = app
        .post("/tenants", &token, json!({"schema_name": 42}))
        .await;
    assert_eq!(expect_problem(res, 422).await["field"], "schema_name");
    let res = app
        .post("/tenants", &token, json!({"display_name": "x"}))
        .await;
    assert_eq!(expect_problem(res, 422).await["field"], "schema_name");
    assert_nothing_created(&app, "bad display names").await;
    if b == Backend::Postgres {
        let mut admin = app.env.admin().await;
        assert!(admin.schemas_like(&format!("pg_{p}")).await.is_empty());
    }
    app.stop().await;
}

async fn viewer_cannot_provision(b: Backend) {
    let app = TestApp::spawn(b).await;
    let viewer = app.token(Role::Viewer).await;
    let schema = app.env.tenant("v");
    let p = expect_problem(
        app.post("/tenants", &viewer, json!({"schema_name": schema}))
            .await,
        403,
    )
    .await;
    assert_eq!(p["type"], "urn:tenant-migrator:problem:forbidden");
    assert_nothing_created(&app, "viewer POST /tenants").await;
    for (path, body) in [
        ("/migrations/upgrade-all", json!({})),
        ("/migrations/upgrade-public", json!({})),
        (
            "/admins",
            json!({"email": "a@example.com", "password": "long enough password", "role": "admin"}),
        ),
    ] {
        expect_problem(app.post(path, &viewer, body).await, 403).await;
    }
    // Reads are fine.
    for path in ["/tenants", "/migrations", "/migrations/jobs", "/auth/me"] {
        assert_eq!(app.get(path, &viewer).await.status(), 200, "{path}");
    }
    app.stop().await;
}

async fn paging_by_cursor_offset_and_status(b: Backend) {
    let app = TestApp::spawn(b).await;
    let token = app.token(Role::Operator).await;
    // Two provisioned tenants and four catalog rows still `provisioning`.
    let mut all: Vec<String> = Vec::new();
    for short in ["p1", "p4"] {
        let schema = app.env.tenant(short);
        assert_eq!(
            app.post("/tenants", &token, json!({"schema_name": schema}))
                .await
                .status(),
            201
        );
        all.push(schema);
    }
    for short in ["p0", "p2", "p3", "p5"] {
        let schema = app.env.tenant(short);
        app.engine
            .catalog()
            .insert_tenant(&schema, short, "default")
            .await
            .expect("catalog row");
        all.push(schema);
    }
    all.sort();

    for limit in [1usize, 2, 4, 6, 500] {
        let mut seen: Vec<String> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let path = match &cursor {
                Some(c) => format!("/tenants?limit={limit}&cursor={c}"),
                None => format!("/tenants?limit={limit}"),
            };
            let page = app.get_json(&path, &token).await;
            assert_eq!(page["total"], 6, "{page}");
            assert_eq!(page["limit"], limit);
            let rows = page["tenants"].as_array().expect("tenants");
            assert!(rows.len() <= limit);
            seen.extend(
                rows.iter()
                    .map(|t| t["schema_name"].as_str().expect("name").to_owned()),
            );
            pages += 1;
            assert!(pages <= 7, "cursor paging does not end");
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen, all, "cursor walk with limit {limit}");
    }
    // Offset paging.
    let page = app.get_json("/tenants?limit=2&offset=4", &token).await;
    let names: Vec<&str> = page["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .filter_map(|t| t["schema_name"].as_str())
        .collect();
    assert_eq!(names, vec![all[4].as_str(), all[5].as_str()]);
    assert_eq!(
        (page["offset"].as_i64(), page["total"].as_i64()),
        (Some(4), Some(6))
    );
    // Status filter.
    let active = app.get_json("/tenants?status=active", &token).await;
    assert_eq!(active["total"], 2);
    let names: Vec<&str> = active["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .filter_map(|t| t["schema_name"].as_str())
        .collect();
    assert_eq!(names, vec![app.env.tenant("p1"), app.env.tenant("p4")]);
    let prov = app
        .get_json("/tenants?status=provisioning&limit=3", &token)
        .await;
    assert_eq!(
        (
            prov["total"].as_i64(),
            prov["tenants"].as_array().map(Vec::len)
        ),
        (Some(4), Some(3))
    );
    assert_eq!(
        app.get_json("/tenants?status=failed", &token).await["total"],
        0
    );
    // Out-of-range and unknown parameters are 422 naming the input.
    for (query, field) in [
        ("limit=501", Some("limit")),
        ("limit=0", Some("limit")),
        ("limit=-1", None),
        ("limit=ten", None),
        ("status=sleeping", None),
        ("page=2", Some("page")),
    ] {
        let p = expect_problem(app.get(&format!("/tenants?{query}"), &token).await, 422).await;
        if let Some(f) = field {
            assert_eq!(p["field"], f, "{query}: {p}");
        }
    }
    let p = expect_problem(app.get("/migrations/jobs?limit=501", &token).await, 422).await;
    assert_eq!(p["field"], "limit");
    app.stop().await;
}

/// Polls `GET /tenants/{schema}` until `done` holds, failing after 30 s.
async fn wait_tenant(
    app: &TestApp,
    token: &str,
    schema: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let shown = app.get_json(&format!("/tenants/{schema}"), token).await;
        if done(&shown) {
            return shown;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{schema} never got there: {shown:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn schema_changes_outlive_a_request_timeout(b: Backend) {
    let (env, t) = fleet_env(b, &[("a", Some(3))]).await;
    let app = TestApp::spawn_with(env, |s| {
        s.request_timeout = std::time::Duration::from_secs(1)
    })
    .await;
    let email = app.admin(Role::Operator).await;
    let token = app.login(&email).await;

    // The upgrade waits on the tenant's lock (held by the test) longer than the request may
    // last: the client gets 408, but the migration is not abandoned half-way.
    let hold = Hold::tenant_lock(&app.env, &t[0]).await;
    let res = app
        .post(&format!("/tenants/{}/upgrade", t[0]), &token, json!({}))
        .await;
    expect_problem(res, 408).await;
    hold.release().await;
    wait_tenant(&app, &token, &t[0], |s| s["tenant"]["schema_version"] == 4).await;
    assert_eq!(
        tenant_version(&app.env, &t[0]).await,
        (applied_up_to(4), true)
    );
    let audit = app.engine.catalog().recent_audit(100).await.expect("audit");
    assert!(
        audit.iter().any(|e| e.action == "tenant.upgrade"
            && e.actor == email
            && e.target.as_deref() == Some(t[0].as_str())),
        "{audit:#?}"
    );

    // Provisioning likewise ends active rather than stuck in `provisioning` (a schema's lock
    // can be held before it exists on the servers; a SQLite tenant's lock is its file).
    if b != Backend::Sqlite {
        let x = app.env.tenant("x");
        let hold = Hold::tenant_lock(&app.env, &x).await;
        let res = app
            .post("/tenants", &token, json!({"schema_name": x}))
            .await;
        expect_problem(res, 408).await;
        hold.release().await;
        let shown = wait_tenant(&app, &token, &x, |s| {
            s["tenant"]["status"] != "provisioning"
        })
        .await;
        assert_eq!(shown["tenant"]["status"], "active", "{shown:#}");
        assert_eq!(tenant_version(&app.env, &x).await, (applied_up_to(4), true));
    }
    app.stop().await;
}

async fn concurrent_identical_creates_provision_once(b: Backend) {
    let app = TestApp::spawn(b).await;
    let token = app.token(Role::Operator).await;
    let schema = app.env.tenant("race");
    // A script retrying while its first request still runs: every answer is a success (no
    // race surfaces as a 500), and the tenant is provisioned exactly once. (Ideally exactly
    // one answer would be 201; today every racer that finds nothing left to do says 201.)
    let requests = (0..4).map(|_| app.post("/tenants", &token, json!({"schema_name": schema})));
    let mut statuses = Vec::new();
    for res in futures_util::future::join_all(requests).await {
        let status = res.status().as_u16();
        let body = res.text().await.expect("body");
        assert!(status == 200 || status == 201, "{status}: {body}");
        statuses.push(status);
    }
    assert!(statuses.contains(&201), "{statuses:?}");
    let mut admin = app.env.admin().await;
    assert_eq!(admin.history(&app.env, &schema).await, applied_up_to(3));
    let row = admin
        .catalog_tenant(&app.env, &schema)
        .await
        .expect("catalog row");
    assert_eq!(
        (row.status.as_str(), row.schema_version),
        ("active", Some(3))
    );
    assert_eq!(app.get_json("/tenants", &token).await["total"], 1);
    app.stop().await;
}

/// The list is served from a snapshot for at most a second: this process's own writes show at
/// once, another process's (a row written behind the server's back) within the second.
async fn list_snapshot_shows_local_writes_at_once_and_others_soon(b: Backend) {
    let app = TestApp::spawn(b).await;
    let token = app.token(Role::Operator).await;
    let total = |v: &Value| v["total"].as_i64().unwrap_or(-1);
    assert_eq!(total(&app.get_json("/tenants", &token).await), 0);
    let a = app.env.tenant("a");
    let res = app
        .post("/tenants", &token, json!({"schema_name": a}))
        .await;
    assert_eq!(res.status(), 201);
    let page = app.get_json("/tenants", &token).await;
    assert_eq!(total(&page), 1, "{page:#}");
    assert_eq!(page["tenants"][0]["schema_name"], a.as_str());

    let outside = app.env.tenant("outside");
    let now = chrono::Utc::now();
    app.catalog_exec(
        "INSERT INTO tenants (id, schema_name, display_name, status, server, schema_version, \
         last_error, created_at, updated_at) VALUES (?, ?, ?, 'archived', 'default', NULL, NULL, ?, ?)",
        &[
            CatalogArg::Id(uuid::Uuid::new_v4()),
            CatalogArg::Text(outside.clone()),
            CatalogArg::Text("written elsewhere".into()),
            CatalogArg::Time(now),
            CatalogArg::Time(now),
        ],
    )
    .await;
    let deadline = Deadline::new("an outside write to show in GET /tenants", 10);
    loop {
        let page = app.get_json("/tenants", &token).await;
        if total(&page) == 2 {
            assert_eq!(
                page["tenants"][1]["schema_name"],
                outside.as_str(),
                "{page:#}"
            );
            break;
        }
        deadline.check().await;
    }
    app.stop().await;
}

backend_tests!(
    list_snapshot_shows_local_writes_at_once_and_others_soon,
    concurrent_identical_creates_provision_once,
    schema_changes_outlive_a_request_timeout,
    create_list_show_and_repeat,
    dry_run_create_plans_and_writes_nothing,
    invalid_schema_names_are_422_and_create_nothing,
    viewer_cannot_provision,
    paging_by_cursor_offset_and_status,
);
