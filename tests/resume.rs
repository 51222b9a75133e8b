//! MySQL/MariaDB crash safety: a migration interrupted half-way (its process killed, its
//! connection lost) is resumed by the next run after the statements its history row counts,
//! the statement in doubt checked against the live schema; `status` tells a live migration
//! from an interrupted one; `repair` will not forget a migration whose effects are present.

mod common;

use common::{Backend, TestEnv, applied_up_to, tenant_of};
use tenant_migrator::migrate::source::checksum;

/// Four statements: DDL on an existing table, a new table, a data change, an index.
const LOYALTY: &str = "ALTER TABLE users_tenant ADD COLUMN loyalty_points INT NOT NULL DEFAULT 0;\n\nCREATE TABLE loyalty_cards (\n    id INT NOT NULL PRIMARY KEY,\n    points INT NOT NULL\n);\n\nINSERT INTO loyalty_cards (id, points) VALUES (1, 10), (2, 20);\n\nCREATE INDEX ix_loyalty_points ON loyalty_cards (points);\n";

const S1: &str = "ALTER TABLE users_tenant ADD COLUMN loyalty_points INT NOT NULL DEFAULT 0";
const S2: &str = "CREATE TABLE loyalty_cards (id INT NOT NULL PRIMARY KEY, points INT NOT NULL)";
const S3: &str = "INSERT INTO loyalty_cards (id, points) VALUES (1, 10), (2, 20)";

/// Creates `names` at version 3 and adds `sql` as 0004_loyalty.
fn fleet(names: &[&str], sql: &'static str) -> (TestEnv, Vec<String>) {
    let mut env = TestEnv::new(Backend::MySql);
    env.own_migrations();
    let tenants: Vec<String> = names.iter().map(|s| env.tenant(s)).collect();
    let mut args = vec!["create"];
    args.extend(tenants.iter().map(String::as_str));
    env.cli(&args).expect_code(0);
    env.add_tenant_migration("0004_loyalty.sql", |_| sql.into());
    (env, tenants)
}

