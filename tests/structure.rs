//! Structure comparison (defaults, foreign keys, whole tables), adoption of a fleet another
//! tool migrated — simulated here on all three backends by tenants whose history is replaced
//! with an `alembic_version` table (tests/adopt.rs builds a real Alembic fleet on MariaDB and
//! PostgreSQL) — and the catalog's refusal to start beside an application's own tables.

mod common;

use common::{Backend, TestEnv, applied_up_to};

/// Turns a tenant the tool created into one "Alembic" manages at `revision`: no history, no
/// catalog row, an `alembic_version` table.
async fn hand_over_to_alembic(env: &TestEnv, schema: &str, revision: Option<&str>) {
    let mut admin = env.admin().await;
    let mut sql = String::from(
        "DROP TABLE _tenant_migrations; \
         CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)",
    );
    if let Some(r) = revision {
        sql.push_str(&format!("; INSERT INTO alembic_version VALUES ('{r}')"));
    }
    admin.exec_in(env, schema, &sql).await;
    admin
        .exec_in(
            env,
            &env.catalog,
            &format!("DELETE FROM tenants WHERE schema_name = '{schema}'"),
        )
        .await;
}

async fn check_structure_sees_defaults_foreign_keys_and_tables(b: Backend) {
    let env = TestEnv::new(b);
    let (a, c) = (env.tenant("a"), env.tenant("c"));
    env.cli(&["create", &a, &c]).expect_code(0);
    env.cli(&["check-structure"]).expect_code(0);
    let mut admin = env.admin().await;
    let drift = match b {
        Backend::MySql => {
            "ALTER TABLE appointments ALTER COLUMN status SET DEFAULT 'CONFIRMED'; \
             ALTER TABLE appointments DROP FOREIGN KEY fk_appointments_service; \
             CREATE TABLE extra_notes (id INT PRIMARY KEY)"
        }
        Backend::Postgres => {
            "ALTER TABLE appointments ALTER COLUMN status SET DEFAULT 'CONFIRMED'; \
             ALTER TABLE appointments DROP CONSTRAINT appointments_service_id_fkey; \
             CREATE TABLE extra_notes (id INT PRIMARY KEY)"
        }
        Backend::Sqlite => "CREATE TABLE extra_notes (id INTEGER PRIMARY KEY)",
    };
    admin.exec_in(&env, &c, drift).await;
    let run = env.cli(&["--output", "json", "check-structure"]);
    run.expect_code(1);
    let r = run.json();
    let drifted = r["drifted"].as_array().expect("drifted");
    assert_eq!(drifted.len(), 1, "{r:#}");
    let d = &drifted[0];
    assert_eq!(d["schema"], c.as_str());
    let unexpected = d["unexpected"].to_string();
    assert!(unexpected.contains("table extra_notes"), "{r:#}");
    // A whole table is named once, not column by column.
    assert!(!unexpected.contains("extra_notes.id"), "{r:#}");
    if b != Backend::Sqlite {
        let changed = d["changed"].to_string();
        assert!(
            changed.contains("appointments.status") && changed.contains("CONFIRMED"),
            "{r:#}"
        );
        let missing = d["missing"].to_string();
        assert!(
            missing.contains("foreign key appointments") && missing.contains("services (id)"),
            "{r:#}"
        );
    }
    env.cleanup().await;
}

