//! Runs that meet: two processes on one fleet, a killed connection retried, the connection
//! bound over 200 tenants, and pooled connections shared by tenants (the prepared-statement
//! trap of MySQL/MariaDB).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Admin, Backend, Deadline, TestEnv, applied_up_to, tenant_of, versions_of};
use sqlx::{AssertSqlSafe, Executor};
use tenant_migrator::SchemaName;
use tenant_migrator::jobs::NoProgress;
use tenant_migrator::migrate::lock::{mysql_lock_name, postgres_lock_key};

const RUN_LOG: &str = "CREATE TABLE run_log (note VARCHAR(20) NOT NULL)";
const RUN_LOG_ENTRY: &str = "INSERT INTO run_log (note) VALUES ('0005')";
const LOYALTY: &str = "CREATE TABLE loyalty_cards (id CHAR(36) NOT NULL PRIMARY KEY, points INTEGER NOT NULL DEFAULT 0)";
const GIFT_CARDS: &str =
    "CREATE TABLE gift_cards (id CHAR(36) NOT NULL PRIMARY KEY, amount INTEGER NOT NULL)";

fn finish(child: std::process::Child) -> common::CliRun {
    common::CliRun(child.wait_with_output().expect("binary ran"))
}

async fn two_upgrade_all_processes_at_once(b: Backend) {
    let mut env = TestEnv::new(b);
    env.own_migrations();
    let tenants: Vec<String> = (0..6).map(|i| env.tenant(&format!("s{i}"))).collect();
    let mut args = vec!["create"];
    args.extend(tenants.iter().map(String::as_str));
    env.cli(&args).expect_code(0);
    env.add_tenant_migration("0004_run_log.sql", |_| RUN_LOG.into());
    // Not idempotent: run twice, it would leave two rows.
    env.add_tenant_migration("0005_run_log_entry.sql", |_| RUN_LOG_ENTRY.into());

    let first = env.spawn(&["--output", "json", "upgrade-all"]);
    let second = env.spawn(&["--output", "json", "upgrade-all"]);
    let (first, second) = (finish(first), finish(second));
    first.expect_code(0);
    second.expect_code(0);
    let (r1, r2) = (first.json(), second.json());
    assert_eq!(
        r1["migrations_applied"].as_i64().unwrap_or(0)
            + r2["migrations_applied"].as_i64().unwrap_or(0),
        12,
        "{r1:#}\n{r2:#}"
    );
    let mut admin = env.admin().await;
    for t in &tenants {
        let (l1, l2) = (tenant_of(&r1, t), tenant_of(&r2, t));
        let mut statuses = [l1["status"].as_str(), l2["status"].as_str()];
        statuses.sort();
        assert_eq!(
            statuses,
            [Some("migrated"), Some("up_to_date")],
            "{t}: {l1:#} {l2:#}"
        );
        let migrated = if l1["status"] == "migrated" { l1 } else { l2 };
        assert_eq!(versions_of(migrated), vec![4, 5]);
        assert_eq!(admin.history(&env, t).await, applied_up_to(5));
        assert_eq!(
            admin.count(&env, t, "run_log").await,
            1,
            "0005 ran more than once on {t}"
        );
    }
    env.cleanup().await;
}

async fn two_create_processes_at_once_on_a_new_fleet(b: Backend) {
    let env = TestEnv::new(b);
    let tenants: Vec<String> = (0..4).map(|i| env.tenant(&format!("n{i}"))).collect();
    let mut args = vec!["--output", "json", "create"];
    args.extend(tenants.iter().map(String::as_str));
    let first = env.spawn(&args);
    let second = env.spawn(&args);
    let (first, second) = (finish(first), finish(second));
    first.expect_code(0);
    second.expect_code(0);
    let (r1, r2) = (first.json(), second.json());
    let mut admin = env.admin().await;
    assert_eq!(
        admin.history(&env, &env.catalog).await,
        applied_up_to(common::catalog_latest())
    );
    for t in &tenants {
        let (l1, l2) = (tenant_of(&r1, t), tenant_of(&r2, t));
        let mut applied = versions_of(l1);
        applied.extend(versions_of(l2));
        applied.sort();
        assert_eq!(applied, vec![1, 2, 3], "{t}: {l1:#} {l2:#}");
        assert_eq!(admin.history(&env, t).await, applied_up_to(3));
        let row = admin.catalog_tenant(&env, t).await.expect("catalog row");
        assert_eq!(
            (row.status.as_str(), row.schema_version),
            ("active", Some(3))
        );
    }
    env.cleanup().await;
}

