//! `diff`, `dump` and `check-structure --fix-sql` on the three servers: every change kind
//! written, applied to a tenant holding rows and checked clean; destructive changes refused
//! until allowed; the no-op; the round-trip proof; scratch schemas dropped after an error and
//! after Ctrl-C; a dump as a baseline; drift explained and fixed with the printed statements.

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};

use common::{Backend, TestEnv};
use tenant_migrator::db::{self, ConnectMode};
use tenant_migrator::engine::autogen::prove;
use tenant_migrator::engine::scratch::Scratch;
use tenant_migrator::migrate::{MigrationSource, Scope};
use tenant_migrator::schema::model::without_casts;

fn folder(b: Backend) -> &'static str {
    match b {
        Backend::MySql => "mysql",
        Backend::Postgres => "postgres",
        Backend::Sqlite => "sqlite",
    }
}

/// `diff --scope tenant --name <name> --dialect <b>` and `extra`.
fn diff_args<'a>(b: Backend, name: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "diff",
        "--scope",
        "tenant",
        "--name",
        name,
        "--dialect",
        folder(b),
    ];
    args.extend_from_slice(extra);
    args
}

/// `dump <schema>` on stdout, checked to succeed.
fn dump(env: &TestEnv, schema: &str) -> String {
    let run = env.cli(&["dump", schema]);
    run.expect_code(0);
    run.stdout()
}

fn desired_path(env: &TestEnv, b: Backend) -> PathBuf {
    env.dir
        .path()
        .join("schema")
        .join("tenant")
        .join(format!("{}.sql", folder(b)))
}

fn write_desired(env: &TestEnv, b: Backend, text: &str) {
    let path = desired_path(env, b);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("schema dir");
    std::fs::write(path, text).expect("write desired");
}

/// `text` without the lines that contain `marker`.
fn without_lines(text: &str, marker: &str) -> String {
    let kept: Vec<&str> = text.lines().filter(|l| !l.contains(marker)).collect();
    kept.join("\n") + "\n"
}

fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is not in:\n{text}");
    text.replacen(from, to, 1)
}

