//! Provisioning in one piece: a `create` killed half-way through building a tenant is
//! resumed by the next `create`, which replaces the unfinished build.

mod common;

use common::{Admin, Backend, Deadline, TestEnv, applied_up_to, tenant_of};

const CARDS: &str = "CREATE TABLE loyalty_cards (id INTEGER NOT NULL PRIMARY KEY);\n";

/// A number no other test uses for its blocking lock.
fn blocker_key(env: &TestEnv) -> i64 {
    let hex = env.prefix.trim_start_matches('t').trim_end_matches('_');
    i64::from_str_radix(hex, 16).expect("hex prefix") + 7_000_000_000
}

/// A fourth migration that, once `loyalty_cards` is made, waits for a lock this test holds
/// (on SQLite, which has none to wait for, a computation of many minutes).
fn blocking_migration(b: Backend, key: i64) -> String {
    match b {
        Backend::MySql => format!("{CARDS}\nDO GET_LOCK('blocker_{key}', 600);\n"),
        Backend::Postgres => format!("{CARDS}\nSELECT pg_advisory_xact_lock({key});\n"),
        Backend::Sqlite => format!(
            "{CARDS}\nWITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c \
             WHERE x < 100000000000) SELECT count(*) FROM c;\n"
        ),
    }
}

/// Waits until the build is inside the blocking migration.
async fn until_blocked(env: &TestEnv, admin: &mut Admin, x: &str, key: i64) {
    let deadline = Deadline::new("the create to reach its blocking statement", 60);
    loop {
        let blocked = match admin {
            Admin::MySql(_) => {
                let sql = format!(
                    "SELECT CAST(COUNT(*) AS CHAR) FROM information_schema.PROCESSLIST \
                     WHERE STATE = 'User lock' AND INFO LIKE '%blocker\\_{key}%'"
                );
                admin.strings(env, &env.catalog, &sql).await == ["1"]
            }
            Admin::Postgres(_) => {
                let sql = format!(
                    "SELECT count(*)::text FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                     AND query LIKE '%pg_advisory_xact_lock({key})%'"
                );
                admin.strings(env, "public", &sql).await == ["1"]
            }
            // A write transaction on the file is open.
            Admin::Sqlite(..) => {
                let mut journal = env.sqlite_path(x).into_os_string();
                journal.push("-journal");
                std::path::Path::new(&journal).exists()
            }
        };
        if blocked {
            return;
        }
        deadline.check().await;
    }
}

async fn killed_create_is_resumed_by_the_next_create(b: Backend) {
    let mut env = TestEnv::new(b);
    env.own_migrations();
    let x = env.tenant("x");
    let key = blocker_key(&env);
    // The catalog first, so the create below has only the tenant to build.
    env.cli(&["create", &env.tenant("first")]).expect_code(0);
    env.add_tenant_migration("0004_loyalty.sql", |d| blocking_migration(d, key));
    let mut admin = env.admin().await;
    if b == Backend::MySql {
        admin
            .exec(&format!("DO GET_LOCK('blocker_{key}', 0)"))
            .await;
    }
    if b == Backend::Postgres {
        admin.exec(&format!("SELECT pg_advisory_lock({key})")).await;
    }

    let mut child = env.spawn(&["create", &x]);
    until_blocked(&env, &mut admin, &x, key).await;
    child.kill().expect("kill");
    let _ = child.wait();
    let row = admin.catalog_tenant(&env, &x).await.expect("catalog row");
    assert_eq!(row.status, "provisioning");
    if b == Backend::MySql {
        // What a killed build leaves on MySQL: a database without history.
        let tables = admin.tables(&env, &x).await;
        assert!(tables.iter().any(|t| t == "loyalty_cards"), "{tables:?}");
        assert!(
            !tables.iter().any(|t| t == "_tenant_migrations"),
            "{tables:?}"
        );
    }
    // The server's side of the dead session goes on once the blocker is gone.
    match b {
        Backend::MySql => {
            admin
                .exec(&format!("DO RELEASE_LOCK('blocker_{key}')"))
                .await
        }
        Backend::Postgres => {
            admin
                .exec(&format!("SELECT pg_advisory_unlock({key})"))
                .await
        }
        Backend::Sqlite => {}
    }

    std::fs::write(env.migration_file("tenant", b, "0004_loyalty.sql"), CARDS).expect("write");
    // With a pool of one connection: what the unfinished build holds is read through the
    // session's own connection, never a second one from the pool.
    let run = env.cli_with(
        &["--output", "json", "create", &x],
        &[("TENANT_ENGINE_POOL_SIZE", "1")],
    );
    run.expect_code(0);
    let r = run.json();
    assert_eq!(tenant_of(&r, &x)["status"], "created", "{r:#}");
    assert_eq!(admin.history(&env, &x).await, applied_up_to(4));
    // 7 tables of the first migrations, `loyalty_cards` and the history.
    assert_eq!(admin.tables(&env, &x).await.len(), 9);
    let row = admin.catalog_tenant(&env, &x).await.expect("catalog row");
    assert_eq!(
        (row.status.as_str(), row.schema_version, row.last_error),
        ("active", Some(4), None)
    );
    env.cleanup().await;
}

backend_tests!(killed_create_is_resumed_by_the_next_create);