/// What a run killed mid-migration leaves: the `running` row counting `done` statements.
fn running_row(sql: &str, done: i64) -> String {
    format!(
        "INSERT INTO _tenant_migrations (version, name, checksum, state, statements_done, started_at) \
         VALUES (4, 'loyalty', '{}', 'running', {done}, NOW(6))",
        checksum(sql.as_bytes())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_migrations_resume_after_their_counted_statements() {
    let (env, t) = fleet(&["a", "b", "c", "d", "e"], LOYALTY);
    let mut admin = env.admin().await;
    // a: killed after statement 2 was counted (the INSERT never committed: it commits with
    //    its count). b: killed after statement 2 ran but before its count was written.
    // c: killed after statement 1 was counted, statement 2 never started. d: killed after
    //    every statement was counted, before the row became `applied`.
    admin
        .exec_in(
            &env,
            &t[0],
            &format!("{S1}; {S2}; {}", running_row(LOYALTY, 2)),
        )
        .await;
    admin
        .exec_in(
            &env,
            &t[1],
            &format!("{S1}; {S2}; {}", running_row(LOYALTY, 1)),
        )
        .await;
    admin
        .exec_in(&env, &t[2], &format!("{S1}; {}", running_row(LOYALTY, 1)))
        .await;
    admin
        .exec_in(
            &env,
            &t[3],
            &format!(
                "{S1}; {S2}; {S3}; CREATE INDEX ix_loyalty_points ON loyalty_cards (points); {}",
                running_row(LOYALTY, 4)
            ),
        )
        .await;

    // e: statement 1 is not counted (nothing later in the migration touches its table, so
    //    the schema shows whether it ran); killed after statement 2 ran, before its count.
    admin
        .exec_in(
            &env,
            &t[4],
            &format!("{S1}; {S2}; {}", running_row(LOYALTY, 0)),
        )
        .await;

    // Nobody holds the lock: interrupted, and the next run resumes it. Not dirty.
    let status = env.cli(&["--output", "json", "status", &t[0]]);
    let st = status.json();
    let problem = &st["tenants"][0]["problems"][0];
    assert_eq!(problem["kind"], "interrupted", "{st:#}");
    assert_eq!(problem["statements_done"], 2);
    assert_eq!(problem["statements"], 4);
    assert_eq!(problem["resumable"], true);
    assert_eq!(st["tenants"][0]["dirty"], false);
    let text = env.cli(&["status", &t[0]]);
    assert!(
        text.stdout().contains("interrupted (no owner)")
            && text.stdout().contains("after statement 2 of 4"),
        "{}",
        text.stdout()
    );

    // A live session holding the lock: in progress, not interrupted.
    let mut holder = env.admin().await;
    holder.take_lock(&t[0]).await;
    let st = env.cli(&["--output", "json", "status", &t[0]]).json();
    let problem = &st["tenants"][0]["problems"][0];
    assert_eq!(problem["kind"], "in_progress", "{st:#}");
    assert!(
        problem["holder"]
            .as_str()
            .is_some_and(|h| h.starts_with("connection ")),
        "{problem:#}"
    );
    let text = env.cli(&["status", &t[0]]);
    assert!(
        text.stdout().contains("lock held by a live session"),
        "{}",
        text.stdout()
    );
    drop(holder);

    let run = env.cli(&["--output", "json", "--continue-on-error", "upgrade-all"]);
    run.expect_code(0);
    let r = run.json();
    for (schema, after) in [(&t[0], 2), (&t[1], 2), (&t[2], 1), (&t[3], 4), (&t[4], 2)] {
        let line = tenant_of(&r, schema);
        assert_eq!(line["status"], "migrated", "{line:#}");
        assert_eq!(line["migrations"][0]["resumed_after"], after, "{line:#}");
        assert_eq!(admin.history(&env, schema).await, applied_up_to(4));
        // The data change ran exactly once.
        assert_eq!(admin.count(&env, schema, "loyalty_cards").await, 2);
        let resumed = admin
            .strings(
                &env,
                schema,
                "SELECT CONCAT(statements_done, '/', resumed_after) FROM _tenant_migrations WHERE version = 4",
            )
            .await;
        assert_eq!(resumed, vec![format!("4/{after}")], "{schema}");
        let idx = admin
            .strings(
                &env,
                schema,
                "SELECT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND INDEX_NAME = 'ix_loyalty_points'",
            )
            .await;
        assert_eq!(idx.len(), 1, "{schema}: {idx:?}");
    }
    env.cli(&["status"]).expect_code(0);
    env.cleanup().await;
}

/// An interrupted statement whose effect the schema cannot show leaves the tenant dirty, named
/// with its statement and line; `repair` does not forget what ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_in_doubt_that_cannot_be_seen_needs_a_person() {
    const OPAQUE: &str = "CREATE TABLE loyalty_cards (id INT NOT NULL PRIMARY KEY, points INT NOT NULL);\n\nALTER TABLE loyalty_cards ADD INDEX (points);\n";
    let (env, t) = fleet(&["a"], OPAQUE);
    let a = &t[0];
    let mut admin = env.admin().await;
    admin
        .exec_in(
            &env,
            a,
            &format!(
                "CREATE TABLE loyalty_cards (id INT NOT NULL PRIMARY KEY, points INT NOT NULL); {}",
                running_row(OPAQUE, 1)
            ),
        )
        .await;
    let st = env.cli(&["--output", "json", "status", a]).json();
    let problem = &st["tenants"][0]["problems"][0];
    assert_eq!(problem["kind"], "interrupted", "{st:#}");
    assert_eq!(problem["resumable"], false);
    assert_eq!(st["tenants"][0]["dirty"], true);

    let run = env.cli(&["--output", "json", "upgrade", a]);
    run.expect_code(1);
    let line = tenant_of(&run.json(), a).clone();
    assert_eq!(line["status"], "dirty", "{line:#}");
    let error = line["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("statement 2 (line 3") && error.contains("ADD INDEX (points)"),
        "{error}"
    );
    assert_eq!(
        admin.history(&env, a).await.last(),
        Some(&(4, "failed".to_owned()))
    );

    // Statement 1 ran and its table is there: plain repair refuses, a dry run writes nothing.
    let before = admin.rows(&env, a, "_tenant_migrations").await;
    for args in [
        vec!["--output", "json", "repair", a],
        vec!["--output", "json", "--dry-run", "repair", a],
    ] {
        let repair = env.cli(&args);
        repair.expect_code(1);
        let r = repair.json();
        assert_eq!(r["forgotten"], serde_json::json!([]), "{r:#}");
        assert_eq!(r["remaining"][0]["kind"], "partly_applied", "{r:#}");
        assert!(
            r["remaining"][0]["evidence"]
                .as_str()
                .is_some_and(|e| e.contains("table loyalty_cards exists")),
            "{r:#}"
        );
        assert_eq!(admin.rows(&env, a, "_tenant_migrations").await, before);
    }
    // The person finishes the statement by hand and records the migration as applied.
    admin
        .exec_in(&env, a, "ALTER TABLE loyalty_cards ADD INDEX (points)")
        .await;
    let dry = env.cli(&[
        "--output",
        "json",
        "--dry-run",
        "repair",
        a,
        "--mark-applied",
    ]);
    dry.expect_code(0);
    assert_eq!(dry.json()["marked_applied"], serde_json::json!([4]));
    assert_eq!(admin.rows(&env, a, "_tenant_migrations").await, before);
    env.cli(&["repair", a, "--mark-applied"]).expect_code(0);
    assert_eq!(admin.history(&env, a).await, applied_up_to(4));
    env.cleanup().await;
}

/// A failed migration whose first statement committed: plain `repair` refuses to forget it
/// while the table is there, forgets it once the person dropped it, and `--force` forgets it
/// regardless.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_looks_at_the_live_schema_before_forgetting() {
    const TWO: &str = "CREATE TABLE loyalty_cards (id INT NOT NULL PRIMARY KEY);\n\nCREATE TABLE loyalty_rewards (id INT NOT NULL PRIMARY KEY);\n";
    let (env, t) = fleet(&["a", "b"], TWO);
    let mut admin = env.admin().await;
    for s in &t {
        admin
            .exec_in(&env, s, "CREATE TABLE loyalty_rewards (x INT)")
            .await;
    }
    let run = env.cli(&["--output", "json", "--continue-on-error", "upgrade-all"]);
    run.expect_code(1);
    for s in &t {
        assert_eq!(tenant_of(&run.json(), s)["status"], "dirty");
        admin.exec_in(&env, s, "DROP TABLE loyalty_rewards").await;
    }
    let (a, b) = (&t[0], &t[1]);

    let refused = env.cli(&["--output", "json", "repair", a]);
    refused.expect_code(1);
    assert_eq!(refused.json()["remaining"][0]["kind"], "partly_applied");
    assert!(
        env.cli(&["repair", a])
            .stdout()
            .contains("may be partly applied"),
    );
    // Running it again from statement 1 would fail: the table is still there.
    assert_eq!(
        admin.history(&env, a).await.last(),
        Some(&(4, "failed".to_owned()))
    );

    admin.exec_in(&env, a, "DROP TABLE loyalty_cards").await;
    let forgot = env.cli(&["--output", "json", "repair", a]);
    forgot.expect_code(0);
    assert_eq!(forgot.json()["forgotten"], serde_json::json!([4]));

    let forced = env.cli(&["--output", "json", "repair", b, "--force"]);
    forced.expect_code(0);
    assert_eq!(forced.json()["forgotten"], serde_json::json!([4]));
    admin.exec_in(&env, b, "DROP TABLE loyalty_cards").await;

    let run = env.cli(&["--output", "json", "upgrade-all"]);
    run.expect_code(0);
    for s in &t {
        assert_eq!(admin.history(&env, s).await, applied_up_to(4));
    }
    env.cleanup().await;
}

/// A connection lost in the middle of a migration: the row stays `running` with its count,
/// the retry takes the lock and resumes after the counted statements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_mid_migration_is_retried_and_resumed() {
    const SLOW: &str = "CREATE TABLE loyalty_cards (id INT NOT NULL PRIMARY KEY);\n\nDO SLEEP(2);\n\nINSERT INTO loyalty_cards (id) VALUES (1);\n";
    let (env, t) = fleet(&["a"], SLOW);
    let a = &t[0];
    let mut admin = env.admin().await;
    let child = env.spawn(&["--output", "json", "upgrade", a]);
    // The migration's connection, seen sleeping in statement 2.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let id = loop {
        let ids = admin
            .strings(
                &env,
                a,
                "SELECT CAST(ID AS CHAR) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'DO SLEEP(2)%'",
            )
            .await;
        if let Some(id) = ids.into_iter().next() {
            break id;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the migration never reached statement 2"
        );
        tokio::task::yield_now().await;
    };
    admin.exec(&format!("KILL CONNECTION {id}")).await;
    let out = child.wait_with_output().expect("cli ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_str(&stdout).expect("json report");
    let line = tenant_of(&r, a);
    assert_eq!(line["status"], "migrated", "{line:#}");
    assert_eq!(line["attempts"], 2, "{line:#}");
    assert_eq!(line["migrations"][0]["resumed_after"], 1, "{line:#}");
    assert_eq!(admin.count(&env, a, "loyalty_cards").await, 1);
    assert_eq!(admin.history(&env, a).await, applied_up_to(4));
    env.cleanup().await;
}

