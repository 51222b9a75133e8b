//! A failing tenant (dirty on MySQL, rolled back elsewhere), continue-on-error and
//! not-attempted tenants, repair, checksum mismatches and vanished files.

mod common;

use common::{Backend, TestEnv, applied_up_to, tenant_of, versions_of};

/// A fourth tenant migration of two statements; a tenant that already has `loyalty_rewards`
/// fails at statement 2, after statement 1 (DDL) committed on MySQL.
const LOYALTY: &str = "CREATE TABLE loyalty_cards (\n    id CHAR(36) NOT NULL PRIMARY KEY,\n    points INTEGER NOT NULL DEFAULT 0\n);\n\nCREATE TABLE loyalty_rewards (\n    id CHAR(36) NOT NULL PRIMARY KEY,\n    card_id CHAR(36) NOT NULL\n);\n";

const CONFLICT_AT_2: &str = "CREATE TABLE loyalty_rewards (x INTEGER)";
const CONFLICT_AT_1: &str = "CREATE TABLE loyalty_cards (x INTEGER)";

fn has(tables: &[String], t: &str) -> bool {
    tables.iter().any(|x| x == t)
}

/// Creates `names` and adds the loyalty migration as 0004.
fn fleet_with_pending(b: Backend, names: &[&str]) -> (TestEnv, Vec<String>) {
    common::fleet_with_pending(b, names, "0004_loyalty.sql", LOYALTY)
}

/// The status a tenant that failed at statement 2 gets: dirty where DDL is not transactional.
fn failed_mid_migration(b: Backend) -> &'static str {
    if b == Backend::MySql {
        "dirty"
    } else {
        "failed"
    }
}

async fn failing_tenant_with_continue_on_error(b: Backend) {
    let (env, t) = fleet_with_pending(b, &["a", "b", "c"]);
    let (a, bad, c) = (&t[0], &t[1], &t[2]);
    let mut admin = env.admin().await;
    admin.exec_in(&env, bad, CONFLICT_AT_2).await;

    let run = env.cli(&["--output", "json", "--continue-on-error", "upgrade-all"]);
    run.expect_code(1);
    let r = run.json();
    assert_eq!(
        (r["successful_migrations"].as_i64(), r["failed"].as_i64()),
        (Some(2), Some(1))
    );
    assert_eq!(r["not_attempted"], 0);
    for ok in [a, c] {
        assert_eq!(tenant_of(&r, ok)["status"], "migrated");
        assert_eq!(admin.history(&env, ok).await, applied_up_to(4));
    }
    let line = tenant_of(&r, bad);
    assert_eq!(line["status"], failed_mid_migration(b), "{line:#}");
    assert_eq!(
        line["attempts"], 1,
        "the failed tenant was tried once: {line:#}"
    );
    let error = line["error"].as_str().expect("error text");
    assert!(
        error.contains("0004_loyalty") && error.contains("statement 2"),
        "{error}"
    );
    let tables = admin.tables(&env, bad).await;
    let mut history = applied_up_to(3);
    if b == Backend::MySql {
        // Statement 1 committed; the history says so, and nothing hides it.
        history.push((4, "failed".into()));
        assert!(has(&tables, "loyalty_cards"), "{tables:?}");
    } else {
        assert!(
            !has(&tables, "loyalty_cards"),
            "not rolled back: {tables:?}"
        );
    }
    assert_eq!(admin.history(&env, bad).await, history);
    let row = admin.catalog_tenant(&env, bad).await.expect("catalog row");
    assert_eq!(
        (row.status.as_str(), row.schema_version),
        ("failed", Some(3))
    );
    assert!(
        row.last_error
            .as_deref()
            .is_some_and(|e| e.contains("statement 2")),
        "{row:?}"
    );
    assert_eq!(
        admin.catalog_tenant(&env, a).await.expect("row").status,
        "active"
    );

    // Until a human repairs it, a dirty tenant is skipped; elsewhere it just fails again.
    let again = env.cli(&["--output", "json", "--continue-on-error", "upgrade-all"]);
    again.expect_code(1);
    let r = again.json();
    let line = tenant_of(&r, bad);
    assert_eq!(line["status"], failed_mid_migration(b), "{line:#}");
    if b == Backend::MySql {
        assert!(
            line["error"]
                .as_str()
                .unwrap_or_default()
                .contains("repair"),
            "{line:#}"
        );
    }
    assert_eq!(tenant_of(&r, a)["status"], "up_to_date");
    assert_eq!(admin.history(&env, bad).await, history);
    let status = env.cli(&["--output", "json", "status", bad]);
    let st = status.json();
    assert_eq!(st["tenants"][0]["dirty"], b == Backend::MySql, "{st:#}");
    status.expect_code(if b == Backend::MySql { 1 } else { 0 });

    // The human removes the conflict (and on MySQL the half-applied table), then repairs.
    admin.exec_in(&env, bad, "DROP TABLE loyalty_rewards").await;
    if b == Backend::MySql {
        admin.exec_in(&env, bad, "DROP TABLE loyalty_cards").await;
    }
    let repair = env.cli(&["--output", "json", "repair", bad]);
    repair.expect_code(0);
    let forgotten = if b == Backend::MySql { vec![4] } else { vec![] };
    assert_eq!(repair.json()["forgotten"], serde_json::json!(forgotten));
    assert_eq!(admin.history(&env, bad).await, applied_up_to(3));

    let fixed = env.cli(&["--output", "json", "upgrade-all"]);
    fixed.expect_code(0);
    let r = fixed.json();
    assert_eq!(tenant_of(&r, bad)["status"], "migrated");
    assert_eq!(versions_of(tenant_of(&r, bad)), vec![4]);
    assert_eq!(admin.history(&env, bad).await, applied_up_to(4));
    let tables = admin.tables(&env, bad).await;
    assert!(
        has(&tables, "loyalty_cards") && has(&tables, "loyalty_rewards"),
        "{tables:?}"
    );
    let row = admin.catalog_tenant(&env, bad).await.expect("catalog row");
    assert_eq!(
        (row.status.as_str(), row.schema_version, row.last_error),
        ("active", Some(4), None)
    );
    env.cleanup().await;
}