/// MySQL/MariaDB and PostgreSQL keep tenant connections in one pool; a prepared statement
/// must not carry one tenant's schema into another's session. One connection, two tenants
/// at different versions: each must be read and migrated as itself.
async fn one_pooled_connection_serves_tenants_at_different_versions(b: Backend) {
    let mut env = TestEnv::new(b);
    env.own_migrations();
    env.pool_size = Some(1);
    let (a, c) = (env.tenant("a"), env.tenant("c"));
    env.cli(&["create", &a, &c]).expect_code(0);
    env.add_tenant_migration("0004_loyalty.sql", |_| LOYALTY.into());
    env.add_tenant_migration("0005_gift_cards.sql", |_| GIFT_CARDS.into());
    env.cli(&["--target", "4", "upgrade", &a]).expect_code(0);

    let engine = env.engine().await;
    let name = |s: &str| SchemaName::parse(s).expect("valid name");
    let (_, states) = engine.status(None).await.expect("status");
    let version_of = |states: &[tenant_migrator::TenantState], s: &str| {
        let st = states
            .iter()
            .find(|x| x.schema == s)
            .expect("tenant in status");
        (st.version, st.pending.clone())
    };
    assert_eq!(version_of(&states, &a), (Some(4), vec![5]));
    assert_eq!(version_of(&states, &c), (Some(3), vec![4, 5]));
    // Sessions on both, one after the other on the same connection (they read histories).
    for s in [&a, &c, &a] {
        let rep = engine
            .repair(&name(s), Default::default())
            .await
            .expect("repair");
        assert!(
            rep.forgotten.is_empty() && rep.remaining.is_empty(),
            "{rep:?}"
        );
    }
    let (_, one) = engine.status(Some(&name(&c))).await.expect("status of one");
    assert_eq!(version_of(&one, &c), (Some(3), vec![4, 5]));

    let mut opts = engine.fleet_options(false, None);
    opts.concurrency = 1;
    let report = engine
        .upgrade_all(&opts, &NoProgress)
        .await
        .expect("upgrade-all");
    let line = |s: &str| {
        report
            .tenants
            .iter()
            .find(|t| t.schema == s)
            .expect("line")
            .clone()
    };
    let (la, lc) = (line(&a), line(&c));
    assert_eq!((la.from, la.to), (Some(4), Some(5)), "{la:?}");
    assert_eq!(
        la.migrations.iter().map(|m| m.version).collect::<Vec<_>>(),
        vec![5]
    );
    assert_eq!((lc.from, lc.to), (Some(3), Some(5)), "{lc:?}");
    assert_eq!(
        lc.migrations.iter().map(|m| m.version).collect::<Vec<_>>(),
        vec![4, 5]
    );
    let (_, states) = engine.status(None).await.expect("status");
    assert_eq!(version_of(&states, &a), (Some(5), vec![]));
    assert_eq!(version_of(&states, &c), (Some(5), vec![]));
    engine.close().await;

    let mut admin = env.admin().await;
    for t in [&a, &c] {
        assert_eq!(admin.history(&env, t).await, applied_up_to(5));
        let tables = admin.tables(&env, t).await;
        assert!(
            tables.contains(&"loyalty_cards".into()) && tables.contains(&"gift_cards".into()),
            "{t}: {tables:?}"
        );
    }
    env.cleanup().await;
}

/// Connections of the tool waiting for `schema`'s migration lock (MySQL: sessions of the
/// env's own user in `GET_LOCK`; PostgreSQL: backends waiting on that advisory key).
async fn lock_waiters(admin: &mut Admin, env: &TestEnv, schema: &str) -> Vec<i64> {
    match admin {
        Admin::MySql(c) => sqlx::query_scalar(
            "SELECT CAST(ID AS SIGNED) FROM information_schema.PROCESSLIST WHERE USER = ? AND STATE = 'User lock'",
        )
        .bind(env.user.as_deref().expect("own user"))
        .fetch_all(&mut *c)
        .await
        .expect("processlist"),
        Admin::Postgres(c) => {
            let key = postgres_lock_key(schema);
            sqlx::query_scalar(
                "SELECT pid::int8 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
                 AND classid::int8 = $1 AND objid::int8 = $2 AND objsubid = 1",
            )
            .bind((key >> 32) & 0xffff_ffff)
            .bind(key & 0xffff_ffff)
            .fetch_all(&mut *c)
            .await
            .expect("pg_locks")
        }
        Admin::Sqlite(..) => unreachable!("no server"),
    }
}

