//! The service's settings from the command line's point of view: bad values (weak
//! `SECRET_KEY`, huge `JWT_TTL`, `CORS_ORIGINS` mixing `*` with origins) stop `serve` with
//! exit 2 and a message naming the variable, `CORS_ORIGINS='*'` starts, and `unlock-admin`
//! clears an account's back-off.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use common::{Backend, TestEnv};

const KEY: &str = "0c6f1d8e2b7a49f3a5d4c8e1b0f7a2d6c3e9b8a1f4d7c2e5b0a9f8d3c6e1b4a7";

#[test]
fn bad_service_settings_exit_2_naming_the_variable() {
    let env = TestEnv::new(Backend::Sqlite);
    let weak = "a".repeat(32);
    for (var, value, hidden) in [
        ("SECRET_KEY", weak.as_str(), Some(weak.as_str())),
        ("SECRET_KEY", "ab".repeat(24).as_str(), None),
        ("SECRET_KEY", "too-short", Some("too-short")),
        ("JWT_TTL", "18446744073709551615", None),
        ("JWT_TTL", "99999999999999999999999", None),
        ("JWT_TTL", "0", None),
        ("CORS_ORIGINS", "*, https://admin.example.com", None),
        ("CORS_ORIGINS", "javascript:alert(1)", None),
        ("HEADER_READ_TIMEOUT", "0", None),
        ("MAX_CONNECTIONS", "lots", None),
        ("METRICS_TOKEN", "short", Some("short")),
    ] {
        let mut vars = vec![("SECRET_KEY", KEY), ("BIND_ADDR", "127.0.0.1:0")];
        vars.retain(|(k, _)| *k != var);
        vars.push((var, value));
        let run = env.cli_bare(&["serve"], &vars);
        run.expect_code(2);
        let err = run.stderr();
        assert!(err.contains(var), "{var}={value}: {err}");
        assert!(!err.contains("panicked"), "{var}={value}: {err}");
        if let Some(secret) = hidden {
            assert!(!err.contains(secret), "{var} echoed: {err}");
        }
    }
}

#[test]
fn cors_star_starts_the_service() {
    let env = TestEnv::new(Backend::Sqlite);
    let mut cmd = env.cli_command(&["serve"]);
    cmd.env("SECRET_KEY", KEY)
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("CORS_ORIGINS", "*")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("serve starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut log = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("log line");
        let listening = line.contains("listening");
        log.push(line);
        if listening {
            break;
        }
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    log.extend(lines.map_while(Result::ok));
    let status = child.wait().expect("serve stops");
    let log = log.join("\n");
    assert!(log.contains("listening"), "serve never listened: {log}");
    assert!(status.success(), "{status:?}: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlock_admin_clears_the_back_off() {
    let env = TestEnv::new(Backend::Sqlite);
    let email = format!("{}ops@example.com", env.prefix);
    let mut create = env
        .cli_command(&["create-admin", &email, "--role", "admin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("create-admin");
    create
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"a long admin passphrase\n")
        .expect("password");
    assert!(create.wait().expect("create-admin ends").success());
    let engine = env.engine().await;
    let catalog = engine.catalog();
    let row = catalog
        .find_admin_by_email(&email)
        .await
        .expect("catalog")
        .expect("admin");
    let far = chrono::Utc::now() + chrono::Duration::hours(1);
    assert!(
        catalog
            .claim_login_attempt(&row, Some(far), chrono::Utc::now())
            .await
            .expect("claim"),
        "an attempt is claimed"
    );
    let held = catalog
        .find_admin_by_email(&email)
        .await
        .expect("catalog")
        .expect("admin");
    assert_eq!(
        held.locked_until.map(|t| t.timestamp()),
        Some(far.timestamp())
    );

    env.cli(&["unlock-admin", &email.to_uppercase()])
        .expect_code(0);
    let clear = catalog
        .find_admin_by_email(&email)
        .await
        .expect("catalog")
        .expect("admin");
    assert_eq!((clear.failed_logins, clear.locked_until), (0, None));
    let missing = env.cli(&["unlock-admin", &format!("{}nobody@example.com", env.prefix)]);
    missing.expect_code(2);
    assert!(
        missing.stderr().contains("no admin"),
        "{}",
        missing.stderr()
    );
    engine.close().await;
}
