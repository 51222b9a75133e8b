//! Fleet jobs over HTTP: upgrade-all to `succeeded` with the right per-tenant outcomes, one
//! job at a time (409), dry runs that write nothing, cancel at a tenant boundary (from any
//! replica), SSE progress, and leases: a graceful shutdown hands its job off and the
//! restarted service finishes it; a dead process's job is taken over once its lease expires
//! (by a running replica, a restarted one, and a request it would have refused) and finished
//! with the tenants not yet done, each tenant's outcome naming the replica that ran it; a
//! slow but live owner keeps its job; of replicas racing for a takeover exactly one wins;
//! racing resumes and starts are refused with the job that actually runs. `upgrade-all --job`
//! from the CLI is a job like the others: shown by the API, taken over by the service when
//! the CLI is killed, left `interrupted` (and resumable) by Ctrl-C; a bad `JOB_LEASE` is a
//! usage error.
//!
//! Jobs are held "running" deterministically by taking a tenant's migration lock from the
//! test ([`Hold::tenant_lock`]) and releasing it when the test is ready. A dead process's job
//! is a catalog row whose heartbeat and lease the test moves into the past.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tenant_migrator::Engine;
use tenant_migrator::catalog::{JobState, NewJob};
use tenant_migrator::domain::Role;
use tenant_migrator::engine::jobs::JobManager;

use crate::backend_tests;
use crate::common::{Backend, applied_up_to};
use crate::support::{
    CatalogArg, Hold, TEST_JOB_LEASE_SECS, TestApp, catalog_exec, expect_problem, fleet_env,
    read_sse, service_engine, tenant_version,
};

/// The `tenants` rows of a job detail, by schema name.
fn outcomes(detail: &Value) -> Vec<(String, String, Option<i64>, Option<i64>)> {
    let mut v: Vec<_> = detail["tenants"]
        .as_array()
        .expect("tenants array")
        .iter()
        .map(|t| {
            (
                t["schema_name"].as_str().expect("schema_name").to_owned(),
                t["status"].as_str().expect("status").to_owned(),
                t["from_version"].as_i64(),
                t["to_version"].as_i64(),
            )
        })
        .collect();
    v.sort();
    v
}

fn migrated(schema: &str) -> (String, String, Option<i64>, Option<i64>) {
    (schema.to_owned(), "migrated".into(), Some(3), Some(4))
}

/// Asserts a tenant is entirely at version 4 or entirely at 3 (never in between), and returns
/// whether it is at 4.
async fn at_4_or_untouched(env: &crate::common::TestEnv, schema: &str) -> bool {
    let (history, loyalty) = tenant_version(env, schema).await;
    if history == applied_up_to(4) {
        assert!(loyalty, "{schema}: history says 4 but the table is missing");
        true
    } else {
        assert_eq!(history, applied_up_to(3), "{schema} is half-migrated");
        assert!(!loyalty, "{schema}: at 3 but the 0004 table exists");
        false
    }
}

fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn upgrade_all_succeeds_with_per_tenant_outcomes(b: Backend) {
    // a, b, c at 3 have work; d is already at 4.
    let (env, t) = fleet_env(
        b,
        &[("a", Some(3)), ("b", Some(3)), ("c", Some(3)), ("d", None)],
    )
    .await;
    let app = TestApp::spawn_env(env).await;
    let email = app.admin(Role::Operator).await;
    let token = app.login(&email).await;

    let id = app
        .start_upgrade_all(&token, json!({"concurrency": 2}))
        .await;
    let detail = app.wait_job_finished(&token, &id).await;
    let job = &detail["job"];
    assert_eq!(job["state"], "succeeded", "{detail:#}");
    assert_eq!(job["kind"], "upgrade_all");
    assert_eq!(job["dry_run"], false);
    assert_eq!(job["concurrency"], 2);
    assert_eq!(job["requested_by"], email.as_str());
    assert_eq!(
        (
            job["total"].as_i64(),
            job["succeeded"].as_i64(),
            job["skipped"].as_i64()
        ),
        (Some(4), Some(3), Some(1)),
        "{detail:#}"
    );
    assert_eq!(
        (job["failed"].as_i64(), job["not_attempted"].as_i64()),
        (Some(0), Some(0))
    );
    assert!(job["finished_at"].is_string(), "{detail:#}");
    // Tenants with work have an outcome; the up-to-date one is only counted.
    assert_eq!(
        outcomes(&detail),
        vec![migrated(&t[0]), migrated(&t[1]), migrated(&t[2])]
    );
    for row in detail["tenants"].as_array().expect("tenants") {
        assert!(row["attempts"].as_i64() >= Some(1), "{row}");
        assert!(row["error"].is_null(), "{row}");
    }
    for s in &t {
        assert_eq!(
            tenant_version(&app.env, s).await,
            (applied_up_to(4), true),
            "{s}"
        );
        let row: Value = app.get_json(&format!("/tenants/{s}"), &token).await;
        assert_eq!(row["tenant"]["schema_version"], 4, "{row:#}");
        assert_eq!(row["tenant"]["status"], "active");
        assert_eq!(row["state"]["pending"], json!([]), "{row:#}");
    }
    // The job is listed, newest first.
    let list = app.get_json("/migrations/jobs", &token).await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["jobs"][0]["id"], id.as_str());
    let list = app.get_json("/migrations/jobs?state=running", &token).await;
    assert_eq!(list["total"], 0);

    // After the run, /metrics has the HTTP and migration counters (no token needed).
    let res = app
        .request(reqwest::Method::GET, "/metrics", None)
        .send()
        .await
        .expect("metrics");
    assert_eq!(res.status(), 200);
    let text = res.text().await.expect("metrics text");
    assert!(text.contains("http_requests_total{"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("http_requests_total{")
            && l.contains("route=\"/migrations/upgrade-all\"")
            && l.contains("status=\"202\"")),
        "no upgrade-all request counted by route: {text}"
    );
    assert!(
        metric_value(&text, "tenant_migrator_migrations_applied_total") >= 3.0,
        "{text}"
    );
    assert!(
        text.contains("tenant_migrator_job_duration_seconds"),
        "{text}"
    );
    assert!(
        text.contains("tenant_migrator_tenants{status=\"active\"}"),
        "{text}"
    );
    app.stop().await;
}

