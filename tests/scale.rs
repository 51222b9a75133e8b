//! Several database servers (issue 11): tenants placed across servers (fewest tenants first,
//! `--server`, `DRAINING_SERVERS`), fleet runs over both with each server's peak connections
//! read from the server itself (≤ pool + 2), a server killed mid-run failing only its own
//! tenants, a canary wave halting the fleet over both, per-server `status`, and the start-up
//! refusal of a configuration that drops a server still holding tenants.
//!
//! MariaDB runs on two private servers started by the test (`faults/servers.rs`: own data
//! directory, free loopback port), so their connection counters are the tool's alone;
//! PostgreSQL uses the shared cluster and a private second one; SQLite uses two folders.

#[path = "common/mod.rs"]
mod common;
#[path = "faults/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection, Row};

use common::{Backend, CliRun, TestEnv, tenant_of};
use servers::{MariaDb, Postgres, poll};

static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
});

/// Runs a future on the suite's runtime (`faults/servers.rs` polls through it).
pub fn block_on<F: Future>(f: F) -> F::Output {
    RT.block_on(f)
}

const POOL: i64 = 3;

async fn mysql(url: &str) -> sqlx::MySqlConnection {
    sqlx::MySqlConnection::connect(url)
        .await
        .expect("connect to a private MariaDB")
}

/// Resets the server's connection high-water mark to the connections open now (none of the
/// tool's).
fn reset_peak(server: &MariaDb) {
    block_on(async {
        let mut c = mysql(&server.url("")).await;
        sqlx::query("FLUSH STATUS")
            .execute(&mut c)
            .await
            .expect("flush status");
        let _ = c.close().await;
    });
}

/// The most connections the server held at once since [`reset_peak`], less the one this
/// reading opens (counted while the tool is gone).
fn peak(server: &MariaDb) -> i64 {
    block_on(async {
        let mut c = mysql(&server.url("")).await;
        let row = sqlx::query("SHOW GLOBAL STATUS LIKE 'Max_used_connections'")
            .fetch_one(&mut c)
            .await
            .expect("status");
        let v: String = row.try_get(1).expect("value");
        let _ = c.close().await;
        v.parse::<i64>().expect("a number")
    })
}

/// The databases on a MariaDB server whose names start with `prefix`.
fn databases(server: &MariaDb, prefix: &str) -> Vec<String> {
    block_on(async {
        let mut c = mysql(&server.url("")).await;
        let rows = sqlx::query(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE ? \
             ORDER BY SCHEMA_NAME",
        )
        .bind(format!("{prefix}%"))
        .fetch_all(&mut c)
        .await
        .expect("schemata");
        let _ = c.close().await;
        rows.iter().map(|r| r.get::<String, _>(0)).collect()
    })
}

/// Newest applied version of a tenant on a MariaDB server (0 when it has none or is gone).
fn mysql_version(server: &MariaDb, schema: &str) -> i64 {
    block_on(async {
        let mut c = mysql(&server.url("")).await;
        let v: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT MAX(version) FROM `{schema}`.`_tenant_migrations` WHERE state = 'applied'"
        )))
        .fetch_one(&mut c)
        .await
        .unwrap_or(None);
        let _ = c.close().await;
        v.unwrap_or(0)
    })
}

/// The `server` of every tenant row, by schema name.
fn placement(env: &TestEnv) -> BTreeMap<String, String> {
    let out = env.cli(&["list-tenants", "--output", "json"]);
    out.expect_code(0);
    out.json()["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .map(|t| {
            (
                t["schema_name"].as_str().expect("name").to_owned(),
                t["server"].as_str().expect("server").to_owned(),
            )
        })
        .collect()
}

fn count_on(placed: &BTreeMap<String, String>, server: &str) -> usize {
    placed.values().filter(|s| *s == server).count()
}

fn statuses(report: &Value) -> BTreeMap<String, String> {
    report["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .map(|t| {
            (
                t["schema"].as_str().expect("schema").to_owned(),
                t["status"].as_str().expect("status").to_owned(),
            )
        })
        .collect()
}

fn create(env: &TestEnv, names: &[String], extra: &[&str]) -> CliRun {
    let mut args: Vec<&str> = vec!["create", "--output", "json"];
    args.extend(extra);
    args.extend(names.iter().map(String::as_str));
    env.cli(&args)
}

