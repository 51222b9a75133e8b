//! What the CLI refuses before touching anything (invalid names, bad configuration, never
//! echoing a password), the seed's URLs, `.env`, and `new-migration`.

mod common;

use common::{Backend, MYSQL_URL, POSTGRES_URL, TestEnv, applied_up_to, tenant_of};

const PASSWORD: &str = "Sup3rSecret";

fn invalid_names(env: &TestEnv, canary: &str) -> Vec<String> {
    vec![
        "Robert'); DROP DATABASE x;--".into(),
        format!("Robert'); DROP DATABASE {canary};--"),
        format!("x`; DROP DATABASE `{canary}"),
        format!("x\"; DROP SCHEMA \"{canary}\" CASCADE; --"),
        "mysql".into(),
        "information_schema".into(),
        "performance_schema".into(),
        "sys".into(),
        "a".repeat(64),
        String::new(),
        "UPPER".into(),
        "pg_toast".into(),
        "pg_catalog".into(),
        "public".into(),
        "../escape".into(),
        env.tenant("with space"),
        env.tenant("dash-ed"),
    ]
}

async fn invalid_names_are_refused_and_create_nothing(b: Backend) {
    let env = TestEnv::new(b);
    let canary = env.tenant("canary");
    let mut admin = env.admin().await;
    admin.create_schema(&env, &canary).await;
    let good = env.tenant("good");
    for name in invalid_names(&env, &canary) {
        for args in [
            vec!["create", name.as_str()],
            vec!["create", good.as_str(), name.as_str()],
            vec!["upgrade", name.as_str()],
            vec!["status", name.as_str()],
            vec!["repair", name.as_str()],
            vec!["--dry-run", "create", name.as_str()],
        ] {
            let run = env.cli(&args);
            run.expect_code(2);
            let err = run.stderr();
            assert!(err.contains("schema_name:"), "{args:?}: {err}");
            assert!(!err.contains("panicked"), "{args:?}: {err}");
        }
        let json = env.cli(&["--output", "json", "create", &name]);
        json.expect_code(2);
        assert_eq!(json.json()["exit_code"], 2);
        assert!(
            json.json()["error"]
                .as_str()
                .unwrap_or_default()
                .starts_with("schema_name:")
        );
    }
    // The catalog's own name is refused too.
    let own = env.cli(&["create", &env.catalog]);
    own.expect_code(2);
    assert!(
        own.stderr().contains("catalog's own schema"),
        "{}",
        own.stderr()
    );
    assert!(!own.stderr().contains("SchemaName("), "{}", own.stderr());

    // Nothing anywhere: no tenant, not even the catalog; the canary survived.
    assert_eq!(env.schemas().await, vec![canary.clone()]);
    let files: Vec<_> = std::fs::read_dir(env.dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f != "tenants")
        .collect();
    assert!(files.is_empty(), "{files:?}");
    env.cleanup().await;
}

backend_tests!(
    invalid_names_are_refused_and_create_nothing,
    read_only_commands_refuse_a_missing_catalog_and_create_nothing,
    control_characters_in_display_names_are_refused,
);

/// Runs with only `vars` set; checks exit 2, the variable named on stderr, and the password
/// nowhere, in text and JSON output and with verbose logging.
fn refused(env: &TestEnv, vars: &[(&str, &str)], variable: &str) -> String {
    let mut stderr = String::new();
    let tenant = env.tenant("a");
    for args in [
        vec!["upgrade-all"],
        vec!["--output", "json", "create", tenant.as_str()],
        vec!["--verbose", "status"],
    ] {
        let mut with_log = vars.to_vec();
        with_log.push(("RUST_LOG", "trace"));
        let run = env.cli_bare(&args, &with_log);
        run.expect_code(2);
        let (out, err) = (run.stdout(), run.stderr());
        assert!(
            err.contains(&format!("{variable}:")),
            "{args:?} should name {variable}: {err}"
        );
        assert!(
            !out.contains(PASSWORD) && !err.contains(PASSWORD),
            "password leaked by {args:?}:\n{out}\n{err}"
        );
        stderr = err;
    }
    stderr
}

