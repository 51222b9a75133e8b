//! Private database servers for the fault suite, one per scenario, on free ports, so that
//! killing them disturbs no other test: a MariaDB (`mariadb-install-db` + `mariadbd`, killed
//! with SIGKILL) and a PostgreSQL cluster (`pg_createcluster`, restarted with
//! `pg_ctlcluster … restart -m immediate`). Dropping a server stops it and removes its files,
//! also after a panic. Servers left behind by a test process that was itself killed (a nextest
//! timeout) are reaped by the next scenario that starts: their folder names the owning pid.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection;

/// Every private server's files live in a folder under this one.
pub const ROOT: &str = "/tmp/tm-faults";
/// Prefix of the PostgreSQL clusters this suite creates.
const PG_PREFIX: &str = "tmfaults_";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Polls `f` until it returns `Some`, with a short growing pause between tries; fails the test
/// once `timeout` has passed.
pub fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Runs a setup command to completion; fails the test with its output when it fails.
pub fn run(cmd: &mut Command, what: &str) -> String {
    try_run(cmd).unwrap_or_else(|e| panic!("{what} failed: {e}"))
}

/// Runs a command to completion: its stdout, or its status and output when it failed.
fn try_run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn chown(path: &Path, owner: &str) {
    run(
        Command::new("chown").arg("-R").arg(owner).arg(path),
        "chown",
    );
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// A fresh folder under [`ROOT`] named `<kind>-<our pid>-…`, owned by `owner`.
fn server_dir(kind: &str, owner: &str) -> tempfile::TempDir {
    std::fs::create_dir_all(ROOT).expect("create the fault suite's folder");
    use std::os::unix::fs::PermissionsExt;
    // The database servers run as their own users and must reach their folders.
    let _ = std::fs::set_permissions(ROOT, std::fs::Permissions::from_mode(0o755));
    reap_orphans();
    let dir = tempfile::Builder::new()
        .prefix(&format!("{kind}-{}-", std::process::id()))
        .tempdir_in(ROOT)
        .expect("server folder");
    chown(dir.path(), owner);
    dir
}

/// Stops and removes the servers of test processes that no longer exist.
fn reap_orphans() {
    let Ok(entries) = std::fs::read_dir(ROOT) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let mut parts = name.splitn(3, '-');
        let (Some(kind), Some(pid)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid_alive(pid) {
            continue;
        }
        let dir = e.path();
        if kind == "mariadb" {
            kill_mariadbd_of(&dir);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    if let Ok(out) = Command::new("pg_lsclusters").arg("-h").output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(version), Some(name)) = (cols.first(), cols.get(1)) else {
                continue;
            };
            let Some(rest) = name.strip_prefix(PG_PREFIX) else {
                continue;
            };
            let owner = rest.split('_').next().and_then(|p| p.parse::<u32>().ok());
            if owner.is_some_and(|p| !pid_alive(p)) {
                let _ = Command::new("pg_dropcluster")
                    .args(["--stop", version, name])
                    .output();
            }
        }
    }
}

/// SIGKILLs the `mariadbd` whose pid file is in `dir`, if its command line names `dir`.
fn kill_mariadbd_of(dir: &Path) {
    let Ok(pid) = std::fs::read_to_string(dir.join("mariadbd.pid")) else {
        return;
    };
    let pid = pid.trim();
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return;
    };
    if String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy()) {
        let _ = Command::new("kill").args(["-9", pid]).output();
    }
}

/// A MariaDB server of one scenario, as the `mysql` user, on a free port.
pub struct MariaDb {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl MariaDb {
    /// Installs a data directory and starts the server (about a second).
    pub fn start() -> Self {
        let dir = server_dir("mariadb", "mysql:mysql");
        // One installation at a time on the machine: two bootstraps side by side (another test
        // process starting its own server) sometimes fail.
        let lock = std::fs::File::create(Path::new(ROOT).join(".install.lock"))
            .expect("the installation lock file");
        lock.lock().expect("take the installation lock");
        run(
            Command::new("mariadb-install-db")
                .arg("--no-defaults")
                .arg("--user=mysql")
                .arg(format!("--datadir={}", dir.path().join("data").display()))
                .arg("--auth-root-authentication-method=normal")
                .arg("--skip-test-db"),
            "mariadb-install-db",
        );
        drop(lock);
        let mut me = Self {
            dir,
            port: free_port(),
            child: None,
        };
        // The free port may be taken by someone else before the server binds it: another.
        for attempt in 1.. {
            match me.launch() {
                Ok(()) => break,
                Err(log) if attempt < 3 && log.contains("already in use") => {
                    me.port = free_port();
                }
                Err(log) => panic!("{log}"),
            }
        }
        me
    }

    /// `mysql://root@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{database}", self.port)
    }