/// Two private MariaDB servers: the catalog and `db1` on the first, `db2` on the second.
fn two_mariadb() -> (MariaDb, MariaDb, TestEnv) {
    let (s1, s2) = std::thread::scope(|t| {
        let a = t.spawn(MariaDb::start);
        let b = t.spawn(MariaDb::start);
        (
            a.join().expect("first server"),
            b.join().expect("second server"),
        )
    });
    let mut env = TestEnv::new(Backend::MySql);
    env.catalog_url = Some(s1.url("tm_catalog"));
    env.tenant_servers = Some(format!(
        "db1={},db2={}",
        s1.url("{schema}"),
        s2.url("{schema}")
    ));
    env.pool_size = Some(POOL as u32);
    env.own_migrations();
    (s1, s2, env)
}

#[test]
fn mariadb_fleet_over_two_servers_places_bounds_and_isolates() {
    let (s1, mut s2, env) = two_mariadb();
    let names: Vec<String> = (0..24).map(|i| env.tenant(&format!("t{i:02}"))).collect();

    // Placement: the fewest tenants first, so an even split; each database on its server only.
    reset_peak(&s1);
    reset_peak(&s2);
    let out = create(&env, &names, &[]);
    out.expect_code(0);
    assert_eq!(out.json()["successful_migrations"], 24, "{}", out.stdout());
    let (p1, p2) = (peak(&s1), peak(&s2));
    assert!(p1 <= POOL + 2, "provisioning held {p1} connections on db1");
    assert!(p2 <= POOL + 2, "provisioning held {p2} connections on db2");
    assert!(p2 >= 1, "db2 was not used");
    let placed = placement(&env);
    assert_eq!(count_on(&placed, "db1"), 12, "{placed:?}");
    assert_eq!(count_on(&placed, "db2"), 12, "{placed:?}");
    let (on1, on2) = (databases(&s1, &env.prefix), databases(&s2, &env.prefix));
    for (name, server) in &placed {
        let (here, there) = if server == "db1" {
            (&on1, &on2)
        } else {
            (&on2, &on1)
        };
        assert!(here.contains(name), "{name} missing on {server}");
        assert!(!there.contains(name), "{name} also on the other server");
    }

    // Named server, draining, unknown names.
    let extra = env.tenant("x_named");
    create(&env, std::slice::from_ref(&extra), &["--server", "db2"]).expect_code(0);
    assert!(databases(&s2, &extra).contains(&extra));
    let drained = env.tenant("x_drained");
    let out = env.cli_with(
        &["create", "--output", "json", &drained],
        &[("DRAINING_SERVERS", "db1")],
    );
    out.expect_code(0);
    assert_eq!(placement(&env)[&drained], "db2", "db1 is draining");
    let refused = env.tenant("x_refused");
    let out = env.cli_with(
        &["create", "--server", "db1", &refused],
        &[("DRAINING_SERVERS", "db1")],
    );
    out.expect_code(2);
    assert!(out.stderr().contains("draining"), "{}", out.stderr());
    let out = env.cli(&["create", "--server", "db9", &refused]);
    out.expect_code(2);
    assert!(out.stderr().contains("db1, db2"), "{}", out.stderr());
    let out = env.cli_with(&["status"], &[("DRAINING_SERVERS", "db7")]);
    out.expect_code(2);
    assert!(
        out.stderr().contains("DRAINING_SERVERS"),
        "{}",
        out.stderr()
    );
    assert!(!placement(&env).contains_key(&refused));
    assert!(databases(&s1, &refused).is_empty() && databases(&s2, &refused).is_empty());

    // Per-server status.
    let out = env.cli(&["status", "--output", "json"]);
    out.expect_code(0);
    let doc = out.json();
    let servers = doc["servers"].as_array().expect("servers");
    assert_eq!(servers.len(), 2, "{doc:#}");
    assert_eq!(servers[0]["name"], "db1");
    assert_eq!(servers[0]["tenants"], 12);
    assert_eq!(servers[1]["tenants"], 14);
    assert_eq!(servers[1]["reachable"], true);
    assert_eq!(servers[1]["versions"][0]["version"], 3);

    // A configuration that drops a server holding tenants is refused at start-up.
    let only_db1 = format!("db1={}", s1.url("{schema}"));
    let out = env.cli_with(&["status"], &[("TENANT_SERVERS", only_db1.as_str())]);
    out.expect_code(2);
    assert!(out.stderr().contains("14 on db2"), "{}", out.stderr());

    // A fleet run over both servers, each within pool + 2 connections.
    env.add_tenant_migration("0004_scale_probe.sql", |_| {
        "CREATE TABLE scale_probe (id INT PRIMARY KEY);\n".into()
    });
    reset_peak(&s1);
    reset_peak(&s2);
    let out = env.cli(&["upgrade-all", "--output", "json"]);
    out.expect_code(0);
    let report = out.json();
    assert_eq!(report["successful_migrations"], 26, "{report:#}");
    let (p1, p2) = (peak(&s1), peak(&s2));
    assert!(p1 <= POOL + 2, "upgrade-all held {p1} connections on db1");
    assert!(p2 <= POOL + 2, "upgrade-all held {p2} connections on db2");

    // `--server` limits a fleet run to one server's tenants.
    env.add_tenant_migration("0005_slow.sql", |_| {
        "DO SLEEP(0.4);\nCREATE TABLE scale_slow (id INT PRIMARY KEY);\n".into()
    });
    let out = env.cli(&[
        "upgrade-all",
        "--dry-run",
        "--server",
        "db2",
        "--output",
        "json",
    ]);
    out.expect_code(0);
    let planned = statuses(&out.json());
    assert_eq!(planned.len(), 14, "{planned:?}");
    assert!(planned.keys().all(|n| placement(&env)[n] == "db2"));

    // db2 killed mid-run: only its tenants fail; db1's all migrate.
    let placed = placement(&env);
    let on_db2: Vec<&String> = placed
        .iter()
        .filter(|(_, s)| *s == "db2")
        .map(|(n, _)| n)
        .collect();
    let log = env.dir.path().join("killed-run.out");
    let mut run = env
        .cli_command(&["upgrade-all", "--continue-on-error", "--output", "json"])
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(std::fs::File::create(env.dir.path().join("killed-run.err")).expect("log"))
        .spawn()
        .expect("spawn upgrade-all");
    poll("a db2 tenant at version 5", Duration::from_secs(60), || {
        on_db2
            .iter()
            .any(|n| mysql_version(&s2, n) == 5)
            .then_some(())
    });
    s2.kill9();
    let killed = std::time::Instant::now();
    let status = run.wait().expect("upgrade-all ends");
    println!(
        "upgrade-all ended {:?} after db2 was killed",
        killed.elapsed()
    );
    if std::env::var_os("SCALE_DEBUG").is_some() {
        println!(
            "{}",
            std::fs::read_to_string(env.dir.path().join("killed-run.err")).unwrap_or_default()
        );
    }
    assert_eq!(status.code(), Some(1), "a failed tenant exits 1");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&log).expect("report")).expect("json");
    let outcome = statuses(&report);
    for (name, server) in &placed {
        let st = &outcome[name];
        if server == "db1" {
            assert_eq!(st, "migrated", "{name} on the live server: {report:#}");
            assert_eq!(mysql_version(&s1, name), 5);
        }
    }
    let failed_db2 = on_db2
        .iter()
        .filter(|n| outcome[n.as_str()] != "migrated")
        .count();
    assert!(failed_db2 > 0, "the kill came too late: {report:#}");
    for n in &on_db2 {
        if outcome[n.as_str()] != "migrated" {
            let line = tenant_of(&report, n);
            assert!(line["error"].is_string(), "{line:#}");
        }
    }

    // Back up, the next run converges every tenant.
    s2.restart();
    let out = env.cli(&["upgrade-all", "--output", "json"]);
    out.expect_code(0);
    for (name, server) in &placed {
        let s = if server == "db1" { &s1 } else { &s2 };
        assert_eq!(mysql_version(s, name), 5, "{name}");
    }

    // A canary wave over both servers halts the fleet when a canary tenant fails: the first
    // tenant by name (on db1) already has the table the next migration creates.
    let first = names[0].clone();
    block_on(async {
        let mut c = mysql(&s1.url(&first)).await;
        sqlx::query("CREATE TABLE scale_canary (id INT PRIMARY KEY)")
            .execute(&mut c)
            .await
            .expect("conflicting table");
        let _ = c.close().await;
    });
    env.add_tenant_migration("0006_canary.sql", |_| {
        "CREATE TABLE scale_canary (id INT PRIMARY KEY);\n".into()
    });
    let out = env.cli(&[
        "upgrade-all",
        "--canary",
        "2",
        "--continue-on-error",
        "--output",
        "json",
    ]);
    out.expect_code(1);
    let report = out.json();
    assert_eq!(report["halted"], "canary_failed", "{report:#}");
    let outcome = statuses(&report);
    assert_eq!(outcome[&first], "failed");
    assert_eq!(outcome[&names[1]], "migrated");
    let left_out = outcome.values().filter(|s| *s == "not_attempted").count();
    assert_eq!(left_out, placed.len() - 2, "{report:#}");
    for (name, server) in &placed {
        if *name != first && *name != names[1] {
            let s = if server == "db1" { &s1 } else { &s2 };
            assert_eq!(mysql_version(s, name), 5, "{name} was not started");
        }
    }
    // Nothing of this test is on the shared server; the private ones go with their folders.
}