/// The test holds the tenant's lock, waits until the tool's connection queues behind it,
/// kills that connection, waits until the tool queues again on a new connection, and lets
/// go: the run succeeds on its second attempt.
async fn killed_connection_is_retried(b: Backend) {
    let mut env = TestEnv::new(b);
    env.own_migrations();
    if b == Backend::MySql {
        env.use_limited_user(20).await;
    }
    let a = env.tenant("a");
    env.cli(&["create", &a]).expect_code(0);
    env.add_tenant_migration("0004_loyalty.sql", |_| LOYALTY.into());

    let mut holder = env.admin().await;
    holder.take_lock(&a).await;
    let child = env.spawn(&["--output", "json", "upgrade", &a]);

    let mut watcher = env.admin().await;
    let deadline = Deadline::new("the tool to wait for the lock", 60);
    let first = loop {
        if let Some(id) = lock_waiters(&mut watcher, &env, &a).await.first() {
            break *id;
        }
        deadline.check().await;
    };
    let kill = match b {
        Backend::MySql => format!("KILL {first}"),
        _ => format!("SELECT pg_terminate_backend({first})"),
    };
    watcher.exec(&kill).await;
    let deadline = Deadline::new("the tool to retry on a new connection", 60);
    let second = loop {
        if let Some(id) = lock_waiters(&mut watcher, &env, &a)
            .await
            .into_iter()
            .find(|id| *id != first)
        {
            break id;
        }
        deadline.check().await;
    };
    assert_ne!(first, second);
    match &mut holder {
        Admin::MySql(c) => {
            c.execute(AssertSqlSafe(format!(
                "DO RELEASE_LOCK('{}')",
                mysql_lock_name(&a)
            )))
            .await
            .expect("release");
        }
        Admin::Postgres(c) => {
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(postgres_lock_key(&a))
                .execute(&mut *c)
                .await
                .expect("unlock");
        }
        Admin::Sqlite(..) => unreachable!(),
    }

    let run = tokio::task::spawn_blocking(move || finish(child))
        .await
        .expect("join");
    run.expect_code(0);
    let r = run.json();
    let line = tenant_of(&r, &a);
    assert_eq!(line["status"], "migrated", "{line:#}");
    assert_eq!(line["attempts"], 2, "{line:#}");
    assert_eq!(versions_of(line), vec![4]);
    let mut admin = env.admin().await;
    assert_eq!(admin.history(&env, &a).await, applied_up_to(4));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_killed_connection_is_retried() {
    killed_connection_is_retried(Backend::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_connection_is_retried() {
    killed_connection_is_retried(Backend::Postgres).await;
}

/// Samples how many connections the env's own user has open until stopped; returns the peak.
fn sample_connections(
    mut admin: Admin,
    user: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<i64> {
    tokio::spawn(async move {
        let mut peak = 0i64;
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while !stop.load(Ordering::SeqCst) {
            tick.tick().await;
            let n: i64 = match &mut admin {
                Admin::MySql(c) => sqlx::query_scalar(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ?",
                )
                .bind(&user)
                .fetch_one(&mut *c)
                .await
                .expect("processlist"),
                Admin::Postgres(c) => {
                    sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE usename = $1")
                        .bind(&user)
                        .fetch_one(&mut *c)
                        .await
                        .expect("pg_stat_activity")
                }
                Admin::Sqlite(..) => unreachable!(),
            };
            peak = peak.max(n);
        }
        peak
    })
}

/// 200 tenants provisioned and upgraded with more concurrency than connections: the server
/// never sees more than pool + 2 connections of the tool (it would refuse them: the user's
/// limit is exactly that).
async fn connections_stay_within_pool_plus_two(b: Backend) {
    const POOL: u32 = 3;
    let mut env = TestEnv::new(b);
    env.own_migrations();
    env.pool_size = Some(POOL);
    env.use_limited_user(POOL + 2).await;
    let user = env.user.clone().expect("user");
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_connections(env.admin().await, user, stop.clone());

    let tenants: Vec<String> = (0..200).map(|i| env.tenant(&format!("f{i:03}"))).collect();
    let mut args = vec!["--output", "json", "--concurrency", "4", "create"];
    args.extend(tenants.iter().map(String::as_str));
    let created = env.cli(&args);
    created.expect_code(0);
    assert_eq!(created.json()["successful_migrations"], 200);

    env.add_tenant_migration("0004_loyalty.sql", |_| LOYALTY.into());
    let run = env.cli(&["--output", "json", "--concurrency", "8", "upgrade-all"]);
    run.expect_code(0);
    let r = run.json();
    assert_eq!(
        (
            r["successful_migrations"].as_i64(),
            r["migrations_applied"].as_i64()
        ),
        (Some(200), Some(200))
    );
    let noop = env.cli(&["--output", "json", "--concurrency", "8", "upgrade-all"]);
    noop.expect_code(0);
    assert_eq!(noop.json()["skipped"], 200);

    stop.store(true, Ordering::SeqCst);
    let peak = sampler.await.expect("sampler");
    assert!(
        peak <= i64::from(POOL + 2),
        "peak of {peak} connections exceeds pool + 2"
    );
    assert!(
        peak >= i64::from(POOL),
        "the sampler never saw the pool busy (peak {peak})"
    );
    let mut admin = env.admin().await;
    for t in [&tenants[0], &tenants[199]] {
        assert_eq!(admin.history(&env, t).await, applied_up_to(4));
    }
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_connections_stay_within_pool_plus_two() {
    connections_stay_within_pool_plus_two(Backend::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_stay_within_pool_plus_two() {
    connections_stay_within_pool_plus_two(Backend::Postgres).await;
}

/// MySQL marks a migration in progress with a `running` row. Another run that sees it must
/// wait for the schema's lock and look again, not report the tenant dirty; a `running` row
/// nobody holds the lock for (a crashed run) is dirty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_migration_in_progress_elsewhere_is_waited_for() {
    let mut env = TestEnv::new(Backend::MySql);
    env.own_migrations();
    env.use_limited_user(20).await;
    let (a, crashed) = (env.tenant("a"), env.tenant("z"));
    env.cli(&["create", &a, &crashed]).expect_code(0);
    env.add_tenant_migration("0004_loyalty.sql", |_| LOYALTY.into());
    let sum = tenant_migrator::migrate::source::checksum(LOYALTY.as_bytes());
    let running = |s: &str| {
        format!(
            "INSERT INTO `{s}`.`_tenant_migrations` (version, name, checksum, state, started_at) \
             VALUES (4, 'loyalty', '{sum}', 'running', NOW(6))"
        )
    };

    // Another process holds `a`'s lock and is half-way through 0004.
    let mut other = env.admin().await;
    other.take_lock(&a).await;
    other.exec(&running(&a)).await;
    other.exec(&running(&crashed)).await;

    let mut child = env.spawn(&["--output", "json", "--continue-on-error", "upgrade-all"]);
    let mut watcher = env.admin().await;
    let deadline = Deadline::new("the run to wait for the lock of the tenant in progress", 60);
    loop {
        if !lock_waiters(&mut watcher, &env, &a).await.is_empty() {
            break;
        }
        if child.try_wait().expect("try_wait").is_some() {
            let run = finish(child);
            panic!(
                "the run ended instead of waiting:\n{}\n{}",
                run.stdout(),
                run.stderr()
            );
        }
        deadline.check().await;
    }
    // The other process finishes its migration and lets go.
    other.exec(&format!("CREATE TABLE `{a}`.loyalty_cards (id CHAR(36) NOT NULL PRIMARY KEY, points INTEGER NOT NULL DEFAULT 0)")).await;
    other
        .exec(&format!(
            "UPDATE `{a}`.`_tenant_migrations` SET state = 'applied', finished_at = NOW(6), duration_ms = 1 WHERE version = 4"
        ))
        .await;
    other
        .exec(&format!("DO RELEASE_LOCK('{}')", mysql_lock_name(&a)))
        .await;

    let run = tokio::task::spawn_blocking(move || finish(child))
        .await
        .expect("join");
    run.expect_code(1);
    let r = run.json();
    let line = tenant_of(&r, &a);
    assert_eq!(line["status"], "up_to_date", "{line:#}");
    assert_eq!(
        (line["from"].as_i64(), line["to"].as_i64()),
        (Some(4), Some(4))
    );
    let stale = tenant_of(&r, &crashed);
    assert_eq!(stale["status"], "dirty", "{stale:#}");
    assert!(
        stale["error"]
            .as_str()
            .unwrap_or_default()
            .contains("running"),
        "{stale:#}"
    );
    let mut admin = env.admin().await;
    assert_eq!(admin.history(&env, &a).await, applied_up_to(4));
    env.cleanup().await;
}

/// Whether anyone holds `schema`'s migration lock, seen from another session.
async fn lock_is_held(admin: &mut Admin, schema: &str) -> bool {
    match admin {
        Admin::MySql(c) => {
            let holder: Option<i64> = sqlx::query_scalar("SELECT IS_USED_LOCK(?)")
                .bind(mysql_lock_name(schema))
                .fetch_one(&mut *c)
                .await
                .expect("is_used_lock");
            holder.is_some()
        }
        Admin::Postgres(c) => {
            let key = postgres_lock_key(schema);
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                 AND classid::int8 = $1 AND objid::int8 = $2 AND objsubid = 1",
            )
            .bind((key >> 32) & 0xffff_ffff)
            .bind(key & 0xffff_ffff)
            .fetch_one(&mut *c)
            .await
            .expect("pg_locks");
            n > 0
        }
        Admin::Sqlite(..) => unreachable!(),
    }
}

/// A run cancelled while it waits for a tenant's lock must not leave a pooled connection that
/// takes the lock later and keeps it: once the holder lets go, the lock ends up free.
async fn cancelled_run_leaves_no_lock_behind(b: Backend) {
    let mut env = TestEnv::new(b);
    env.own_migrations();
    env.pool_size = Some(1);
    if b == Backend::MySql {
        env.use_limited_user(20).await;
    }
    let a = env.tenant("a");
    env.cli(&["create", &a]).expect_code(0);
    env.add_tenant_migration("0004_loyalty.sql", |_| LOYALTY.into());

    let mut holder = env.admin().await;
    holder.take_lock(&a).await;
    let engine = env.engine().await;
    let task = {
        let engine = engine.clone();
        let name = SchemaName::parse(&a).expect("name");
        tokio::spawn(async move {
            let opts = engine.fleet_options(false, None);
            engine.upgrade_tenant(&name, &opts, &NoProgress).await
        })
    };
    let mut watcher = env.admin().await;
    let deadline = Deadline::new("the engine to wait for the lock", 60);
    while lock_waiters(&mut watcher, &env, &a).await.is_empty() {
        deadline.check().await;
    }
    task.abort();
    assert!(task.await.expect_err("cancelled").is_cancelled());
    match &mut holder {
        Admin::MySql(c) => {
            c.execute(AssertSqlSafe(format!(
                "DO RELEASE_LOCK('{}')",
                mysql_lock_name(&a)
            )))
            .await
            .expect("release");
        }
        Admin::Postgres(c) => {
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(postgres_lock_key(&a))
                .execute(&mut *c)
                .await
                .expect("unlock");
        }
        Admin::Sqlite(..) => unreachable!(),
    }
    let deadline = Deadline::new("the abandoned lock request to go away", 20);
    while !lock_waiters(&mut watcher, &env, &a).await.is_empty()
        || lock_is_held(&mut watcher, &a).await
    {
        deadline.check().await;
    }
    // Another process gets the lock at once while this engine is still alive.
    let run = env.cli_with(
        &["--output", "json", "upgrade", &a],
        &[("LOCK_TIMEOUT", "10")],
    );
    run.expect_code(0);
    assert_eq!(tenant_of(&run.json(), &a)["status"], "migrated");
    // And the engine's own pool still works.
    let (_, states) = engine.status(None).await.expect("status");
    assert_eq!(states[0].version, Some(4));
    engine.close().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_cancelled_run_leaves_no_lock_behind() {
    cancelled_run_leaves_no_lock_behind(Backend::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cancelled_run_leaves_no_lock_behind() {
    cancelled_run_leaves_no_lock_behind(Backend::Postgres).await;
}

/// A run cancelled half-way through a migration (its statement waiting on a table the test
/// has locked) closes its connection: the schema's lock is freed, PostgreSQL rolls the
/// migration back, MySQL shows it as interrupted (dirty), and the pool still works.
async fn cancelled_mid_migration_frees_the_lock(b: Backend) {
    let mut env = TestEnv::new(b);
    env.own_migrations();
    env.pool_size = Some(1);
    if b == Backend::MySql {
        env.use_limited_user(20).await;
    }
    let a = env.tenant("a");
    env.cli(&["create", &a]).expect_code(0);
    let column = format!("probe_{}", env.prefix);
    let alter = format!("ALTER TABLE users_tenant ADD COLUMN {column} INTEGER NULL");
    env.add_tenant_migration("0004_probe.sql", |_| format!("{alter};\n"));

    let mut blocker = env.admin().await;
    match b {
        Backend::MySql => {
            blocker
                .exec(&format!("LOCK TABLES `{a}`.users_tenant WRITE"))
                .await
        }
        _ => {
            blocker
                .exec(&format!(
                    "BEGIN; LOCK TABLE \"{a}\".users_tenant IN ACCESS EXCLUSIVE MODE"
                ))
                .await
        }
    }
    let engine = env.engine().await;
    let task = {
        let engine = engine.clone();
        let name = SchemaName::parse(&a).expect("name");
        tokio::spawn(async move {
            let opts = engine.fleet_options(false, None);
            engine.upgrade_tenant(&name, &opts, &NoProgress).await
        })
    };
    let mut watcher = env.admin().await;
    let deadline = Deadline::new("the migration to wait on the locked table", 60);
    loop {
        let waiting: i64 = match &mut watcher {
            Admin::MySql(c) => sqlx::query_scalar(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ? AND STATE LIKE 'Waiting for table metadata lock'",
            )
            .bind(env.user.as_deref().expect("user"))
            .fetch_one(&mut *c)
            .await
            .expect("processlist"),
            Admin::Postgres(c) => sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND wait_event_type = 'Lock' AND query LIKE '%' || $1 || '%'",
            )
            .bind(&column)
            .fetch_one(&mut *c)
            .await
            .expect("pg_stat_activity"),
            Admin::Sqlite(..) => unreachable!(),
        };
        if waiting > 0 {
            break;
        }
        deadline.check().await;
    }
    assert!(
        lock_is_held(&mut watcher, &a).await,
        "the run should hold the tenant's lock"
    );
    task.abort();
    assert!(task.await.expect_err("cancelled").is_cancelled());
    match b {
        Backend::MySql => blocker.exec("UNLOCK TABLES").await,
        _ => blocker.exec("COMMIT").await,
    }
    let deadline = Deadline::new("the cancelled run's lock to be freed", 20);
    while lock_is_held(&mut watcher, &a).await {
        deadline.check().await;
    }
    let (_, states) = engine.status(None).await.expect("the pool still works");
    let mut admin = env.admin().await;
    if b == Backend::MySql {
        // The ALTER may or may not have completed after its client went away: the row stays
        // `running`, counted, and the next run resumes it, checking the column.
        let mut history = applied_up_to(3);
        history.push((4, "running".into()));
        assert_eq!(admin.history(&env, &a).await, history);
        assert!(!states[0].dirty, "{:?}", states[0]);
        assert!(
            matches!(
                &states[0].problems[..],
                [tenant_migrator::migrate::Problem::Interrupted {
                    version: 4,
                    resumable: true,
                    ..
                }]
            ),
            "{:?}",
            states[0]
        );
    } else {
        assert_eq!(admin.history(&env, &a).await, applied_up_to(3));
        assert_eq!(states[0].pending, vec![4]);
    }
    let run = env.cli(&["--output", "json", "upgrade", &a]);
    run.expect_code(0);
    assert_eq!(admin.history(&env, &a).await, applied_up_to(4));
    engine.close().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_cancelled_mid_migration_frees_the_lock() {
    cancelled_mid_migration_frees_the_lock(Backend::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cancelled_mid_migration_frees_the_lock() {
    cancelled_mid_migration_frees_the_lock(Backend::Postgres).await;
}

/// Locks are per schema: while something holds one tenant's lock, the others migrate, and the
/// held one gives up after the lock timeout with a clear message (not retried).
async fn a_locked_tenant_does_not_block_the_others(b: Backend) {
    let mut env = TestEnv::new(b);
    env.own_migrations();
    let (a, c) = (env.tenant("a"), env.tenant("c"));
    env.cli(&["create", &a, &c]).expect_code(0);
    env.add_tenant_migration("0004_loyalty.sql", |_| LOYALTY.into());

    let mut holder = env.admin().await;
    let mut sqlite_holder = None;
    if b == Backend::Sqlite {
        use sqlx::Connection;
        let url = format!("sqlite://{}", env.sqlite_file(&a).display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("open");
        conn.execute("BEGIN IMMEDIATE").await.expect("write lock");
        sqlite_holder = Some(conn);
    } else {
        holder.take_lock(&a).await;
    }
    let run = env.cli_with(
        &[
            "--output",
            "json",
            "--continue-on-error",
            "--concurrency",
            "1",
            "upgrade-all",
        ],
        &[("LOCK_TIMEOUT", "2")],
    );
    run.expect_code(1);
    let r = run.json();
    let line = tenant_of(&r, &a);
    assert_eq!(line["status"], "failed", "{line:#}");
    assert_eq!(
        line["attempts"], 1,
        "one attempt; a lock timeout is not retried: {line:#}"
    );
    assert!(
        line["error"]
            .as_str()
            .unwrap_or_default()
            .contains("locked by another migration run"),
        "{line:#}"
    );
    assert_eq!(tenant_of(&r, &c)["status"], "migrated");
    drop(sqlite_holder);
    drop(holder);
    let mut admin = env.admin().await;
    assert_eq!(admin.history(&env, &a).await, applied_up_to(3));
    assert_eq!(admin.history(&env, &c).await, applied_up_to(4));
    env.cli(&["upgrade", &a]).expect_code(0);
    env.cleanup().await;
}

backend_tests!(
    two_upgrade_all_processes_at_once,
    two_create_processes_at_once_on_a_new_fleet,
    one_pooled_connection_serves_tenants_at_different_versions,
    a_locked_tenant_does_not_block_the_others,
);

/// Connections of the tool whose statement waits on a table lock held by the test.
async fn blocked_statements(admin: &mut Admin, env: &TestEnv, marker: &str) -> Vec<i64> {
    match admin {
        Admin::MySql(c) => sqlx::query_scalar(
            "SELECT CAST(ID AS SIGNED) FROM information_schema.PROCESSLIST \
             WHERE USER = ? AND STATE LIKE 'Waiting for table metadata lock' AND INFO LIKE CONCAT('%', ?, '%')",
        )
        .bind(env.user.as_deref().expect("own user"))
        .bind(marker)
        .fetch_all(&mut *c)
        .await
        .expect("processlist"),
        Admin::Postgres(c) => sqlx::query_scalar(
            "SELECT pid::int8 FROM pg_stat_activity WHERE pid <> pg_backend_pid() \
             AND wait_event_type = 'Lock' AND query LIKE '%' || $1 || '%'",
        )
        .bind(marker)
        .fetch_all(&mut *c)
        .await
        .expect("pg_stat_activity"),
        Admin::Sqlite(..) => unreachable!(),
    }
}

/// A tenant whose 0004 creates a table, then alters `users_tenant`, which the returned
/// connection has locked: the tool blocks at statement 2, after statement 1 ran.
async fn blocked_at_statement_2(b: Backend) -> (TestEnv, String, String, Admin) {
    let mut env = TestEnv::new(b);
    env.own_migrations();
    env.use_limited_user(20).await;
    let a = env.tenant("a");
    env.cli(&["create", &a]).expect_code(0);
    let column = format!("probe_{}", env.prefix);
    let sql = format!("{LOYALTY};\nALTER TABLE users_tenant ADD COLUMN {column} INTEGER NULL;\n");
    env.add_tenant_migration("0004_probe.sql", |_| sql.clone());
    let mut blocker = env.admin().await;
    match b {
        Backend::MySql => {
            blocker
                .exec(&format!("LOCK TABLES `{a}`.users_tenant WRITE"))
                .await
        }
        _ => {
            blocker
                .exec(&format!(
                    "BEGIN; LOCK TABLE \"{a}\".users_tenant IN ACCESS EXCLUSIVE MODE"
                ))
                .await
        }
    }
    (env, a, column, blocker)
}

async fn unblock(b: Backend, blocker: &mut Admin) {
    match b {
        Backend::MySql => blocker.exec("UNLOCK TABLES").await,
        _ => blocker.exec("COMMIT").await,
    }
}

/// A connection killed half-way through a migration: MySQL already committed statement 1 and
/// counted it, so the retry resumes at statement 2; PostgreSQL rolled the whole migration
/// back, so the retry runs it again on a new connection. Both succeed.
async fn killed_mid_migration(b: Backend) {
    let (env, a, column, mut blocker) = blocked_at_statement_2(b).await;
    let child = env.spawn(&["--output", "json", "upgrade", &a]);
    let mut watcher = env.admin().await;
    let deadline = Deadline::new("statement 2 to wait on the locked table", 60);
    let id = loop {
        if let Some(id) = blocked_statements(&mut watcher, &env, &column)
            .await
            .first()
        {
            break *id;
        }
        deadline.check().await;
    };
    let kill = match b {
        Backend::MySql => format!("KILL {id}"),
        _ => format!("SELECT pg_terminate_backend({id})"),
    };
    watcher.exec(&kill).await;
    if b == Backend::Postgres {
        // The retry queues behind the test's lock again, on another connection.
        let deadline = Deadline::new("the retry", 60);
        while !blocked_statements(&mut watcher, &env, &column)
            .await
            .iter()
            .any(|p| *p != id)
        {
            deadline.check().await;
        }
    }
    unblock(b, &mut blocker).await;
    let run = tokio::task::spawn_blocking(move || finish(child))
        .await
        .expect("join");
    let mut admin = env.admin().await;
    let r = run.json();
    let line = tenant_of(&r, &a);
    run.expect_code(0);
    assert_eq!(line["status"], "migrated", "{line:#}");
    assert_eq!(line["attempts"], 2, "{line:#}");
    assert_eq!(admin.history(&env, &a).await, applied_up_to(4));
    if b == Backend::MySql {
        // Statement 1 was not run again; the killed statement 2 was.
        assert_eq!(line["migrations"][0]["resumed_after"], 1, "{line:#}");
    } else {
        assert!(line["migrations"][0]["resumed_after"].is_null(), "{line:#}");
    }
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_killed_mid_migration_is_retried_and_resumed() {
    killed_mid_migration(Backend::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_mid_migration_is_rolled_back_and_retried() {
    killed_mid_migration(Backend::Postgres).await;
}

/// The process dies (SIGKILL) half-way through a migration: the server frees its session
/// lock, and the next run finishes the migration (MySQL: resumed after the counted statements,
/// the one in doubt checked in the live schema; PostgreSQL: rolled back, so applied again).
async fn crashed_process_leaves_no_lock(b: Backend) {
    let (env, a, column, mut blocker) = blocked_at_statement_2(b).await;
    let mut child = env.spawn(&["upgrade", &a]);
    let mut watcher = env.admin().await;
    let deadline = Deadline::new("statement 2 to wait on the locked table", 60);
    while blocked_statements(&mut watcher, &env, &column)
        .await
        .is_empty()
    {
        deadline.check().await;
    }
    assert!(lock_is_held(&mut watcher, &a).await);
    child.kill().expect("kill the run");
    child.wait().expect("reap");
    unblock(b, &mut blocker).await;
    let deadline = Deadline::new("the server to free the dead run's lock", 30);
    while lock_is_held(&mut watcher, &a).await {
        deadline.check().await;
    }
    let run = env.cli(&["--output", "json", "upgrade", &a]);
    let r = run.json();
    let mut admin = env.admin().await;
    run.expect_code(0);
    let line = tenant_of(&r, &a);
    assert_eq!(line["status"], "migrated", "{line:#}");
    assert_eq!(admin.history(&env, &a).await, applied_up_to(4));
    if b == Backend::MySql {
        // Statement 2 kept waiting after its client died and may have completed once the
        // table was unlocked: the resume saw which.
        let after = line["migrations"][0]["resumed_after"].as_i64();
        assert!(matches!(after, Some(1 | 2)), "{line:#}");
    }
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_crashed_process_leaves_no_lock() {
    crashed_process_leaves_no_lock(Backend::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crashed_process_leaves_no_lock() {
    crashed_process_leaves_no_lock(Backend::Postgres).await;
}
