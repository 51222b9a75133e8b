//! Fault injection (issue 9): processes and servers killed at random moments, then one
//! ordinary run, then every tenant classified as **converged**, **dirty** or **silent**, with
//! double-applied DML counted apart (see `faults/fleet.rs`).
//!
//! MySQL/MariaDB commit each DDL statement on its own, so a migration killed half-way leaves a
//! tenant between versions. Each scenario runs against servers of its own on free ports
//! (`faults/servers.rs`), so killing them disturbs no other test, and uses the built CLI
//! binary with migrations of three versions mixing every observable DDL kind with DML
//! (`faults/migrations.rs`):
//!
//! - the CLI killed with `kill -9` at 30 random moments during `upgrade-all` over 200
//!   MariaDB tenants, and at 25 during `create` of a batch of 120;
//! - the MariaDB server killed with `kill -9` mid-run and restarted (5 times); PostgreSQL
//!   restarted with `pg_ctlcluster … restart -m immediate` mid-run (4 times);
//! - two `serve` replicas with `JOB_LEASE=2`: the one running a fleet job killed with
//!   `kill -9` mid-job (twice, a fresh replica started each time), the survivor taking the job
//!   over once the lease expires and finishing it — no resume by hand.
//!
//! Each scenario prints a markdown row (and appends it to `target/fault-report.md`), then
//! passes only with 0 silent, 0 double-applied DML and 0 dirty. The random delays come from a
//! seed printed with the row; `FAULT_SEED=<n>` draws the same delays again (what they hit
//! still depends on timing). `classification_catches_tampering` checks the classification
//! itself. Run alone with `cargo nextest run --test faults --no-capture`.

mod common;
#[path = "faults/fleet.rs"]
mod fleet;
#[path = "faults/migrations.rs"]
mod migrations;
#[path = "faults/report.rs"]
mod report;
#[path = "faults/servers.rs"]
mod servers;

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use fleet::{CONCURRENCY, REFERENCE, Tally, Tool, report_failures, tenant_name, tenant_names};
use servers::{MariaDb, Postgres, free_port, poll};

static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
});

/// Runs a future to completion on the suite's runtime (the scenarios themselves are
/// synchronous: they start processes, sleep before kills and poll).
pub fn block_on<F: Future>(f: F) -> F::Output {
    RT.block_on(f)
}

/// SplitMix64: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `FAULT_SEED` (decimal or 0x-hex), else the clock.
fn base_seed() -> u64 {
    match std::env::var("FAULT_SEED") {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("FAULT_SEED={s:?} is not a number"))
        }
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    }
}

/// A child process that is killed (SIGKILL) when dropped, also on panic.
struct Running(Option<Child>);