#[test]
fn postgres_tenants_across_two_clusters() {
    let s2 = Postgres::start();
    let mut env = TestEnv::new(Backend::Postgres);
    env.tenant_servers = Some(format!(
        "main={}?search_path={{schema}},second={}?search_path={{schema}}",
        common::POSTGRES_URL,
        s2.url()
    ));
    env.own_migrations();
    let names: Vec<String> = (0..6).map(|i| env.tenant(&format!("p{i}"))).collect();
    create(&env, &names, &[]).expect_code(0);
    let placed = placement(&env);
    assert_eq!(count_on(&placed, "main"), 3, "{placed:?}");
    assert_eq!(count_on(&placed, "second"), 3, "{placed:?}");
    let schemas_on = |url: &str| -> Vec<String> {
        block_on(async {
            let mut c = sqlx::PgConnection::connect(url).await.expect("connect");
            let rows = sqlx::query(
                "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1 ORDER BY 1",
            )
            .bind(format!("{}%", env.prefix))
            .fetch_all(&mut c)
            .await
            .expect("namespaces");
            let _ = c.close().await;
            rows.iter().map(|r| r.get::<String, _>(0)).collect()
        })
    };
    let on_second = schemas_on(&s2.url());
    for (name, server) in &placed {
        assert_eq!(on_second.contains(name), server == "second", "{name}");
    }
    env.add_tenant_migration("0004_scale_probe.sql", |_| {
        "CREATE TABLE scale_probe (id INT PRIMARY KEY);\n".into()
    });
    let out = env.cli(&["upgrade-all", "--output", "json"]);
    out.expect_code(0);
    assert_eq!(out.json()["successful_migrations"], 6);
    let out = env.cli(&["status", "--output", "json"]);
    out.expect_code(0);
    let doc = out.json();
    assert_eq!(doc["servers"][1]["name"], "second");
    assert_eq!(doc["servers"][1]["versions"][0]["version"], 4, "{doc:#}");
}

