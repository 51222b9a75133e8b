//! A fleet run against a server that refuses connections beyond a limit: the run lowers its
//! own concurrency and re-queues the refused tenants instead of failing them (issue 9).
//!
//! The tool runs as a login of the test's own that the server refuses more than four
//! connections at once (MariaDB `MAX_USER_CONNECTIONS`, PostgreSQL `CONNECTION LIMIT`), with
//! a tenant pool and a concurrency of 32: without the adaptive limit, tenants fail with
//! "too many connections". A server whose limit stays held by others still ends the run, with
//! the refused tenants failed and the server's refusal named.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{Backend, Deadline, MYSQL_URL, TestEnv, applied_up_to, tenant_of};
use sqlx::{Connection, MySqlConnection};
use tenant_migrator::{Config, Engine, FleetReport, OutcomeStatus, Progress};

const TENANTS: usize = 40;
const USER_LIMIT: u32 = 4;
const LOYALTY: &str = "CREATE TABLE loyalty_cards (id CHAR(36) NOT NULL PRIMARY KEY, points INTEGER NOT NULL DEFAULT 0)";

/// Log lines (JSON, one per line on stderr) whose message is `message`.
fn log_lines(stderr: &str, message: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == message)
        .collect()
}

async fn upgrade_all_within_a_user_connection_limit(b: Backend) {
    let mut env = TestEnv::new(b);
    env.own_migrations();
    env.use_limited_user(USER_LIMIT).await;
    let tenants: Vec<String> = (0..TENANTS)
        .map(|i| env.tenant(&format!("c{i:02}")))
        .collect();
    // Provisioning is not what this test is about: one tenant at a time over one connection
    // stays well within the limit.
    let mut args = vec![
        "--output",
        "json",
        "--pool-size",
        "1",
        "--concurrency",
        "1",
        "create",
    ];
    args.extend(tenants.iter().map(String::as_str));
    let created = env.cli(&args);
    created.expect_code(0);
    assert_eq!(created.json()["successful_migrations"], TENANTS);

    env.add_tenant_migration("0004_loyalty.sql", |_| LOYALTY.into());
    // As many pooled connections as tenants at once: far beyond what the server allows.
    env.pool_size = Some(32);
    let clock = Instant::now();
    let run = env.cli(&["--output", "json", "--concurrency", "32", "upgrade-all"]);
    let elapsed = clock.elapsed();
    run.expect_code(0);
    let r = run.json();
    assert_eq!(
        (
            r["failed"].as_i64(),
            r["successful_migrations"].as_i64(),
            r["migrations_applied"].as_i64()
        ),
        (Some(0), Some(TENANTS as i64), Some(TENANTS as i64)),
        "report:\n{r:#}\nstderr:\n{}",
        run.stderr()
    );
    for t in &tenants {
        let line = tenant_of(&r, t);
        assert_eq!(line["status"], "migrated", "{line:#}");
        assert_eq!(line["to"], 4, "{line:#}");
        // Refused tries are not attempts of the tenant: only the one that got in counts.
        assert_eq!(line["attempts"], 1, "{line:#}");
    }

    // The server refused connections and the run said so, once per change of its limit.
    let stderr = run.stderr();
    let lowered = log_lines(&stderr, "fleet concurrency lowered");
    assert!(
        !lowered.is_empty(),
        "the server never refused a connection, so nothing was tested:\n{stderr}"
    );
    let changes = lowered.len() + log_lines(&stderr, "fleet concurrency raised").len();
    assert!(
        changes <= 2 * TENANTS,
        "{changes} concurrency changes logged for {TENANTS} tenants:\n{stderr}"
    );
    eprintln!(
        "{b:?}: {TENANTS} tenants through a limit of {USER_LIMIT} connections in {:.1}s, \
         {} decreases, {changes} changes logged",
        elapsed.as_secs_f64(),
        lowered.len()
    );

    // Every tenant is at the latest version, in its own history and in the catalog.
    let mut admin = env.admin().await;
    for t in &tenants {
        assert_eq!(admin.history(&env, t).await, applied_up_to(4), "{t}");
        let row = admin.catalog_tenant(&env, t).await.expect("catalog row");
        assert_eq!(
            (row.status.as_str(), row.schema_version, row.last_error),
            ("active", Some(4), None),
            "{t}"
        );
    }
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_upgrade_all_within_a_user_connection_limit() {
    upgrade_all_within_a_user_connection_limit(Backend::MySql).await;
}

/// Opens a connection as `user`, trying again while the server still counts one just closed
/// or killed against the user's limit.
async fn connect_as(user: &str, why: &str) -> MySqlConnection {
    let url = MYSQL_URL.replacen("root@", &format!("{user}@"), 1);
    let deadline = Deadline::new(why, 30);
    loop {
        match MySqlConnection::connect(&url).await {
            Ok(c) => return c,
            Err(_) => deadline.check().await,
        }
    }
}

/// Once the run has read the fleet's histories (and before any tenant starts), kills the
/// tool's pooled connections and takes their place: every connection the tool asks for from
/// then on is refused, as on a server whose limit other clients hold.
struct TakeTheLastPlace {
    user: String,
    ours: Vec<i64>,
    held: Mutex<Vec<MySqlConnection>>,
}

impl Progress for TakeTheLastPlace {
    fn planned(&self, _total: usize, _work: usize) {
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                let mut root = MySqlConnection::connect(MYSQL_URL).await.expect("root");
                let tools: Vec<i64> = sqlx::query_scalar(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?",
                )
                .bind(&self.user)
                .fetch_all(&mut root)
                .await
                .expect("processlist");
                for id in tools.into_iter().filter(|id| !self.ours.contains(id)) {
                    sqlx::query("KILL ?")
                        .bind(id)
                        .execute(&mut root)
                        .await
                        .expect("kill");
                }
                let c = connect_as(&self.user, "the tool's connection to be gone").await;
                self.held.lock().expect("held").push(c);
            })
        });
    }
}

