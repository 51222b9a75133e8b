//! The console's tenant view: `GET /tenants/{schema}/history` (any signed-in user),
//! `GET /tenants/{schema}/structure` (operator: drift against a reference at the tenant's own
//! version, with the statements that would fix it) and `POST /tenants/{schema}/repair`
//! (operator; a dry run writes nothing, a real one is audited as `tenant.repair`).

use serde_json::{Value, json};
use tenant_migrator::domain::Role;

use crate::backend_tests;
use crate::common::{Backend, applied_up_to};
use crate::support::{Hold, TestApp, expect_problem, fleet_env};

/// A history's `(version, state)` pairs.
fn versions(history: &Value) -> Vec<(i64, String)> {
    history["migrations"]
        .as_array()
        .expect("migrations")
        .iter()
        .map(|m| {
            (
                m["version"].as_i64().expect("version"),
                m["state"].as_str().expect("state").to_owned(),
            )
        })
        .collect()
}

/// Removes a tenant's schema behind the tool's back (the catalog still lists it).
async fn drop_schema_by_hand(app: &TestApp, schema: &str) {
    match app.env.backend {
        Backend::Sqlite => {
            std::fs::remove_file(app.env.sqlite_file(schema)).expect("remove the tenant's file")
        }
        _ => app.env.admin().await.drop_schema(schema).await,
    }
}

async fn history_lists_the_tenants_migrations_oldest_first(b: Backend) {
    let app = TestApp::spawn(b).await;
    let operator = app.token(Role::Operator).await;
    let viewer = app.token(Role::Viewer).await;
    let schema = app.env.tenant("hist");
    let res = app
        .post("/tenants", &operator, json!({"schema_name": schema}))
        .await;
    assert_eq!(res.status(), 201);

    let history = app
        .get_json(&format!("/tenants/{schema}/history"), &viewer)
        .await;
    assert_eq!(history["schema"], schema.as_str());
    assert_eq!(history["exists"], true);
    assert_eq!(versions(&history), applied_up_to(3), "{history:#}");
    for m in history["migrations"].as_array().expect("migrations") {
        assert!(m["name"].as_str().is_some_and(|n| !n.is_empty()), "{m:#}");
        assert!(m["duration_ms"].as_i64().is_some_and(|d| d >= 0), "{m:#}");
        assert!(m["started_at"].is_string(), "{m:#}");
        assert!(m["finished_at"].is_string(), "{m:#}");
        assert_eq!(m["error"], Value::Null, "{m:#}");
        assert_eq!(m["checksum"].as_str().map(str::len), Some(64), "{m:#}");
        assert_eq!(m["checksum_matches"], true, "{m:#}");
    }

    // A read: it does not wait for a migration holding the tenant's lock.
    let hold = Hold::tenant_lock(&app.env, &schema).await;
    let started = std::time::Instant::now();
    let held = app
        .get_json(&format!("/tenants/{schema}/history"), &viewer)
        .await;
    assert_eq!(versions(&held), applied_up_to(3), "{held:#}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    hold.release().await;

    // Unknown tenants (the catalog's own schema too) are 404, invalid names 422.
    let ghost = app.env.tenant("ghost");
    for name in [ghost.as_str(), app.env.catalog.as_str()] {
        expect_problem(
            app.get(&format!("/tenants/{name}/history"), &viewer).await,
            404,
        )
        .await;
    }
    for bad in ["Bad", "pg_toast", "1abc"] {
        expect_problem(
            app.get(&format!("/tenants/{bad}/history"), &viewer).await,
            422,
        )
        .await;
    }
    // Signed-in users only.
    let res = app
        .request(
            reqwest::Method::GET,
            &format!("/tenants/{schema}/history"),
            None,
        )
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 401);

    // A tenant the catalog lists without a schema has an empty history; it has no structure
    // to compare and nothing to repair.
    drop_schema_by_hand(&app, &schema).await;
    let history = app
        .get_json(&format!("/tenants/{schema}/history"), &viewer)
        .await;
    assert_eq!(history["exists"], false, "{history:#}");
    assert_eq!(history["migrations"], json!([]), "{history:#}");
    expect_problem(
        app.get(&format!("/tenants/{schema}/structure"), &operator)
            .await,
        404,
    )
    .await;
    for query in ["?dry_run=true", ""] {
        expect_problem(
            app.post(
                &format!("/tenants/{schema}/repair{query}"),
                &operator,
                json!({}),
            )
            .await,
            404,
        )
        .await;
    }
    app.stop().await;
}

