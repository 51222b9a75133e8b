//! Two real `serve` processes on one catalog (MariaDB and PostgreSQL): a job started on one
//! replica is cancelled from the other; a job held mid-run on replica A (a tenant lock taken by
//! the test) survives `kill -9` of A — replica B takes it over once A's lease expires and
//! finishes it within two lease periods, every tenant migrated exactly once, each outcome
//! naming the replica that ran it.
//!
//! The processes log as JSON to files of the test's own directory; the test reads them to
//! know when a replica has seen a cancel (an observation, not a sleep).

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tenant_migrator::auth::hash_password;
use tenant_migrator::domain::{Email, Role};

use crate::common::{Backend, Deadline, TestEnv, applied_up_to};
use crate::support::{Hold, PASSWORD, SECRET, fleet_env, tenant_version};

/// `JOB_LEASE` of both replicas.
const LEASE: Duration = Duration::from_secs(3);

/// A `serve` process, killed (SIGKILL) when dropped.
struct Replica {
    child: Option<Child>,
    base: String,
    log: PathBuf,
    client: reqwest::Client,
}

impl Replica {
    async fn start(env: &TestEnv, name: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = env.dir.path().join(format!("{name}.log"));
        let err = std::fs::File::create(&log).expect("log file");
        let child = env
            .cli_command(&["serve"])
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("SECRET_KEY", SECRET)
            .env("JOB_LEASE", LEASE.as_secs().to_string())
            .env("LOGIN_RATE_PER_MINUTE", "0")
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("serve starts");
        let mut me = Self {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            log,
            client: reqwest::Client::new(),
        };
        let ready = Deadline::new(&format!("{name} to be ready"), 60);
        loop {
            if let Some(status) = me.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("{name} exited ({status}): {}", me.log_text());
            }
            if let Ok(r) = me.client.get(me.url("/readyz")).send().await
                && r.status().is_success()
            {
                return me;
            }
            ready.check().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`, then reaps it.
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn login(&self, email: &str) -> String {
        let res = self
            .client
            .post(self.url("/auth/login"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .expect("login");
        assert_eq!(res.status(), 200, "login");
        let body: Value = res.json().await.expect("json");
        body["access_token"].as_str().expect("token").to_owned()
    }

    async fn upgrade_all(&self, token: &str) -> String {
        let (status, job) = self
            .call(
                reqwest::Method::POST,
                "/migrations/upgrade-all",
                token,
                Some(json!({"concurrency": 1})),
            )
            .await;
        assert_eq!(status, 202, "{job}");
        job["id"].as_str().expect("id").to_owned()
    }

    async fn job(&self, token: &str, id: &str) -> Value {
        let (status, body) = self
            .call(
                reqwest::Method::GET,
                &format!("/migrations/jobs/{id}"),
                token,
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn wait_job(
        &self,
        token: &str,
        id: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Deadline::new(what, 60);
        loop {
            let detail = self.job(token, id).await;
            if done(&detail) {
                return detail;
            }
            deadline.check().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn ran_by(detail: &Value) -> Vec<(String, String)> {
    let mut v: Vec<_> = detail["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .map(|t| {
            (
                t["schema_name"].as_str().unwrap_or_default().to_owned(),
                t["owner"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

fn finished(d: &Value) -> bool {
    !matches!(d["job"]["state"].as_str(), Some("running" | "queued"))
}

async fn two_serve_processes_share_jobs(b: Backend) {
    let (env, t) = fleet_env(
        b,
        &[
            ("a", Some(3)),
            ("b", Some(3)),
            ("c", Some(3)),
            ("d", Some(3)),
        ],
    )
    .await;
    let email = format!("{}admin@example.com", env.prefix);
    let engine = env.engine().await;
    engine
        .catalog()
        .insert_admin(
            &Email::parse(&email).expect("email"),
            &hash_password(PASSWORD).expect("hash"),
            Role::Operator,
        )
        .await
        .expect("insert admin")
        .expect("new admin");
    engine.close().await;
    let mut a = Replica::start(&env, "replica-a").await;
    let replica_b = Replica::start(&env, "replica-b").await;
    let token = a.login(&email).await;
    let a_owner = format!("{}-", a.pid());
    let b_owner = format!("{}-", replica_b.pid());

    // 1. A job of A, cancelled through B: A reads the flag with its heartbeat.
    let hold = Hold::tenant_lock(&env, &t[1]).await;
    let first = a.upgrade_all(&token).await;
    replica_b
        .wait_job(&token, &first, "a to finish on A", |d| {
            ran_by(d).iter().any(|(s, _)| *s == t[0])
        })
        .await;
    let (status, body) = replica_b
        .call(
            reqwest::Method::POST,
            &format!("/migrations/jobs/{first}/cancel"),
            &token,
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let seen = Deadline::new("A to log the cancel", 30);
    while !a
        .log_text()
        .contains("cancel requested through the catalog")
    {
        seen.check().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hold.release().await;
    let detail = replica_b
        .wait_job(&token, &first, "the cancelled job to end", finished)
        .await;
    assert_eq!(detail["job"]["state"], "cancelled", "{detail:#}");
    let rows = ran_by(&detail);
    assert_eq!(
        rows.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>(),
        vec![t[0].clone(), t[1].clone()],
        "{detail:#}"
    );
    assert!(
        rows.iter().all(|(_, o)| o.starts_with(&a_owner)),
        "{detail:#}"
    );

    // 2. A job of A, held mid-run on d after c; A is killed; B takes it over and finishes it.
    let hold = Hold::tenant_lock(&env, &t[3]).await;
    let second = a.upgrade_all(&token).await;
    replica_b
        .wait_job(&token, &second, "c to finish on A", |d| {
            ran_by(d).iter().any(|(s, _)| *s == t[2])
        })
        .await;
    a.kill9();
    let killed = Instant::now();
    hold.release().await;
    let detail = replica_b
        .wait_job(&token, &second, "B to finish the job", finished)
        .await;
    let took = killed.elapsed();
    assert_eq!(detail["job"]["state"], "succeeded", "{detail:#}");
    assert_eq!(detail["job"]["takeovers"], 1, "{detail:#}");
    assert!(
        took < LEASE * 2,
        "B finished the job {took:?} after A was killed (lease {LEASE:?})"
    );
    let rows = ran_by(&detail);
    assert_eq!(rows.len(), 2, "{detail:#}");
    assert_eq!(rows[0].0, t[2]);
    assert!(rows[0].1.starts_with(&a_owner), "{detail:#}");
    assert_eq!(rows[1].0, t[3]);
    assert!(rows[1].1.starts_with(&b_owner), "{detail:#}");
    assert!(
        detail["job"]["owner"]
            .as_str()
            .is_some_and(|o| o.starts_with(&b_owner)),
        "{detail:#}"
    );
    // Every tenant migrated exactly once: each history row once, the 0004 table there.
    for s in &t {
        assert_eq!(
            tenant_version(&env, s).await,
            (applied_up_to(4), true),
            "{s}"
        );
    }
    drop(replica_b);
    env.cleanup().await;
}

mod mysql {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_serve_processes_share_jobs() {
        super::two_serve_processes_share_jobs(crate::common::Backend::MySql).await;
    }
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_serve_processes_share_jobs() {
        super::two_serve_processes_share_jobs(crate::common::Backend::Postgres).await;
    }
}