/// Every connection the tool asks for during the run is refused (`MAX_USER_CONNECTIONS` held
/// by the test): the run does not re-queue forever. At a concurrency lowered to 1 and with no
/// tenant let in for its patience, each refused tenant is failed, naming the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_tenants_refused_forever_fail_naming_the_refusal() {
    const LIMIT: u32 = 3;
    let mut env = TestEnv::new(Backend::MySql);
    env.own_migrations();
    let tenants: Vec<String> = (0..3).map(|i| env.tenant(&format!("r{i}"))).collect();
    let mut args = vec!["create"];
    args.extend(tenants.iter().map(String::as_str));
    env.cli(&args).expect_code(0);
    env.add_tenant_migration("0004_loyalty.sql", |_| LOYALTY.into());

    // The tenants are reached as the limited user; the catalog stays the administrator's.
    env.use_limited_user(LIMIT).await;
    let user = env.user.clone().expect("user");
    let first = connect_as(&user, "a first connection of the user").await;
    let mut settings = env.settings();
    settings.database_url = Some(format!("{MYSQL_URL}/{}", env.catalog));
    let engine = Engine::connect(Config::from_settings(settings).expect("config"))
        .await
        .expect("engine connects");
    // The tool keeps one pooled connection; the test takes the last place but that one.
    let second = connect_as(&user, "the tool's probe connection to close").await;
    let mut ours = Vec::new();
    let mut held = Vec::new();
    for mut c in [first, second] {
        let id: i64 = sqlx::query_scalar("SELECT CAST(CONNECTION_ID() AS SIGNED)")
            .fetch_one(&mut c)
            .await
            .expect("connection id");
        ours.push(id);
        held.push(c);
    }
    let hook = TakeTheLastPlace {
        user,
        ours,
        held: Mutex::new(held),
    };

    let mut opts = engine.fleet_options(false, None);
    opts.concurrency = 8;
    opts.continue_on_error = true;
    opts.refusal_patience = Duration::from_secs(1);
    let clock = Instant::now();
    let report: FleetReport = engine.upgrade_all(&opts, &hook).await.expect("run ends");
    let elapsed = clock.elapsed();
    assert_eq!(
        (report.failed, report.successful_migrations),
        (tenants.len(), 0),
        "{report:#?}"
    );
    for t in &report.tenants {
        assert_eq!(t.status, OutcomeStatus::Failed, "{t:#?}");
        let error = t.error.as_deref().unwrap_or_default();
        assert!(
            error.contains("refused") && error.contains("'max_user_connections'"),
            "{error}"
        );
        assert_eq!((t.from, t.to), (Some(3), Some(3)), "{t:#?}");
    }
    assert!(
        elapsed < Duration::from_secs(30),
        "the run took {elapsed:?} to give up"
    );
    eprintln!(
        "refused forever: {} tenants failed in {:.1}s: {}",
        report.failed,
        elapsed.as_secs_f64(),
        report.tenants[0].error.as_deref().unwrap_or_default()
    );

    for c in hook.held.into_inner().expect("held") {
        let _ = c.close().await;
    }
    engine.close().await;
    let mut admin = env.admin().await;
    for t in &tenants {
        assert_eq!(admin.history(&env, t).await, applied_up_to(3), "{t}");
    }
    env.cleanup().await;
}
