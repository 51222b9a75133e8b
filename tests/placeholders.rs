//! Placeholders in migration files: `${catalog}` and `${schema}` (cross-schema foreign keys on
//! MariaDB and PostgreSQL, `${schema}.table` on every backend), user placeholders from
//! `PLACEHOLDER_<NAME>`, `.env` and `--placeholder`, what is left alone (comments, dollar
//! quotes), checksums over the file as written, and everything refused before anything is
//! created (unknown names, bad values, SQLite tenants reaching for another file).

mod common;

use common::{Backend, TestEnv, tenant_of, versions_of};
use tenant_migrator::migrate::source::checksum;
use tenant_migrator::{Config, Settings};

const CLIENTS: &str = "0004_clients.sql";

/// Tenant migration 4: `clients`, whose `tenant_id` references the catalog's `tenants (id)`
/// through `${catalog}` (SQLite, which cannot reach the catalog file, gets a plain table).
fn clients_with_catalog_fk(b: Backend) -> String {
    match b {
        Backend::MySql => "-- Each client row names its tenant in the catalog.\n\
             CREATE TABLE clients (\n\
                 id INT NOT NULL PRIMARY KEY,\n\
                 tenant_id CHAR(36) NOT NULL,\n\
                 CONSTRAINT fk_clients_tenant FOREIGN KEY (tenant_id) REFERENCES ${catalog}.tenants (id)\n\
             ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;\n"
            .into(),
        Backend::Postgres => "-- Each client row names its tenant in the catalog.\n\
             CREATE TABLE clients (\n\
                 id int NOT NULL PRIMARY KEY,\n\
                 tenant_id uuid NOT NULL,\n\
                 CONSTRAINT fk_clients_tenant FOREIGN KEY (tenant_id) REFERENCES ${catalog}.tenants (id)\n\
             );\n"
            .into(),
        Backend::Sqlite => {
            "CREATE TABLE clients (id INTEGER NOT NULL PRIMARY KEY, tenant_id TEXT NOT NULL);\n"
                .into()
        }
    }
}

/// `schema.table` of the table each foreign key of `schema`'s `table` references.
async fn referenced(env: &TestEnv, schema: &str, table: &str) -> Vec<String> {
    let mut admin = env.admin().await;
    let sql = match env.backend {
        Backend::MySql => format!(
            "SELECT CONCAT(k.REFERENCED_TABLE_SCHEMA, '.', k.REFERENCED_TABLE_NAME, '.', k.REFERENCED_COLUMN_NAME) \
             FROM information_schema.KEY_COLUMN_USAGE k \
             JOIN information_schema.REFERENTIAL_CONSTRAINTS r \
               ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME \
             WHERE k.TABLE_SCHEMA = '{schema}' AND k.TABLE_NAME = '{table}' \
               AND r.UNIQUE_CONSTRAINT_SCHEMA = k.REFERENCED_TABLE_SCHEMA"
        ),
        Backend::Postgres => format!(
            "SELECT rn.nspname::text || '.' || rc.relname::text \
             FROM pg_constraint k \
             JOIN pg_class t ON t.oid = k.conrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace \
             JOIN pg_class rc ON rc.oid = k.confrelid JOIN pg_namespace rn ON rn.oid = rc.relnamespace \
             WHERE k.contype = 'f' AND tn.nspname = '{schema}' AND t.relname = '{table}'"
        ),
        Backend::Sqlite => unreachable!("SQLite tenants cannot reference another file"),
    };
    admin.strings(env, schema, &sql).await
}

/// The history checksum of `version` in `schema`.
async fn history_checksum(env: &TestEnv, schema: &str, version: i64) -> Vec<String> {
    env.admin()
        .await
        .strings(
            env,
            schema,
            &format!("SELECT checksum FROM _tenant_migrations WHERE version = {version}"),
        )
        .await
}