fn with_password(base: &str, user: &str) -> String {
    base.replacen(&format!("{user}@"), &format!("{user}:{PASSWORD}@"), 1)
}

#[test]
fn unknown_scheme_names_the_variable() {
    let env = TestEnv::new(Backend::Sqlite);
    let url = format!("oracle://scott:{PASSWORD}@127.0.0.1:1521/x");
    let err = refused(&env, &[("DATABASE_URL", &url)], "DATABASE_URL");
    assert!(err.contains("scheme"), "{err}");
    let err = refused(&env, &[("PUBLIC_DATABASE_URL", &url)], "DATABASE_URL");
    assert!(err.contains("scheme"), "{err}");
    let mysql = format!("{}/cat", with_password(MYSQL_URL, "root"));
    let tpl = format!("redis://x:{PASSWORD}@127.0.0.1/{{schema}}");
    refused(
        &env,
        &[("DATABASE_URL", &mysql), ("TENANT_URL_TEMPLATE", &tpl)],
        "TENANT_URL_TEMPLATE",
    );
}

#[test]
fn template_without_schema_placeholder_names_the_variable() {
    let env = TestEnv::new(Backend::MySql);
    let server = with_password(MYSQL_URL, "root");
    let cat = format!("{server}/{}", env.catalog);
    let fixed = format!("{server}/fixed_db");
    let err = refused(
        &env,
        &[("DATABASE_URL", &cat), ("TENANT_URL_TEMPLATE", &fixed)],
        "TENANT_URL_TEMPLATE",
    );
    assert!(err.contains("{schema}"), "{err}");
    // A template of another kind of database is refused as well.
    let pg = format!(
        "{}?search_path={{schema}}",
        with_password(POSTGRES_URL, "postgres")
    );
    refused(
        &env,
        &[("DATABASE_URL", &cat), ("TENANT_URL_TEMPLATE", &pg)],
        "TENANT_URL_TEMPLATE",
    );
}

#[test]
fn invalid_pool_size_names_the_variable() {
    let env = TestEnv::new(Backend::Sqlite);
    let url = format!("sqlite://{}/cat.db", env.dir.path().display());
    for bad in ["abc", "0", "-1", "1000", "3.5"] {
        refused(
            &env,
            &[("DATABASE_URL", &url), ("TENANT_ENGINE_POOL_SIZE", bad)],
            "TENANT_ENGINE_POOL_SIZE",
        );
    }
    assert!(!env.dir.path().join("cat.db").exists());
}