async fn second_upgrade_all_conflicts_with_the_running_job(b: Backend) {
    let (env, t) = fleet_env(b, &[("a", Some(3)), ("b", Some(3))]).await;
    let app = TestApp::spawn_env(env).await;
    let token = app.token(Role::Operator).await;

    let hold = Hold::tenant_lock(&app.env, &t[0]).await;
    // Four at once: the catalog lets exactly one start; the others name it.
    let racers =
        (0..4).map(|_| app.post("/migrations/upgrade-all", &token, json!({"concurrency": 1})));
    let mut started = Vec::new();
    let mut refused = Vec::new();
    for res in futures_util::future::join_all(racers).await {
        match res.status().as_u16() {
            202 => started.push(
                res.json::<Value>().await.expect("job")["id"]
                    .as_str()
                    .expect("id")
                    .to_owned(),
            ),
            _ => refused.push(expect_problem(res, 409).await["job_id"].clone()),
        }
    }
    assert_eq!(started.len(), 1, "started {started:?}, refused {refused:?}");
    let first = started.remove(0);
    assert!(
        refused.iter().all(|id| id == first.as_str()),
        "{refused:?} vs {first}"
    );
    // The job cannot finish while the test holds a tenant's lock.
    let res = app.post("/migrations/upgrade-all", &token, json!({})).await;
    let p = expect_problem(res, 409).await;
    assert_eq!(p["job_id"], first.as_str(), "{p}");
    assert!(
        p["detail"].as_str().unwrap_or_default().contains(&first),
        "{p}"
    );
    // Nor can a dry run start meanwhile, nor the running job be "resumed".
    let res = app
        .post("/migrations/upgrade-all", &token, json!({"dry_run": true}))
        .await;
    assert_eq!(expect_problem(res, 409).await["job_id"], first.as_str());
    let res = app
        .post(
            &format!("/migrations/jobs/{first}/resume"),
            &token,
            json!({}),
        )
        .await;
    expect_problem(res, 409).await;
    assert_eq!(app.job(&token, &first).await["job"]["state"], "running");
    hold.release().await;

    let detail = app.wait_job_finished(&token, &first).await;
    assert_eq!(detail["job"]["state"], "succeeded", "{detail:#}");
    assert_eq!(outcomes(&detail), vec![migrated(&t[0]), migrated(&t[1])]);
    // Finished jobs free the slot: the next one starts (and has nothing to do).
    let next = app.start_upgrade_all(&token, json!({})).await;
    let detail = app.wait_job_finished(&token, &next).await;
    assert_eq!(detail["job"]["state"], "succeeded");
    assert_eq!(detail["job"]["skipped"], 2);
    assert_eq!(outcomes(&detail), vec![]);
    // A finished job cannot be cancelled.
    let res = app
        .post(
            &format!("/migrations/jobs/{first}/cancel"),
            &token,
            json!({}),
        )
        .await;
    expect_problem(res, 409).await;
    app.stop().await;
}