async fn without_continue_on_error_later_tenants_are_not_attempted(b: Backend) {
    let (env, t) = fleet_with_pending(b, &["a", "b", "c", "d"]);
    let mut admin = env.admin().await;
    // Tenants run in name order; one at a time makes "later" well defined.
    admin.exec_in(&env, &t[0], CONFLICT_AT_2).await;
    let run = env.cli(&["--output", "json", "--concurrency", "1", "upgrade-all"]);
    run.expect_code(1);
    let r = run.json();
    assert_eq!(tenant_of(&r, &t[0])["status"], failed_mid_migration(b));
    assert_eq!(
        (r["failed"].as_i64(), r["not_attempted"].as_i64()),
        (Some(1), Some(3))
    );
    assert_eq!(r["successful_migrations"], 0);
    for later in &t[1..] {
        let line = tenant_of(&r, later);
        assert_eq!(line["status"], "not_attempted", "{line:#}");
        assert_eq!(
            (line["from"].as_i64(), line["to"].as_i64()),
            (Some(3), Some(3))
        );
        assert_eq!(admin.history(&env, later).await, applied_up_to(3));
        let row = admin.catalog_tenant(&env, later).await.expect("row");
        assert_eq!(
            (row.status.as_str(), row.schema_version),
            ("active", Some(3))
        );
    }

    // Run again: the first tenant still fails (dirty on MySQL, found before any lock is
    // taken; failing again elsewhere), and still nothing starts after it.
    let again = env.cli(&["--output", "json", "--concurrency", "1", "upgrade-all"]);
    again.expect_code(1);
    let r = again.json();
    assert_eq!(
        (r["failed"].as_i64(), r["not_attempted"].as_i64()),
        (Some(1), Some(3)),
        "{r:#}"
    );
    for later in &t[1..] {
        assert_eq!(admin.history(&env, later).await, applied_up_to(3));
    }

    admin
        .exec_in(&env, &t[0], "DROP TABLE loyalty_rewards")
        .await;
    if b == Backend::MySql {
        admin.exec_in(&env, &t[0], "DROP TABLE loyalty_cards").await;
    }
    env.cli(&["repair", &t[0]]).expect_code(0);
    let run = env.cli(&["--output", "json", "--concurrency", "1", "upgrade-all"]);
    run.expect_code(0);
    assert_eq!(run.json()["successful_migrations"], 4);
    for t in &t {
        assert_eq!(admin.history(&env, t).await, applied_up_to(4));
    }
    env.cleanup().await;
}