async fn structure_shows_drift_and_the_statements_that_fix_it(b: Backend) {
    let app = TestApp::spawn(b).await;
    let operator = app.token(Role::Operator).await;
    let viewer = app.token(Role::Viewer).await;
    let schema = app.env.tenant("shape");
    let res = app
        .post("/tenants", &operator, json!({"schema_name": schema}))
        .await;
    assert_eq!(res.status(), 201);
    let path = format!("/tenants/{schema}/structure");

    // A clean tenant matches its reference.
    let fix = app.get_json(&path, &operator).await;
    assert_eq!(fix["schema"], schema.as_str(), "{fix:#}");
    assert_eq!(fix["version"], 3, "{fix:#}");
    assert_eq!(fix["drift"], Value::Null, "{fix:#}");
    assert_eq!(fix["statements"], json!([]), "{fix:#}");
    assert_eq!(fix["destructive"], json!([]), "{fix:#}");
    assert_eq!(fix["unsupported"], json!([]), "{fix:#}");

    // A column added by hand is drift, with the statement that removes it (not run).
    let mut admin = app.env.admin().await;
    admin
        .exec_in(
            &app.env,
            &schema,
            "ALTER TABLE users_tenant ADD COLUMN nickname VARCHAR(20) NULL",
        )
        .await;
    let fix = app.get_json(&path, &operator).await;
    let unexpected = fix["drift"]["unexpected"].to_string();
    assert!(unexpected.contains("users_tenant.nickname"), "{fix:#}");
    assert_eq!(fix["drift"]["missing"], json!([]), "{fix:#}");
    let statements = fix["statements"].as_array().expect("statements");
    assert!(!statements.is_empty(), "{fix:#}");
    assert!(
        fix["destructive"].to_string().contains("nickname"),
        "dropping the column drops its data: {fix:#}"
    );
    // Nothing was run: the column is still there.
    let again = app.get_json(&path, &operator).await;
    assert_eq!(again["drift"], fix["drift"]);
    // The scratch reference is dropped (on SQLite it is a file beside the tenants'; the
    // servers' are shared with tests running in parallel).
    if b == Backend::Sqlite {
        let dir = app.env.dir.path().join("tenants");
        let left: Vec<String> = std::fs::read_dir(&dir)
            .expect("tenants dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("tm_reference_"))
            .collect();
        assert_eq!(
            left,
            Vec::<String>::new(),
            "scratch files left in {}",
            dir.display()
        );
    }

    // Operators only (it builds a scratch schema); unknown tenants 404, bad names 422.
    expect_problem(app.get(&path, &viewer).await, 403).await;
    let ghost = app.env.tenant("ghost");
    expect_problem(
        app.get(&format!("/tenants/{ghost}/structure"), &operator)
            .await,
        404,
    )
    .await;
    expect_problem(app.get("/tenants/Bad/structure", &operator).await, 422).await;
    app.stop().await;
}

async fn repair_dry_run_of_a_clean_tenant_has_nothing_to_do(b: Backend) {
    let app = TestApp::spawn(b).await;
    let operator = app.token(Role::Operator).await;
    let viewer = app.token(Role::Viewer).await;
    let admin = app.token(Role::Admin).await;
    let schema = app.env.tenant("clean");
    let res = app
        .post("/tenants", &operator, json!({"schema_name": schema}))
        .await;
    assert_eq!(res.status(), 201);
    let path = format!("/tenants/{schema}/repair");

    let before = app.env.snapshot().await;
    let res = app
        .post(&format!("{path}?dry_run=true"), &operator, json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let report: Value = res.json().await.expect("json");
    assert_eq!(
        report,
        json!({
            "schema": schema,
            "dry_run": true,
            "forgotten": [],
            "marked_applied": [],
            "checksums_accepted": [],
            "remaining": [],
        })
    );
    assert_eq!(app.env.snapshot().await, before, "a dry run writes nothing");
    let audited = app.get_json("/audit?action=tenant.repair", &admin).await;
    assert_eq!(audited["entries"], json!([]), "{audited:#}");

    // Viewers may not; unknown fields, bad flags, unknown tenants and bad names are refused.
    for query in ["?dry_run=true", ""] {
        expect_problem(
            app.post(&format!("{path}{query}"), &viewer, json!({}))
                .await,
            403,
        )
        .await;
    }
    let p = expect_problem(
        app.post(
            &format!("{path}?dry_run=true"),
            &operator,
            json!({"mark_applied": true, "bogus": 1}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(p["field"], "bogus", "{p:#}");
    let p = expect_problem(
        app.post(&format!("{path}?dry_run=maybe"), &operator, json!({}))
            .await,
        422,
    )
    .await;
    assert_eq!(p["field"], "dry_run", "{p:#}");
    expect_problem(
        app.post(&path, &operator, json!({"force": "yes"})).await,
        422,
    )
    .await;
    let ghost = app.env.tenant("ghost");
    for name in [ghost.as_str(), app.env.catalog.as_str()] {
        expect_problem(
            app.post(&format!("/tenants/{name}/repair"), &operator, json!({}))
                .await,
            404,
        )
        .await;
    }
    expect_problem(
        app.post("/tenants/Bad/repair?dry_run=true", &operator, json!({}))
            .await,
        422,
    )
    .await;
    assert_eq!(
        app.env.snapshot().await,
        before,
        "refused requests write nothing"
    );
    app.stop().await;
}

async fn repair_clears_a_dirty_tenant_and_is_audited(b: Backend) {
    // At version 3, with 0004 available: a failed 0004 whose effects are not in the schema.
    let (env, names) = fleet_env(b, &[("dirty", Some(3))]).await;
    let schema = names[0].clone();
    env.admin()
        .await
        .exec_in(
            &env,
            &schema,
            &format!(
                "INSERT INTO _tenant_migrations (version, name, checksum, state, started_at, error) \
                 VALUES (4, 'loyalty', '{}', 'failed', CURRENT_TIMESTAMP, 'boom')",
                "0".repeat(64)
            ),
        )
        .await;
    let app = TestApp::spawn_env(env).await;
    let operator_email = app.admin(Role::Operator).await;
    let operator = app.login(&operator_email).await;
    let viewer = app.token(Role::Viewer).await;
    let admin = app.token(Role::Admin).await;
    let path = format!("/tenants/{schema}/repair");
    let shown = app.get_json(&format!("/tenants/{schema}"), &viewer).await;
    assert_eq!(shown["state"]["dirty"], true, "{shown:#}");
    let history = app
        .get_json(&format!("/tenants/{schema}/history"), &viewer)
        .await;
    let mut dirty = applied_up_to(3);
    dirty.push((4, "failed".into()));
    assert_eq!(versions(&history), dirty, "{history:#}");
    let failed = &history["migrations"][3];
    assert_eq!(failed["error"], "boom", "{failed:#}");
    assert_eq!(failed["checksum_matches"], false, "{failed:#}");

    // The dry run says what it would do and leaves the tenant dirty.
    let before = app.env.snapshot().await;
    let res = app
        .post(&format!("{path}?dry_run=true"), &operator, json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let plan: Value = res.json().await.expect("json");
    assert_eq!(plan["dry_run"], true, "{plan:#}");
    assert_eq!(plan["forgotten"], json!([4]), "{plan:#}");
    assert_eq!(plan["remaining"], json!([]), "{plan:#}");
    assert_eq!(app.env.snapshot().await, before, "a dry run writes nothing");
    let shown = app.get_json(&format!("/tenants/{schema}"), &viewer).await;
    assert_eq!(shown["state"]["dirty"], true, "{shown:#}");
    expect_problem(app.post(&path, &viewer, json!({})).await, 403).await;

    // The real one forgets the failed migration (it runs again at the next upgrade).
    let res = app.post(&path, &operator, json!({})).await;
    assert_eq!(res.status(), 200);
    let done: Value = res.json().await.expect("json");
    assert_eq!(done["dry_run"], false, "{done:#}");
    assert_eq!(done["forgotten"], json!([4]), "{done:#}");
    assert_eq!(done["remaining"], json!([]), "{done:#}");
    let history = app
        .get_json(&format!("/tenants/{schema}/history"), &viewer)
        .await;
    assert_eq!(versions(&history), applied_up_to(3), "{history:#}");
    let shown = app.get_json(&format!("/tenants/{schema}"), &viewer).await;
    assert_eq!(shown["state"]["dirty"], false, "{shown:#}");
    assert_eq!(shown["state"]["pending"], json!([4]), "{shown:#}");

    // Audited once (the dry run is not), with what it did.
    let audited = app.get_json("/audit?action=tenant.repair", &admin).await;
    let entries = audited["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{audited:#}");
    let entry = &entries[0];
    assert_eq!(entry["actor"], operator_email.as_str(), "{entry:#}");
    assert_eq!(entry["target"], schema.as_str(), "{entry:#}");
    assert_eq!(entry["outcome"], "ok", "{entry:#}");
    let detail: Value =
        serde_json::from_str(entry["detail"].as_str().expect("detail")).expect("detail is JSON");
    assert_eq!(
        detail,
        json!({"forgotten": [4], "marked_applied": [], "checksums_accepted": [], "remaining": 0})
    );

    // Repairing again has nothing to do.
    let res = app.post(&path, &operator, json!({})).await;
    assert_eq!(res.status(), 200);
    let again: Value = res.json().await.expect("json");
    assert_eq!(again["forgotten"], json!([]), "{again:#}");
    app.stop().await;
}

backend_tests!(
    history_lists_the_tenants_migrations_oldest_first,
    structure_shows_drift_and_the_statements_that_fix_it,
    repair_dry_run_of_a_clean_tenant_has_nothing_to_do,
    repair_clears_a_dirty_tenant_and_is_audited,
);