    /// Starts the server and waits until it accepts connections; `Err` with its log when it
    /// exits instead.
    fn launch(&mut self) -> Result<(), String> {
        let d = self.dir.path();
        let child = Command::new("mariadbd")
            // Nothing of the shared server's /etc/mysql configuration.
            .arg("--no-defaults")
            .arg("--user=mysql")
            .arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", d.join("mariadbd.sock").display()))
            .arg(format!("--pid-file={}", d.join("mariadbd.pid").display()))
            .arg(format!("--log-error={}", d.join("mariadbd.err").display()))
            .arg("--skip-name-resolve")
            .arg("--skip-log-bin")
            .arg("--character-set-server=utf8mb4")
            .arg("--collation-server=utf8mb4_general_ci")
            .arg("--innodb-buffer-pool-size=64M")
            .arg("--innodb-log-file-size=48M")
            // Durable against a killed *process* (the log reaches the OS at every commit);
            // only an OS crash could lose the last second, and none is simulated here.
            .arg("--innodb-flush-log-at-trx-commit=2")
            .arg("--max-connections=200")
            .arg("--table-open-cache=4000")
            .arg("--table-definition-cache=4000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd");
        self.child = Some(child);
        let url = self.url("");
        poll(
            &format!("mariadbd on port {}", self.port),
            Duration::from_secs(60),
            || {
                if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                    self.child = None;
                    return Some(Err(format!(
                        "mariadbd exited ({status}) while starting:\n{}",
                        tail(&self.dir.path().join("mariadbd.err"), 30)
                    )));
                }
                crate::block_on(async {
                    let c = tokio::time::timeout(
                        Duration::from_secs(5),
                        sqlx::MySqlConnection::connect(&url),
                    )
                    .await
                    .ok()?
                    .ok()?;
                    let _ = c.close().await;
                    Some(Ok(()))
                })
            },
        )
    }

    /// `kill -9` of the server process.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same data and port (crash recovery included) and waits
    /// until it accepts connections.
    pub fn restart(&mut self) {
        self.kill9();
        if let Err(log) = self.launch() {
            panic!("{log}");
        }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A PostgreSQL cluster of one scenario, on a free port, trusting local TCP logins.
pub struct Postgres {
    version: String,
    name: String,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Postgres {
    /// Creates and starts a cluster (a few seconds).
    pub fn start() -> Self {
        // The free port may be taken by someone else before the server binds it: another.
        for attempt in 1.. {
            let me = Self::create();
            match me.try_ctl(&["start"]) {
                Ok(()) => {
                    me.wait_ready();
                    return me;
                }
                Err(e) if attempt < 3 && e.contains("already in use") => {}
                Err(e) => panic!("pg_ctlcluster start failed: {e}"),
            }
        }
        unreachable!()
    }

    fn create() -> Self {
        let dir = server_dir("pg", "postgres:postgres");
        let version = pg_version();
        let name = format!(
            "{PG_PREFIX}{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let port = free_port();
        run(
            Command::new("pg_createcluster")
                .arg(&version)
                .arg(&name)
                .arg("--port")
                .arg(port.to_string())
                .arg("-d")
                .arg(dir.path().join("data"))
                .arg("-l")
                .arg(dir.path().join("postgresql.log"))
                // Writes still reach the OS: a killed server loses nothing; no OS crash here.
                .args(["-o", "fsync=off"])
                .args(["-o", "max_connections=100"])
                .args(["--", "--auth=trust"]),
            "pg_createcluster",
        );
        Self {
            version,
            name,
            port,
            _dir: dir,
        }
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn try_ctl(&self, args: &[&str]) -> Result<(), String> {
        try_run(
            Command::new("pg_ctlcluster")
                .arg("--skip-systemctl-redirect")
                .arg(&self.version)
                .arg(&self.name)
                .args(args),
        )
        .map(drop)
    }

    fn wait_ready(&self) {
        let url = self.url();
        poll(
            &format!("PostgreSQL on port {}", self.port),
            Duration::from_secs(60),
            || {
                crate::block_on(async {
                    let mut c = tokio::time::timeout(
                        Duration::from_secs(5),
                        sqlx::PgConnection::connect(&url),
                    )
                    .await
                    .ok()?
                    .ok()?;
                    let ok = sqlx::query("SELECT 1").execute(&mut c).await.is_ok();
                    let _ = c.close().await;
                    ok.then_some(())
                })
            },
        );
    }

    /// `pg_ctlcluster … restart -m immediate`: every backend is killed without a checkpoint
    /// (crash recovery at start), then waits until the server accepts connections.
    pub fn restart_immediate(&self) {
        if let Err(e) = self.try_ctl(&["restart", "-m", "immediate"]) {
            panic!("pg_ctlcluster restart failed: {e}");
        }
        self.wait_ready();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("pg_dropcluster")
            .args(["--stop", &self.version, &self.name])
            .stdin(Stdio::null())
            .output();
    }
}

/// The newest PostgreSQL major version installed (`/usr/lib/postgresql/<v>/bin/initdb`).
fn pg_version() -> String {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server packages (/usr/lib/postgresql)")
        .flatten()
        .filter(|e| e.path().join("bin/initdb").exists())
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("an installed PostgreSQL version")
        .to_string()
}

/// The last `lines` lines of a log file (for failure messages).
pub fn tail(path: &Path, lines: usize) -> String {
    tail_text(&std::fs::read_to_string(path).unwrap_or_default(), lines)
}

/// The last `lines` lines of `text`.
pub fn tail_text(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
