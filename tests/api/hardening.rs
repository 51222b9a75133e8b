//! The service under hostile and careless clients: login floods (bounded password checks,
//! per-address throttle), readiness on every backend, slow and stalled connections (header
//! timeout, connection limit, shutdown deadline), invented methods against the metrics,
//! the metrics token, security headers and oversized headers, CORS `*`, and tokens with
//! future `nbf`/`iat` or a `crit` header.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use reqwest::{Method, Response};
use serde_json::{Value, json};
use tenant_migrator::domain::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backend_tests;
use crate::common::{Backend, TestEnv};
use crate::support::{PASSWORD, SECRET, TestApp, expect_problem};

async fn login(app: &TestApp, email: &str, password: &str) -> Response {
    app.request(Method::POST, "/auth/login", None)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("login request")
}

fn retry_after(res: &Response) -> u64 {
    res.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After on {}", res.status()))
}

/// More logins at once than password checks may run: the excess is told to come back (503
/// with `Retry-After`) instead of each taking 19 MiB on an unbounded queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_checks_at_once_are_bounded() {
    let env = TestEnv::new(Backend::Sqlite);
    let app = TestApp::spawn_with(env, |s| s.login.max_concurrent_hashes = 1).await;
    let email = app.admin(Role::Viewer).await;
    let long = "x".repeat(1000);
    let attempts = (0..30).map(|_| login(&app, &email, &long));
    let answers = futures_util::future::join_all(attempts).await;
    let mut busy = 0;
    for res in answers {
        match res.status().as_u16() {
            401 => {}
            503 => {
                busy += 1;
                assert!(retry_after(&res) >= 1);
                let p = expect_problem(res, 503).await;
                assert_eq!(p["type"], "urn:tenant-migrator:problem:busy", "{p}");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        busy > 0,
        "30 logins at once with one check slot: none was turned away"
    );
    app.stop().await;
}

/// One address that keeps trying is slowed down (429 with `Retry-After`), by rate and after
/// repeated failures; another address is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_is_throttled() {
    let env = TestEnv::new(Backend::Sqlite);
    let app = TestApp::spawn_with(env, |s| s.login.rate_per_minute = 2).await;
    let email = app.admin(Role::Viewer).await;
    // A burst of five (at least 5, or a fifth of the rate) is let through, then 429. At two a
    // minute the next token comes 30 s later, so a slow machine cannot refill it in between.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let res = login(&app, &email, PASSWORD).await;
        if res.status() == 429 {
            assert!(retry_after(&res) >= 1);
            let p = expect_problem(res, 429).await;
            assert_eq!(p["type"], "urn:tenant-migrator:problem:too-many-requests");
            statuses.push(429);
        } else {
            statuses.push(res.status().as_u16());
        }
    }
    assert_eq!(statuses, vec![200, 200, 200, 200, 200, 429]);
    // Refusals by the throttle write nothing to the audit log.
    let logins = app
        .engine
        .catalog()
        .recent_audit(100)
        .await
        .expect("audit")
        .into_iter()
        .filter(|e| e.action == "login")
        .count();
    assert_eq!(logins, 5);
    app.stop().await;

    // Failures: after five from one address (on e-mails that do not exist, so no account
    // is held back), it waits before its next attempt.
    let app = TestApp::spawn(Backend::Sqlite).await;
    let email = app.admin(Role::Viewer).await;
    let ghost = format!("{}ghost@example.com", app.env.prefix);
    for _ in 0..5 {
        assert_eq!(login(&app, &ghost, PASSWORD).await.status(), 401);
    }
    let res = login(&app, &email, PASSWORD).await;
    assert_eq!(res.status(), 429, "the address is in back-off");
    assert!(retry_after(&res) >= 1);
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 9, 9)))
        .build()
        .expect("client")
        .post(app.url("/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(other.status(), 200, "another address is not held back");
    app.stop().await;

    // Behind a trusted proxy, the client is the address it names in X-Forwarded-For; from an
    // untrusted peer the header changes nothing.
    for trusted in [true, false] {
        let env = TestEnv::new(Backend::Sqlite);
        let app = TestApp::spawn_with(env, |s| {
            s.login.rate_per_minute = 2;
            if trusted {
                s.trusted_proxies = vec!["127.0.0.1/32".parse().expect("network")];
            }
        })
        .await;
        let email = app.admin(Role::Viewer).await;
        let mut statuses = Vec::new();
        for n in 0..6 {
            let res = app
                .request(Method::POST, "/auth/login", None)
                .header("x-forwarded-for", format!("198.51.100.{n}"))
                .json(&json!({"email": email, "password": PASSWORD}))
                .send()
                .await
                .expect("login");
            statuses.push(res.status().as_u16());
        }
        let expected = if trusted {
            vec![200; 6]
        } else {
            vec![200, 200, 200, 200, 200, 429]
        };
        assert_eq!(statuses, expected, "trusted proxy: {trusted}");
        app.stop().await;
    }
}

/// `PATCH` cannot clear a back-off; `POST /admins/{id}/unlock` can (admins only).
async fn an_admin_unlocks_an_account(b: Backend) {
    let app = TestApp::spawn(b).await;
    let admin = app.token(Role::Admin).await;
    let viewer = app.token(Role::Viewer).await;
    let email = app.admin(Role::Operator).await;
    let row = app
        .engine
        .catalog()
        .find_admin_by_email(&email)
        .await
        .expect("catalog")
        .expect("row");
    let far = chrono::Utc::now() + chrono::Duration::seconds(3600);
    app.catalog_exec(
        "UPDATE admin_master_users SET locked_until = ?, failed_logins = 9 WHERE id = ?",
        &[
            crate::support::CatalogArg::Time(far),
            crate::support::CatalogArg::Id(row.id),
        ],
    )
    .await;
    assert_eq!(login(&app, &email, PASSWORD).await.status(), 401);
    let path = format!("/admins/{}/unlock", row.id);
    expect_problem(app.post(&path, &viewer, json!({})).await, 403).await;
    let missing = format!("/admins/{}/unlock", uuid::Uuid::new_v4());
    expect_problem(app.post(&missing, &admin, json!({})).await, 404).await;
    let res = app.post(&path, &admin, json!({})).await;
    assert_eq!(res.status(), 200);
    let view: Value = res.json().await.expect("json");
    assert_eq!(view["failed_logins"], 0);
    assert!(view["locked_until"].is_null(), "{view}");
    assert_eq!(login(&app, &email, PASSWORD).await.status(), 200);
    let unlocks = app
        .engine
        .catalog()
        .recent_audit(100)
        .await
        .expect("audit")
        .into_iter()
        .filter(|e| e.action == "admin.unlock" && e.target.as_deref() == Some(email.as_str()))
        .count();
    assert_eq!(unlocks, 1);
    app.stop().await;
}

/// `/readyz` answers 200 on every backend once the catalog is migrated.
async fn ready_on_every_backend(b: Backend) {
    let app = TestApp::spawn(b).await;
    let res = app
        .request(Method::GET, "/readyz", None)
        .send()
        .await
        .expect("readyz");
    let status = res.status();
    let body: Value = res.json().await.expect("json");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert!(
        body["catalog_version"].as_i64().is_some_and(|v| v >= 4),
        "{body}"
    );
    app.stop().await;
}

/// Reads from `stream` until the server closes it; panics if it stays open `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .expect("the server closed the connection");
    got
}