#[test]
fn unreachable_server_is_reported_at_once() {
    let env = TestEnv::new(Backend::MySql);
    for url in [
        format!("mysql://root:{PASSWORD}@127.0.0.1:1/{}", env.catalog),
        format!("postgres://postgres:{PASSWORD}@127.0.0.1:1/test"),
        format!(
            "mysql+mysqlconnector://root:{PASSWORD}@127.0.0.1:1/{}",
            env.catalog
        ),
    ] {
        let started = std::time::Instant::now();
        let err = refused(&env, &[("DATABASE_URL", &url)], "DATABASE_URL");
        assert!(
            err.contains("cannot connect to") && err.contains("127.0.0.1:1"),
            "{err}"
        );
        assert!(err.contains(":***@"), "{err}");
        // A refused connection is not worth a pool's whole acquire timeout (three runs here).
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }
    // Only the tenants' server is down: the template is the variable to fix.
    let cat = format!("{MYSQL_URL}/{}", env.catalog);
    let tpl = format!("mysql://root:{PASSWORD}@127.0.0.1:1/{{schema}}");
    refused(
        &env,
        &[("DATABASE_URL", &cat), ("TENANT_URL_TEMPLATE", &tpl)],
        "TENANT_URL_TEMPLATE",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_login_is_reported_without_echoing_the_password() {
    let env = TestEnv::new(Backend::MySql);
    let url = format!("{}/{}", with_password(MYSQL_URL, "root"), env.catalog);
    let err = refused(&env, &[("DATABASE_URL", &url)], "DATABASE_URL");
    assert!(err.contains("Access denied"), "{err}");
    let pg = TestEnv::new(Backend::Postgres);
    let url = format!(
        "{}/nonexistent_db_{}",
        with_password(POSTGRES_URL, "postgres").trim_end_matches("/test"),
        pg.prefix
    );
    refused(&pg, &[("DATABASE_URL", &url)], "DATABASE_URL");
    assert!(env.schemas().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_sqlalchemy_urls_work_end_to_end() {
    let env = TestEnv::new(Backend::MySql);
    let a = env.tenant("a");
    let vars = [
        (
            "DATABASE_URL",
            format!(
                "mysql+mysqlconnector://root:@localhost:3306/{}",
                env.catalog
            ),
        ),
        (
            "TENANT_URL_TEMPLATE",
            "mysql+mysqlconnector://root:@localhost:3306/{schema}".to_owned(),
        ),
    ];
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = env.cli_bare(&["--output", "json", "create", &a], &vars);
    run.expect_code(0);
    assert_eq!(tenant_of(&run.json(), &a)["status"], "created");
    let mut admin = env.admin().await;
    assert_eq!(admin.history(&env, &a).await, applied_up_to(3));
    assert_eq!(admin.tables(&env, &a).await.len(), 8);
    // The seed's alias for the catalog URL, without a template.
    let alias = [("PUBLIC_DATABASE_URL", vars[0].1)];
    let run = env.cli_bare(&["--output", "json", "upgrade-all"], &alias);
    run.expect_code(0);
    assert_eq!(tenant_of(&run.json(), &a)["status"], "up_to_date");
    env.cleanup().await;

    let pg = TestEnv::new(Backend::Postgres);
    let p = pg.tenant("p");
    let url = "postgresql+psycopg://postgres@localhost:5432/test".to_owned();
    let vars = [
        ("DATABASE_URL", url.as_str()),
        ("CATALOG_SCHEMA", pg.catalog.as_str()),
    ];
    pg.cli_bare(&["create", &p], &vars).expect_code(0);
    let mut admin = pg.admin().await;
    assert_eq!(admin.history(&pg, &p).await, applied_up_to(3));
    // Tenants in one database, named by a template with `{schema}` in a parameter.
    let q = pg.tenant("q");
    let tpl = "postgresql+psycopg://postgres@localhost:5432/test?search_path={schema}";
    let vars = [
        ("DATABASE_URL", url.as_str()),
        ("CATALOG_SCHEMA", pg.catalog.as_str()),
        ("TENANT_URL_TEMPLATE", tpl),
    ];
    pg.cli_bare(&["create", &q], &vars).expect_code(0);
    assert_eq!(admin.history(&pg, &q).await, applied_up_to(3));
    pg.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dotenv_file_is_read_and_flags_win() {
    let env = TestEnv::new(Backend::Sqlite);
    let a = env.tenant("a");
    let url = format!("sqlite://{}/{}.db", env.dir.path().display(), env.catalog);
    std::fs::write(env.dir.path().join(".env"), format!("DATABASE_URL={url}\n")).expect(".env");
    env.cli_bare(&["create", &a], &[]).expect_code(0);
    let mut admin = env.admin().await;
    assert_eq!(admin.history(&env, &a).await, applied_up_to(3));
    // A flag overrides the file: this catalog is elsewhere, and there is none there.
    let other = format!("sqlite://{}/other.db", env.dir.path().display());
    let run = env.cli_bare(
        &["--output", "json", "--database-url", &other, "list-tenants"],
        &[],
    );
    run.expect_code(2);
    let error = run.json()["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains(&format!("no catalog at {other}")), "{error}");
    assert!(!env.dir.path().join("other.db").exists());
    let run = env.cli_bare(&["--output", "json", "list-tenants"], &[]);
    assert_eq!(run.json()["total"], 1);
}

fn files_named(dir: &std::path::Path, name: &str) -> Vec<String> {
    let mut found = Vec::new();
    for d in ["mysql", "postgres", "sqlite"] {
        let p = dir.join(d).join(name);
        if p.exists() {
            found.push(d.to_owned());
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_migration_creates_the_next_file_in_every_dialect() {
    let mut env = TestEnv::new(Backend::Sqlite);
    let root = env.own_migrations();
    let all = vec!["mysql".to_owned(), "postgres".into(), "sqlite".into()];

    let run = env.cli(&[
        "--output",
        "json",
        "new-migration",
        "--scope",
        "tenant",
        "add_loyalty",
    ]);
    run.expect_code(0);
    assert_eq!(run.json()["created"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        files_named(&root.join("tenant"), "0004_add_loyalty.sql"),
        all
    );
    env.cli(&["new-migration", "--scope", "tenant", "add_gift_cards"])
        .expect_code(0);
    assert_eq!(
        files_named(&root.join("tenant"), "0005_add_gift_cards.sql"),
        all
    );
    env.cli(&["new-migration", "--scope", "public", "add_notes"])
        .expect_code(0);
    let next = format!("{:04}_add_notes.sql", common::catalog_latest() + 1);
    assert_eq!(files_named(&root.join("public"), &next), all);

    // Dry run and invalid names create nothing.
    env.cli(&["--dry-run", "new-migration", "--scope", "tenant", "later"])
        .expect_code(0);
    assert!(files_named(&root.join("tenant"), "0006_later.sql").is_empty());
    for bad in ["Bad-Name", "", "9lives", "with space", "../up"] {
        let run = env.cli(&["new-migration", "--scope", "tenant", bad]);
        run.expect_code(2);
        assert!(
            run.stderr().contains("snake_case"),
            "{bad}: {}",
            run.stderr()
        );
    }
    let count = std::fs::read_dir(root.join("tenant").join("sqlite"))
        .expect("dir")
        .count();
    assert_eq!(count, 5);

    // The new (empty) files are valid migrations: a tenant goes to version 5.
    let a = env.tenant("a");
    env.add_tenant_migration("0004_add_loyalty.sql", |_| {
        "CREATE TABLE loyalty_cards (id CHAR(36) NOT NULL PRIMARY KEY);\n".into()
    });
    let run = env.cli(&["--output", "json", "create", &a]);
    run.expect_code(0);
    assert_eq!(tenant_of(&run.json(), &a)["to"], 5);
    let mut admin = env.admin().await;
    assert_eq!(admin.history(&env, &a).await, applied_up_to(5));
    assert_eq!(
        admin.history(&env, &env.catalog).await,
        applied_up_to(common::catalog_latest() + 1),
        "the catalog ran the new empty public file too"
    );
}

/// A whole run with the password in the URLs, verbose and with every log level on: one
/// structured line per tenant, statement timings, and the password nowhere.
async fn logs_name_each_tenant_and_never_the_password(b: Backend) {
    let mut env = TestEnv::new(b);
    env.use_user_with_password(PASSWORD).await;
    let (a, c) = (env.tenant("a"), env.tenant("c"));
    let runs = [
        env.cli_with(&["--verbose", "create", &a, &c], &[("RUST_LOG", "trace")]),
        env.cli_with(&["--verbose", "upgrade-all"], &[("RUST_LOG", "trace")]),
        env.cli_with(
            &["--verbose", "--output", "json", "status"],
            &[("RUST_LOG", "trace")],
        ),
        env.cli_with(&["--verbose", "list-tenants"], &[]),
    ];
    for run in &runs {
        run.expect_code(0);
        assert!(
            !run.stdout().contains(PASSWORD) && !run.stderr().contains(PASSWORD),
            "password leaked"
        );
    }
    let lines: Vec<serde_json::Value> = runs[0]
        .stderr()
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect();
    for t in [&a, &c] {
        assert!(
            lines.iter().any(|l| l["message"] == "tenant done"
                && l["schema"] == t.as_str()
                && l["status"] == "created"),
            "no log line for {t}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "statement done" && l["elapsed_ms"].is_number()),
        "--verbose shows statement timings"
    );
    let noop_log = runs[1].stderr();
    assert!(
        noop_log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|l| l["message"] == "fleet run planned" && l["total"] == 2 && l["with_work"] == 0),
        "{noop_log}"
    );
    let mut admin = env.admin().await;
    assert_eq!(admin.history(&env, &a).await, applied_up_to(3));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_logs_name_each_tenant_and_never_the_password() {
    logs_name_each_tenant_and_never_the_password(Backend::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_logs_name_each_tenant_and_never_the_password() {
    logs_name_each_tenant_and_never_the_password(Backend::Postgres).await;
}

#[test]
fn shipped_dialect_folders_agree() {
    use tenant_migrator::{MigrationSource, Scope};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let source = MigrationSource::from_dir(&dir).expect("the shipped migrations load");
    let embedded = MigrationSource::embedded().expect("the embedded migrations load");
    for scope in [Scope::Public, Scope::Tenant] {
        let key = |s: &MigrationSource, b| -> Vec<(i64, String, String)> {
            s.set(scope, b)
                .migrations
                .iter()
                .map(|m| (m.version, m.name.clone(), m.checksum.clone()))
                .collect()
        };
        let names = |s: &MigrationSource, b| -> Vec<(i64, String)> {
            key(s, b).into_iter().map(|(v, n, _)| (v, n)).collect()
        };
        let mysql = names(&source, tenant_migrator::db::Backend::MySql);
        assert!(!mysql.is_empty(), "{scope} has migrations");
        for b in tenant_migrator::db::Backend::ALL {
            assert_eq!(names(&source, b), mysql, "{scope}/{b} disagrees with mysql");
            // The binary embeds exactly the files of the repository.
            assert_eq!(key(&embedded, b), key(&source, b), "{scope}/{b} embedded");
        }
    }
}

#[test]
fn disagreeing_dialect_folders_are_refused() {
    let mut env = TestEnv::new(Backend::Sqlite);
    let root = env.own_migrations();
    let pg = root.join("tenant").join("postgres");
    std::fs::remove_file(pg.join("0003_professional_schedule.sql")).expect("rm");
    let run = env.cli(&["upgrade-all"]);
    run.expect_code(2);
    assert!(run.stderr().contains("0003"), "{}", run.stderr());
    std::fs::write(pg.join("0003_professional_hours.sql"), "SELECT 1;\n").expect("write");
    let run = env.cli(&["upgrade-all"]);
    run.expect_code(2);
    assert!(run.stderr().contains("professional"), "{}", run.stderr());
    assert!(!env.dir.path().join(format!("{}.db", env.catalog)).exists());
}

/// Commands about what the catalog holds: against a catalog that is not there they exit 2
/// (the configuration is wrong) and create nothing.
fn needs_catalog(tenant: &str) -> Vec<Vec<&str>> {
    vec![
        vec!["list-tenants"],
        vec!["--output", "json", "list-tenants"],
        vec!["status"],
        vec!["status", tenant],
        vec!["check-structure"],
        vec!["repair", tenant],
        vec!["--dry-run", "repair", tenant],
        vec!["upgrade", tenant],
        vec!["--dry-run", "upgrade", tenant],
    ]
}

/// Dry runs plan the catalog's creation, as the real run would do it, and create nothing.
fn dry_runs(tenant: &str) -> Vec<Vec<&str>> {
    vec![
        vec!["--dry-run", "create", tenant],
        vec!["--dry-run", "upgrade-all"],
        vec!["--dry-run", "upgrade-public"],
    ]
}

/// Runs every command that needs a catalog with `vars` (the env's own when `None`) and checks
/// exit 2 with a message naming `location` and `why`, in text and JSON.
fn refuse_missing_catalog(env: &TestEnv, vars: Option<&[(&str, &str)]>, location: &str, why: &str) {
    let tenant = env.tenant("a");
    let run = |args: &[&str]| match vars {
        Some(v) => env.cli_bare(args, v),
        None => env.cli(args),
    };
    for args in needs_catalog(&tenant) {
        let r = run(&args);
        r.expect_code(2);
        let shown = if args.contains(&"json") {
            assert_eq!(r.json()["exit_code"], 2);
            r.json()["error"].as_str().unwrap_or_default().to_owned()
        } else {
            r.stderr()
        };
        for needle in [
            "DATABASE_URL: no catalog at ",
            location,
            why,
            "nothing was created",
        ] {
            assert!(
                shown.contains(needle),
                "{args:?} should say {needle:?}: {shown}"
            );
        }
        assert!(!shown.contains("panicked"), "{args:?}: {shown}");
    }
    for args in dry_runs(&tenant) {
        run(&args).expect_code(0);
    }
}

async fn read_only_commands_refuse_a_missing_catalog_and_create_nothing(b: Backend) {
    let env = TestEnv::new(b);
    if b == Backend::Sqlite {
        // A mistyped path: neither the file nor its folder may appear.
        let typo = env.dir.path().join("typo").join("public.db");
        let url = format!("sqlite://{}", typo.display());
        refuse_missing_catalog(&env, Some(&[("DATABASE_URL", &url)]), &url, "no such file");
        let left: Vec<_> = std::fs::read_dir(env.dir.path())
            .expect("dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "created {left:?}");
    } else {
        let (location, why) = match b {
            Backend::MySql => (format!("/{}", env.catalog), "no such database"),
            _ => (format!(", schema {}", env.catalog), "no such schema"),
        };
        refuse_missing_catalog(&env, None, &location, why);
    }
    assert!(env.schemas().await.is_empty(), "{:?}", env.schemas().await);

    // The catalog's database, schema or file exists but holds nothing: still no catalog, and
    // still nothing is created in it or next to it.
    let mut admin = env.admin().await;
    let file = env.dir.path().join(format!("{}.db", env.catalog));
    let location = match b {
        Backend::Sqlite => {
            std::fs::write(&file, b"").expect("empty file");
            format!("sqlite://{}", file.display())
        }
        Backend::MySql => {
            admin.create_schema(&env, &env.catalog).await;
            format!("/{}", env.catalog)
        }
        Backend::Postgres => {
            admin.create_schema(&env, &env.catalog).await;
            format!(", schema {}", env.catalog)
        }
    };
    refuse_missing_catalog(&env, None, &location, "holds no catalog tables");
    assert_eq!(env.schemas().await, vec![env.catalog.clone()]);
    assert!(admin.tables(&env, &env.catalog).await.is_empty());
    if b == Backend::Sqlite {
        assert!(!env.dir.path().join("tenants").exists());
    }

    // Once there is a catalog, the same commands answer.
    env.cli(&["upgrade-public"]).expect_code(0);
    let run = env.cli(&["--output", "json", "list-tenants"]);
    run.expect_code(0);
    assert_eq!(run.json()["total"], 0);
    env.cli(&["status"]).expect_code(0);
    env.cleanup().await;
}

/// A migration file that is a link to a file outside the migrations folder (here a stand-in
/// for `/etc/passwd`) is refused by every command, naming the link; nothing of the file it
/// points to is read, run or shown.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinked_migration_files_are_refused_unread() {
    use std::os::unix::fs::symlink;
    let mut env = TestEnv::new(Backend::Sqlite);
    let root = env.own_migrations();
    let secret = env.dir.path().join("passwd");
    std::fs::write(&secret, "root:x:0:0:TOP-SECRET-GECOS:/root:/bin/sh\n").expect("write");
    for d in ["mysql", "postgres", "sqlite"] {
        symlink(&secret, root.join("tenant").join(d).join("0004_users.sql")).expect("symlink");
    }
    let a = env.tenant("a");
    for args in [
        vec!["create", a.as_str()],
        vec!["--output", "json", "create", a.as_str()],
        vec!["--verbose", "upgrade-all"],
        vec!["--dry-run", "upgrade-all"],
        vec!["status"],
    ] {
        let run = env.cli_with(&args, &[("RUST_LOG", "trace")]);
        run.expect_code(2);
        let (out, err) = (run.stdout(), run.stderr());
        let shown = format!("{out}{err}");
        assert!(
            shown.contains("tenant/sqlite/0004_users.sql")
                || shown.contains("tenant/mysql/0004_users.sql"),
            "{args:?} should name the link: {shown}"
        );
        assert!(shown.contains("symbolic link"), "{args:?}: {shown}");
        assert!(
            !shown.contains("TOP-SECRET"),
            "{args:?} leaked the file: {shown}"
        );
    }
    // Nothing was created: no catalog, no tenant.
    assert!(env.schemas().await.is_empty());

    // A dialect folder that is a link is refused the same way.
    for d in ["mysql", "postgres", "sqlite"] {
        std::fs::remove_file(root.join("tenant").join(d).join("0004_users.sql")).expect("rm");
    }
    let outside = env.dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    let sqlite = root.join("tenant").join("sqlite");
    for entry in std::fs::read_dir(&sqlite).expect("dir").flatten() {
        std::fs::copy(entry.path(), outside.join(entry.file_name())).expect("copy");
    }
    std::fs::remove_dir_all(&sqlite).expect("rm");
    symlink(&outside, &sqlite).expect("symlink");
    let run = env.cli(&["create", &a]);
    run.expect_code(2);
    assert!(
        run.stderr().contains("tenant/sqlite: is a symbolic link"),
        "{}",
        run.stderr()
    );
    assert!(env.schemas().await.is_empty());
}

/// `create --display-name` follows the rule of `POST /tenants`: control characters are refused
/// (exit 2, naming the field) before anything is touched.
async fn control_characters_in_display_names_are_refused(b: Backend) {
    let env = TestEnv::new(b);
    let a = env.tenant("a");
    // NUL cannot travel in argv; every other control character can.
    for display in [
        "tab\there",
        "line\nbreak",
        "escape\u{1b}[2J",
        "del\u{7f}",
        "bidi\u{202e}x",
        " ",
    ] {
        for args in [
            vec!["create", a.as_str(), "--display-name", display],
            vec!["--dry-run", "create", a.as_str(), "--display-name", display],
        ] {
            let run = env.cli(&args);
            run.expect_code(2);
            assert!(
                run.stderr().contains("display_name:"),
                "{display:?}: {}",
                run.stderr()
            );
        }
    }
    assert!(env.schemas().await.is_empty(), "{:?}", env.schemas().await);
    env.cli(&["create", &a, "--display-name", " Salão Bella "])
        .expect_code(0);
    let run = env.cli(&["--output", "json", "list-tenants"]);
    assert_eq!(run.json()["tenants"][0]["display_name"], "Salão Bella");
    env.cleanup().await;
}

/// `list-tenants | head`: a reader that goes away ends the command quietly (exit 0), never a
/// panic about a broken pipe.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let env = TestEnv::new(Backend::Sqlite);
    let names: Vec<String> = (0..3).map(|i| env.tenant(&format!("p{i}"))).collect();
    let mut args = vec!["create"];
    args.extend(names.iter().map(String::as_str));
    env.cli(&args).expect_code(0);
    for (cmd, extra) in [
        ("list-tenants", None),
        ("status", None),
        ("openapi", None),
        ("list-tenants", Some("json")),
    ] {
        let mut argv = Vec::new();
        if let Some(format) = extra {
            argv.extend(["--output", format]);
        }
        argv.push(cmd);
        let mut child = env
            .cli_command(&argv)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starts");
        // The reader goes away before the first line.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("ends");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{cmd}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{cmd}: {err}"
        );
    }
}

/// A `DATA_DIR` that is a file is refused by that name, with its path, and nothing is made.
#[test]
fn data_dir_that_is_a_file_names_the_variable_and_path() {
    let env = TestEnv::new(Backend::Sqlite);
    let file = env.dir.path().join("data-is-a-file");
    std::fs::write(&file, b"x").expect("file");
    let path = file.display().to_string();
    let err = refused(&env, &[("DATA_DIR", &path)], "DATA_DIR");
    assert!(
        err.contains(&path) && err.contains("not a directory"),
        "{err}"
    );
    assert_eq!(std::fs::read(&file).expect("still a file"), b"x");
}