async fn failure_at_the_first_statement_leaves_the_tenant_clean(b: Backend) {
    let (env, t) = fleet_with_pending(b, &["a"]);
    let a = &t[0];
    let mut admin = env.admin().await;
    admin.exec_in(&env, a, CONFLICT_AT_1).await;
    for _ in 0..2 {
        let run = env.cli(&["--output", "json", "upgrade", a]);
        run.expect_code(1);
        let r = run.json();
        let line = tenant_of(&r, a);
        // Nothing of the migration ran anywhere: failed, never dirty, and tried again next time.
        assert_eq!(line["status"], "failed", "{line:#}");
        assert!(
            line["error"]
                .as_str()
                .unwrap_or_default()
                .contains("statement 1"),
            "{line:#}"
        );
        assert_eq!(admin.history(&env, a).await, applied_up_to(3));
        assert!(
            !admin
                .tables(&env, a)
                .await
                .contains(&"loyalty_rewards".to_owned())
        );
    }
    admin.exec_in(&env, a, "DROP TABLE loyalty_cards").await;
    let run = env.cli(&["--output", "json", "upgrade", a]);
    run.expect_code(0);
    assert_eq!(tenant_of(&run.json(), a)["status"], "migrated");
    assert_eq!(admin.history(&env, a).await, applied_up_to(4));
    env.cleanup().await;
}

async fn create_into_a_foreign_schema_is_refused_and_changes_nothing(b: Backend) {
    let env = TestEnv::new(b);
    let x = env.tenant("x");
    let mut admin = env.admin().await;
    // Another application's schema, with a table the migrations also create (`services`)
    // and one they do not: never migrated into.
    admin.create_schema(&env, &x).await;
    admin
        .exec_in(
            &env,
            &x,
            "CREATE TABLE services (x INTEGER); CREATE TABLE invoices (y INTEGER)",
        )
        .await;
    admin
        .exec_in(&env, &x, "INSERT INTO invoices VALUES (7)")
        .await;
    // The catalog exists (created by an earlier tenant) so the refusal is the only change
    // asked for.
    let other = env.tenant("other");
    env.cli(&["create", &other]).expect_code(0);
    let before = admin.tables(&env, &x).await;

    let run = env.cli(&["--output", "json", "create", &x]);
    run.expect_code(1);
    let r = run.json();
    let line = tenant_of(&r, &x);
    assert_eq!(line["status"], "foreign", "{line:#}");
    let error = line["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("not made by tenant-migrator") && error.contains("invoices"),
        "{line:#}"
    );
    assert_eq!(
        admin.tables(&env, &x).await,
        before,
        "nothing changed in the schema"
    );
    assert_eq!(admin.count(&env, &x, "invoices").await, 1);
    assert!(
        admin.catalog_tenant(&env, &x).await.is_none(),
        "no catalog row is left behind"
    );

    // Without --continue-on-error the run stops there: the tenant after it is not attempted
    // and keeps no catalog row either.
    let later = env.tenant("later");
    let run = env.cli(&[
        "--output",
        "json",
        "create",
        &x,
        &later,
        "--concurrency",
        "1",
    ]);
    run.expect_code(1);
    let r = run.json();
    assert_eq!(tenant_of(&r, &later)["status"], "not_attempted", "{r:#}");
    assert!(admin.catalog_tenant(&env, &later).await.is_none());
    assert!(!env.schemas().await.contains(&later));

    // Even a schema holding only tables the migrations create is refused when no earlier
    // `create` of this tool made it.
    admin.exec_in(&env, &x, "DROP TABLE invoices").await;
    let run = env.cli(&["--output", "json", "create", &x]);
    run.expect_code(1);
    assert_eq!(tenant_of(&run.json(), &x)["status"], "foreign");
    assert!(admin.catalog_tenant(&env, &x).await.is_none());
    env.cleanup().await;
}

