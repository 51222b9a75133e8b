//! Provisioning, fleet upgrades, `--target` and dry runs, on every backend.

mod common;

use common::{Backend, TestEnv, applied_up_to, catalog_latest, tenant_of, versions_of};

const TENANT_TABLES: [&str; 8] = [
    "_tenant_migrations",
    "appointments",
    "professional_availabilities",
    "professional_blocked_times",
    "professional_breaks",
    "service_categories",
    "services",
    "users_tenant",
];

/// A fourth tenant migration: a new table and a new column on an existing one.
const LOYALTY: &str = "CREATE TABLE loyalty_cards (\n    id CHAR(36) NOT NULL PRIMARY KEY,\n    points INTEGER NOT NULL DEFAULT 0\n);\nALTER TABLE users_tenant ADD COLUMN loyalty_tier VARCHAR(20) NULL;\n";

fn with_loyalty() -> Vec<String> {
    let mut v: Vec<String> = TENANT_TABLES.iter().map(|s| (*s).to_owned()).collect();
    v.push("loyalty_cards".into());
    v.sort();
    v
}

async fn provisioning_creates_every_table_and_history(b: Backend) {
    let env = TestEnv::new(b);
    let (a, c) = (env.tenant("a"), env.tenant("c"));
    let run = env.cli(&["--output", "json", "create", &a, &c]);
    run.expect_code(0);
    let report = run.json();
    assert_eq!(report["successful_migrations"], 2);
    assert_eq!(report["failed"], 0);
    assert_eq!(report["migrations_applied"], 6);
    for t in [&a, &c] {
        let line = tenant_of(&report, t);
        assert_eq!(line["status"], "created");
        assert_eq!(line["from"], serde_json::Value::Null);
        assert_eq!(line["to"], 3);
        assert_eq!(versions_of(line), vec![1, 2, 3]);
    }
    let mut admin = env.admin().await;
    for t in [&a, &c] {
        assert_eq!(admin.tables(&env, t).await, TENANT_TABLES, "tables of {t}");
        assert_eq!(
            admin.history(&env, t).await,
            applied_up_to(3),
            "history of {t}"
        );
        let row = admin.catalog_tenant(&env, t).await.expect("catalog row");
        assert_eq!(
            (row.status.as_str(), row.schema_version),
            ("active", Some(3))
        );
        assert_eq!(row.last_error, None);
    }
    // The catalog migrated itself on the way, with its own history.
    assert_eq!(
        admin.history(&env, &env.catalog).await,
        applied_up_to(catalog_latest())
    );
    // Exactly the catalog and the two tenants exist.
    let mut expected = vec![env.catalog.clone(), a.clone(), c.clone()];
    expected.sort();
    assert_eq!(env.schemas().await, expected);

    let listed = env.cli(&["--output", "json", "list-tenants"]);
    listed.expect_code(0);
    let names: Vec<String> = listed.json()["tenants"]
        .as_array()
        .expect("tenants array")
        .iter()
        .map(|t| t["schema_name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(names, vec![a.clone(), c.clone()]);

    // A second create of an active tenant is reported, not an error.
    let before = env.snapshot().await;
    let again = env.cli(&["--output", "json", "create", &a]);
    again.expect_code(0);
    assert_eq!(again.json()["tenants"][0]["status"], "exists");
    // And a second upgrade-all is a no-op that writes nothing at all.
    let noop = env.cli(&["--output", "json", "upgrade-all"]);
    noop.expect_code(0);
    let r = noop.json();
    assert_eq!(r["successful_migrations"], 0);
    assert_eq!(r["skipped"], 2);
    assert_eq!(r["migrations_applied"], 0);
    for t in [&a, &c] {
        let line = tenant_of(&r, t);
        assert_eq!(line["status"], "up_to_date");
        assert_eq!(
            (line["from"].as_i64(), line["to"].as_i64()),
            (Some(3), Some(3))
        );
    }
    assert_eq!(
        env.snapshot().await,
        before,
        "a no-op upgrade-all changed something"
    );
    env.cleanup().await;
}

async fn new_migration_reaches_every_tenant(b: Backend) {
    let mut env = TestEnv::new(b);
    env.own_migrations();
    let tenants: Vec<String> = ["a", "b", "c"].iter().map(|s| env.tenant(s)).collect();
    let mut args = vec!["create"];
    args.extend(tenants.iter().map(String::as_str));
    env.cli(&args).expect_code(0);

    env.add_tenant_migration("0004_loyalty.sql", |_| LOYALTY.into());
    // Status sees the pending migration before anything runs.
    let status = env.cli(&["--output", "json", "status"]);
    status.expect_code(0);
    let st = status.json();
    for t in &tenants {
        let line = st["tenants"]
            .as_array()
            .expect("tenants")
            .iter()
            .find(|l| l["schema"] == t.as_str())
            .expect("tenant in status");
        assert_eq!(line["version"], 3);
        assert_eq!(line["latest"], 4);
        assert_eq!(line["pending"], serde_json::json!([4]));
        assert_eq!(line["dirty"], false);
    }

    let run = env.cli(&["--output", "json", "upgrade-all"]);
    run.expect_code(0);
    let report = run.json();
    assert_eq!(report["successful_migrations"], 3);
    assert_eq!(report["migrations_applied"], 3);
    assert_eq!(report["failed"], 0);
    let mut admin = env.admin().await;
    for t in &tenants {
        let line = tenant_of(&report, t);
        assert_eq!(line["status"], "migrated");
        assert_eq!(
            (line["from"].as_i64(), line["to"].as_i64()),
            (Some(3), Some(4))
        );
        assert_eq!(versions_of(line), vec![4]);
        assert_eq!(line["attempts"], 1);
        assert_eq!(admin.tables(&env, t).await, with_loyalty(), "tables of {t}");
        assert_eq!(admin.history(&env, t).await, applied_up_to(4));
        assert_eq!(
            admin
                .catalog_tenant(&env, t)
                .await
                .expect("row")
                .schema_version,
            Some(4)
        );
    }
    // The new column is there: a row using it can be written.
    admin
        .exec_in(
            &env,
            &tenants[0],
            "INSERT INTO users_tenant (id, email, hashed_password, loyalty_tier) VALUES ('00000000-0000-0000-0000-000000000001', 'x@example.com', 'h', 'gold')",
        )
        .await;

    let again = env.cli(&["--output", "json", "upgrade-all"]);
    again.expect_code(0);
    assert_eq!(again.json()["migrations_applied"], 0);
    assert_eq!(again.json()["skipped"], 3);
    env.cleanup().await;
}

async fn target_stops_at_a_version(b: Backend) {
    let env = TestEnv::new(b);
    let (a, c) = (env.tenant("a"), env.tenant("c"));
    let run = env.cli(&["--output", "json", "--target", "1", "create", &a, &c]);
    run.expect_code(0);
    assert_eq!(tenant_of(&run.json(), &a)["to"], 1);
    let mut admin = env.admin().await;
    for t in [&a, &c] {
        assert_eq!(admin.history(&env, t).await, applied_up_to(1));
        assert_eq!(
            admin.tables(&env, t).await,
            [
                "_tenant_migrations",
                "service_categories",
                "services",
                "users_tenant"
            ]
        );
    }

    // One tenant to 2, then the fleet to 2: only the other one moves.
    env.cli(&["--target", "2", "upgrade", &a]).expect_code(0);
    assert_eq!(admin.history(&env, &a).await, applied_up_to(2));
    assert_eq!(admin.history(&env, &c).await, applied_up_to(1));
    let run = env.cli(&["--output", "json", "--target", "2", "upgrade-all"]);
    run.expect_code(0);
    let r = run.json();
    assert_eq!(tenant_of(&r, &a)["status"], "up_to_date");
    assert_eq!(tenant_of(&r, &c)["status"], "migrated");
    assert_eq!(versions_of(tenant_of(&r, &c)), vec![2]);
    assert_eq!(admin.history(&env, &c).await, applied_up_to(2));
    assert!(
        !admin
            .tables(&env, &c)
            .await
            .contains(&"professional_breaks".to_owned())
    );

    // A target below the current version changes nothing (no down migrations).
    let run = env.cli(&["--output", "json", "--target", "1", "upgrade-all"]);
    run.expect_code(0);
    assert_eq!(run.json()["migrations_applied"], 0);
    assert_eq!(admin.history(&env, &a).await, applied_up_to(2));

    // A target no file has is a usage error, and nothing runs.
    let before = env.snapshot().await;
    let bad = env.cli(&["--target", "99", "upgrade-all"]);
    bad.expect_code(2);
    assert!(bad.stderr().contains("target"), "{}", bad.stderr());
    assert_eq!(env.snapshot().await, before);

    // Without a target, the rest.
    let run = env.cli(&["--output", "json", "upgrade-all"]);
    run.expect_code(0);
    assert_eq!(run.json()["migrations_applied"], 2);
    for t in [&a, &c] {
        assert_eq!(admin.history(&env, t).await, applied_up_to(3));
        assert_eq!(admin.tables(&env, t).await, TENANT_TABLES);
    }
    env.cleanup().await;
}

async fn dry_run_writes_nothing(b: Backend) {
    let mut env = TestEnv::new(b);
    env.own_migrations();
    let (a, c, x) = (env.tenant("a"), env.tenant("c"), env.tenant("x"));
    env.cli(&["create", &a, &c]).expect_code(0);
    env.add_tenant_migration("0004_loyalty.sql", |_| LOYALTY.into());
    let before = env.snapshot().await;
    assert_eq!(before[&env.catalog]["tenants"].len(), 2, "{before:#?}");
    assert_eq!(before[&a]["_tenant_migrations"].len(), 3, "{before:#?}");

    let run = env.cli(&["--output", "json", "--dry-run", "create", &x]);
    run.expect_code(0);
    let r = run.json();
    assert_eq!(r["dry_run"], true);
    let line = tenant_of(&r, &x);
    assert_eq!(line["status"], "planned");
    assert_eq!(
        (line["from"].as_i64(), line["to"].as_i64()),
        (None, Some(4))
    );
    assert_eq!(versions_of(line), vec![1, 2, 3, 4]);
    assert_eq!(
        env.snapshot().await,
        before,
        "--dry-run create wrote something"
    );

    let run = env.cli(&["--output", "json", "--dry-run", "upgrade-all"]);
    run.expect_code(0);
    let r = run.json();
    assert_eq!(r["planned"], 2);
    assert_eq!(r["migrations_applied"], 0);
    for t in [&a, &c] {
        let line = tenant_of(&r, t);
        assert_eq!(line["status"], "planned");
        assert_eq!(
            (line["from"].as_i64(), line["to"].as_i64()),
            (Some(3), Some(4))
        );
        assert_eq!(versions_of(line), vec![4]);
    }
    env.cli(&["--dry-run", "upgrade", &a]).expect_code(0);
    env.cli(&["--dry-run", "upgrade-public"]).expect_code(0);
    env.cli(&["--dry-run", "--continue-on-error", "create", &a, &x])
        .expect_code(0);
    assert_eq!(env.snapshot().await, before, "a dry run wrote something");

    // The plan the dry run printed is what the real run then does.
    let real = env.cli(&["--output", "json", "upgrade-all"]);
    real.expect_code(0);
    for t in [&a, &c] {
        assert_eq!(versions_of(tenant_of(&real.json(), t)), vec![4]);
    }
    env.cleanup().await;
}

async fn dry_run_on_a_new_env_creates_no_catalog(b: Backend) {
    let env = TestEnv::new(b);
    let x = env.tenant("x");
    let run = env.cli(&["--output", "json", "--dry-run", "create", &x]);
    run.expect_code(0);
    let r = run.json();
    let line = tenant_of(&r, &x);
    assert_eq!(line["status"], "planned");
    assert_eq!(versions_of(line), vec![1, 2, 3]);
    env.cli(&["--dry-run", "upgrade-all"]).expect_code(0);
    env.cli(&["--dry-run", "upgrade-public"]).expect_code(0);
    assert_eq!(
        env.schemas().await,
        Vec::<String>::new(),
        "a dry run created a schema"
    );
    if b == Backend::Sqlite {
        let files: Vec<_> = std::fs::read_dir(env.dir.path())
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(files.is_empty(), "a dry run created files: {files:?}");
    }
    env.cleanup().await;
}

async fn upgrade_public_migrates_the_catalog_once(b: Backend) {
    let env = TestEnv::new(b);
    let run = env.cli(&["--output", "json", "upgrade-public"]);
    run.expect_code(0);
    let line = tenant_of(&run.json(), &env.catalog).clone();
    assert_eq!(line["status"], "migrated");
    assert_eq!(
        versions_of(&line),
        (1..=catalog_latest()).collect::<Vec<_>>()
    );
    let mut admin = env.admin().await;
    assert_eq!(
        admin.history(&env, &env.catalog).await,
        applied_up_to(catalog_latest())
    );
    let tables = admin.tables(&env, &env.catalog).await;
    for t in [
        "admin_master_users",
        "audit_log",
        "migration_job_tenants",
        "migration_jobs",
        "tenants",
    ] {
        assert!(
            tables.contains(&t.to_owned()),
            "catalog lacks {t}: {tables:?}"
        );
    }
    let before = env.snapshot().await;
    let again = env.cli(&["--output", "json", "upgrade-public"]);
    again.expect_code(0);
    assert_eq!(
        tenant_of(&again.json(), &env.catalog)["status"],
        "up_to_date"
    );
    assert_eq!(env.snapshot().await, before);
    env.cleanup().await;
}

/// Statements are split the way each server's own client splits them: semicolons inside
/// strings and comments stay where they are.
fn tricky_migration(b: Backend) -> String {
    let common = "-- a comment; with a semicolon\nCREATE TABLE notes (id INTEGER NOT NULL PRIMARY KEY, body VARCHAR(200) NOT NULL);\n/* a block comment; with ; too */\nINSERT INTO notes (id, body) VALUES (1, 'semi;colon'), (2, 'it''s; quoted'), (3, '-- not a comment'), (4, '/* nor; this */');\nINSERT INTO notes (id, body) VALUES (5, 'two\nlines;');\n";
    let extra = match b {
        Backend::MySql => {
            "INSERT INTO notes (id, body) VALUES (6, 'back\\';slash'); # hash comment;\nINSERT INTO notes (id, body) VALUES (7, \"double;quoted\");\n"
        }
        Backend::Postgres => {
            "INSERT INTO notes (id, body) VALUES (6, E'back\\';slash');\nINSERT INTO notes (id, body) VALUES (7, $tag$dollar;quoted$tag$);\n"
        }
        Backend::Sqlite => {
            "INSERT INTO notes (id, body) VALUES (6, 'back'';slash');\nINSERT INTO notes (id, body) VALUES (7, 'plain;');\n"
        }
    };
    format!("{common}{extra}")
}

async fn tricky_statements_are_split_correctly(b: Backend) {
    let mut env = TestEnv::new(b);
    env.own_migrations();
    env.add_tenant_migration("0004_notes.sql", tricky_migration);
    let a = env.tenant("a");
    env.cli(&["create", &a]).expect_code(0);
    let mut admin = env.admin().await;
    let bodies = admin
        .strings(&env, &a, "SELECT body FROM notes ORDER BY id")
        .await;
    let last = match b {
        Backend::MySql => "double;quoted",
        Backend::Postgres => "dollar;quoted",
        Backend::Sqlite => "plain;",
    };
    assert_eq!(
        bodies,
        vec![
            "semi;colon",
            "it's; quoted",
            "-- not a comment",
            "/* nor; this */",
            "two\nlines;",
            "back';slash",
            last
        ]
    );
    env.cleanup().await;
}

async fn archived_and_missing_tenants(b: Backend) {
    let mut env = TestEnv::new(b);
    env.own_migrations();
    let (a, arch, gone) = (env.tenant("a"), env.tenant("b"), env.tenant("c"));
    env.cli(&["create", &a, &arch, &gone]).expect_code(0);
    env.add_tenant_migration("0004_loyalty.sql", |_| LOYALTY.into());
    let mut admin = env.admin().await;
    let catalog = env.catalog.clone();
    admin
        .exec_in(
            &env,
            &catalog,
            &format!("UPDATE tenants SET status = 'archived' WHERE schema_name = '{arch}'"),
        )
        .await;
    match b {
        Backend::Sqlite => std::fs::remove_file(env.sqlite_file(&gone)).expect("rm"),
        _ => admin.drop_schema(&gone).await,
    }

    let run = env.cli(&["--output", "json", "--continue-on-error", "upgrade-all"]);
    run.expect_code(1);
    let r = run.json();
    assert_eq!(tenant_of(&r, &a)["status"], "migrated");
    let line = tenant_of(&r, &arch);
    assert_eq!(line["status"], "skipped", "{line:#}");
    assert!(
        line["error"]
            .as_str()
            .unwrap_or_default()
            .contains("archived"),
        "{line:#}"
    );
    assert_eq!(admin.history(&env, &arch).await, applied_up_to(3));
    let line = tenant_of(&r, &gone);
    assert_eq!(line["status"], "missing", "{line:#}");
    assert!(
        !env.schemas().await.contains(&gone),
        "upgrade-all must not recreate a missing schema"
    );
    let row = admin.catalog_tenant(&env, &gone).await.expect("row");
    assert_eq!(row.status, "failed");
    assert!(
        row.last_error
            .unwrap_or_default()
            .contains("does not exist")
    );
    let row = admin.catalog_tenant(&env, &arch).await.expect("row");
    assert_eq!(row.status, "archived");

    let one = env.cli(&["upgrade", &arch]);
    one.expect_code(2);
    assert!(one.stderr().contains("archived"), "{}", one.stderr());
    let unknown = env.cli(&["upgrade", &env.tenant("nobody")]);
    unknown.expect_code(2);
    assert!(
        unknown.stderr().contains("not in the catalog"),
        "{}",
        unknown.stderr()
    );
    env.cli(&["status", &env.tenant("nobody")]).expect_code(2);
    env.cleanup().await;
}

async fn check_structure_reports_drift(b: Backend) {
    let env = TestEnv::new(b);
    let (a, c) = (env.tenant("a"), env.tenant("c"));
    env.cli(&["create", &a, &c]).expect_code(0);
    env.cli(&["check-structure"]).expect_code(0);
    let mut admin = env.admin().await;
    admin
        .exec_in(
            &env,
            &c,
            "ALTER TABLE services ADD COLUMN extra INTEGER NULL",
        )
        .await;
    let run = env.cli(&["--output", "json", "check-structure"]);
    run.expect_code(1);
    let r = run.json();
    assert_eq!(r["checked"], 2, "{r:#}");
    let drifted = r["drifted"].as_array().expect("drifted");
    assert_eq!(drifted.len(), 1, "{r:#}");
    assert_eq!(drifted[0]["schema"], c.as_str());
    assert!(
        drifted[0]["unexpected"]
            .to_string()
            .contains("services.extra"),
        "{r:#}"
    );
    // The scratch reference schema is gone again.
    if b == Backend::Sqlite {
        let left: Vec<_> = std::fs::read_dir(env.dir.path().join("tenants"))
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("tm_reference_"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
    env.cleanup().await;
}

async fn longest_names_and_duplicates(b: Backend) {
    let env = TestEnv::new(b);
    let long = env.tenant(&"x".repeat(63 - env.prefix.len()));
    assert_eq!(long.len(), 63);
    let run = env.cli(&["--output", "json", "create", &long, &long]);
    run.expect_code(0);
    let r = run.json();
    assert_eq!(r["tenants"].as_array().map(Vec::len), Some(1), "{r:#}");
    assert_eq!(tenant_of(&r, &long)["status"], "created");
    let mut admin = env.admin().await;
    assert_eq!(admin.history(&env, &long).await, applied_up_to(3));
    env.cli(&["upgrade", &long]).expect_code(0);
    env.cli(&["repair", &long]).expect_code(0);
    env.cleanup().await;
}

backend_tests!(
    provisioning_creates_every_table_and_history,
    new_migration_reaches_every_tenant,
    target_stops_at_a_version,
    dry_run_writes_nothing,
    dry_run_on_a_new_env_creates_no_catalog,
    upgrade_public_migrates_the_catalog_once,
    tricky_statements_are_split_correctly,
    archived_and_missing_tenants,
    check_structure_reports_drift,
    longest_names_and_duplicates,
);