/// A history table made by a version without the progress columns gets them at the next
/// locked run, and is read as it is until then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_history_table_gets_its_progress_columns() {
    const ONE: &str = "CREATE TABLE loyalty_cards (id INT NOT NULL PRIMARY KEY);\n";
    let (env, t) = fleet(&["a"], ONE);
    let a = &t[0];
    let mut admin = env.admin().await;
    admin
        .exec_in(
            &env,
            a,
            "ALTER TABLE _tenant_migrations DROP COLUMN statements_done, DROP COLUMN resumed_after",
        )
        .await;
    let st = env.cli(&["--output", "json", "status", a]).json();
    assert_eq!(
        st["tenants"][0]["pending"],
        serde_json::json!([4]),
        "{st:#}"
    );
    env.cli(&["upgrade", a]).expect_code(0);
    assert_eq!(admin.history(&env, a).await, applied_up_to(4));
    let cols = admin
        .strings(
            &env,
            a,
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '_tenant_migrations' AND COLUMN_NAME IN ('statements_done', 'resumed_after') ORDER BY 1",
        )
        .await;
    assert_eq!(cols, vec!["resumed_after", "statements_done"]);
    env.cleanup().await;
}

/// An unnamed foreign key in doubt is found by its columns and referenced table: a resumed run
/// neither adds a second one (MySQL would, silently) nor leaves it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unnamed_foreign_key_in_doubt_is_found_by_its_columns() {
    const FK: &str = "CREATE TABLE loyalty_cards (id INT NOT NULL PRIMARY KEY, user_id CHAR(36) NULL) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;\n\nALTER TABLE loyalty_cards ADD FOREIGN KEY (user_id) REFERENCES users_tenant (id);\n\nINSERT INTO loyalty_cards (id) VALUES (1);\n";
    const CREATE: &str = "CREATE TABLE loyalty_cards (id INT NOT NULL PRIMARY KEY, user_id CHAR(36) NULL) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci";
    const ADD_FK: &str =
        "ALTER TABLE loyalty_cards ADD FOREIGN KEY (user_id) REFERENCES users_tenant (id)";
    let (env, t) = fleet(&["a", "b"], FK);
    let mut admin = env.admin().await;
    // a: statement 2 ran, its count did not; b: statement 2 never ran.
    admin
        .exec_in(
            &env,
            &t[0],
            &format!("{CREATE}; {ADD_FK}; {}", running_row(FK, 1)),
        )
        .await;
    admin
        .exec_in(&env, &t[1], &format!("{CREATE}; {}", running_row(FK, 1)))
        .await;
    let run = env.cli(&["--output", "json", "--continue-on-error", "upgrade-all"]);
    run.expect_code(0);
    for (schema, after) in [(&t[0], 2), (&t[1], 1)] {
        let line = tenant_of(&run.json(), schema).clone();
        assert_eq!(line["migrations"][0]["resumed_after"], after, "{line:#}");
        let fks = admin
            .strings(
                &env,
                schema,
                "SELECT CONSTRAINT_NAME FROM information_schema.TABLE_CONSTRAINTS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'loyalty_cards' AND CONSTRAINT_TYPE = 'FOREIGN KEY'",
            )
            .await;
        assert_eq!(fks.len(), 1, "{schema}: {fks:?}");
        assert_eq!(admin.count(&env, schema, "loyalty_cards").await, 1);
        assert_eq!(admin.history(&env, schema).await, applied_up_to(4));
    }
    env.cleanup().await;
}