/// The tenant migration files of `version` in every dialect folder.
fn files_of(env: &TestEnv, version: &str) -> Vec<PathBuf> {
    let root = env.migrations_dir.as_ref().expect("own migrations");
    let mut out = Vec::new();
    for b in ["mysql", "postgres", "sqlite"] {
        let dir = root.join("tenant").join(b);
        for e in std::fs::read_dir(&dir).expect("dialect folder").flatten() {
            if e.file_name().to_string_lossy().starts_with(version) {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// One booking with the rows it points at, so rebuilds and column changes meet real rows.
async fn book_one(env: &TestEnv, schema: &str) {
    let mut admin = env.admin().await;
    admin
        .exec_in(
            env,
            schema,
            "INSERT INTO users_tenant (id, email, hashed_password) VALUES \
             ('11111111-1111-1111-1111-111111111111', 'ana@example.com', 'x'); \
             INSERT INTO service_categories (id, name) VALUES \
             ('22222222-2222-2222-2222-222222222222', 'hair'); \
             INSERT INTO services (id, category_id, name, duration_minutes, price) VALUES \
             ('33333333-3333-3333-3333-333333333333', '22222222-2222-2222-2222-222222222222', 'cut', 30, 10); \
             INSERT INTO appointments (id, client_id, professional_id, service_id, appointment_date, \
             start_time, end_time, status, price_at_booking, notes_by_professional) VALUES \
             ('44444444-4444-4444-4444-444444444444', '11111111-1111-1111-1111-111111111111', \
             '11111111-1111-1111-1111-111111111111', '33333333-3333-3333-3333-333333333333', \
             '2026-01-01', '10:00', '11:00', 'COMPLETED', 10, 'kept')",
        )
        .await;
}

async fn booking_status(env: &TestEnv, schema: &str) -> Vec<String> {
    env.admin()
        .await
        .strings(env, schema, "SELECT status FROM appointments")
        .await
}

/// The additive change of the walkthrough, per dialect: a wider type and a new default, two
/// new columns, an index and a unique index, a foreign key on an existing table, and a new
/// table with foreign keys.
fn additive(b: Backend, base: &str) -> String {
    match b {
        Backend::MySql => {
            let t = replaced(
                base,
                "`status` varchar(20) NOT NULL DEFAULT 'SCHEDULED',",
                "`status` varchar(30) NOT NULL DEFAULT 'CONFIRMED',\n    \
                 `loyalty_points` int(11) NOT NULL DEFAULT 0,\n    `referrer_id` char(36) NULL,\n    \
                 `nickname` varchar(20) COLLATE utf8mb4_bin NULL,",
            );
            t + "CREATE INDEX ix_appointments_loyalty ON appointments (loyalty_points);\n\
                 CREATE UNIQUE INDEX ux_appointments_slot ON appointments (professional_id, appointment_date, start_time);\n\
                 ALTER TABLE appointments ADD CONSTRAINT fk_appointments_referrer FOREIGN KEY (referrer_id) REFERENCES users_tenant (id) ON DELETE SET NULL;\n\
                 CREATE TABLE loyalty_rewards (\n  id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,\n  \
                 appointment_id char(36) NOT NULL,\n  points int NOT NULL CHECK (points > 0),\n  \
                 CONSTRAINT fk_loyalty_rewards_appointment FOREIGN KEY (appointment_id) REFERENCES appointments (id) ON DELETE CASCADE\n);\n"
        }
        Backend::Postgres => {
            let t = replaced(
                base,
                "\"status\" character varying(20) NOT NULL DEFAULT 'SCHEDULED'::character varying,",
                "\"status\" character varying(30) NOT NULL DEFAULT 'CONFIRMED',\n    \
                 \"loyalty_points\" integer NOT NULL DEFAULT 0,\n    \"referrer_id\" uuid,\n    \
                 \"nickname\" character varying(20) COLLATE \"C\",",
            );
            t + "CREATE INDEX ix_appointments_loyalty ON appointments (loyalty_points DESC) INCLUDE (status);\n\
                 CREATE UNIQUE INDEX ux_appointments_slot ON appointments (professional_id, appointment_date, start_time);\n\
                 ALTER TABLE appointments ADD CONSTRAINT fk_appointments_referrer FOREIGN KEY (referrer_id) REFERENCES users_tenant (id) ON DELETE SET NULL;\n\
                 CREATE TABLE loyalty_rewards (\n  id bigserial PRIMARY KEY,\n  \
                 appointment_id uuid NOT NULL REFERENCES appointments (id) ON DELETE CASCADE,\n  \
                 points integer NOT NULL CHECK (points > 0)\n);\n"
        }
        Backend::Sqlite => {
            let t = replaced(
                base,
                "\"status\" text NOT NULL DEFAULT 'SCHEDULED',",
                "\"status\" text NOT NULL DEFAULT 'CONFIRMED',\n    \
                 \"loyalty_points\" integer NOT NULL DEFAULT 0,\n    \
                 \"referrer_id\" text REFERENCES users_tenant (id) ON DELETE SET NULL,",
            );
            t + "CREATE INDEX ix_appointments_loyalty ON appointments (loyalty_points);\n\
                 CREATE UNIQUE INDEX ux_appointments_slot ON appointments (professional_id, appointment_date, start_time);\n\
                 CREATE TABLE loyalty_rewards (\n  id integer PRIMARY KEY AUTOINCREMENT,\n  \
                 appointment_id text NOT NULL REFERENCES appointments (id) ON DELETE CASCADE,\n  \
                 points integer NOT NULL CHECK (points > 0)\n);\n"
        }
    }
}

/// The destructive change: a dropped column, index, unique index and foreign key, and a
/// narrower type.
fn destructive(b: Backend, current: &str) -> String {
    let mut t = without_lines(current, "notes_by_professional");
    t = without_lines(&t, "ix_appointments_date_status");
    t = without_lines(&t, "ux_appointments_slot");
    match b {
        Backend::MySql => {
            t = without_lines(&t, "fk_appointments_referrer");
            // A column with its own check: MariaDB drops the check with a bare MODIFY.
            t = replaced(
                &t,
                "points int NOT NULL CHECK",
                "points bigint NOT NULL CHECK",
            );
            // A type change keeps the column's own collation.
            t = replaced(&t, "`nickname` varchar(20)", "`nickname` varchar(30)");
            replaced(
                &t,
                "`loyalty_points` int(11) NOT NULL",
                "`loyalty_points` smallint NOT NULL",
            )
        }
        Backend::Postgres => {
            t = without_lines(&t, "fk_appointments_referrer");
            t = replaced(
                &t,
                "\"nickname\" character varying(20)",
                "\"nickname\" character varying(30)",
            );
            replaced(
                &t,
                "\"loyalty_points\" integer NOT NULL",
                "\"loyalty_points\" smallint NOT NULL",
            )
        }
        Backend::Sqlite => {
            t = replaced(
                &t,
                "\"referrer_id\" text REFERENCES users_tenant (id) ON DELETE SET NULL,",
                "\"referrer_id\" text,",
            );
            replaced(
                &t,
                "\"loyalty_points\" integer NOT NULL",
                "\"loyalty_points\" smallint NOT NULL",
            )
        }
    }
}

async fn diff_writes_applies_and_refuses_what_loses_data(b: Backend) {
    let mut env = TestEnv::new(b);
    env.own_migrations();
    let t = env.tenant("a");
    env.cli(&["create", &t]).expect_code(0);
    book_one(&env, &t).await;
    let base = dump(&env, &t);
    let diff = |name: &str, extra: &[&str]| env.cli(&diff_args(b, name, extra));

    // No differences: nothing written, exit 0.
    write_desired(&env, b, &base);
    let run = diff("nothing", &[]);
    run.expect_code(0);
    assert!(run.stdout().contains("no differences"), "{}", run.stdout());
    assert!(files_of(&env, "0004").is_empty());

    // Additive changes: written, proved, applied to a tenant with rows.
    let wanted = additive(b, &base);
    write_desired(&env, b, &wanted);
    let run = diff("add_loyalty_points", &["--output", "json"]);
    run.expect_code(0);
    let r = run.json();
    assert_eq!(r["written"], true, "{r:#}");
    assert_eq!(r["version"], 4, "{r:#}");
    let changes = r["dialects"][0]["changes"].to_string();
    for expected in [
        "create table loyalty_rewards",
        "add column appointments.loyalty_points",
        "add index appointments.ix_appointments_loyalty",
        "add unique index appointments.ux_appointments_slot",
        "foreign key loyalty_rewards",
    ] {
        assert!(changes.contains(expected), "{expected}: {r:#}");
    }
    if b == Backend::Sqlite {
        // The default change and the new key rebuild the table.
        assert!(
            changes.contains("alter column appointments.status"),
            "{r:#}"
        );
    } else {
        assert!(
            changes.contains("alter column appointments.status: "),
            "{r:#}"
        );
        assert!(
            changes.contains("foreign key appointments.fk_appointments_referrer"),
            "{r:#}"
        );
    }
    let files = files_of(&env, "0004");
    assert_eq!(files.len(), 3, "one file per dialect folder: {files:?}");
    let ours = files
        .iter()
        .find(|f| f.to_string_lossy().contains(&format!("/{}/", folder(b))))
        .expect("this dialect's file");
    let text = std::fs::read_to_string(ours).expect("migration");
    assert!(text.contains("written by `tenant-migrator diff`"), "{text}");
    if b == Backend::Sqlite {
        assert!(text.contains("tm_rebuild_appointments"), "{text}");
    } else {
        assert!(text.contains("COLLATE"), "a column's own collation: {text}");
    }
    // The other dialects' files say they need writing by hand (a MigrationSource loads them).
    MigrationSource::from_dir(env.migrations_dir.as_ref().expect("dir")).expect("folders agree");
    env.cli(&["upgrade-all"]).expect_code(0);
    env.cli(&["check-structure", &t]).expect_code(0);
    assert_eq!(booking_status(&env, &t).await, vec!["COMPLETED".to_owned()]);

    // Destructive changes: refused with the list, nothing written.
    let narrower = destructive(b, &wanted);
    write_desired(&env, b, &narrower);
    let run = diff("slim_down", &[]);
    run.expect_code(1);
    let out = run.stdout();
    for expected in [
        "destructive: drop column appointments.notes_by_professional",
        "destructive: drop index appointments.ix_appointments_date_status",
        "destructive: drop unique index appointments.ux_appointments_slot",
        "narrows the type",
        "--allow-destructive",
        "rename",
    ] {
        assert!(out.contains(expected), "{expected}: {out}");
    }
    assert!(files_of(&env, "0005").is_empty(), "nothing written");
    // Allowed: written, applied, clean.
    diff("slim_down", &["--allow-destructive"]).expect_code(0);
    assert_eq!(files_of(&env, "0005").len(), 3);
    env.cli(&["upgrade-all"]).expect_code(0);
    env.cli(&["check-structure", &t]).expect_code(0);
    assert_eq!(booking_status(&env, &t).await, vec!["COMPLETED".to_owned()]);
    // And the tenant now dumps as the desired file says.
    write_desired(&env, b, &dump(&env, &t));
    diff("again", &[]).expect_code(0);
    assert!(files_of(&env, "0006").is_empty());
    env.cleanup().await;
}

/// The names of the scratch schemas a run made, from its log lines, with their servers.
fn scratch_schemas(stderr: &str) -> Vec<(String, String)> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "scratch schema created")
        .map(|v| {
            (
                v["schema"].as_str().unwrap_or_default().to_owned(),
                v["server"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Checks that none of `made` is left: on a server by listing schemas, on SQLite by the
/// temporary folder being gone.
async fn assert_dropped(env: &TestEnv, made: &[(String, String)]) {
    assert!(!made.is_empty(), "the run made scratch schemas");
    let mut admin = env.admin().await;
    for (schema, server) in made {
        assert!(schema.starts_with("tm_reference_"), "{schema}");
        match server.strip_prefix("sqlite://") {
            Some(path) => {
                let dir = Path::new(path).parent().expect("folder");
                if dir.starts_with(std::env::temp_dir()) {
                    assert!(!dir.exists(), "{} is left", dir.display());
                } else {
                    let file = dir.join("tenants").join(format!("{schema}.db"));
                    assert!(!file.exists(), "{} is left", file.display());
                }
            }
            None => assert!(
                admin.schemas_like(schema).await.is_empty(),
                "{schema} is left on {server}"
            ),
        }
    }
}

async fn scratch_schemas_are_dropped_after_an_error_and_after_ctrl_c(b: Backend) {
    let mut env = TestEnv::new(b);
    env.own_migrations();
    let t = env.tenant("a");
    env.cli(&["create", &t]).expect_code(0);
    let base = dump(&env, &t);
    // A desired file the server refuses, after the migrations' scratch schema was built.
    write_desired(
        &env,
        b,
        &(base.clone() + "CREATE TABLE broken (id int, id int);\n"),
    );
    let run = env.cli(&diff_args(b, "broken", &[]));
    run.expect_code(1);
    assert!(run.stderr().contains("broken"), "{}", run.stderr());
    assert_dropped(&env, &scratch_schemas(&run.stderr())).await;
    assert!(files_of(&env, "0004").is_empty());

    // Ctrl-C once the first scratch schema exists: everything made is dropped.
    write_desired(&env, b, &base);
    let mut child = env.spawn(&diff_args(b, "stopped", &[]));
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = std::io::BufReader::new(stderr).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.expect("log line");
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("scratch schema created") {
            let status = std::process::Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .expect("kill runs");
            assert!(status.success());
            break;
        }
    }
    for line in lines {
        seen.push_str(&line.expect("log line"));
        seen.push('\n');
    }
    let status = child.wait().expect("exits");
    // Stopped while working (130), or the work was already done (0): never anything left.
    assert!(
        matches!(status.code(), Some(130) | Some(0)),
        "{status:?}: {seen}"
    );
    if status.code() == Some(130) {
        assert!(seen.contains("interrupted"), "{seen}");
    }
    assert_dropped(&env, &scratch_schemas(&seen)).await;
    assert!(files_of(&env, "0004").is_empty());
    env.cleanup().await;
}

/// The proof on its own: a set that does not reach the desired schema, or does not apply,
/// is reported with what differs.
async fn the_proof_names_what_the_new_migration_misses(b: Backend) {
    let mut env = TestEnv::new(b);
    env.own_migrations();
    let config = env.config();
    let dialect = db::connect(
        &config,
        ConnectMode {
            probe_catalog: false,
            strict_tenants: true,
        },
    )
    .await
    .expect("connects");
    let source =
        MigrationSource::from_dir(env.migrations_dir.as_ref().expect("dir")).expect("loads");
    let set = source
        .set(Scope::Tenant, dialect.backend())
        .bind(&config.catalog_name(), &config.placeholders)
        .expect("binds");
    let scratch = Scratch::new(dialect.as_ref());
    let desired = scratch.build(&set, "reference").await.expect("builds");
    // Proved: the same migrations give the same schema.
    assert_eq!(
        prove(&scratch, &set, &desired).await.expect("proof runs"),
        Vec::<String>::new()
    );
    // The desired schema has a table the set does not make.
    let mut bigger = desired.clone();
    let mut extra = desired.tables.values().next().expect("a table").clone();
    extra.name = "gift_cards".into();
    extra.foreign_keys.clear();
    extra.indexes.clear();
    bigger.tables.insert(extra.name.clone(), extra);
    let remaining = prove(&scratch, &set, &bigger).await.expect("proof runs");
    assert_eq!(remaining.len(), 1, "{remaining:?}");
    assert!(
        remaining[0].starts_with("create table gift_cards"),
        "{remaining:?}"
    );
    // A set whose new file fails on an empty schema.
    env.add_tenant_migration("0004_broken.sql", |_| {
        "CREATE TABLE users_tenant (id int);\n".into()
    });
    let broken = MigrationSource::from_dir(env.migrations_dir.as_ref().expect("dir"))
        .expect("loads")
        .set(Scope::Tenant, dialect.backend())
        .bind(&config.catalog_name(), &config.placeholders)
        .expect("binds");
    let remaining = prove(&scratch, &broken, &desired)
        .await
        .expect("proof runs");
    assert!(
        remaining[0].contains("do not apply to an empty schema"),
        "{remaining:?}"
    );
    scratch.drop_all().await;
    dialect.close().await;
    env.cleanup().await;
}

/// `dump` of a healthy tenant as the only migration of a new project: a tenant made from it
/// is clean and dumps the same.
async fn a_dump_is_a_baseline_migration(b: Backend) {
    let env = TestEnv::new(b);
    let t = env.tenant("a");
    env.cli(&["create", &t]).expect_code(0);
    let text = dump(&env, &t);
    assert!(text.contains("CREATE TABLE"), "{text}");
    let mut project = TestEnv::new(b);
    let root = project.dir.path().join("migrations");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for f in std::fs::read_dir(shipped.join("public").join(folder(b)))
        .expect("public")
        .flatten()
    {
        let dst = root.join("public").join(folder(b));
        std::fs::create_dir_all(&dst).expect("mkdir");
        std::fs::copy(f.path(), dst.join(f.file_name())).expect("copy");
    }
    let tenant_dir = root.join("tenant").join(folder(b));
    std::fs::create_dir_all(&tenant_dir).expect("mkdir");
    std::fs::write(tenant_dir.join("0001_baseline.sql"), &text).expect("baseline");
    project.migrations_dir = Some(root);
    let u = project.tenant("b");
    project.cli(&["create", &u]).expect_code(0);
    project.cli(&["check-structure"]).expect_code(0);
    let again = dump(&project, &u);
    // The same text but for the header and PostgreSQL's casts, which it prints differently
    // for a condition it read back (the model compares without them).
    let body = |s: &str| without_casts(&s.lines().skip(1).collect::<Vec<_>>().join("\n"));
    assert_eq!(body(&again), body(&text));
    // Nothing to dump, an unknown server, a bad name: a clear error each.
    let run = env.cli(&["dump", &env.tenant("nowhere")]);
    run.expect_code(2);
    assert!(run.stderr().contains("does not exist"), "{}", run.stderr());
    let run = env.cli(&["dump", &t, "--server", "elsewhere"]);
    run.expect_code(2);
    assert!(
        run.stderr().contains("no server named elsewhere"),
        "{}",
        run.stderr()
    );
    env.cli(&["dump", "Bad-Name"]).expect_code(2);
    env.cleanup().await;
    project.cleanup().await;
}

/// Drift explained per difference, and `--fix-sql` statements that, run by hand, make the
/// tenant clean again.
async fn fix_sql_brings_a_drifted_tenant_back(b: Backend) {
    let env = TestEnv::new(b);
    let t = env.tenant("a");
    env.cli(&["create", &t]).expect_code(0);
    book_one(&env, &t).await;
    let drift = match b {
        Backend::MySql => {
            "ALTER TABLE appointments ALTER COLUMN status SET DEFAULT 'CONFIRMED'; \
             DROP INDEX ix_appointments_date_status ON appointments; \
             ALTER TABLE services ADD COLUMN nickname varchar(20) NULL"
        }
        Backend::Postgres => {
            "ALTER TABLE appointments ALTER COLUMN status SET DEFAULT 'CONFIRMED'; \
             DROP INDEX ix_appointments_date_status; \
             ALTER TABLE services ADD COLUMN nickname varchar(20)"
        }
        Backend::Sqlite => {
            "DROP INDEX ix_appointments_date_status; ALTER TABLE services ADD COLUMN nickname text"
        }
    };
    let mut admin = env.admin().await;
    admin.exec_in(&env, &t, drift).await;
    let run = env.cli(&["check-structure", &t]);
    run.expect_code(1);
    let out = run.stdout();
    assert!(
        out.contains("missing index appointments.ix_appointments_date_status"),
        "{out}"
    );
    assert!(out.contains("unexpected column services.nickname"), "{out}");
    if b != Backend::Sqlite {
        assert!(out.contains("changed column appointments.status"), "{out}");
    }
    let run = env.cli(&["check-structure", &t, "--fix-sql"]);
    run.expect_code(1);
    let fix = run.stdout();
    assert!(fix.contains("never run"), "{fix}");
    // Printed, never run: the tenant is still drifted.
    env.cli(&["check-structure", &t]).expect_code(1);
    admin.exec_in(&env, &t, &fix).await;
    env.cli(&["check-structure", &t]).expect_code(0);
    assert_eq!(booking_status(&env, &t).await, vec!["COMPLETED".to_owned()]);
    // Without a schema, --fix-sql is a usage error.
    env.cli(&["check-structure", "--fix-sql"]).expect_code(2);
    env.cleanup().await;
}

/// Bad input to `diff` gets a clear error and writes nothing.
async fn diff_refuses_bad_input(b: Backend) {
    let mut env = TestEnv::new(b);
    env.own_migrations();
    for (args, says) in [
        (vec!["--name", "Add-Points"], "snake_case"),
        (
            vec!["--name", "x", "--dev-url", "ftp://example"],
            "unknown URL scheme",
        ),
        (
            vec!["--name", "x", "--desired", "nowhere.sql"],
            "is not a file",
        ),
        (vec!["--name", "x"], "no desired schema file"),
    ] {
        let mut all = vec!["diff", "--scope", "tenant"];
        all.extend(args);
        let run = env.cli(&all);
        run.expect_code(2);
        assert!(run.stderr().contains(says), "{says}: {}", run.stderr());
    }
    // No migrations folder where diff looks: refused, nothing made.
    write_desired(&env, b, "CREATE TABLE t (id int);\n");
    let run = env.cli(&diff_args(b, "x", &["--migrations-dir", "nowhere"]));
    run.expect_code(2);
    assert!(
        run.stderr().contains("nowhere is not a"),
        "{}",
        run.stderr()
    );
    assert!(!env.dir.path().join("nowhere").exists());
    // Nor a ./migrations folder where diff runs (no MIGRATIONS_DIR either).
    let vars: Vec<(String, String)> = env
        .vars()
        .into_iter()
        .filter(|(k, _)| k != "MIGRATIONS_DIR")
        .collect();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    std::fs::rename(
        env.dir.path().join("migrations"),
        env.dir.path().join("elsewhere"),
    )
    .expect("mv");
    let run = env.cli_bare(&diff_args(b, "x", &[]), &vars);
    run.expect_code(2);
    assert!(
        run.stderr().contains("migrations is not a folder"),
        "{}",
        run.stderr()
    );
    assert!(!env.dir.path().join("migrations").exists(), "nothing made");
    std::fs::rename(
        env.dir.path().join("elsewhere"),
        env.dir.path().join("migrations"),
    )
    .expect("mv");
    // A desired file that does not split is named with its problem.
    write_desired(
        &env,
        b,
        "CREATE TABLE t (note text DEFAULT 'unterminated);\n",
    );
    let run = env.cli(&diff_args(b, "x", &[]));
    run.expect_code(2);
    assert!(
        run.stderr().contains(&format!("{}.sql", folder(b))),
        "{}",
        run.stderr()
    );
    assert!(files_of(&env, "0004").is_empty());
    env.cleanup().await;
}

/// The desired files the repository ships match its migrations: `diff` finds nothing.
async fn shipped_desired_files_match_the_migrations(b: Backend) {
    let mut env = TestEnv::new(b);
    env.own_migrations();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schema")
        .join("tenant")
        .join(format!("{}.sql", folder(b)));
    write_desired(
        &env,
        b,
        &std::fs::read_to_string(shipped).expect("shipped desired file"),
    );
    let run = env.cli(&diff_args(b, "nothing", &[]));
    run.expect_code(0);
    assert!(run.stdout().contains("no differences"), "{}", run.stdout());
    env.cleanup().await;
}

backend_tests!(
    shipped_desired_files_match_the_migrations,
    diff_writes_applies_and_refuses_what_loses_data,
    scratch_schemas_are_dropped_after_an_error_and_after_ctrl_c,
    the_proof_names_what_the_new_migration_misses,
    a_dump_is_a_baseline_migration,
    fix_sql_brings_a_drifted_tenant_back,
    diff_refuses_bad_input,
);

/// One invocation writes the file of every dialect that has a desired file: the configured
/// MariaDB, SQLite in a temporary folder, PostgreSQL on a `--dev-url`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_diff_writes_every_dialect() {
    let mut env = TestEnv::new(Backend::MySql);
    let root = env.own_migrations();
    for b in [Backend::MySql, Backend::Postgres, Backend::Sqlite] {
        let mut text = String::new();
        for v in [
            "0001_users_and_services",
            "0002_appointments",
            "0003_professional_schedule",
        ] {
            text.push_str(
                &std::fs::read_to_string(
                    root.join("tenant").join(folder(b)).join(format!("{v}.sql")),
                )
                .expect("shipped migration"),
            );
        }
        text.push_str("CREATE TABLE gift_cards (code varchar(20) NOT NULL PRIMARY KEY, balance_cents integer NOT NULL DEFAULT 0);\n");
        write_desired(&env, b, &text);
    }
    let run = env.cli(&[
        "--output",
        "json",
        "diff",
        "--scope",
        "tenant",
        "--name",
        "gift_cards",
        "--dev-url",
        common::POSTGRES_URL,
    ]);
    run.expect_code(0);
    let r = run.json();
    assert_eq!(r["written"], true, "{r:#}");
    assert_eq!(r["dialects"].as_array().map(Vec::len), Some(3), "{r:#}");
    assert_eq!(r["placeholders"], serde_json::json!([]), "{r:#}");
    for f in files_of(&env, "0004") {
        let text = std::fs::read_to_string(&f).expect("file");
        assert!(
            text.contains("CREATE TABLE") && text.contains("gift_cards"),
            "{}: {text}",
            f.display()
        );
    }
    let t = env.tenant("a");
    env.cli(&["create", &t]).expect_code(0);
    env.cli(&["check-structure"]).expect_code(0);
    // Without a server for PostgreSQL, a clear usage error and nothing written.
    std::fs::write(
        desired_path(&env, Backend::Postgres),
        "CREATE TABLE x (id int);\n",
    )
    .expect("write");
    let run = env.cli(&["diff", "--scope", "tenant", "--name", "more"]);
    run.expect_code(2);
    assert!(run.stderr().contains("--dev-url"), "{}", run.stderr());
    assert!(files_of(&env, "0005").is_empty());
    env.cleanup().await;
}

/// MariaDB: a primary key holding an AUTO_INCREMENT column is replaced in one statement (the
/// column must stay a key), after the new column it takes in exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_auto_increment_key_is_replaced_in_one_statement() {
    let mut env = TestEnv::new(Backend::MySql);
    env.own_migrations();
    env.add_tenant_migration("0004_counters.sql", |b| match b {
        Backend::MySql => {
            "CREATE TABLE counters (id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY, n int NOT NULL);\n\
             CREATE TABLE codes (code char(3) NOT NULL PRIMARY KEY);\n"
                .into()
        }
        _ => "CREATE TABLE counters (id integer PRIMARY KEY, n integer NOT NULL);\n\
              CREATE TABLE codes (code char(3) NOT NULL PRIMARY KEY);\n"
            .into(),
    });
    // Rows the new AUTO_INCREMENT column numbers as it is added with its key.
    env.cli(&["create", &env.tenant("a")]).expect_code(0);
    env.admin()
        .await
        .exec_in(
            &env,
            &env.tenant("a"),
            "INSERT INTO codes VALUES ('abc'), ('def')",
        )
        .await;
    let t = env.tenant("a");
    let wanted = replaced(
        &replaced(
            &dump(&env, &t),
            "    `n` int(11) NOT NULL,\n    PRIMARY KEY (`id`)",
            "    `n` int(11) NOT NULL,\n    `shard` int(11) NOT NULL DEFAULT 0,\n    PRIMARY KEY (`id`, `shard`)",
        ),
        "    `code` char(3) NOT NULL,\n    PRIMARY KEY (`code`)",
        "    `code` char(3) NOT NULL,\n    `id` bigint NOT NULL AUTO_INCREMENT,\n    PRIMARY KEY (`id`),\n    UNIQUE KEY `uq_codes_code` (`code`)",
    );
    write_desired(&env, Backend::MySql, &wanted);
    let run = env.cli(&diff_args(Backend::MySql, "shard_counters", &[]));
    run.expect_code(0);
    let file = env.migration_file("tenant", Backend::MySql, "0005_shard_counters.sql");
    let text = std::fs::read_to_string(file).expect("written");
    assert!(
        text.contains("DROP PRIMARY KEY, ADD PRIMARY KEY (`id`, `shard`)"),
        "{text}"
    );
    assert!(
        text.contains("AUTO_INCREMENT, DROP PRIMARY KEY, ADD PRIMARY KEY (`id`)"),
        "{text}"
    );
    env.cli(&["upgrade-all"]).expect_code(0);
    env.cli(&["check-structure", &t]).expect_code(0);
    let ids = env
        .admin()
        .await
        .strings(&env, &t, "SELECT CONCAT(code, id) FROM codes ORDER BY id")
        .await;
    assert_eq!(ids, vec!["abc1".to_owned(), "def2".to_owned()]);
    env.cleanup().await;
}

/// MariaDB refuses to change the type of a column a foreign key uses: the keys are dropped
/// around the change and added back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_key_columns_are_widened_around_their_foreign_keys() {
    let mut env = TestEnv::new(Backend::MySql);
    env.own_migrations();
    env.add_tenant_migration("0004_gifts.sql", |_| {
        "CREATE TABLE gift_parents (id int NOT NULL PRIMARY KEY);\n\
         CREATE TABLE gift_children (id int NOT NULL PRIMARY KEY, parent_id int NOT NULL, \
         CONSTRAINT fk_gift_children_parent FOREIGN KEY (parent_id) REFERENCES gift_parents (id));\n"
            .into()
    });
    let t = env.tenant("a");
    env.cli(&["create", &t]).expect_code(0);
    let base = dump(&env, &t);
    let wanted = replaced(
        &replaced(
            &base,
            "CREATE TABLE `gift_children` (\n    `id` int(11) NOT NULL,\n    `parent_id` int(11) NOT NULL,",
            "CREATE TABLE `gift_children` (\n    `id` int(11) NOT NULL,\n    `parent_id` bigint NOT NULL,",
        ),
        "CREATE TABLE `gift_parents` (\n    `id` int(11) NOT NULL,",
        "CREATE TABLE `gift_parents` (\n    `id` bigint NOT NULL,\n    `label` varchar(10) NULL CHECK (`label` <> ''),",
    );
    // The key's index replaced by a wider one (the key needs one at every moment).
    let wanted = replaced(
        &wanted,
        "KEY `fk_gift_children_parent` (`parent_id`)",
        "KEY `ix_gift_children_parent` (`parent_id`, `id`)",
    );
    write_desired(&env, Backend::MySql, &wanted);
    let run = env.cli(&diff_args(
        Backend::MySql,
        "wider_gifts",
        &["--allow-destructive"],
    ));
    run.expect_code(0);
    let text = std::fs::read_to_string(env.migration_file(
        "tenant",
        Backend::MySql,
        "0005_wider_gifts.sql",
    ))
    .expect("written");
    assert!(
        text.contains("DROP FOREIGN KEY `fk_gift_children_parent`"),
        "{text}"
    );
    env.cli(&["upgrade-all"]).expect_code(0);
    env.cli(&["check-structure", &t]).expect_code(0);
    env.cleanup().await;
}

/// SQLite: a table rebuilt for a change `ALTER TABLE` cannot make keeps its options
/// (`WITHOUT ROWID`) and its rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rebuild_keeps_table_options_and_rows() {
    let mut env = TestEnv::new(Backend::Sqlite);
    env.own_migrations();
    env.add_tenant_migration("0004_tags.sql", |_| {
        "CREATE TABLE tags (name text NOT NULL PRIMARY KEY, weight integer NOT NULL DEFAULT 1) WITHOUT ROWID;\n\
         CREATE VIEW heavy_tags AS SELECT name FROM tags WHERE weight > 3;\n\
         CREATE TABLE tickets (id integer PRIMARY KEY AUTOINCREMENT, note text);\n\
         CREATE TABLE audited (id integer PRIMARY KEY, v text);\n\
         CREATE TRIGGER audited_touch AFTER UPDATE ON audited BEGIN SELECT 1; END;\n"
            .into()
    });
    let t = env.tenant("a");
    env.cli(&["create", &t]).expect_code(0);
    env.admin()
        .await
        .exec_in(
            &env,
            &t,
            "INSERT INTO tags (name, weight) VALUES ('vip', 5); \
             INSERT INTO tickets (note) VALUES ('a'), ('b'); DELETE FROM tickets WHERE id = 2",
        )
        .await;
    let base = dump(&env, &t);
    // A table with a trigger would lose it in a rebuild: refused, nothing written.
    write_desired(
        &env,
        Backend::Sqlite,
        &replaced(&base, "\"v\" text", "\"v\" text NOT NULL DEFAULT 'x'"),
    );
    let run = env.cli(&diff_args(Backend::Sqlite, "audited_v", &[]));
    run.expect_code(1);
    assert!(
        run.stdout().contains("trigger audited_touch"),
        "{}",
        run.stdout()
    );
    let wanted = replaced(
        &replaced(
            &base,
            "\"weight\" integer NOT NULL DEFAULT 1",
            "\"weight\" integer NOT NULL DEFAULT 1,\n    \"created\" text NOT NULL DEFAULT (strftime('%Y', 'now'))",
        ),
        "\"note\" text",
        "\"note\" text NOT NULL DEFAULT ''",
    );
    assert!(wanted.contains("without rowid"), "{wanted}");
    write_desired(&env, Backend::Sqlite, &wanted);
    let run = env.cli(&diff_args(Backend::Sqlite, "tag_dates", &[]));
    run.expect_code(0);
    let text = std::fs::read_to_string(env.migration_file(
        "tenant",
        Backend::Sqlite,
        "0005_tag_dates.sql",
    ))
    .expect("written");
    assert!(
        text.contains("tm_rebuild_tags") && text.contains(") without rowid"),
        "{text}"
    );
    env.cli(&["upgrade-all"]).expect_code(0);
    env.cli(&["check-structure", &t]).expect_code(0);
    let weights = env
        .admin()
        .await
        .strings(
            &env,
            &t,
            "SELECT name || ':' || weight FROM heavy_tags JOIN tags USING (name)",
        )
        .await;
    // The counter went along: a deleted ticket's number is not handed out again.
    let mut admin = env.admin().await;
    admin
        .exec_in(&env, &t, "INSERT INTO tickets (note) VALUES ('c')")
        .await;
    let ids = admin
        .strings(&env, &t, "SELECT CAST(id AS TEXT) FROM tickets ORDER BY id")
        .await;
    assert_eq!(ids, vec!["1".to_owned(), "3".to_owned()]);
    assert_eq!(weights, vec!["vip:5".to_owned()]);
    env.cleanup().await;
}

/// SQLite migrations run with foreign key enforcement off (as table rebuilds need): one that
/// breaks a key, or leaves keys the database cannot check, is rolled back whole, history
/// row and all; rows that were broken before it do not hold it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_migrations_that_break_foreign_keys_are_rolled_back() {
    let mut env = TestEnv::new(Backend::Sqlite);
    env.own_migrations();
    let t = env.tenant("a");
    env.cli(&["create", &t]).expect_code(0);
    book_one(&env, &t).await;
    let mut admin = env.admin().await;
    // An orphan from before (written with enforcement off, as an old bug might have).
    admin
        .exec_in(
            &env,
            &t,
            "PRAGMA foreign_keys = OFF; INSERT INTO services (id, category_id, name, duration_minutes, price) \
             VALUES ('55555555-5555-5555-5555-555555555555', '66666666-6666-6666-6666-666666666666', 'old', 10, 1)",
        )
        .await;
    let cases = [
        (
            "0004_orphans.sql",
            "DELETE FROM users_tenant;\n",
            "more row(s) whose foreign keys point nowhere (for example appointments row",
        ),
        (
            "0004_mismatch.sql",
            "CREATE TABLE codes (code text);\nCREATE TABLE uses (code text REFERENCES codes (code));\n",
            "can no longer be checked",
        ),
    ];
    for (file, sql, says) in cases {
        env.add_tenant_migration(file, |_| sql.to_owned());
        let run = env.cli(&["upgrade", &t]);
        run.expect_code(1);
        assert!(run.stderr().contains(says), "{says}: {}", run.stderr());
        assert!(run.stderr().contains("was rolled back"), "{}", run.stderr());
        assert_eq!(
            admin.history(&env, &t).await.len(),
            3,
            "no history row for {file}"
        );
        assert!(!admin.tables(&env, &t).await.contains(&"uses".to_owned()));
        assert_eq!(admin.count(&env, &t, "users_tenant").await, 1);
        std::fs::remove_file(env.migration_file("tenant", Backend::Sqlite, file)).expect("rm");
        for b in [Backend::MySql, Backend::Postgres] {
            std::fs::remove_file(env.migration_file("tenant", b, file)).expect("rm");
        }
    }
    // A migration that keeps its keys applies beside the old orphan.
    env.add_tenant_migration("0004_tags.sql", |_| {
        "CREATE TABLE tags (name text PRIMARY KEY);\n".into()
    });
    env.cli(&["upgrade", &t]).expect_code(0);
    assert_eq!(admin.history(&env, &t).await.len(), 4);
    env.cleanup().await;
}

/// PostgreSQL: a serial widened to bigint gets its sequence widened too (the column would
/// otherwise stop at 2,147,483,647).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_serial_widened_with_its_sequence() {
    let mut env = TestEnv::new(Backend::Postgres);
    env.own_migrations();
    env.add_tenant_migration("0004_tickets.sql", |b| match b {
        Backend::Postgres => "CREATE TABLE tickets (id serial PRIMARY KEY, n integer);\n".into(),
        _ => "CREATE TABLE tickets (id integer PRIMARY KEY, n integer);\n".into(),
    });
    let t = env.tenant("a");
    env.cli(&["create", &t]).expect_code(0);
    let wanted = replaced(
        &dump(&env, &t),
        "\"id\" serial NOT NULL",
        "\"id\" bigserial NOT NULL",
    );
    write_desired(&env, Backend::Postgres, &wanted);
    let run = env.cli(&diff_args(Backend::Postgres, "big_tickets", &[]));
    run.expect_code(0);
    env.cli(&["upgrade-all"]).expect_code(0);
    env.cli(&["check-structure", &t]).expect_code(0);
    let types = env
        .admin()
        .await
        .strings(
            &env,
            &t,
            &format!(
                "SELECT format_type(s.seqtypid, NULL) FROM pg_sequence s \
                 WHERE s.seqrelid = '\"{t}\".tickets_id_seq'::regclass"
            ),
        )
        .await;
    assert_eq!(types, vec!["bigint".to_owned()]);
    env.cleanup().await;
}