/// A client that sends half a request line is cut off after the header-read timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_is_cut_off() {
    let env = TestEnv::new(Backend::Sqlite);
    let app = TestApp::spawn_with(env, |s| s.header_read_timeout = Duration::from_secs(1)).await;
    let mut slow = TcpStream::connect(app.addr).await.expect("connect");
    slow.write_all(b"GET /healthz HT").await.expect("write");
    closed_within(&mut slow, Duration::from_secs(15)).await;
    app.stop().await;
}

/// At most `max_connections` are open: the next client waits until one closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_limited() {
    let env = TestEnv::new(Backend::Sqlite);
    let app = TestApp::spawn_with(env, |s| s.max_connections = 3).await;
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(app.addr).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        stalled.push(s);
    }
    let mut next = TcpStream::connect(app.addr)
        .await
        .expect("the backlog takes it");
    next.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(500), next.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "a fourth connection was served while three were open"
    );
    drop(stalled.pop());
    let answer = closed_within(&mut next, Duration::from_secs(15)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    drop(stalled);
    app.stop().await;
}

/// A stalled client cannot keep the service from stopping: shutdown waits for the deadline,
/// then closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_has_a_deadline() {
    let env = TestEnv::new(Backend::Sqlite);
    let mut app = TestApp::spawn_with(env, |s| {
        s.header_read_timeout = Duration::from_secs(300);
        s.shutdown_timeout = Duration::from_secs(1);
    })
    .await;
    let mut slow = TcpStream::connect(app.addr).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    // The connection is open (and served) before the signal.
    let probe = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("probe");
    assert_eq!(probe.status(), 200);
    app.request_shutdown();
    tokio::time::timeout(Duration::from_secs(20), app.wait_stopped())
        .await
        .expect("the service stopped despite a stalled client");
    closed_within(&mut slow, Duration::from_secs(5)).await;
    app.env.cleanup().await;
}

/// Invented methods and unknown paths do not add label values to `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_labels_are_bounded() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for i in 0..50 {
        let method = Method::from_bytes(format!("INVENTED{i}").as_bytes()).expect("method");
        let _ = app
            .request(method, "/tenants", None)
            .send()
            .await
            .expect("request");
        let _ = app
            .request(Method::GET, &format!("/made-up-{i}"), None)
            .send()
            .await
            .expect("request");
    }
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(!text.contains("INVENTED"), "invented methods became labels");
    assert!(!text.contains("made-up"), "unmatched paths became labels");
    assert!(text.contains("method=\"other\""), "{text}");
    app.stop().await;
}

