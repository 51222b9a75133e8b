//! Errors are RFC 9457 problem documents everywhere — axum's own rejections included — carry
//! the request id, and never reveal SQL, file paths or stack traces (every `expect_problem`
//! checks the body; a provisioning failure is provoked on every backend).

use reqwest::Method;
use serde_json::{Value, json};
use tenant_migrator::domain::Role;

use crate::backend_tests;
use crate::common::{Backend, TestEnv};
use crate::support::{TestApp, assert_no_internals, expect_problem};

async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut req = app.request(method, path, token).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req.send().await.expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_of_bad_requests_are_problem_documents() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let token = app.token(Role::Operator).await;
    let json_ct = Some("application/json");

    // Larger than 64 KiB: 413, with or without a token in the way.
    let big = json!({"schema_name": "a".repeat(70 * 1024)})
        .to_string()
        .into_bytes();
    let p = expect_problem(
        raw(
            &app,
            Method::POST,
            "/tenants",
            Some(&token),
            json_ct,
            big.clone(),
        )
        .await,
        413,
    )
    .await;
    assert!(
        p["detail"].as_str().unwrap_or_default().contains("64 KiB"),
        "{p}"
    );
    let big_login = json!({"email": "a@example.com", "password": "p".repeat(70 * 1024)})
        .to_string()
        .into_bytes();
    expect_problem(
        raw(&app, Method::POST, "/auth/login", None, json_ct, big_login).await,
        413,
    )
    .await;
    // Just under the limit is read (and then judged on its content).
    let under = json!({"schema_name": "a".repeat(60 * 1024)})
        .to_string()
        .into_bytes();
    assert_eq!(
        expect_problem(
            raw(&app, Method::POST, "/tenants", Some(&token), json_ct, under).await,
            422
        )
        .await["field"],
        "schema_name"
    );

    // Malformed JSON: 400.
    for body in [
        "{\"schema_name\": ",
        "not json",
        "{\"schema_name\": \"x\",}",
        "",
    ] {
        let p = expect_problem(
            raw(
                &app,
                Method::POST,
                "/tenants",
                Some(&token),
                json_ct,
                body.into(),
            )
            .await,
            400,
        )
        .await;
        assert!(p["detail"].is_string(), "{body:?}: {p}");
    }
    expect_problem(
        raw(
            &app,
            Method::POST,
            "/auth/login",
            None,
            json_ct,
            b"{{".to_vec(),
        )
        .await,
        400,
    )
    .await;

    // Not JSON by content type: 415.
    let body = json!({"schema_name": app.env.tenant("a")})
        .to_string()
        .into_bytes();
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let p = expect_problem(
            raw(
                &app,
                Method::POST,
                "/tenants",
                Some(&token),
                ct,
                body.clone(),
            )
            .await,
            415,
        )
        .await;
        assert!(
            p["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("application/json"),
            "{p}"
        );
    }

    // Well-formed JSON of the wrong shape: 422 naming the field.
    let cases = [
        (
            json!({"schema_name": "x", "displayname": "typo"}),
            "displayname",
        ),
        (json!({"schema_name": ["x"]}), "schema_name"),
        (json!({"display_name": "x"}), "schema_name"),
    ];
    for (body, field) in cases {
        let p = expect_problem(app.post("/tenants", &token, body.clone()).await, 422).await;
        assert_eq!(p["field"], field, "{body}: {p}");
        assert_eq!(p["type"], "urn:tenant-migrator:problem:validation");
    }
    for (path, body, field) in [
        ("/migrations/upgrade-all", json!({"dryrun": true}), "dryrun"),
        (
            "/migrations/upgrade-all",
            json!({"concurrency": 0}),
            "concurrency",
        ),
        (
            "/migrations/upgrade-all",
            json!({"concurrency": 65}),
            "concurrency",
        ),
        (
            "/migrations/upgrade-all",
            json!({"concurrency": "two"}),
            "concurrency",
        ),
        ("/migrations/upgrade-all", json!({"target": 99}), "target"),
        (
            "/migrations/upgrade-public",
            json!({"force": true}),
            "force",
        ),
        (
            "/auth/login",
            json!({"email": "a@example.com", "password": "x", "remember": true}),
            "remember",
        ),
    ] {
        let res = app.post(path, &token, body.clone()).await;
        assert_eq!(
            expect_problem(res, 422).await["field"],
            field,
            "{path} {body}"
        );
    }
    // No fleet job was started by any of these.
    assert_eq!(app.get_json("/migrations/jobs", &token).await["total"], 0);

    // Unknown routes and wrong methods, with and without a token.
    for t in [None, Some(token.as_str())] {
        let res = app
            .request(Method::GET, "/no/such/route", t)
            .send()
            .await
            .expect("request");
        let p = expect_problem(res, 404).await;
        assert_eq!(p["instance"], "/no/such/route");
        let res = app
            .request(Method::DELETE, "/tenants", t)
            .send()
            .await
            .expect("request");
        let allow = res
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        expect_problem(res, 405).await;
        assert!(
            allow.contains("GET") && allow.contains("POST"),
            "allow: {allow:?}"
        );
        let res = app
            .request(Method::GET, "/auth/login", t)
            .send()
            .await
            .expect("request");
        expect_problem(res, 405).await;
    }
    expect_problem(app.get("/migrations/jobs/not-a-uuid", &token).await, 422).await;
    expect_problem(
        app.get(
            &format!("/migrations/jobs/{}", uuid::Uuid::new_v4()),
            &token,
        )
        .await,
        404,
    )
    .await;
    expect_problem(
        app.post(
            &format!("/migrations/jobs/{}/cancel", uuid::Uuid::new_v4()),
            &token,
            json!({}),
        )
        .await,
        404,
    )
    .await;
    expect_problem(
        app.post(
            &format!("/migrations/jobs/{}/resume", uuid::Uuid::new_v4()),
            &token,
            json!({}),
        )
        .await,
        404,
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_made_by_the_server_and_in_problems() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let token = app.token(Role::Viewer).await;

    // Given by the client: never taken as the request's id (a client could forge another
    // request's id in the audit log); the server's own is answered, in header and problem.
    for (path, tok, status) in [
        ("/tenants", Some(token.as_str()), 200u16),
        ("/nowhere", None, 404),
        ("/tenants", None, 401),
    ] {
        let res = app
            .request(Method::GET, path, tok)
            .header("x-request-id", "script-run-42")
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), status, "{path}");
        let id = res
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .expect("x-request-id")
            .to_owned();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{path}: {id}");
        if status != 200 {
            assert_eq!(expect_problem(res, status).await["request_id"], id.as_str());
        }
    }

    // Absent: generated, different per request, and the same in header and body.
    let mut seen = Vec::new();
    for path in ["/healthz", "/nowhere", "/tenants?limit=0"] {
        let res = app
            .request(Method::GET, path, Some(&token))
            .send()
            .await
            .expect("request");
        let id = res
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .expect("generated x-request-id")
            .to_owned();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        if !res.status().is_success() {
            let status = res.status().as_u16();
            assert_eq!(expect_problem(res, status).await["request_id"], id.as_str());
        }
        seen.push(id);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 3);
    app.stop().await;
}