#[test]
fn sqlite_folders_as_servers() {
    let mut env = TestEnv::new(Backend::Sqlite);
    let root = env.dir.path().to_path_buf();
    env.tenant_servers = Some(format!(
        "a=sqlite://{0}/a/{{schema}}.db,b=sqlite://{0}/b/{{schema}}.db",
        root.display()
    ));
    let names: Vec<String> = (0..4).map(|i| env.tenant(&format!("s{i}"))).collect();
    create(&env, &names, &[]).expect_code(0);
    let placed = placement(&env);
    for (name, server) in &placed {
        assert!(
            root.join(server).join(format!("{name}.db")).exists(),
            "{name} on {server}"
        );
    }
    assert_eq!(count_on(&placed, "a"), 2);
    // A tenant keeps its server: asking for another one is a failure, not a move.
    let on_a = placed
        .iter()
        .find(|(_, s)| *s == "a")
        .map(|(n, _)| n.clone())
        .expect("a tenant on a");
    let out = create(&env, std::slice::from_ref(&on_a), &["--server", "b"]);
    out.expect_code(1);
    assert!(
        out.stdout().contains("keeps its server"),
        "{}",
        out.stdout()
    );
    // Dropping TENANT_SERVERS for the one-server default orphans a and b: refused.
    let out = env.cli_with(&["status"], &[("TENANT_SERVERS", "")]);
    out.expect_code(2);
    assert!(out.stderr().contains("2 on a"), "{}", out.stderr());
    // Bad lists name the variable.
    let out = env.cli_with(
        &["status"],
        &[(
            "TENANT_SERVERS",
            "a=sqlite:///x/{schema}.db,a=sqlite:///y/{schema}.db",
        )],
    );
    out.expect_code(2);
    assert!(out.stderr().contains("TENANT_SERVERS"), "{}", out.stderr());
}