impl Running {
    fn exited(&mut self) -> Option<ExitStatus> {
        self.0.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// `kill -9`, then reaps it.
    fn kill9(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One scenario: its name, seed, random source and clock.
struct Scenario {
    name: &'static str,
    seed: u64,
    rng: Rng,
    started: Instant,
}

impl Scenario {
    fn new(name: &'static str) -> Self {
        let seed = base_seed();
        let mut mixed = seed;
        for b in name.bytes() {
            mixed = (mixed ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        println!("[{name}] FAULT_SEED={seed}");
        Self {
            name,
            seed,
            rng: Rng(mixed),
            started: Instant::now(),
        }
    }

    fn say(&self, text: impl AsRef<str>) {
        println!(
            "[{}] {:>6.1} s  {}",
            self.name,
            self.started.elapsed().as_secs_f64(),
            text.as_ref()
        );
    }

    /// Publishes the row, then asserts what the issue asks.
    fn finish(self, faults: usize, wanted: usize, tally: Tally) {
        report::Outcome {
            scenario: self.name,
            faults,
            tally: &tally,
            duration: self.started.elapsed(),
            seed: self.seed,
        }
        .publish();
        assert!(
            faults >= wanted,
            "{}: only {faults} faults landed mid-run ({wanted} wanted)",
            self.name
        );
        assert_eq!(tally.silent, 0, "{}: silent tenants", self.name);
        assert_eq!(tally.double, 0, "{}: double-applied DML", self.name);
        assert_eq!(
            tally.dirty, 0,
            "{}: dirty tenants after the next ordinary run",
            self.name
        );
        assert_eq!(
            tally.converged, tally.tenants,
            "{}: every tenant converged",
            self.name
        );
    }
}

/// How long work takes on this machine, measured on the scenario's own server.
struct Timing {
    /// A run with nothing to do: process start, connections, catalog and history reads.
    startup: Duration,
    /// Wall time per tenant at [`CONCURRENCY`].
    per_tenant: Duration,
}

impl Timing {
    fn work(&self, tenants: usize) -> Duration {
        self.per_tenant * tenants as u32
    }
}

fn with_names<'a>(args: &[&'a str], names: &'a [String]) -> Vec<&'a str> {
    let mut v = args.to_vec();
    v.extend(names.iter().map(String::as_str));
    v
}

const CONCURRENCY_ARG: &str = "4";
const _: () = assert!(CONCURRENCY == 4);

/// The reference tenant and a few calibration tenants are created at version 1 and upgraded
/// without faults (timed; then a no-op run, timed), then `n` fleet tenants are created at
/// version 1.
fn upgrade_fleet(sc: &Scenario, tool: &Tool, n: usize) -> (Vec<String>, Timing) {
    let mut cal = vec![REFERENCE.to_owned()];
    cal.extend((1..=15).map(|i| format!("cal_{i:02}")));
    tool.ok(&with_names(
        &["--concurrency", CONCURRENCY_ARG, "--target", "1", "create"],
        &cal,
    ));
    let t = Instant::now();
    tool.ok(&["--concurrency", CONCURRENCY_ARG, "upgrade-all"]);
    let work = t.elapsed();
    let t = Instant::now();
    tool.ok(&["--concurrency", CONCURRENCY_ARG, "upgrade-all"]);
    let startup = t.elapsed();
    let fleet = tenant_names(n);
    if n > 0 {
        tool.ok(&with_names(
            &["--concurrency", CONCURRENCY_ARG, "--target", "1", "create"],
            &fleet,
        ));
    }
    let timing = Timing {
        startup,
        per_tenant: work.saturating_sub(startup) / cal.len() as u32,
    };
    sc.say(format!(
        "{n} fleet tenants at version 1; on this server a clean upgrade costs {:.0} ms per \
         tenant, a no-op run {:.0} ms",
        timing.per_tenant.as_secs_f64() * 1000.0,
        timing.startup.as_secs_f64() * 1000.0
    ));
    (fleet, timing)
}

/// The delay before the next fault: somewhere in the run's start-up, plus a random share of
/// a slice of the remaining work, so that the faults spread over the whole fleet's work (and
/// the last ones still find some).
fn next_delay(sc: &mut Scenario, timing: &Timing, left: usize, faults_left: usize) -> Duration {
    let share = (1.5 / (faults_left + 1) as f64).min(0.9);
    let slice = timing.work(left).mul_f64(share);
    timing.startup.mul_f64(0.5 + 0.5 * sc.rng.unit()) + slice.mul_f64(sc.rng.unit())
}

/// Tenants added when the fleet's work ran out before enough kills landed.
const TOP_UP: usize = 20;

/// Spawns the command `args_for(fleet)` again and again, each time `kill -9`-ing it after a
/// random delay, until `wanted` kills landed on a live process. When a run finished the
/// fleet's work before its kill, `TOP_UP` tenants are added (`prepare` makes them ready for
/// the command, e.g. creates them at version 1). Returns how many kills landed.
fn kill_cli_runs(
    sc: &mut Scenario,
    tool: &Tool,
    fleet: &mut Vec<String>,
    args_for: impl Fn(&[String]) -> Vec<String>,
    prepare: impl Fn(&[String]),
    wanted: usize,
    timing: &Timing,
) -> usize {
    let mut landed = 0;
    // Tenants the tool no longer attempts (dirty after a kill): not work.
    let mut blocked = 0;
    let mut ran_out = false;
    for attempt in 1..=wanted * 3 {
        if landed == wanted {
            break;
        }
        let mut left = fleet
            .len()
            .saturating_sub(tool.done_count())
            .saturating_sub(blocked);
        if left == 0 || ran_out {
            let more: Vec<String> = (fleet.len() + 1..=fleet.len() + TOP_UP)
                .map(tenant_name)
                .collect();
            prepare(&more);
            fleet.extend(more);
            left = TOP_UP;
            ran_out = false;
            sc.say(format!(
                "the work ran out after {landed} kills: {TOP_UP} more tenants, {} in all",
                fleet.len()
            ));
        }
        let delay = next_delay(sc, timing, left, wanted - landed);
        let args = args_for(fleet);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut run = Running(Some(tool.spawn(&args, &format!("run-{attempt:02}"))));
        // The deliberate random delay before the fault.
        std::thread::sleep(delay);
        match run.exited() {
            Some(status) => {
                // It did all it would do: what is left is blocked.
                ran_out = true;
                blocked = fleet.len().saturating_sub(tool.done_count());
                sc.say(format!(
                    "run {attempt} ended ({status}) before its kill at {:.2} s; \
                     {blocked} tenants are not done",
                    delay.as_secs_f64()
                ));
            }
            None => {
                run.kill9();
                landed += 1;
                sc.say(format!(
                    "kill -9 {landed}/{wanted} of the CLI at {:.2} s ({left} tenants were left)",
                    delay.as_secs_f64()
                ));
            }
        }
    }
    landed
}

/// Rounds of: a fresh batch of `batch` tenants at version 1 (the round's work), an
/// `upgrade-all` run, and `fault` injected into the server after a random delay while the run
/// is live (then the run ends on its own). Until `wanted` faults landed; returns how many did
/// and every tenant created.
fn fault_server_during_runs(
    sc: &mut Scenario,
    tool: &Tool,
    wanted: usize,
    timing: &Timing,
    batch: usize,
    mut fault: impl FnMut(),
) -> (usize, Vec<String>) {
    let args = [
        "--continue-on-error",
        "--concurrency",
        CONCURRENCY_ARG,
        "upgrade-all",
    ];
    let mut landed = 0;
    let mut fleet = Vec::new();
    for attempt in 1..=wanted * 3 {
        if landed == wanted {
            break;
        }
        let names: Vec<String> = (fleet.len() + 1..=fleet.len() + batch)
            .map(tenant_name)
            .collect();
        tool.ok(&with_names(
            &["--concurrency", CONCURRENCY_ARG, "--target", "1", "create"],
            &names,
        ));
        fleet.extend(names);
        let delay = timing.startup.mul_f64(0.5 + 0.5 * sc.rng.unit())
            + timing.work(batch).mul_f64(0.9 * sc.rng.unit());
        let log = format!("run-{attempt:02}");
        let mut run = Running(Some(tool.spawn(&args, &log)));
        // The deliberate random delay before the fault.
        std::thread::sleep(delay);
        if let Some(status) = run.exited() {
            sc.say(format!(
                "run {attempt} ended ({status}) before the server fault at {:.2} s",
                delay.as_secs_f64()
            ));
            continue;
        }
        let t = Instant::now();
        fault();
        landed += 1;
        sc.say(format!(
            "server fault {landed}/{wanted} at {:.2} s into a run over {batch} new tenants; \
             the server was back after {:.1} s",
            delay.as_secs_f64(),
            t.elapsed().as_secs_f64()
        ));
        let status = poll(
            "the CLI run to end after a server fault",
            Duration::from_secs(240),
            || run.exited(),
        );
        let err = servers::tail(&tool.log(&format!("{log}.err")), 400);
        let warnings = err
            .lines()
            .filter(|l| l.contains("\"WARN\"") || l.contains("\"ERROR\""))
            .count();
        sc.say(format!(
            "  the run ended with {status} after {warnings} warning/error log lines"
        ));
    }
    (landed, fleet)
}

/// The ordinary run after the faults (`args` must include `--output json`), then the
/// classification of `fleet`.
fn ordinary_run_and_classify(sc: &Scenario, tool: &Tool, fleet: &[String], args: &[&str]) -> Tally {
    let r = tool.run(args);
    sc.say(format!("ordinary run: exit {}", r.code()));
    let failures = match serde_json::from_str::<Value>(&r.stdout()) {
        Ok(report) if matches!(r.code(), 0 | 1) => report_failures(&report),
        _ => {
            sc.say(format!(
                "the ordinary run failed as a whole:\n{}\n{}",
                r.stdout(),
                servers::tail_text(&r.stderr(), 5)
            ));
            fleet
                .iter()
                .map(|s| (s.clone(), format!("run failed: exit {}", r.code())))
                .collect()
        }
    };
    classify_fleet(tool, fleet, &failures)
}

fn classify_fleet(tool: &Tool, fleet: &[String], failures: &HashMap<String, String>) -> Tally {
    let status = tool.status();
    let reference = status
        .get(REFERENCE)
        .expect("the reference tenant is in the catalog");
    assert!(
        reference.healthy,
        "the reference tenant is not healthy: {}",
        reference.summary
    );
    let mut names = fleet.to_vec();
    names.push(REFERENCE.to_owned());
    let (observed, resumed) = block_on(async {
        let mut p = tool.probe().await;
        let o = p.observe(&names).await;
        let resumed = p.resumed(fleet).await;
        p.close().await;
        (o, resumed)
    });
    let reference = &observed[REFERENCE];
    assert!(
        reference.shape.tables.contains_key("rewards")
            && reference.shape.tables.contains_key("events"),
        "the reference tenant is not at the newest version: {:?}",
        reference.shape.tables.keys().collect::<Vec<_>>()
    );
    let mut tally = fleet::classify(fleet, reference, &observed, &status, failures);
    tally.resumed = resumed;
    tally
}

fn upgrade_all_json() -> [&'static str; 6] {
    [
        "--output",
        "json",
        "--continue-on-error",
        "--concurrency",
        CONCURRENCY_ARG,
        "upgrade-all",
    ]
}

#[test]
fn cli_killed_during_upgrade_all() {
    const TENANTS: usize = 200;
    const KILLS: usize = 30;
    let mut sc = Scenario::new("CLI kill -9 during upgrade-all (MariaDB)");
    let server = MariaDb::start();
    let tool = Tool::mariadb(&server);
    let (mut fleet, timing) = upgrade_fleet(&sc, &tool, TENANTS);
    let args = upgrade_all_json();
    let kills = kill_cli_runs(
        &mut sc,
        &tool,
        &mut fleet,
        |_| args.iter().map(|a| a.to_string()).collect(),
        |more| {
            tool.ok(&with_names(
                &["--concurrency", CONCURRENCY_ARG, "--target", "1", "create"],
                more,
            ));
        },
        KILLS,
        &timing,
    );
    let tally = ordinary_run_and_classify(&sc, &tool, &fleet, &args);
    sc.finish(kills, KILLS, tally);
}

#[test]
fn cli_killed_during_create() {
    const TENANTS: usize = 120;
    const KILLS: usize = 25;
    let mut sc = Scenario::new("CLI kill -9 during create (MariaDB)");
    let server = MariaDb::start();
    let tool = Tool::mariadb(&server);
    let mut cal = vec![REFERENCE.to_owned()];
    cal.extend((1..=11).map(|i| format!("cal_{i:02}")));
    let t = Instant::now();
    tool.ok(&with_names(
        &["--concurrency", CONCURRENCY_ARG, "create"],
        &cal,
    ));
    let work = t.elapsed();
    let t = Instant::now();
    tool.ok(&["--concurrency", CONCURRENCY_ARG, "create", REFERENCE]);
    let startup = t.elapsed();
    let timing = Timing {
        startup,
        per_tenant: work.saturating_sub(startup) / cal.len() as u32,
    };
    sc.say(format!(
        "a clean create costs {:.0} ms per tenant, a no-op create {:.0} ms",
        timing.per_tenant.as_secs_f64() * 1000.0,
        timing.startup.as_secs_f64() * 1000.0
    ));
    let create = |fleet: &[String]| {
        with_names(
            &[
                "--output",
                "json",
                "--continue-on-error",
                "--concurrency",
                CONCURRENCY_ARG,
                "create",
            ],
            fleet,
        )
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>()
    };
    let mut fleet = tenant_names(TENANTS);
    let kills = kill_cli_runs(&mut sc, &tool, &mut fleet, create, |_| {}, KILLS, &timing);
    let args = create(&fleet);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let tally = ordinary_run_and_classify(&sc, &tool, &fleet, &args);
    sc.finish(kills, KILLS, tally);
}

#[test]
fn mariadb_killed_during_upgrade_all() {
    const BATCH: usize = 40;
    const FAULTS: usize = 5;
    let mut sc = Scenario::new("MariaDB kill -9 + restart during upgrade-all");
    let mut server = MariaDb::start();
    let tool = Tool::mariadb(&server);
    let (_, timing) = upgrade_fleet(&sc, &tool, 0);
    let (faults, fleet) =
        fault_server_during_runs(&mut sc, &tool, FAULTS, &timing, BATCH, || server.restart());
    let tally = ordinary_run_and_classify(&sc, &tool, &fleet, &upgrade_all_json());
    sc.finish(faults, FAULTS, tally);
}

#[test]
fn postgres_restarted_immediately_during_upgrade_all() {
    const BATCH: usize = 80;
    const FAULTS: usize = 4;
    let mut sc = Scenario::new("PostgreSQL restart -m immediate during upgrade-all");
    let server = Postgres::start();
    let tool = Tool::postgres(&server);
    let (_, timing) = upgrade_fleet(&sc, &tool, 0);
    let (faults, fleet) = fault_server_during_runs(&mut sc, &tool, FAULTS, &timing, BATCH, || {
        server.restart_immediate()
    });
    let tally = ordinary_run_and_classify(&sc, &tool, &fleet, &upgrade_all_json());
    sc.finish(faults, FAULTS, tally);
}

const ADMIN_EMAIL: &str = "faults@example.com";
/// `JOB_LEASE` of the scenario's replicas.
const JOB_LEASE: Duration = Duration::from_secs(2);
const ADMIN_PASSWORD: &str = "fault suite admin passphrase";

/// `serve` on a free port, killed when dropped.
struct Serve {
    process: Running,
    base: String,
}

impl Serve {
    fn start(tool: &Tool, log: &str) -> Self {
        let port = free_port();
        let out = std::fs::File::create(tool.log(&format!("{log}.out"))).expect("log file");
        let err = std::fs::File::create(tool.log(&format!("{log}.err"))).expect("log file");
        let child = tool
            .command(&["serve"])
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("LOGIN_RATE_PER_MINUTE", "0")
            .env("JOB_LEASE", JOB_LEASE.as_secs().to_string())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start serve");
        let mut me = Self {
            process: Running(Some(child)),
            base: format!("http://127.0.0.1:{port}"),
        };
        let url = me.url("/readyz");
        poll("serve to be ready", Duration::from_secs(60), || {
            if let Some(status) = me.process.exited() {
                panic!(
                    "serve exited ({status}) while starting:\n{}",
                    servers::tail(&tool.log(&format!("{log}.err")), 20)
                );
            }
            block_on(async {
                let r = reqwest::get(&url).await.ok()?;
                r.status().is_success().then_some(())
            })
        });
        me
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The `owner` prefix of this process's jobs (`<pid>-`).
    fn owner_prefix(&self) -> String {
        format!(
            "{}-",
            self.process.0.as_ref().map(Child::id).unwrap_or_default()
        )
    }

    /// A request; the status and the JSON body (Null when it has none).
    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        block_on(async {
            let client = reqwest::Client::new();
            let mut req = client.request(method, self.url(path));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            if let Some(b) = body {
                req = req.json(&b);
            }
            let res = req.send().await.expect("request to serve");
            let status = res.status().as_u16();
            let text = res.text().await.unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        })
    }

    fn login(&self) -> String {
        let (status, body) = self.call(
            reqwest::Method::POST,
            "/auth/login",
            None,
            Some(json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})),
        );
        assert_eq!(status, 200, "login: {body}");
        body["access_token"].as_str().expect("token").to_owned()
    }

    fn job(&self, token: &str, id: &str) -> Value {
        let (status, body) = self.call(
            reqwest::Method::GET,
            &format!("/migrations/jobs/{id}"),
            Some(token),
            None,
        );
        assert_eq!(status, 200, "GET job: {body}");
        body
    }
}

#[test]
fn serve_killed_during_job() {
    const TENANTS: usize = 100;
    const KILLS: usize = 2;
    let mut sc = Scenario::new("serve kill -9 mid-job, another replica takes over (MariaDB)");
    let server = MariaDb::start();
    let tool = Tool::mariadb(&server);
    let (fleet, timing) = upgrade_fleet(&sc, &tool, TENANTS);

    let mut admin = tool
        .command(&["create-admin", ADMIN_EMAIL])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("create-admin");
    admin
        .stdin
        .take()
        .expect("stdin")
        .write_all(ADMIN_PASSWORD.as_bytes())
        .expect("password");
    let out = admin.wait_with_output().expect("create-admin ends");
    assert!(
        out.status.success(),
        "create-admin: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Two replicas on one catalog; the job starts on the first.
    let mut replicas = vec![
        Serve::start(&tool, "serve-1"),
        Serve::start(&tool, "serve-2"),
    ];
    let token = replicas[0].login();
    let (status, job) = replicas[0].call(
        reqwest::Method::POST,
        "/migrations/upgrade-all",
        Some(&token),
        Some(json!({"continue_on_error": true, "concurrency": CONCURRENCY})),
    );
    assert_eq!(status, 202, "upgrade-all job: {job}");
    let id = job["id"].as_str().expect("job id").to_owned();
    let mut faults = 0;
    for round in 1..=KILLS {
        let left = TENANTS.saturating_sub(tool.done_count());
        let delay = timing.startup.mul_f64(0.5 + 0.5 * sc.rng.unit())
            + timing.work(left).mul_f64(0.6 * sc.rng.unit());
        // The deliberate random delay before the fault.
        std::thread::sleep(delay);
        let before = replicas[1].job(&token, &id);
        if before["job"]["state"] != "running" {
            sc.say(format!(
                "the job was already {} at {:.2} s: no fault this round",
                before["job"]["state"],
                delay.as_secs_f64()
            ));
            break;
        }
        // Kill the replica that runs the job now.
        let owner = before["job"]["owner"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let Some(victim) = replicas
            .iter()
            .position(|r| owner.starts_with(&r.owner_prefix()))
        else {
            panic!("no replica of this test owns the job: {before:#}");
        };
        let takeovers = before["job"]["takeovers"].as_i64().unwrap_or_default();
        let mut dead = replicas.remove(victim);
        dead.process.kill9();
        faults += 1;
        let killed = Instant::now();
        sc.say(format!(
            "kill -9 {faults}/{KILLS} of the job's replica at {:.2} s into the job ({left} tenants were left)",
            delay.as_secs_f64()
        ));
        // The survivor takes the job over once the lease expires; a fresh replica joins.
        let survivor = &replicas[0];
        let taken = poll(
            "another replica to take the job over",
            JOB_LEASE * 2 + Duration::from_secs(10),
            || {
                let j = survivor.job(&token, &id);
                (j["job"]["takeovers"].as_i64().unwrap_or_default() > takeovers
                    || j["job"]["state"] != "running")
                    .then_some(j)
            },
        );
        sc.say(format!(
            "the job was {} {:.1} s after the kill (lease {} s)",
            if taken["job"]["state"] == "running" {
                "taken over"
            } else {
                "finished"
            },
            killed.elapsed().as_secs_f64(),
            JOB_LEASE.as_secs()
        ));
        replicas.push(Serve::start(&tool, &format!("serve-{}", round + 2)));
    }
    let serve = replicas.remove(0);
    let done = poll("the job to finish", Duration::from_secs(300), || {
        let j = serve.job(&token, &id);
        matches!(
            j["job"]["state"].as_str(),
            Some("succeeded" | "failed" | "cancelled" | "interrupted")
        )
        .then_some(j)
    });
    sc.say(format!(
        "job {}: succeeded {}, failed {}, skipped {}, not attempted {}, takeovers {}",
        done["job"]["state"],
        done["job"]["succeeded"],
        done["job"]["failed"],
        done["job"]["skipped"],
        done["job"]["not_attempted"],
        done["job"]["takeovers"]
    ));
    // At most one takeover per kill (none when the job ended before its lease expired).
    assert!(
        done["job"]["takeovers"]
            .as_i64()
            .is_some_and(|n| n as usize <= faults),
        "takeovers: {done:#}"
    );
    assert_ne!(done["job"]["state"], "interrupted", "{done:#}");
    drop(replicas);
    drop(serve);

    // The job's last word per tenant.
    let mut rows: Vec<&Value> = done["tenants"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    rows.sort_by_key(|t| t["finished_at"].as_str().unwrap_or_default().to_owned());
    let mut failures = HashMap::new();
    for t in rows {
        let name = t["schema_name"].as_str().unwrap_or_default().to_owned();
        match t["status"].as_str() {
            Some("migrated" | "up_to_date" | "created" | "exists") => {
                failures.remove(&name);
            }
            other => {
                failures.insert(
                    name,
                    format!(
                        "{}: {}",
                        other.unwrap_or("?"),
                        t["error"].as_str().unwrap_or_default()
                    ),
                );
            }
        }
    }
    let tally = classify_fleet(&tool, &fleet, &failures);
    sc.finish(faults, KILLS, tally);
}

/// The suite's own check: tenants changed behind the tool's back are caught as silent, extra
/// DML as double-applied, a failed history row as dirty, and an untouched tenant converges.
#[test]
fn classification_catches_tampering() {
    let sc = Scenario::new("self-check");
    let server = MariaDb::start();
    let tool = Tool::mariadb(&server);
    let fleet = tenant_names(6);
    let mut all = vec![REFERENCE.to_owned()];
    all.extend(fleet.iter().cloned());
    tool.ok(&with_names(
        &["--concurrency", CONCURRENCY_ARG, "create"],
        &all,
    ));
    block_on(async {
        let mut p = tool.probe().await;
        for sql in [
            // structure
            "DROP INDEX uq_customers_code ON tenant_0001.customers",
            // an INSERT run twice
            "INSERT INTO tenant_0002.events (kind, at_version) VALUES ('rework', 3)",
            // an UPDATE run twice
            "UPDATE tenant_0003.customers SET points = points * 2 + 1",
            // rows
            "UPDATE tenant_0004.customers SET name = 'Changed' WHERE id = 1",
            // what the tool must report
            "UPDATE tenant_0005._tenant_migrations SET state = 'failed' WHERE version = 3",
        ] {
            p.exec(sql).await;
        }
        p.close().await;
    });
    let t = classify_fleet(&tool, &fleet, &HashMap::new());
    sc.say(format!("{t:#?}"));
    assert_eq!(
        (t.converged, t.silent, t.double, t.dirty),
        (1, 4, 2, 1),
        "converged, silent, double-applied, dirty"
    );
}