async fn failed_create_leaves_nothing_and_is_resumed_by_create(b: Backend) {
    let mut env = TestEnv::new(b);
    env.own_migrations();
    let x = env.tenant("x");
    // A fourth migration whose second statement fails: everything of the tenant is undone.
    env.add_tenant_migration("0004_broken.sql", |_| {
        "CREATE TABLE loyalty_cards (id INTEGER NOT NULL PRIMARY KEY);\n\nCREATE TABLE services (x INTEGER);\n".into()
    });
    let run = env.cli(&["--output", "json", "create", &x]);
    run.expect_code(1);
    let r = run.json();
    let line = tenant_of(&r, &x);
    assert_eq!(line["status"], "failed", "{line:#}");
    let error = line["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("0004_broken") && error.contains("statement 2"),
        "{line:#}"
    );
    let mut admin = env.admin().await;
    assert!(
        !env.schemas().await.contains(&x),
        "a failed create leaves no schema behind"
    );
    let row = admin.catalog_tenant(&env, &x).await.expect("catalog row");
    assert_eq!((row.status.as_str(), row.schema_version), ("failed", None));
    assert!(row.last_error.is_some());

    std::fs::write(
        env.migration_file("tenant", b, "0004_broken.sql"),
        "CREATE TABLE loyalty_cards (id INTEGER NOT NULL PRIMARY KEY);\n",
    )
    .expect("write");
    let run = env.cli(&["--output", "json", "create", &x]);
    run.expect_code(0);
    let r = run.json();
    assert_eq!(tenant_of(&r, &x)["status"], "created");
    assert_eq!(admin.history(&env, &x).await, applied_up_to(4));
    let row = admin.catalog_tenant(&env, &x).await.expect("catalog row");
    assert_eq!(
        (row.status.as_str(), row.schema_version, row.last_error),
        ("active", Some(4), None)
    );
    env.cleanup().await;
}

async fn edited_applied_file_is_a_checksum_mismatch(b: Backend) {
    let (env, t) = fleet_with_pending(b, &["a", "c"]);
    let (a, c) = (&t[0], &t[1]);
    let file = env.migration_file("tenant", b, "0002_appointments.sql");
    let mut bytes = std::fs::read(&file).expect("read");
    bytes.extend_from_slice(b"\n-- edited after it was applied\n");
    std::fs::write(&file, bytes).expect("write");

    let mut admin = env.admin().await;
    let run = env.cli(&["--output", "json", "upgrade-all"]);
    run.expect_code(1);
    let r = run.json();
    assert_eq!(
        (r["failed"].as_i64(), r["migrations_applied"].as_i64()),
        (Some(2), Some(0))
    );
    for t in [a, c] {
        let line = tenant_of(&r, t);
        assert_eq!(line["status"], "checksum_mismatch", "{line:#}");
        assert!(
            line["error"]
                .as_str()
                .unwrap_or_default()
                .contains("0002_appointments"),
            "{line:#}"
        );
        // Nothing ran: not the edited file again, not the pending one.
        assert_eq!(admin.history(&env, t).await, applied_up_to(3));
        assert!(
            !admin
                .tables(&env, t)
                .await
                .contains(&"loyalty_cards".to_owned())
        );
    }
    let status = env.cli(&["--output", "json", "status", a]);
    status.expect_code(1);
    assert_eq!(
        status.json()["tenants"][0]["problems"][0]["kind"],
        "checksum_mismatch"
    );

    // Plain repair does not paper over an edited file.
    let plain = env.cli(&["--output", "json", "repair", a]);
    plain.expect_code(1);
    assert_eq!(plain.json()["remaining"][0]["kind"], "checksum_mismatch");

    let accept = env.cli(&["--output", "json", "repair", a, "--accept-checksums"]);
    accept.expect_code(0);
    assert_eq!(accept.json()["checksums_accepted"], serde_json::json!([2]));
    let run = env.cli(&["--output", "json", "--continue-on-error", "upgrade-all"]);
    run.expect_code(1);
    let r = run.json();
    assert_eq!(tenant_of(&r, a)["status"], "migrated");
    assert_eq!(tenant_of(&r, c)["status"], "checksum_mismatch");
    assert_eq!(admin.history(&env, a).await, applied_up_to(4));
    assert_eq!(admin.history(&env, c).await, applied_up_to(3));

    env.cli(&["repair", c, "--accept-checksums"]).expect_code(0);
    env.cli(&["upgrade-all"]).expect_code(0);
    assert_eq!(admin.history(&env, c).await, applied_up_to(4));
    env.cli(&["status"]).expect_code(0);
    env.cleanup().await;
}