async fn adopt_takes_over_a_fleet_without_touching_it(b: Backend) {
    let mut env = TestEnv::new(b);
    env.own_migrations();
    let (a, old, drifted, unmapped, plain) = (
        env.tenant("a"),
        env.tenant("old"),
        env.tenant("drifted"),
        env.tenant("unmapped"),
        env.tenant("plain"),
    );
    env.cli(&["create", &a, &drifted, &unmapped, &plain])
        .expect_code(0);
    env.cli(&["--target", "2", "create", &old]).expect_code(0);
    hand_over_to_alembic(&env, &a, Some("rev3")).await;
    hand_over_to_alembic(&env, &old, Some("rev2")).await;
    hand_over_to_alembic(&env, &drifted, Some("rev3")).await;
    hand_over_to_alembic(&env, &unmapped, Some("feedbeef")).await;
    let mut admin = env.admin().await;
    admin
        .exec_in(
            &env,
            &drifted,
            "ALTER TABLE services ADD COLUMN nickname VARCHAR(50) NULL",
        )
        .await;
    // `plain` keeps no history and no alembic_version: not Alembic's.
    admin
        .exec_in(&env, &plain, "DROP TABLE _tenant_migrations")
        .await;
    admin
        .exec_in(
            &env,
            &env.catalog,
            &format!("DELETE FROM tenants WHERE schema_name = '{plain}'"),
        )
        .await;
    let map = env.dir.path().join("alembic-map.toml");
    std::fs::write(&map, "[tenant]\nrev1 = 1\nrev2 = 2\nrev3 = 3\n").expect("map");
    let map = map.display().to_string();
    let schemas = [a.as_str(), &old, &drifted, &unmapped, &plain];
    let adopt = |extra: &[&str]| {
        let mut args = vec!["--output", "json"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["adopt", "alembic", "--map", &map, "--schemas"]);
        args.extend_from_slice(&schemas);
        env.cli(&args)
    };
    let verdict = |r: &serde_json::Value, s: &str| -> (String, Option<i64>) {
        let t = r["tenants"]
            .as_array()
            .expect("tenants")
            .iter()
            .find(|t| t["schema"] == s)
            .unwrap_or_else(|| panic!("{s} not in {r:#}"));
        (
            t["verdict"].as_str().unwrap_or_default().to_owned(),
            t["version"].as_i64(),
        )
    };

    let before = env.snapshot().await;
    let dry = adopt(&["--dry-run"]);
    dry.expect_code(1);
    let r = dry.json();
    assert_eq!(verdict(&r, &a), ("would_adopt".into(), Some(3)), "{r:#}");
    assert_eq!(verdict(&r, &old), ("would_adopt".into(), Some(2)), "{r:#}");
    assert_eq!(verdict(&r, &drifted).0, "refused", "{r:#}");
    assert_eq!(env.snapshot().await, before, "a dry run writes nothing");

    let run = adopt(&[]);
    run.expect_code(1);
    let r = run.json();
    assert_eq!(verdict(&r, &a), ("adopted".into(), Some(3)), "{r:#}");
    assert_eq!(verdict(&r, &old), ("adopted".into(), Some(2)), "{r:#}");
    assert_eq!(verdict(&r, &drifted).0, "refused", "{r:#}");
    assert_eq!(verdict(&r, &unmapped).0, "refused", "{r:#}");
    assert_eq!(verdict(&r, &plain).0, "refused", "{r:#}");
    assert_eq!(r["counts"]["adopted"], 2, "{r:#}");
    assert_eq!(r["counts"]["refused"], 3, "{r:#}");
    let text = r.to_string();
    assert!(text.contains("services.nickname"), "{r:#}");
    assert!(text.contains("feedbeef is not in the map"), "{r:#}");
    assert!(text.contains("no alembic_version table"), "{r:#}");
    assert_eq!(
        admin.history(&env, &a).await,
        (1..=3)
            .map(|v| (v, "baselined".to_owned()))
            .collect::<Vec<_>>()
    );
    let row = admin.catalog_tenant(&env, &old).await.expect("registered");
    assert_eq!(
        (row.status.as_str(), row.schema_version),
        ("active", Some(2))
    );
    assert!(admin.catalog_tenant(&env, &drifted).await.is_none());
    env.cli(&["status"]).expect_code(0);
    env.cli(&["check-structure"]).expect_code(0);

    let again = adopt(&[]);
    again.expect_code(1);
    let r = again.json();
    assert_eq!(
        verdict(&r, &a),
        ("already_adopted".into(), Some(3)),
        "{r:#}"
    );
    assert_eq!(
        verdict(&r, &old),
        ("already_adopted".into(), Some(2)),
        "{r:#}"
    );

    // A new migration reaches both; the older one runs 3 first.
    env.add_tenant_migration("0004_loyalty.sql", |_| {
        "CREATE TABLE loyalty_points (id INTEGER NOT NULL PRIMARY KEY, points INTEGER NOT NULL);"
            .into()
    });
    env.cli(&["upgrade-all"]).expect_code(0);
    let mut want_old: Vec<(i64, String)> = (1..=2).map(|v| (v, "baselined".to_owned())).collect();
    want_old.extend([(3, "applied".to_owned()), (4, "applied".to_owned())]);
    assert_eq!(admin.history(&env, &old).await, want_old);
    let mut want_a: Vec<(i64, String)> = (1..=3).map(|v| (v, "baselined".to_owned())).collect();
    want_a.extend(applied_up_to(4).into_iter().skip(3));
    assert_eq!(admin.history(&env, &a).await, want_a);
    env.cli(&["check-structure"]).expect_code(0);
    env.cli(&["repair", &a]).expect_code(0);
    env.cleanup().await;
}