/// 1 and 2: a tenant table's foreign key to the catalog's `tenants`, through `${catalog}`.
async fn foreign_key_to_the_catalog(b: Backend) {
    let mut env = TestEnv::new(b);
    env.own_migrations();
    env.add_tenant_migration(CLIENTS, clients_with_catalog_fk);
    let (a1, a2) = (env.tenant("a1"), env.tenant("a2"));
    env.cli(&["create", &a1, &a2]).expect_code(0);

    let expected = match b {
        Backend::MySql => vec![format!("{}.tenants.id", env.catalog)],
        _ => vec![format!("{}.tenants", env.catalog)],
    };
    for t in [&a1, &a2] {
        assert_eq!(referenced(&env, t, "clients").await, expected, "{t}");
    }
    // The key works: a tenant's own catalog id is accepted.
    let mut admin = env.admin().await;
    let insert = match b {
        Backend::MySql => format!(
            "INSERT INTO clients (id, tenant_id) SELECT 1, id FROM `{}`.tenants WHERE schema_name = '{a1}'",
            env.catalog
        ),
        _ => format!(
            "INSERT INTO clients (id, tenant_id) SELECT 1, id FROM \"{}\".tenants WHERE schema_name = '{a1}'",
            env.catalog
        ),
    };
    admin.exec_in(&env, &a1, &insert).await;
    assert_eq!(admin.count(&env, &a1, "clients").await, 1);

    // The file's checksum is recorded as written, `${catalog}` and all.
    let file = std::fs::read(env.migration_file("tenant", b, CLIENTS)).expect("read");
    assert_eq!(history_checksum(&env, &a1, 4).await, vec![checksum(&file)]);

    env.cli(&["check-structure"]).expect_code(0);
    env.cli(&["status"]).expect_code(0);

    // A later migration reaches both tenants.
    env.add_tenant_migration("0005_client_notes.sql", |_| {
        "ALTER TABLE clients ADD COLUMN note VARCHAR(100) NULL;\n".into()
    });
    let run = env.cli(&["--output", "json", "upgrade-all"]);
    run.expect_code(0);
    let r = run.json();
    for t in [&a1, &a2] {
        let line = tenant_of(&r, t);
        assert_eq!(line["status"], "migrated", "{line:#}");
        assert_eq!(versions_of(line), vec![5]);
    }
    assert_eq!(referenced(&env, &a2, "clients").await, expected);
    env.cli(&["check-structure"]).expect_code(0);

    // Such a tenant, migrated by another tool, is adopted: its key into the catalog matches
    // the reference's (both point at the same catalog).
    admin
        .exec_in(
            &env,
            &a2,
            "DROP TABLE _tenant_migrations; \
             CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY); \
             INSERT INTO alembic_version VALUES ('e5e5e5e5e5e5')",
        )
        .await;
    admin
        .exec_in(
            &env,
            &env.catalog,
            &format!("DELETE FROM tenants WHERE schema_name = '{a2}'"),
        )
        .await;
    let map = env.dir.path().join("alembic-map.toml");
    std::fs::write(&map, "[tenant]\ne5e5e5e5e5e5 = 5\n").expect("map");
    let adopt = env.cli(&[
        "--output",
        "json",
        "adopt",
        "alembic",
        "--map",
        &map.display().to_string(),
        "--schemas",
        &a2,
    ]);
    adopt.expect_code(0);
    let r = adopt.json();
    assert_eq!(r["tenants"][0]["verdict"], "adopted", "{r:#}");
    assert_eq!(r["tenants"][0]["version"], 5, "{r:#}");
    env.cli(&["check-structure"]).expect_code(0);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_foreign_key_to_the_catalog_database() {
    foreign_key_to_the_catalog(Backend::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_foreign_key_to_the_catalog_schema() {
    foreign_key_to_the_catalog(Backend::Postgres).await;
}

/// 3 and 7: `${app_public}` names an application database of its own (created here, named
/// with the test's prefix so cleanup drops it), set by the environment, the flag (which wins)
/// and `.env`; different values on later runs change no checksum.
async fn user_placeholder_for_an_application_database(b: Backend) {
    let mut env = TestEnv::new(b);
    env.own_migrations();
    // Tenants sort before `app` so cleanup drops them before the table they reference.
    let (a1, a2, a3, app) = (
        env.tenant("a1"),
        env.tenant("a2"),
        env.tenant("a3"),
        env.tenant("app"),
    );
    let mut admin = env.admin().await;
    admin.create_schema(&env, &app).await;
    let app_table = match b {
        Backend::MySql => {
            "CREATE TABLE tenants (id CHAR(36) NOT NULL PRIMARY KEY) \
             ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
        }
        _ => "CREATE TABLE tenants (id uuid NOT NULL PRIMARY KEY)",
    };
    admin.exec_in(&env, &app, app_table).await;
    env.add_tenant_migration("0004_bookings.sql", |d| match d {
        Backend::MySql => "CREATE TABLE bookings (\n\
                 id INT NOT NULL PRIMARY KEY,\n\
                 app_tenant CHAR(36) NULL,\n\
                 label VARCHAR(64) NOT NULL DEFAULT '${app_public}',\n\
                 CONSTRAINT fk_bookings_app FOREIGN KEY (app_tenant) REFERENCES ${app_public}.tenants (id)\n\
             ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;\n"
            .into(),
        Backend::Postgres => "CREATE TABLE bookings (\n\
                 id int NOT NULL PRIMARY KEY,\n\
                 app_tenant uuid NULL REFERENCES ${app_public}.tenants (id),\n\
                 label varchar(64) NOT NULL DEFAULT '${app_public}'\n\
             );\n"
            .into(),
        Backend::Sqlite => "CREATE TABLE bookings (id INTEGER PRIMARY KEY);\n".into(),
    });

    // The environment.
    env.cli_with(&["create", &a1], &[("PLACEHOLDER_APP_PUBLIC", &app)])
        .expect_code(0);
    // The flag wins over the environment (whose value names no database).
    env.cli_with(
        &["--placeholder", &format!("app_public={app}"), "create", &a2],
        &[("PLACEHOLDER_APP_PUBLIC", "no_such_database_here")],
    )
    .expect_code(0);
    // A `.env` file in the working directory.
    std::fs::write(
        env.dir.path().join(".env"),
        format!("PLACEHOLDER_APP_PUBLIC={app}\n"),
    )
    .expect("write .env");
    env.cli(&["create", &a3]).expect_code(0);

    let table = match b {
        Backend::MySql => format!("{app}.tenants.id"),
        _ => format!("{app}.tenants"),
    };
    for t in [&a1, &a2, &a3] {
        assert_eq!(
            referenced(&env, t, "bookings").await,
            vec![table.clone()],
            "{t}"
        );
    }
    // Inside a string literal the value goes in bare.
    admin
        .exec_in(&env, &a1, "INSERT INTO bookings (id) VALUES (1)")
        .await;
    assert_eq!(
        admin.strings(&env, &a1, "SELECT label FROM bookings").await,
        vec![app.clone()]
    );

    // 7: the history keeps the checksum of the file as written, whatever the value was …
    let file = std::fs::read(env.migration_file("tenant", b, "0004_bookings.sql")).expect("read");
    for t in [&a1, &a2, &a3] {
        assert_eq!(
            history_checksum(&env, t, 4).await,
            vec![checksum(&file)],
            "{t}"
        );
    }
    // … so another value later reports no checksum problem.
    std::fs::remove_file(env.dir.path().join(".env")).expect("rm .env");
    let status = env.cli_with(
        &["--output", "json", "status"],
        &[("PLACEHOLDER_APP_PUBLIC", "another_value")],
    );
    status.expect_code(0);
    for line in status.json()["tenants"].as_array().expect("tenants") {
        assert_eq!(line["problems"], serde_json::json!([]), "{line:#}");
    }
    env.cli_with(
        &["--placeholder", "app_public=yet_another", "upgrade-all"],
        &[],
    )
    .expect_code(0);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_user_placeholder_names_an_application_database() {
    user_placeholder_for_an_application_database(Backend::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_user_placeholder_names_an_application_schema() {
    user_placeholder_for_an_application_database(Backend::Postgres).await;
}

/// 4: `${schema}` qualifies a tenant's own table on every backend (SQLite: `"main"`), and
/// inside a string it is the bare name.
async fn schema_qualifies_the_tenants_own_tables(b: Backend) {
    let mut env = TestEnv::new(b);
    env.own_migrations();
    env.add_tenant_migration(CLIENTS, |_| {
        "CREATE TABLE ${schema}.clients (id INT NOT NULL PRIMARY KEY, owner VARCHAR(80) NOT NULL);\n\
         INSERT INTO ${schema}.clients (id, owner) VALUES (1, '${schema}');\n"
            .into()
    });
    let (a1, a2) = (env.tenant("a1"), env.tenant("a2"));
    env.cli(&["create", &a1, &a2]).expect_code(0);
    let mut admin = env.admin().await;
    for t in [&a1, &a2] {
        let owner = admin.strings(&env, t, "SELECT owner FROM clients").await;
        let expected = if b == Backend::Sqlite {
            "main"
        } else {
            t.as_str()
        };
        assert_eq!(owner, vec![expected.to_owned()], "{t}");
        assert_eq!(admin.history(&env, t).await, common::applied_up_to(4));
    }
    let file = std::fs::read(env.migration_file("tenant", b, CLIENTS)).expect("read");
    assert_eq!(history_checksum(&env, &a2, 4).await, vec![checksum(&file)]);
    // The reference schema of the drift check gets its own name.
    env.cli(&["check-structure"]).expect_code(0);
    env.cli(&["status"]).expect_code(0);
    env.cleanup().await;
}

/// 5: an unknown placeholder stops every command before anything exists, naming the file and
/// line.
async fn unknown_placeholders_stop_before_anything_is_created(b: Backend) {
    let mut env = TestEnv::new(b);
    env.own_migrations();
    env.add_tenant_migration("0004_typo.sql", |_| {
        "-- ${comments_are_ignored}\nCREATE TABLE typo (\n    id INT REFERENCES ${app_publc}.tenants (id)\n);\n"
            .into()
    });
    let a1 = env.tenant("a1");
    for args in [vec!["create", a1.as_str()], vec!["upgrade-public"]] {
        let run = env.cli_with(&args, &[("PLACEHOLDER_APP_PUBLIC", "x")]);
        run.expect_code(2);
        let folder = match b {
            Backend::MySql => "mysql",
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        };
        assert!(
            run.stderr().contains(&format!(
                "tenant/{folder}/0004_typo.sql: line 3: unknown placeholder ${{app_publc}}; \
                 known: catalog, schema, app_public"
            )),
            "{}",
            run.stderr()
        );
    }
    assert_eq!(env.schemas().await, Vec::<String>::new());
    env.cleanup().await;
}

/// 8: bad placeholder settings stop the command with exit 2, naming the variable, before
/// anything is created.
async fn bad_placeholder_settings_are_refused(b: Backend) {
    let env = TestEnv::new(b);
    let a1 = env.tenant("a1");
    let long = "x".repeat(65);
    let refused = |args: &[&str], vars: &[(&str, &str)], says: &str| {
        let mut args = args.to_vec();
        args.extend(["create", a1.as_str()]);
        let run = env.cli_with(&args, vars);
        run.expect_code(2);
        assert!(
            run.stderr().contains(says),
            "{args:?} {vars:?}: {}",
            run.stderr()
        );
    };
    for (variable, value, says) in [
        (
            "PLACEHOLDER_CATALOG",
            "x",
            "PLACEHOLDER_CATALOG: ${catalog} is built in",
        ),
        (
            "PLACEHOLDER_SCHEMA",
            "x",
            "PLACEHOLDER_SCHEMA: ${schema} is built in",
        ),
        (
            "PLACEHOLDER_APP",
            "",
            "PLACEHOLDER_APP: the value of ${app} is empty",
        ),
        ("PLACEHOLDER_APP", "a\u{1}b", "control character"),
        ("PLACEHOLDER_APP", "a\tb", "control character"),
        ("PLACEHOLDER_APP", long.as_str(), "65 bytes"),
        (
            "PLACEHOLDER_A-B",
            "x",
            "PLACEHOLDER_A-B: is not a placeholder variable",
        ),
    ] {
        refused(&[], &[(variable, value)], says);
    }
    for (flag, says) in [
        ("novalue", "--placeholder: \"novalue\" must be name=value"),
        ("App=x", "--placeholder: \"App\" is not a placeholder name"),
        ("catalog=x", "built in"),
        ("app=", "empty"),
    ] {
        refused(&["--placeholder", flag], &[], says);
    }
    assert_eq!(env.schemas().await, Vec::<String>::new());
    env.cleanup().await;
}

backend_tests!(
    schema_qualifies_the_tenants_own_tables,
    unknown_placeholders_stop_before_anything_is_created,
    bad_placeholder_settings_are_refused,
);

/// 8, through the Rust API: a NUL (which no environment or argument can carry) is refused, and
/// the error names the variable.
#[test]
fn settings_with_a_nul_or_a_built_in_name_are_refused() {
    for (name, value, says) in [
        ("app", "a\0b", "control character"),
        ("catalog", "x", "built in"),
        ("Bad", "x", "not a placeholder name"),
    ] {
        let mut s = Settings::default();
        s.placeholders.insert(name.into(), value.into());
        let e = Config::from_settings(s).expect_err(name);
        assert_eq!(e.variable, format!("PLACEHOLDER_{}", name.to_uppercase()));
        assert!(e.message.contains(says), "{e}");
        assert!(!e.to_string().contains('\0'), "{e:?}");
    }
    let mut s = Settings::default();
    s.placeholders
        .insert("app_public".into(), "torri_app".into());
    let c = Config::from_settings(s).expect("valid");
    assert_eq!(c.placeholders["app_public"], "torri_app");
}

/// 6: a PostgreSQL dollar-quoted body is left alone byte for byte (a PL/v8 body may hold
/// JavaScript `${x}` template literals), and so are comments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_dollar_quoted_bodies_and_comments_are_left_alone() {
    let mut env = TestEnv::new(Backend::Postgres);
    env.own_migrations();
    env.add_tenant_migration("0004_greeting.sql", |b| match b {
        Backend::Postgres => "-- ${nope}: comments are not read for placeholders\n\
             /* nor ${block} comments */\n\
             CREATE FUNCTION greeting(who text) RETURNS text LANGUAGE sql\n\
             AS $$ SELECT 'hello ${not_a_placeholder} ' || who $$;\n\
             CREATE FUNCTION shout(who text) RETURNS text LANGUAGE plpgsql\n\
             AS $body$ BEGIN RETURN upper('${x} ' || who); END; $body$;\n\
             CREATE TABLE greetings (id int PRIMARY KEY, owner text NOT NULL DEFAULT '${schema}');\n"
            .into(),
        _ => "CREATE TABLE greetings (id INT PRIMARY KEY);\n".into(),
    });
    let a1 = env.tenant("a1");
    env.cli(&["create", &a1]).expect_code(0);
    let mut admin = env.admin().await;
    let source = admin
        .strings(
            &env,
            &a1,
            &format!(
                "SELECT p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
                 WHERE n.nspname = '{a1}' AND p.proname = 'greeting'"
            ),
        )
        .await;
    assert_eq!(
        source,
        vec![" SELECT 'hello ${not_a_placeholder} ' || who ".to_owned()]
    );
    assert_eq!(
        admin.strings(&env, &a1, "SELECT greeting('you')").await,
        vec!["hello ${not_a_placeholder} you".to_owned()]
    );
    assert_eq!(
        admin.strings(&env, &a1, "SELECT shout('you')").await,
        vec!["${X} YOU".to_owned()]
    );
    admin
        .exec_in(&env, &a1, "INSERT INTO greetings (id) VALUES (1)")
        .await;
    assert_eq!(
        admin
            .strings(&env, &a1, "SELECT owner FROM greetings")
            .await,
        vec![a1.clone()]
    );
    env.cleanup().await;
}

/// 9: a SQLite tenant migration cannot reach the catalog's file: `${catalog}` is refused when
/// the files are loaded, naming the file and line, and nothing is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_tenant_migrations_cannot_name_the_catalog() {
    let mut env = TestEnv::new(Backend::Sqlite);
    env.own_migrations();
    env.add_tenant_migration(CLIENTS, |_| {
        "CREATE TABLE clients (\n    id INTEGER PRIMARY KEY,\n    tenant_id TEXT REFERENCES ${catalog}.tenants (id)\n);\n"
            .into()
    });
    let a1 = env.tenant("a1");
    let run = env.cli(&["create", &a1]);
    run.expect_code(2);
    assert!(
        run.stderr().contains(
            "tenant/sqlite/0004_clients.sql: line 3: placeholder ${catalog} cannot be used in a \
             SQLite tenant migration"
        ),
        "{}",
        run.stderr()
    );
    assert_eq!(env.schemas().await, Vec::<String>::new());
    assert!(!env.dir.path().join("tenants").exists());
}

/// MySQL: a migration interrupted after its `${catalog}` foreign key ran is seen (by `status`
/// and by the resuming run) with its placeholders rendered for that tenant, so the live schema
/// shows the statement done and the run goes on after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_interrupted_migration_with_placeholders_resumes() {
    const SQL: &str = "CREATE TABLE ${schema}.clients (\n\
            id INT NOT NULL PRIMARY KEY,\n\
            tenant_id CHAR(36) NOT NULL\n\
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;\n\
        ALTER TABLE ${schema}.clients ADD CONSTRAINT fk_clients_tenant\n\
            FOREIGN KEY (tenant_id) REFERENCES ${catalog}.tenants (id);\n";
    let mut env = TestEnv::new(Backend::MySql);
    env.own_migrations();
    let a1 = env.tenant("a1");
    env.cli(&["create", &a1]).expect_code(0);
    env.add_tenant_migration(CLIENTS, |_| SQL.into());
    // Killed after both statements ran, the second one not counted yet.
    let cat = &env.catalog;
    let mut admin = env.admin().await;
    admin
        .exec_in(
            &env,
            &a1,
            &format!(
                "CREATE TABLE `{a1}`.clients (id INT NOT NULL PRIMARY KEY, tenant_id CHAR(36) NOT NULL) \
                 ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci; \
                 ALTER TABLE `{a1}`.clients ADD CONSTRAINT fk_clients_tenant \
                 FOREIGN KEY (tenant_id) REFERENCES `{cat}`.tenants (id); \
                 INSERT INTO _tenant_migrations (version, name, checksum, state, statements_done, started_at) \
                 VALUES (4, 'clients', '{}', 'running', 1, NOW(6))",
                checksum(SQL.as_bytes())
            ),
        )
        .await;
    let st = env.cli(&["--output", "json", "status", &a1]).json();
    let problem = &st["tenants"][0]["problems"][0];
    assert_eq!(problem["kind"], "interrupted", "{st:#}");
    assert_eq!(problem["resumable"], true, "{st:#}");

    let run = env.cli(&["--output", "json", "upgrade-all"]);
    run.expect_code(0);
    let line = tenant_of(&run.json(), &a1).clone();
    assert_eq!(line["status"], "migrated", "{line:#}");
    assert_eq!(line["migrations"][0]["resumed_after"], 2, "{line:#}");
    assert_eq!(admin.history(&env, &a1).await, common::applied_up_to(4));
    assert_eq!(
        referenced(&env, &a1, "clients").await,
        vec![format!("{cat}.tenants.id")]
    );
    env.cli(&["status"]).expect_code(0);
    env.cleanup().await;
}