async fn vanished_applied_file_is_reported(b: Backend) {
    let (env, t) = fleet_with_pending(b, &["a"]);
    for d in [Backend::MySql, Backend::Postgres, Backend::Sqlite] {
        std::fs::remove_file(env.migration_file("tenant", d, "0003_professional_schedule.sql"))
            .expect("rm");
    }
    let run = env.cli(&["--output", "json", "upgrade-all"]);
    run.expect_code(1);
    let r = run.json();
    let line = tenant_of(&r, &t[0]);
    assert_eq!(line["status"], "checksum_mismatch", "{line:#}");
    assert!(
        line["error"].as_str().unwrap_or_default().contains("0003"),
        "{line:#}"
    );
    let mut admin = env.admin().await;
    assert_eq!(admin.history(&env, &t[0]).await, applied_up_to(3));
    env.cleanup().await;
}

backend_tests!(
    failing_tenant_with_continue_on_error,
    without_continue_on_error_later_tenants_are_not_attempted,
    failure_at_the_first_statement_leaves_the_tenant_clean,
    create_into_a_foreign_schema_is_refused_and_changes_nothing,
    failed_create_leaves_nothing_and_is_resumed_by_create,
    edited_applied_file_is_a_checksum_mismatch,
    vanished_applied_file_is_reported,
);

/// MySQL: a human who finished the half-applied migration by hand records it as applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_dirty_tenant_completed_by_hand_is_marked_applied() {
    let (env, t) = fleet_with_pending(Backend::MySql, &["a"]);
    let a = &t[0];
    let mut admin = env.admin().await;
    admin.exec_in(&env, a, CONFLICT_AT_2).await;
    env.cli(&["upgrade", a]).expect_code(1);
    let rows = admin.rows(&env, a, "_tenant_migrations").await;
    let failed = rows
        .iter()
        .find(|r| r.starts_with("4|"))
        .expect("row of 0004");
    // The row says which statement failed and what the server said.
    assert!(
        failed.contains("|failed|") && failed.contains("statement 2") && failed.contains("1050"),
        "{failed}"
    );

    admin
        .exec_in(
            &env,
            a,
            "DROP TABLE loyalty_rewards; CREATE TABLE loyalty_rewards (id CHAR(36) NOT NULL PRIMARY KEY, card_id CHAR(36) NOT NULL)",
        )
        .await;
    let repair = env.cli(&["--output", "json", "repair", a, "--mark-applied"]);
    repair.expect_code(0);
    assert_eq!(repair.json()["marked_applied"], serde_json::json!([4]));
    assert_eq!(admin.history(&env, a).await, applied_up_to(4));
    let run = env.cli(&["--output", "json", "upgrade-all"]);
    run.expect_code(0);
    assert_eq!(tenant_of(&run.json(), a)["status"], "up_to_date");
    env.cli(&["status", a]).expect_code(0);
    env.cleanup().await;
}