async fn dry_run_job_changes_nothing(b: Backend) {
    let (env, t) = fleet_env(b, &[("a", Some(3)), ("b", Some(3)), ("c", None)]).await;
    let app = TestApp::spawn_env(env).await;
    let token = app.token(Role::Operator).await;
    // Everything but the catalog's own bookkeeping (jobs, audit, logins) must stay as is.
    let bookkeeping = [
        "migration_jobs",
        "migration_job_tenants",
        "audit_log",
        "admin_master_users",
    ];
    let snapshot = || async {
        let mut s = app.env.snapshot().await;
        let cat = s.get_mut(&app.env.catalog).expect("catalog in snapshot");
        for table in bookkeeping {
            assert!(cat.remove(table).is_some(), "catalog table {table}");
        }
        assert!(cat.contains_key("tenants"));
        s
    };
    let before = snapshot().await;

    let id = app
        .start_upgrade_all(&token, json!({"dry_run": true, "concurrency": 1}))
        .await;
    let detail = app.wait_job_finished(&token, &id).await;
    let job = &detail["job"];
    assert_eq!(job["state"], "succeeded", "{detail:#}");
    assert_eq!(job["dry_run"], true);
    assert_eq!(
        (job["failed"].as_i64(), job["not_attempted"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(
        outcomes(&detail),
        vec![
            (t[0].clone(), "planned".into(), Some(3), Some(4)),
            (t[1].clone(), "planned".into(), Some(3), Some(4)),
        ]
    );
    assert_eq!(snapshot().await, before, "a dry-run job wrote something");
    for s in &t[..2] {
        assert_eq!(tenant_version(&app.env, s).await, (applied_up_to(3), false));
    }
    // The single-tenant dry run is as harmless.
    let res = app
        .post(
            &format!("/tenants/{}/upgrade", t[0]),
            &token,
            json!({"dry_run": true}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let r: Value = res.json().await.expect("json");
    assert_eq!(r["status"], "planned", "{r}");
    assert_eq!(r["migrations"][0]["version"], 4, "{r}");
    assert_eq!(
        snapshot().await,
        before,
        "a dry-run tenant upgrade wrote something"
    );
    app.stop().await;
}

async fn cancel_stops_at_a_tenant_boundary(b: Backend) {
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
    let app = TestApp::spawn_env(env).await;
    let token = app.token(Role::Operator).await;
    let viewer = app.token(Role::Viewer).await;

    // Tenants go one at a time in schema order: a finishes, then the job waits on b's lock.
    let hold = Hold::tenant_lock(&app.env, &t[1]).await;
    let id = app
        .start_upgrade_all(&token, json!({"concurrency": 1}))
        .await;
    app.wait_job(&token, &id, "the first tenant to finish", |d| {
        outcomes(d).iter().any(|o| o.0 == t[0])
    })
    .await;
    let res = app
        .post(&format!("/migrations/jobs/{id}/cancel"), &viewer, json!({}))
        .await;
    expect_problem(res, 403).await;
    let res = app
        .post(&format!("/migrations/jobs/{id}/cancel"), &token, json!({}))
        .await;
    assert_eq!(res.status(), 202);
    hold.release().await;

    let detail = app.wait_job_finished(&token, &id).await;
    let job = &detail["job"];
    assert_eq!(job["state"], "cancelled", "{detail:#}");
    let not_attempted = job["not_attempted"].as_i64().expect("not_attempted");
    assert!(not_attempted > 0, "{detail:#}");
    assert_eq!(
        job["succeeded"].as_i64().expect("succeeded") + not_attempted,
        4,
        "{detail:#}"
    );
    assert_eq!(job["failed"], 0);
    let done = outcomes(&detail);
    assert!(done.contains(&migrated(&t[0])), "{detail:#}");
    for s in &t {
        let recorded = done.iter().find(|o| &o.0 == s);
        let at_4 = at_4_or_untouched(&app.env, s).await;
        assert_eq!(
            at_4,
            recorded.is_some(),
            "{s}: outcome {recorded:?} disagrees with its schema"
        );
        if let Some(o) = recorded {
            assert_eq!(o, &migrated(s));
        }
    }
    // c and d were never started.
    assert!(!at_4_or_untouched(&app.env, &t[2]).await);
    assert!(!at_4_or_untouched(&app.env, &t[3]).await);
    app.stop().await;
}

async fn sse_streams_one_event_per_tenant_then_the_summary(b: Backend) {
    let (env, t) = fleet_env(
        b,
        &[("a", Some(3)), ("b", Some(3)), ("c", Some(3)), ("d", None)],
    )
    .await;
    let app = TestApp::spawn_env(env).await;
    let token = app.token(Role::Viewer).await;
    let operator = app.token(Role::Operator).await;

    let hold = Hold::tenant_lock(&app.env, &t[0]).await;
    let id = app
        .start_upgrade_all(&operator, json!({"concurrency": 1}))
        .await;
    // Connected while the job runs and no tenant has finished: every event arrives live.
    let live = app
        .get(&format!("/migrations/jobs/{id}/events"), &token)
        .await;
    hold.release().await;
    let live = read_sse(live).await;

    let check = |events: &[crate::support::SseEvent]| {
        let (last, tenants) = events.split_last().expect("at least the summary");
        assert_eq!(last.event, "summary", "{events:#?}");
        assert_eq!(last.data["id"], id.as_str());
        assert_eq!(last.data["state"], "succeeded", "{events:#?}");
        assert_eq!(last.data["succeeded"], 3);
        assert!(tenants.iter().all(|e| e.event == "tenant"), "{events:#?}");
        let mut seen: Vec<(String, String, Option<i64>, Option<i64>)> = tenants
            .iter()
            .map(|e| {
                (
                    e.data["schema_name"]
                        .as_str()
                        .unwrap_or_else(|| panic!("tenant event without schema_name: {}", e.data))
                        .to_owned(),
                    e.data["status"].as_str().expect("status").to_owned(),
                    e.data["from_version"].as_i64(),
                    e.data["to_version"].as_i64(),
                )
            })
            .collect();
        seen.sort();
        // One event per tenant with work (d was up to date), each once.
        assert_eq!(
            seen,
            vec![migrated(&t[0]), migrated(&t[1]), migrated(&t[2])],
            "{events:#?}"
        );
    };
    check(&live);
    // After the fact, the stream replays the recorded outcomes in the same shape.
    let replay = read_sse(
        app.get(&format!("/migrations/jobs/{id}/events"), &token)
            .await,
    )
    .await;
    check(&replay);

    let res = app
        .get(
            "/migrations/jobs/00000000-0000-0000-0000-000000000000/events",
            &token,
        )
        .await;
    expect_problem(res, 404).await;
    app.stop().await;
}

async fn sse_of_a_dry_run_lists_the_plan(b: Backend) {
    let (env, t) = fleet_env(b, &[("a", Some(3)), ("b", Some(3))]).await;
    let app = TestApp::spawn_env(env).await;
    let token = app.token(Role::Operator).await;
    // The dry run cannot read a's history until the test lets it: the stream is connected
    // before the plan is made.
    let hold = Hold::history_read_block(&app.env, &t[0]).await;
    let id = app
        .start_upgrade_all(&token, json!({"dry_run": true}))
        .await;
    let events = app
        .get(&format!("/migrations/jobs/{id}/events"), &token)
        .await;
    hold.release().await;
    let events = read_sse(events).await;
    let (summary, tenants) = events.split_last().expect("summary");
    assert_eq!(
        (summary.event.as_str(), summary.data["state"].as_str()),
        ("summary", Some("succeeded")),
        "{events:#?}"
    );
    let mut planned: Vec<(String, String)> = tenants
        .iter()
        .map(|e| {
            (
                e.data["schema_name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                e.data["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    planned.sort();
    assert_eq!(
        planned,
        vec![
            (t[0].clone(), "planned".into()),
            (t[1].clone(), "planned".into())
        ],
        "{events:#?}"
    );
    assert_eq!(outcomes(&app.job(&token, &id).await).len(), 2);
    app.stop().await;
}

/// The lease of the test services' jobs, and their heartbeat period.
fn lease() -> Duration {
    Duration::from_secs(TEST_JOB_LEASE_SECS)
}

/// How long a replica may take to see a job whose lease has already expired (one janitor
/// period, with room for a loaded test machine).
fn noticed_within() -> Duration {
    lease() / 5 * 2 + Duration::from_secs(3)
}

/// `(schema, owner)` of each outcome of a job detail, by schema name.
fn ran_by(detail: &Value) -> Vec<(String, String)> {
    let mut v: Vec<_> = detail["tenants"]
        .as_array()
        .expect("tenants array")
        .iter()
        .map(|t| {
            (
                t["schema_name"].as_str().unwrap_or_default().to_owned(),
                t["owner"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

fn owner_of(detail: &Value) -> String {
    detail["job"]["owner"]
        .as_str()
        .expect("job owner")
        .to_owned()
}

/// Asserts every tenant is at version 4 with each migration recorded once.
async fn all_migrated_once(env: &crate::common::TestEnv, tenants: &[String]) {
    for s in tenants {
        assert_eq!(
            tenant_version(env, s).await,
            (applied_up_to(4), true),
            "{s}"
        );
    }
}

async fn graceful_shutdown_hands_the_job_off_and_the_restarted_service_finishes_it(b: Backend) {
    let (env, t) = fleet_env(b, &[("a", Some(3)), ("b", Some(3)), ("c", Some(3))]).await;
    let mut app = TestApp::spawn_env(env).await;
    let email = app.admin(Role::Operator).await;
    let token = app.login(&email).await;

    let hold = Hold::tenant_lock(&app.env, &t[1]).await;
    let id = app
        .start_upgrade_all(&token, json!({"concurrency": 1}))
        .await;
    let detail = app
        .wait_job(&token, &id, "the first tenant to finish", |d| {
            outcomes(d).iter().any(|o| o.0 == t[0])
        })
        .await;
    let first = owner_of(&detail);
    // A dashboard follows the job; SIGTERM comes while the job waits on b.
    let events = app
        .get(&format!("/migrations/jobs/{id}/events"), &token)
        .await;
    app.request_shutdown();
    wait_until_refused(app.addr).await;
    // b (in flight) finishes, c is never started here; the follower's stream ends without a
    // summary: the job did not end, it was handed off.
    hold.release().await;
    let events = read_sse(events).await;
    assert!(events.iter().all(|e| e.event != "summary"), "{events:#?}");
    let env = app.shut_down().await;

    // Between the two processes the job is still running, its lease already expired.
    let engine = service_engine(&env).await;
    let row = engine
        .job(id.parse().expect("uuid"))
        .await
        .expect("job")
        .expect("row");
    assert_eq!(row.state, JobState::Running, "{row:#?}");
    assert_eq!(row.owner.as_deref(), Some(first.as_str()), "{row:#?}");
    assert!(
        row.lease_expires_at
            .is_some_and(|t| t <= chrono::Utc::now()),
        "{row:#?}"
    );
    assert!(row.finished_at.is_none(), "{row:#?}");
    engine.close().await;

    // The restarted service takes it over before it serves, and finishes it.
    let app = TestApp::spawn_env(env).await;
    let token = app.login(&email).await;
    let detail = app.job(&token, &id).await;
    assert_eq!(detail["job"]["takeovers"], 1, "{detail:#}");
    let second = owner_of(&detail);
    assert_ne!(first, second);
    let detail = app.wait_job_finished(&token, &id).await;
    assert_eq!(detail["job"]["state"], "succeeded", "{detail:#}");
    assert_eq!(
        outcomes(&detail),
        vec![migrated(&t[0]), migrated(&t[1]), migrated(&t[2])]
    );
    assert_eq!(
        (
            detail["job"]["total"].as_i64(),
            detail["job"]["succeeded"].as_i64(),
            detail["job"]["not_attempted"].as_i64()
        ),
        (Some(3), Some(3), Some(0)),
        "{detail:#}"
    );
    // a ran on the first process, c on the second. b ran on the first when it was in flight
    // at the shutdown, else on the second: the runner may not have picked it up yet when the
    // shutdown came (a loaded machine), and nothing outside shows a tenant's start to wait
    // for. Either way it ran once (checked below) and the job was handed off whole.
    let ran = ran_by(&detail);
    assert_eq!(ran[0], (t[0].clone(), first.clone()), "{ran:?}");
    assert!(
        ran[1] == (t[1].clone(), first.clone()) || ran[1] == (t[1].clone(), second.clone()),
        "{ran:?}"
    );
    assert_eq!(ran[2], (t[2].clone(), second.clone()), "{ran:?}");
    all_migrated_once(&app.env, &t).await;
    app.stop().await;
}

/// Waits until the server stopped accepting connections (it has seen the shutdown signal).
async fn wait_until_refused(addr: std::net::SocketAddr) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server still accepts connections"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The job row a process leaves when it dies mid-run: `running`, holding the fleet slot,
/// owned by `owner`, its heartbeat and lease expiry `expired_for` in the past (set through the
/// catalog, by this machine's clock, which is also the test database servers').
async fn dead_job(
    engine: &Engine,
    email: &str,
    owner: &str,
    expired_for: chrono::Duration,
) -> String {
    let job = engine
        .catalog()
        .start_job(&NewJob {
            kind: "upgrade_all".into(),
            dry_run: false,
            continue_on_error: false,
            concurrency: 1,
            target_version: None,
            requested_by: Some(email.to_owned()),
            exclusive: true,
            owner: owner.into(),
            canary: None,
            canary_tenants: None,
            max_failures: None,
            lease: lease(),
        })
        .await
        .expect("job row");
    let id = job.id.to_string();
    set_lease(engine, &id, expired_for, -expired_for).await;
    id
}

/// Moves a job's heartbeat `age` into the past and its lease expiry to `expires_in` from now.
async fn set_lease(engine: &Engine, id: &str, age: chrono::Duration, expires_in: chrono::Duration) {
    let now = chrono::Utc::now();
    catalog_exec(
        engine,
        "UPDATE migration_jobs SET heartbeat_at = ?, lease_expires_at = ? WHERE id = ?",
        &[
            CatalogArg::Time(now - age),
            CatalogArg::Time(now + expires_in),
            CatalogArg::Id(id.parse().expect("uuid")),
        ],
    )
    .await;
}

/// An `interrupted` job that held no slot: what a CLI run stopped with Ctrl-C leaves (no
/// tenant done).
async fn interrupted_job(app: &TestApp, email: &str) -> String {
    let id = dead_job(
        &app.engine,
        email,
        "4141-stopped",
        -chrono::Duration::seconds(60),
    )
    .await;
    app.catalog_exec(
        "UPDATE migration_jobs SET state = 'interrupted', active_slot = NULL, finished_at = ? \
         WHERE id = ?",
        &[
            CatalogArg::Time(chrono::Utc::now()),
            CatalogArg::Id(id.parse().expect("uuid")),
        ],
    )
    .await;
    id
}

async fn crashed_job_is_taken_over_without_restart_and_finished(b: Backend) {
    use tenant_migrator::catalog::JobTenantRow;
    let (env, t) = fleet_env(b, &[("a", Some(3)), ("b", Some(3)), ("c", Some(3))]).await;
    let app = TestApp::spawn_env(env).await;
    let email = app.admin(Role::Operator).await;
    let token = app.login(&email).await;

    // A process that died mid-job: it had migrated a and recorded its outcome, but its last
    // heartbeat saved the counts before a finished (3 planned, none done yet). Its lease is
    // live while the test writes that.
    let res = app
        .post(&format!("/tenants/{}/upgrade", t[0]), &token, json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let id = dead_job(
        &app.engine,
        &email,
        "4242-crashed",
        -chrono::Duration::seconds(60),
    )
    .await;
    app.engine
        .catalog()
        .record_job_tenant(
            id.parse().expect("uuid"),
            &JobTenantRow {
                schema_name: t[0].clone(),
                status: "migrated".into(),
                from_version: Some(3),
                to_version: Some(4),
                duration_ms: 10,
                attempts: 1,
                error: None,
                finished_at: chrono::Utc::now(),
                owner: Some("4242-crashed".into()),
            },
        )
        .await
        .expect("outcome row");
    app.catalog_exec(
        "UPDATE migration_jobs SET total = 3, succeeded = 0 WHERE id = ?",
        &[CatalogArg::Id(id.parse().expect("uuid"))],
    )
    .await;
    let stopped = Instant::now();
    set_lease(
        &app.engine,
        &id,
        chrono::Duration::hours(1),
        -chrono::Duration::hours(1),
    )
    .await;

    // The running service takes it over on its own, without a restart or a request.
    let detail = app
        .wait_job(&token, &id, "the takeover", |d| d["job"]["takeovers"] == 1)
        .await;
    assert!(
        stopped.elapsed() < noticed_within(),
        "taken over {:?} after its lease expired",
        stopped.elapsed()
    );
    let owner = owner_of(&detail);
    assert_ne!(owner, "4242-crashed");
    let detail = app.wait_job_finished(&token, &id).await;
    let job = &detail["job"];
    assert_eq!(job["state"], "succeeded", "{detail:#}");
    assert!(job["error"].is_null(), "{detail:#}");
    assert_eq!(
        (
            job["total"].as_i64(),
            job["succeeded"].as_i64(),
            job["failed"].as_i64(),
            job["skipped"].as_i64(),
            job["not_attempted"].as_i64()
        ),
        (Some(3), Some(3), Some(0), Some(0), Some(0)),
        "{detail:#}"
    );
    // a stays the dead process's; only the tenants it had not finished ran here.
    assert_eq!(
        ran_by(&detail),
        vec![
            (t[0].clone(), "4242-crashed".to_owned()),
            (t[1].clone(), owner.clone()),
            (t[2].clone(), owner.clone())
        ]
    );
    all_migrated_once(&app.env, &t).await;
    // A finished job cannot be resumed.
    let res = app
        .post(&format!("/migrations/jobs/{id}/resume"), &token, json!({}))
        .await;
    let p = expect_problem(res, 409).await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("succeeded"),
        "{p}"
    );
    app.stop().await;
}

async fn job_is_taken_over_once_its_lease_expires_and_not_before(b: Backend) {
    let (env, t) = fleet_env(b, &[("a", Some(3))]).await;
    let app = TestApp::spawn_env(env).await;
    let email = app.admin(Role::Operator).await;
    let token = app.login(&email).await;

    // Its owner's last beat was a while ago, but its lease runs for 1.5 s more.
    let left = Duration::from_millis(1500);
    let id = dead_job(
        &app.engine,
        &email,
        "4343-vanished",
        -chrono::Duration::seconds(60),
    )
    .await;
    let stopped = Instant::now();
    set_lease(
        &app.engine,
        &id,
        chrono::Duration::seconds(2),
        chrono::Duration::from_std(left).expect("duration"),
    )
    .await;
    app.wait_job(&token, &id, "the takeover", |d| {
        assert!(
            d["job"]["takeovers"] == 0 || stopped.elapsed() + Duration::from_millis(100) >= left,
            "taken over after {:?}, before its lease expired: {d:#}",
            stopped.elapsed()
        );
        d["job"]["takeovers"] == 1
    })
    .await;
    assert!(
        stopped.elapsed() < left + noticed_within(),
        "taken over only {:?} after",
        stopped.elapsed()
    );
    let detail = app.wait_job_finished(&token, &id).await;
    assert_eq!(detail["job"]["state"], "succeeded", "{detail:#}");
    assert_eq!(outcomes(&detail), vec![migrated(&t[0])]);
    app.stop().await;
}

async fn slow_but_live_owner_keeps_its_job(b: Backend) {
    let (env, t) = fleet_env(b, &[("a", Some(3)), ("b", Some(3))]).await;
    let app = TestApp::spawn_env(env).await;
    let token = app.token(Role::Operator).await;

    // The job waits on a's lock for longer than two leases.
    let hold = Hold::tenant_lock(&app.env, &t[0]).await;
    let id = app
        .start_upgrade_all(&token, json!({"concurrency": 1}))
        .await;
    let started = chrono::Utc::now();
    let beyond = chrono::Duration::from_std(lease() * 2).expect("duration");
    let detail = app
        .wait_job(&token, &id, "heartbeats past two leases", |d| {
            assert_eq!(d["job"]["state"], "running", "{d:#}");
            d["job"]["heartbeat_at"]
                .as_str()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .is_some_and(|h| h.to_utc() - started > beyond)
        })
        .await;
    let owner = owner_of(&detail);
    // Another replica looking for expired leases finds none: the owner is slow, not dead.
    let replica = JobManager::new(app.engine.clone());
    assert_eq!(replica.take_over_expired().await, 0, "{detail:#}");
    let detail = app.job(&token, &id).await;
    assert_eq!(detail["job"]["state"], "running");
    assert_eq!(detail["job"]["takeovers"], 0);
    assert_eq!(owner_of(&detail), owner);
    hold.release().await;
    let detail = app.wait_job_finished(&token, &id).await;
    assert_eq!(detail["job"]["state"], "succeeded", "{detail:#}");
    assert_eq!(outcomes(&detail), vec![migrated(&t[0]), migrated(&t[1])]);
    assert_eq!(
        ran_by(&detail),
        vec![(t[0].clone(), owner.clone()), (t[1].clone(), owner.clone())]
    );
    app.stop().await;
}

async fn requests_refused_by_a_dead_job_take_it_over(b: Backend) {
    let (env, t) = fleet_env(b, &[("a", Some(3)), ("b", Some(3))]).await;
    let app = TestApp::spawn_env(env).await;
    let email = app.admin(Role::Operator).await;
    let token = app.login(&email).await;
    let old = chrono::Duration::minutes(5);

    // The dead job, once taken over, stays running until the test lets go.
    let waiting = interrupted_job(&app, &email).await;
    let hold = Hold::tenant_lock(&app.env, &t[0]).await;
    let dead = dead_job(&app.engine, &email, "4444-dead", old).await;
    // A resume and a new fleet job meet it in the slot: they are refused with it, and it is
    // taken over (by them or by the janitor, whichever looks first).
    let res = app
        .post(
            &format!("/migrations/jobs/{waiting}/resume"),
            &token,
            json!({}),
        )
        .await;
    let p = expect_problem(res, 409).await;
    assert_eq!(p["job_id"], dead.as_str(), "{p}");
    let res = app.post("/migrations/upgrade-all", &token, json!({})).await;
    let p = expect_problem(res, 409).await;
    assert_eq!(p["job_id"], dead.as_str(), "{p}");
    let detail = app
        .wait_job(&token, &dead, "the takeover", |d| {
            d["job"]["takeovers"] == 1
        })
        .await;
    assert_eq!(detail["job"]["state"], "running", "{detail:#}");
    assert_ne!(owner_of(&detail), "4444-dead");
    hold.release().await;
    let detail = app.wait_job_finished(&token, &dead).await;
    assert_eq!(detail["job"]["state"], "succeeded", "{detail:#}");
    assert_eq!(outcomes(&detail), vec![migrated(&t[0]), migrated(&t[1])]);

    // The slot is free: the interrupted job resumes (nothing left to do).
    let res = app
        .post(
            &format!("/migrations/jobs/{waiting}/resume"),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(res.status(), 202);
    let detail = app.wait_job_finished(&token, &waiting).await;
    assert_eq!(detail["job"]["state"], "succeeded", "{detail:#}");
    assert_eq!(detail["job"]["skipped"], 2, "{detail:#}");
    app.stop().await;
}

async fn restarted_service_takes_a_dead_job_over(b: Backend) {
    let (env, t) = fleet_env(b, &[("a", Some(3))]).await;
    let app = TestApp::spawn_env(env).await;
    let email = app.admin(Role::Operator).await;
    let env = app.shut_down().await;
    // The only replica is gone; the job's owner dies with no replica to notice.
    let engine = service_engine(&env).await;
    let id = dead_job(&engine, &email, "4646-dead", chrono::Duration::minutes(5)).await;
    engine.close().await;
    // The restarted service looks before it serves: its first answer already knows.
    let app = TestApp::spawn_env(env).await;
    let token = app.login(&email).await;
    let detail = app.job(&token, &id).await;
    assert_eq!(detail["job"]["takeovers"], 1, "{detail:#}");
    assert_ne!(owner_of(&detail), "4646-dead");
    let detail = app.wait_job_finished(&token, &id).await;
    assert_eq!(detail["job"]["state"], "succeeded", "{detail:#}");
    assert_eq!(outcomes(&detail), vec![migrated(&t[0])]);
    app.stop().await;
}

/// Replicas racing for one expired lease: exactly one wins, at the catalog (the conditional
/// UPDATE itself) and at the job managers (the winner continues the job, the others leave it).
async fn two_replicas_racing_for_the_takeover_exactly_one_wins(b: Backend) {
    use crate::common::Deadline;
    let (env, t) = fleet_env(b, &[("a", Some(3)), ("b", Some(3))]).await;
    let engine = service_engine(&env).await;
    let catalog = engine.catalog();

    let id = dead_job(&engine, "race", "4747-dead", chrono::Duration::minutes(1)).await;
    let uuid: uuid::Uuid = id.parse().expect("uuid");
    let expired = catalog
        .expired_jobs()
        .await
        .expect("expired jobs")
        .into_iter()
        .find(|j| j.id == uuid)
        .expect("the dead job's lease is expired");
    let racers = (0..8).map(|i| {
        let expired = expired.clone();
        async move {
            catalog
                .take_over_job(&expired, &format!("racer-{i}"), lease())
                .await
                .expect("takeover")
        }
    });
    let won: Vec<_> = futures_util::future::join_all(racers)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(won.len(), 1, "{won:#?}");
    let row = engine.job(uuid).await.expect("job").expect("row");
    assert_eq!(
        (row.owner.clone(), row.takeovers),
        (won[0].owner.clone(), 1)
    );
    assert!(catalog.expired_jobs().await.expect("expired").is_empty());
    let owner = row.owner.clone().expect("owner");
    assert!(
        catalog
            .finish_job(uuid, &owner, JobState::Cancelled, &row.counts, None)
            .await
            .expect("finish")
    );

    // Job managers: the one that wins runs the job to its end.
    let hold = Hold::tenant_lock(&env, &t[0]).await;
    let id = dead_job(&engine, "race", "4848-dead", chrono::Duration::minutes(1)).await;
    let uuid: uuid::Uuid = id.parse().expect("uuid");
    let replicas: Vec<JobManager> = (0..4).map(|_| JobManager::new(engine.clone())).collect();
    let wins =
        futures_util::future::join_all(replicas.iter().map(JobManager::take_over_expired)).await;
    assert_eq!(wins.iter().sum::<usize>(), 1, "{wins:?}");
    let winner = replicas[wins.iter().position(|w| *w == 1).expect("a winner")].owner();
    let row = engine.job(uuid).await.expect("job").expect("row");
    assert_eq!(row.state, JobState::Running);
    assert_eq!((row.owner.as_deref(), row.takeovers), (Some(winner), 1));
    hold.release().await;
    let deadline = Deadline::new("the job taken over to finish", 60);
    let row = loop {
        let row = engine.job(uuid).await.expect("job").expect("row");
        if row.state.is_finished() {
            break row;
        }
        deadline.check().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(row.state, JobState::Succeeded, "{row:#?}");
    let tenants = engine.job_tenants(uuid).await.expect("outcomes");
    assert_eq!(tenants.len(), 2, "{tenants:#?}");
    assert!(
        tenants.iter().all(|r| r.owner.as_deref() == Some(winner)),
        "{tenants:#?}"
    );
    all_migrated_once(&env, &t).await;
    for r in &replicas {
        r.shutdown().await;
    }
    engine.close().await;
    env.cleanup().await;
}

/// Resumes racing each other and new fleet jobs: exactly one request wins, and every loser's
/// 409 names the job that actually runs — never "is interrupted", never a nil id.
async fn racing_resumes_and_starts_are_refused_with_the_winner(b: Backend) {
    let (env, t) = fleet_env(b, &[("a", Some(3)), ("b", Some(3))]).await;
    let app = TestApp::spawn_env(env).await;
    let email = app.admin(Role::Operator).await;
    let token = app.login(&email).await;
    let id = interrupted_job(&app, &email).await;
    // Whoever wins stays running until the test lets go.
    let hold = Hold::tenant_lock(&app.env, &t[0]).await;

    let resume = format!("/migrations/jobs/{id}/resume");
    let racers = (0..6).map(|i| {
        if i % 3 == 2 {
            app.post("/migrations/upgrade-all", &token, json!({"concurrency": 1}))
        } else {
            app.post(&resume, &token, json!({}))
        }
    });
    let mut won = Vec::new();
    let mut lost = Vec::new();
    for res in futures_util::future::join_all(racers).await {
        match res.status().as_u16() {
            202 => won.push(
                res.json::<Value>().await.expect("job")["id"]
                    .as_str()
                    .expect("id")
                    .to_owned(),
            ),
            _ => lost.push(expect_problem(res, 409).await),
        }
    }
    assert_eq!(won.len(), 1, "won {won:?}, lost {lost:#?}");
    let winner = won.remove(0);
    for p in &lost {
        let detail = p["detail"].as_str().unwrap_or_default();
        assert_eq!(p["job_id"], winner.as_str(), "{p}");
        assert!(
            detail.contains(&winner) && detail.contains("running"),
            "{p}"
        );
        assert!(!detail.contains("interrupted"), "{p}");
        assert!(
            !detail.contains("00000000-0000-0000-0000-000000000000"),
            "{p}"
        );
    }
    hold.release().await;
    let detail = app.wait_job_finished(&token, &winner).await;
    assert_eq!(detail["job"]["state"], "succeeded", "{detail:#}");
    app.stop().await;
}

/// A second replica resuming a job another replica already resumed is told it runs.
async fn resume_of_a_job_resumed_by_another_replica_says_it_runs(b: Backend) {
    use tenant_migrator::catalog::StartJobError;
    let (env, t) = fleet_env(b, &[("a", Some(3))]).await;
    let app = TestApp::spawn_env(env).await;
    let email = app.admin(Role::Operator).await;
    let token = app.login(&email).await;
    let id = interrupted_job(&app, &email).await;
    let uuid: uuid::Uuid = id.parse().expect("uuid");

    let hold = Hold::tenant_lock(&app.env, &t[0]).await;
    let first = JobManager::new(app.engine.clone());
    let second = JobManager::new(app.engine.clone());
    let resumed = first.resume(uuid).await.expect("resume");
    assert_eq!(resumed.map(|j| j.id), Some(uuid));
    match second.resume(uuid).await {
        Err(StartJobError::AlreadyRunning(holder)) => assert_eq!(holder, uuid),
        other => panic!("second resume: {other:?}"),
    }
    // Over HTTP too (a third replica).
    let res = app
        .post(&format!("/migrations/jobs/{id}/resume"), &token, json!({}))
        .await;
    let p = expect_problem(res, 409).await;
    assert_eq!(p["job_id"], id.as_str(), "{p}");
    assert_eq!(
        p["detail"],
        format!("job {id} was already resumed and is running"),
        "{p}"
    );
    hold.release().await;
    let detail = app.wait_job_finished(&token, &id).await;
    assert_eq!(detail["job"]["state"], "succeeded", "{detail:#}");
    assert_eq!(outcomes(&detail), vec![migrated(&t[0])]);
    first.shutdown().await;
    app.stop().await;
}

/// A cancel asked on a replica that does not run the job reaches the one that does (through
/// the catalog, read with its heartbeat) and the job ends `cancelled`.
async fn cancel_reaches_the_replica_running_the_job(b: Backend) {
    use tenant_migrator::engine::jobs::UpgradeAllParams;
    let (env, t) = fleet_env(b, &[("a", Some(3)), ("b", Some(3)), ("c", Some(3))]).await;
    let app = TestApp::spawn_env(env).await;
    let token = app.token(Role::Operator).await;

    // Another replica runs the job; it waits on b's lock after a.
    let hold = Hold::tenant_lock(&app.env, &t[1]).await;
    let other = JobManager::new(app.engine.clone());
    let job = other
        .start_upgrade_all(
            UpgradeAllParams {
                dry_run: false,
                continue_on_error: false,
                concurrency: 1,
                target: None,
                canary: None,
                max_failures: None,
            },
            "other-replica",
        )
        .await
        .expect("job starts");
    let id = job.id.to_string();
    app.wait_job(&token, &id, "the first tenant to finish", |d| {
        outcomes(d).iter().any(|o| o.0 == t[0])
    })
    .await;
    let res = app
        .post(&format!("/migrations/jobs/{id}/cancel"), &token, json!({}))
        .await;
    assert_eq!(res.status(), 202);
    let row: Value = res.json().await.expect("job row");
    assert_eq!(row["cancel_requested"], true, "{row:#}");
    // The owner reads the flag with its next heartbeat (b still locked); then the tenant in
    // flight finishes and none starts after it.
    let seen = crate::common::Deadline::new("the owner to see the cancel", 30);
    while !other.is_cancelling(job.id) {
        seen.check().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hold.release().await;
    let detail = app.wait_job_finished(&token, &id).await;
    assert_eq!(detail["job"]["state"], "cancelled", "{detail:#}");
    assert!(
        !outcomes(&detail).iter().any(|o| o.0 == t[2]),
        "c started after the cancel: {detail:#}"
    );
    // Each outcome names the replica that ran it.
    let ran_by: Vec<&str> = detail["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .map(|r| r["owner"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(ran_by, vec![other.owner(); 2], "{detail:#}");
    // A finished job cannot be cancelled, on any replica.
    let res = app
        .post(&format!("/migrations/jobs/{id}/cancel"), &token, json!({}))
        .await;
    expect_problem(res, 409).await;
    other.shutdown().await;
    app.stop().await;
}

/// `upgrade-all --job` as a child process of the test, next to the test service.
fn cli_job(env: &crate::common::TestEnv, args: &[&str]) -> std::process::Command {
    let mut all = args.to_vec();
    all.extend(["upgrade-all", "--job"]);
    let mut cmd = env.cli_command(&all);
    cmd.env("JOB_LEASE", TEST_JOB_LEASE_SECS.to_string());
    cmd
}

/// The id of the job the CLI recorded, once the API shows it.
async fn cli_job_id(app: &TestApp, token: &str) -> String {
    let deadline = crate::common::Deadline::new("the CLI's job to show in the API", 60);
    loop {
        let list = app.get_json("/migrations/jobs?state=running", token).await;
        if let Some(job) = list["jobs"]
            .as_array()
            .and_then(|jobs| jobs.iter().find(|j| j["requested_by"] == "cli"))
        {
            return job["id"].as_str().expect("id").to_owned();
        }
        deadline.check().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn cli_job_is_a_job_of_the_api(b: Backend) {
    let (env, t) = fleet_env(b, &[("a", Some(3)), ("b", Some(3)), ("c", None)]).await;
    let app = TestApp::spawn_env(env).await;
    let token = app.token(Role::Viewer).await;

    let mut cmd = cli_job(&app.env, &["--output", "json"]);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("cli task")
        .expect("cli runs");
    let run = crate::common::CliRun(out);
    run.expect_code(0);
    let report = run.json();
    assert_eq!(report["successful_migrations"], 2, "{report:#}");
    let id = report["job_id"].as_str().expect("job_id").to_owned();
    let detail = app.job(&token, &id).await;
    assert_eq!(detail["job"]["state"], "succeeded", "{detail:#}");
    assert_eq!(detail["job"]["requested_by"], "cli", "{detail:#}");
    assert_eq!(
        (
            detail["job"]["total"].as_i64(),
            detail["job"]["succeeded"].as_i64(),
            detail["job"]["skipped"].as_i64()
        ),
        (Some(3), Some(2), Some(1)),
        "{detail:#}"
    );
    assert_eq!(outcomes(&detail), vec![migrated(&t[0]), migrated(&t[1])]);
    let list = app.get_json("/migrations/jobs", &token).await;
    assert!(
        list["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .any(|j| j["id"] == id.as_str()),
        "{list:#}"
    );
    // The text report names the job too.
    let mut cmd = cli_job(&app.env, &[]);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("cli task")
        .expect("cli runs");
    let run = crate::common::CliRun(out);
    run.expect_code(0);
    assert!(
        run.stdout()
            .lines()
            .any(|l| l.starts_with("job ") && l.ends_with(": succeeded")),
        "{}",
        run.stdout()
    );
    app.stop().await;
}

async fn killed_cli_job_is_taken_over_by_the_service(b: Backend) {
    let (env, t) = fleet_env(b, &[("a", Some(3)), ("b", Some(3)), ("c", Some(3))]).await;
    let app = TestApp::spawn_env(env).await;
    let token = app.token(Role::Operator).await;

    // The CLI waits on b's lock after a.
    let hold = Hold::tenant_lock(&app.env, &t[1]).await;
    let mut child = cli_job(&app.env, &["--concurrency", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cli starts");
    let id = cli_job_id(&app, &token).await;
    let detail = app
        .wait_job(&token, &id, "the CLI to finish a", |d| {
            outcomes(d).iter().any(|o| o.0 == t[0])
        })
        .await;
    let cli = owner_of(&detail);
    assert!(cli.starts_with(&format!("{}-", child.id())), "{detail:#}");
    // kill -9
    child.kill().expect("kill");
    child.wait().expect("reaped");
    let killed = Instant::now();
    let detail = app
        .wait_job(&token, &id, "the takeover", |d| d["job"]["takeovers"] == 1)
        .await;
    assert!(
        killed.elapsed() < lease() + noticed_within(),
        "taken over {:?} after the kill",
        killed.elapsed()
    );
    let service = owner_of(&detail);
    assert_ne!(service, cli);
    hold.release().await;
    let detail = app.wait_job_finished(&token, &id).await;
    assert_eq!(detail["job"]["state"], "succeeded", "{detail:#}");
    assert_eq!(
        ran_by(&detail),
        vec![
            (t[0].clone(), cli.clone()),
            (t[1].clone(), service.clone()),
            (t[2].clone(), service.clone())
        ]
    );
    all_migrated_once(&app.env, &t).await;
    app.stop().await;
}

async fn ctrl_c_leaves_a_cli_job_interrupted_and_resumable(b: Backend) {
    let (env, t) = fleet_env(b, &[("a", Some(3)), ("b", Some(3)), ("c", Some(3))]).await;
    let app = TestApp::spawn_env(env).await;
    let token = app.token(Role::Operator).await;

    let hold = Hold::tenant_lock(&app.env, &t[1]).await;
    let child = cli_job(&app.env, &["--concurrency", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cli starts");
    let id = cli_job_id(&app, &token).await;
    app.wait_job(&token, &id, "the CLI to finish a", |d| {
        outcomes(d).iter().any(|o| o.0 == t[0])
    })
    .await;
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(sent.success());
    // b, in flight, finishes; c is never started.
    hold.release().await;
    let run = crate::common::CliRun(
        tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .expect("cli task")
            .expect("cli ends"),
    );
    run.expect_code(130);
    let detail = app.job(&token, &id).await;
    assert_eq!(detail["job"]["state"], "interrupted", "{detail:#}");
    assert!(
        !outcomes(&detail).iter().any(|o| o.0 == t[2]),
        "c started after Ctrl-C: {detail:#}"
    );
    let res = app
        .post(&format!("/migrations/jobs/{id}/resume"), &token, json!({}))
        .await;
    assert_eq!(res.status(), 202);
    let detail = app.wait_job_finished(&token, &id).await;
    assert_eq!(detail["job"]["state"], "succeeded", "{detail:#}");
    assert_eq!(
        outcomes(&detail),
        vec![migrated(&t[0]), migrated(&t[1]), migrated(&t[2])]
    );
    all_migrated_once(&app.env, &t).await;
    app.stop().await;
}

#[test]
fn bad_job_lease_is_a_usage_error_naming_the_variable() {
    let env = crate::common::TestEnv::new(Backend::Sqlite);
    for bad in ["1", "31", "ten", "-3"] {
        for args in [&["upgrade-all", "--job"][..], &["serve"][..]] {
            let run = env.cli_with(args, &[("JOB_LEASE", bad)]);
            run.expect_code(2);
            assert!(
                run.stderr().contains("JOB_LEASE"),
                "JOB_LEASE={bad} {args:?}: {}",
                run.stderr()
            );
        }
    }
}

backend_tests!(
    cancel_reaches_the_replica_running_the_job,
    upgrade_all_succeeds_with_per_tenant_outcomes,
    second_upgrade_all_conflicts_with_the_running_job,
    dry_run_job_changes_nothing,
    cancel_stops_at_a_tenant_boundary,
    sse_streams_one_event_per_tenant_then_the_summary,
    sse_of_a_dry_run_lists_the_plan,
    graceful_shutdown_hands_the_job_off_and_the_restarted_service_finishes_it,
    crashed_job_is_taken_over_without_restart_and_finished,
    job_is_taken_over_once_its_lease_expires_and_not_before,
    slow_but_live_owner_keeps_its_job,
    requests_refused_by_a_dead_job_take_it_over,
    restarted_service_takes_a_dead_job_over,
    two_replicas_racing_for_the_takeover_exactly_one_wins,
    racing_resumes_and_starts_are_refused_with_the_winner,
    resume_of_a_job_resumed_by_another_replica_says_it_runs,
    cli_job_is_a_job_of_the_api,
    killed_cli_job_is_taken_over_by_the_service,
    ctrl_c_leaves_a_cli_job_interrupted_and_resumable,
);