async fn adopt_refuses_bad_maps_before_touching_anything(b: Backend) {
    let env = TestEnv::new(b);
    let a = env.tenant("a");
    env.cli(&["create", &a]).expect_code(0);
    hand_over_to_alembic(&env, &a, Some("rev3")).await;
    let before = env.snapshot().await;
    for (text, says) in [
        (
            "[tenant]\nrev3 = 9\n",
            "no tenant migration has that version",
        ),
        ("[tenant\n", "--map"),
        ("[public]\nrev3 = 1\n", "[tenant] section"),
        ("[tenant]\nrev3 = 0\n", "versions start at 1"),
    ] {
        let map = env.dir.path().join("bad-map.toml");
        std::fs::write(&map, text).expect("map");
        let run = env.cli(&[
            "adopt",
            "alembic",
            "--map",
            &map.display().to_string(),
            "--schemas",
            &a,
        ]);
        run.expect_code(2);
        assert!(run.stderr().contains(says), "{text}: {}", run.stderr());
    }
    let missing = env.cli(&["adopt", "alembic", "--map", "nowhere.toml", "--discover"]);
    missing.expect_code(2);
    let neither = env.cli(&["adopt", "alembic", "--map", "nowhere.toml"]);
    neither.expect_code(2);
    let invalid = env.cli(&[
        "adopt",
        "alembic",
        "--map",
        "m.toml",
        "--schemas",
        "Bad-Name",
    ]);
    invalid.expect_code(2);
    assert_eq!(env.snapshot().await, before, "nothing was written");
    env.cleanup().await;
}

async fn catalog_refuses_to_start_beside_application_tables(b: Backend) {
    let env = TestEnv::new(b);
    let mut admin = env.admin().await;
    match b {
        Backend::MySql => {
            admin
                .exec(&format!("CREATE DATABASE `{}`", env.catalog))
                .await
        }
        Backend::Postgres => {
            admin
                .exec(&format!("CREATE SCHEMA \"{}\"", env.catalog))
                .await
        }
        Backend::Sqlite => {}
    }
    admin
        .exec_in(
            &env,
            &env.catalog,
            "CREATE TABLE tenants (id INTEGER PRIMARY KEY, schema_name VARCHAR(50), plan VARCHAR(20)); \
             CREATE TABLE admin_master_users (id INTEGER PRIMARY KEY, login VARCHAR(50))",
        )
        .await;
    let before = env.snapshot().await;
    for args in [vec!["upgrade-public"], vec!["create", &env.tenant("a")]] {
        let run = env.cli(&args);
        run.expect_code(2);
        let err = run.stderr();
        assert!(
            err.contains("tables admin_master_users, tenants")
                && err.contains("nothing was changed"),
            "{err}"
        );
    }
    assert_eq!(env.snapshot().await, before);
    env.cleanup().await;
}

backend_tests!(
    check_structure_sees_defaults_foreign_keys_and_tables,
    adopt_takes_over_a_fleet_without_touching_it,
    adopt_refuses_bad_maps_before_touching_anything,
    catalog_refuses_to_start_beside_application_tables,
);