/// MySQL keeps the server's message in the dirty row as it was, quotes, backslashes and
/// non-ASCII text included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_dirty_row_keeps_the_servers_message_verbatim() {
    let mut env = TestEnv::new(Backend::MySql);
    env.own_migrations();
    let a = env.tenant("a");
    env.cli(&["create", &a]).expect_code(0);
    env.add_tenant_migration("0004_bad.sql", |_| {
        "CREATE TABLE loyalty_cards (id CHAR(36) NOT NULL PRIMARY KEY);\nCREATE TABLE bad (x INT) GARBAGE 'ção \\\\ \"q\"';\n".into()
    });
    let run = env.cli(&["--output", "json", "upgrade", &a]);
    run.expect_code(1);
    let r = run.json();
    let reported = tenant_of(&r, &a)["error"]
        .as_str()
        .expect("error")
        .to_owned();
    assert!(
        reported.contains("1064") && reported.contains("'ção \\\\ \"q\"'"),
        "{reported}"
    );
    let mut admin = env.admin().await;
    let errors = admin
        .strings(
            &env,
            &a,
            "SELECT error FROM _tenant_migrations WHERE version = 4",
        )
        .await;
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("'ção \\\\ \"q\"'"), "{}", errors[0]);
    assert_eq!(errors[0], reported, "the row records what the report says");
    let status = env.cli(&["--output", "json", "status", &a]);
    status.expect_code(1);
    let problem = &status.json()["tenants"][0]["problems"][0];
    assert_eq!(problem["kind"], "dirty");
    assert_eq!(problem["state"], "failed");
    assert!(
        problem["error"]
            .as_str()
            .unwrap_or_default()
            .contains("ção"),
        "{problem:#}"
    );
    env.cleanup().await;
}

/// SQLite: one damaged tenant file is that tenant's failure, named with its path; the rest of
/// the fleet is migrated and reported as usual, by `upgrade-all` and by `status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_corrupt_tenant_file_fails_only_that_tenant() {
    let (env, t) = fleet_with_pending(Backend::Sqlite, &["a", "bad", "c"]);
    let bad = env.sqlite_file(&t[1]);
    std::fs::write(
        &bad,
        b"this is not a database file, just some bytes left by a bad copy",
    )
    .expect("corrupt the file");

    let status = env.cli(&["--output", "json", "status"]);
    status.expect_code(1);
    let doc = status.json();
    let text = doc.to_string();
    let bad_line = doc["tenants"]
        .as_array()
        .and_then(|ts| ts.iter().find(|x| x["schema"] == t[1].as_str()))
        .unwrap_or_else(|| panic!("the bad tenant is listed: {doc:#}"));
    assert_eq!(
        bad_line["problems"][0]["kind"], "unreadable",
        "{bad_line:#}"
    );
    assert!(
        text.contains(&bad.display().to_string()),
        "the path is named: {doc:#}"
    );

    let run = env.cli(&["--output", "json", "--continue-on-error", "upgrade-all"]);
    run.expect_code(1);
    let r = run.json();
    let line = tenant_of(&r, &t[1]);
    assert_eq!(line["status"], "failed", "{line:#}");
    let error = line["error"].as_str().unwrap_or_default();
    assert!(error.contains("cannot be read"), "{error}");
    assert!(
        error.contains(&bad.display().to_string()),
        "the path is named: {error}"
    );
    for good in [&t[0], &t[2]] {
        assert_eq!(tenant_of(&r, good)["status"], "migrated", "{r:#}");
    }
    let mut admin = env.admin().await;
    for good in [&t[0], &t[2]] {
        assert_eq!(admin.history(&env, good).await, applied_up_to(4));
    }
    // The damaged file is left as it was, for a person to look at.
    assert_eq!(
        std::fs::read(&bad).expect("still there"),
        b"this is not a database file, just some bytes left by a bad copy"
    );
    env.cleanup().await;
}