/// A tenant migration that fails on every backend (the table it inserts into does not exist).
const BROKEN: &str = "CREATE TABLE half_done (id INTEGER NOT NULL PRIMARY KEY);\nINSERT INTO no_such_table (id) VALUES (1);\n";

async fn provisioning_failure_reveals_no_internals(b: Backend) {
    let mut env = TestEnv::new(b);
    env.own_migrations();
    env.add_tenant_migration("0004_broken.sql", |_| BROKEN.into());
    let app = TestApp::spawn_env(env).await;
    let token = app.token(Role::Operator).await;
    let schema = app.env.tenant("doomed");

    let res = app
        .post("/tenants", &token, json!({"schema_name": schema}))
        .await;
    let p = expect_problem(res, 500).await;
    let detail = p["detail"].as_str().expect("detail");
    assert!(detail.contains(&schema) && detail.contains("failed"), "{p}");
    assert_eq!(p["type"], "urn:tenant-migrator:problem:internal");
    assert!(
        !detail.contains("no_such_table") && !detail.contains("half_done"),
        "{p}"
    );
    // The tenant is recorded as failed, and a repeat resumes it (and fails the same way).
    let shown = app.get_json(&format!("/tenants/{schema}"), &token).await;
    assert_eq!(shown["tenant"]["status"], "failed", "{shown:#}");
    let res = app
        .post("/tenants", &token, json!({"schema_name": schema}))
        .await;
    expect_problem(res, 500).await;
    assert_eq!(
        app.get_json(&format!("/tenants/{schema}"), &token).await["tenant"]["status"],
        "failed"
    );
    // A fleet job over it fails, and says so in its own record rather than as an error.
    let res = app.post("/migrations/upgrade-all", &token, json!({})).await;
    assert_eq!(res.status(), 202);
    let job: Value = res.json().await.expect("json");
    let id = job["id"].as_str().expect("id").to_owned();
    let detail = app.wait_job_finished(&token, &id).await;
    assert_eq!(detail["job"]["state"], "failed", "{detail:#}");
    // A failed create leaves no schema behind (on MySQL too: the build is dropped).
    let expected = "missing";
    assert_eq!(detail["tenants"][0]["status"], expected, "{detail:#}");
    app.stop().await;
}