/// With `METRICS_TOKEN`, `/metrics` needs it as a bearer token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_token_is_required_when_set() {
    const TOKEN: &str = "scrape-me-please-0123456789";
    let env = TestEnv::new(Backend::Sqlite);
    let app = TestApp::spawn_with(env, |s| s.metrics_token = Some(TOKEN.into())).await;
    let url = app.url("/metrics");
    expect_problem(app.client.get(&url).send().await.expect("get"), 401).await;
    let wrong = app
        .client
        .get(&url)
        .bearer_auth("nope")
        .send()
        .await
        .expect("get");
    expect_problem(wrong, 401).await;
    let ok = app
        .client
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(ok.status(), 200);
    app.stop().await;
}

fn header<'a>(res: &'a Response, name: &str) -> Option<&'a str> {
    res.headers().get(name).and_then(|v| v.to_str().ok())
}

/// nosniff everywhere, frames denied, a CSP on `/docs`, oversized headers 431 as a problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_and_oversized_headers() {
    let env = TestEnv::new(Backend::Sqlite);
    let app = TestApp::spawn_with(env, |s| s.cors_origins = vec!["*".into()]).await;
    for path in [
        "/healthz",
        "/nowhere",
        "/tenants",
        "/openapi.json",
        "/docs/",
    ] {
        let res = app.client.get(app.url(path)).send().await.expect("get");
        assert_eq!(
            header(&res, "x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(header(&res, "x-frame-options"), Some("DENY"), "{path}");
        let csp = header(&res, "content-security-policy").unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
    }
    let docs = app
        .client
        .get(app.url("/docs/"))
        .send()
        .await
        .expect("docs");
    assert_eq!(docs.status(), 200);
    let csp = header(&docs, "content-security-policy").unwrap_or_default();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    // CORS `*`: any origin, no credentials.
    let pre = app
        .client
        .request(Method::OPTIONS, app.url("/tenants"))
        .header("origin", "https://anywhere.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .expect("preflight");
    assert_eq!(header(&pre, "access-control-allow-origin"), Some("*"));
    assert_eq!(header(&pre, "access-control-allow-credentials"), None);
    // 20 KiB of headers: 431 as a problem document.
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("x-padding", "p".repeat(20 * 1024))
        .send()
        .await
        .expect("get");
    assert_eq!(header(&res, "x-content-type-options"), Some("nosniff"));
    let p = expect_problem(res, 431).await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("too large"),
        "{p}"
    );
    app.stop().await;
}

fn jwt(header: &Value, claims: &Value) -> String {
    use base64::Engine as _;
    use hmac_sha256::hmac;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let signing = format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string())
    );
    let sig = hmac(signing.as_bytes(), SECRET.as_bytes());
    format!("{signing}.{}", b64.encode(sig))
}

mod hmac_sha256 {
    //! HMAC-SHA256 (RFC 2104) over `sha2`, to sign tokens with headers the token library
    //! would not write.
    use sha2::{Digest, Sha256};

    pub fn hmac(message: &[u8], key: &[u8]) -> Vec<u8> {
        let mut k = [0u8; 64];
        if key.len() > 64 {
            k[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
        let outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
        let ih = Sha256::new()
            .chain_update(&inner)
            .chain_update(message)
            .finalize();
        Sha256::new()
            .chain_update(&outer)
            .chain_update(ih)
            .finalize()
            .to_vec()
    }
}

/// Tokens valid in every other way are refused with `nbf` or `iat` in the future, or with a
/// `crit` header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn future_and_critical_tokens_are_refused() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let token = app.token(Role::Viewer).await;
    let me = app.get_json("/auth/me", &token).await;
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({
        "sub": me["id"], "email": me["email"], "role": "viewer",
        "iss": "tenant-migrator", "aud": "tenant-migrator-admin",
        "iat": now, "exp": now + 600, "tv": 0,
    });
    let hs256 = json!({"alg": "HS256", "typ": "JWT"});
    // The control: this hand-made token is accepted, so each refusal is about one change.
    let control = jwt(&hs256, &claims);
    assert_eq!(app.get("/auth/me", &control).await.status(), 200);
    let same_via_library = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign");
    assert_eq!(app.get("/auth/me", &same_via_library).await.status(), 200);
    let mut nbf = claims.clone();
    nbf["nbf"] = json!(now + 600);
    let mut iat = claims.clone();
    iat["iat"] = json!(now + 600);
    let mut stale = claims.clone();
    stale["tv"] = json!(-1);
    let mut no_tv = claims.clone();
    no_tv.as_object_mut().expect("object").remove("tv");
    let crit = json!({"alg": "HS256", "typ": "JWT", "crit": ["exp"], "exp": now + 600});
    for (what, t) in [
        ("nbf in the future", jwt(&hs256, &nbf)),
        ("iat in the future", jwt(&hs256, &iat)),
        ("crit header", jwt(&crit, &claims)),
        ("older token version", jwt(&hs256, &stale)),
        ("no token version", jwt(&hs256, &no_tv)),
    ] {
        let res = app.get("/auth/me", &t).await;
        assert_eq!(res.status(), 401, "{what}");
        expect_problem(res, 401).await;
    }
    app.stop().await;
}

backend_tests!(ready_on_every_backend, an_admin_unlocks_an_account);