#[test]
fn the_internals_check_catches_leaks() {
    // The check every problem body goes through does fail on what it looks for.
    for leak in [
        "error returned from database: 1146 (42S02): Table 'x.no_such_table' doesn't exist",
        "INSERT INTO no_such_table (id) VALUES (1)",
        "thread 'tokio-runtime-worker' panicked at src/http/mod.rs:12:5",
        "cannot open /tmp/.tmpAbc/t1_cat.db",
    ] {
        let caught = std::panic::catch_unwind(|| assert_no_internals(leak));
        assert!(caught.is_err(), "not caught: {leak}");
    }
    assert_no_internals(
        r#"{"type":"about:blank","title":"Not Found","status":404,"detail":"no route for /x"}"#,
    );
}

backend_tests!(provisioning_failure_reveals_no_internals);

/// Every request body is a JSON object: an array (which serde would read as a struct's fields
/// in order), a number or a string is a 422 that changes nothing, not a request carried out.
/// Paging offsets beyond the spec's `int64` are 422 too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_objects_and_offsets_fit_int64() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let token = app.token(Role::Admin).await;
    let json_ct = Some("application/json");
    for (method, path, body) in [
        (Method::POST, "/migrations/upgrade-public", "[]"),
        (Method::POST, "/migrations/upgrade-public", " [false]"),
        (
            Method::POST,
            "/migrations/upgrade-all",
            "[true, false, 2, null]",
        ),
        (Method::POST, "/tenants", r#"["salon_array", null]"#),
        (Method::POST, "/migrations/upgrade-all", "5"),
        (Method::POST, "/migrations/upgrade-all", r#""x""#),
        (Method::POST, "/migrations/upgrade-all", "null"),
    ] {
        let res = raw(&app, method, path, Some(&token), json_ct, body.into()).await;
        let p = expect_problem(res, 422).await;
        assert_eq!(
            p["type"], "urn:tenant-migrator:problem:validation",
            "{path} {body}: {p}"
        );
        assert!(
            p["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("JSON object"),
            "{path} {body}: {p}"
        );
    }
    // Not JSON at all is still 400, and an object still works.
    expect_problem(
        raw(
            &app,
            Method::POST,
            "/migrations/upgrade-public",
            Some(&token),
            json_ct,
            b"[".to_vec(),
        )
        .await,
        400,
    )
    .await;
    let res = raw(
        &app,
        Method::POST,
        "/migrations/upgrade-public",
        Some(&token),
        Some("application/json; charset=utf-8"),
        b" {\"dry_run\": true}".to_vec(),
    )
    .await;
    assert_eq!(res.status(), 200);
    // Nothing was created or started.
    assert_eq!(app.get_json("/tenants", &token).await["total"], 0);
    assert_eq!(app.get_json("/migrations/jobs", &token).await["total"], 0);

    for path in ["/tenants", "/migrations/jobs"] {
        let p = expect_problem(
            app.get(&format!("{path}?offset=9223372036854775808"), &token)
                .await,
            422,
        )
        .await;
        assert_eq!(p["field"], "offset", "{path}: {p}");
        let res = app
            .get(&format!("{path}?offset=9223372036854775807"), &token)
            .await;
        assert_eq!(res.status(), 200, "{path}");
    }
    app.stop().await;
}
