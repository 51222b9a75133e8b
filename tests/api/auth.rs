//! Login (success, wrong password, lockout, unknown e-mail), token validation (forged,
//! expired, misaddressed tokens), disabled admins, roles, and the admin-users endpoints.

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use reqwest::{Method, Response};
use serde_json::{Value, json};
use tenant_migrator::catalog::{AdminPatch, AdminUpdate};
use tenant_migrator::domain::Role;

use crate::backend_tests;
use crate::common::Backend;
use crate::support::{CatalogArg, PASSWORD, SECRET, TestApp, expect_problem};

const WRONG: &str = "not the right password at all";

async fn login_with(app: &TestApp, email: &str, password: &str) -> Response {
    app.request(Method::POST, "/auth/login", None)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("login request")
}

/// Asserts a failed login: 401 problem with the one message every failure shares.
async fn denied(res: Response) -> String {
    assert_eq!(
        res.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    let p = expect_problem(res, 401).await;
    p["detail"].as_str().expect("detail").to_owned()
}

/// A login sent from the loopback address `127.0.<n / 256>.<n % 256>`: the service tells
/// clients apart by address, so tests of the account's back-off use a fresh one per attempt.
async fn login_from(app: &TestApp, n: u16, email: &str, password: &str) -> Response {
    let from = std::net::Ipv4Addr::new(127, 0, (n / 256) as u8, (n % 256) as u8 + 2);
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::V4(from))
        .build()
        .expect("client")
        .post(app.url("/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("login request")
}

async fn admin_row(app: &TestApp, email: &str) -> tenant_migrator::catalog::AdminRow {
    app.engine
        .catalog()
        .find_admin_by_email(email)
        .await
        .expect("catalog")
        .expect("admin row")
}

async fn login_ok_wrong_password_backoff_and_unknown_email(b: Backend) {
    let app = TestApp::spawn(b).await;
    let email = app.admin(Role::Operator).await;

    // Success: a bearer token that works, for the account it names, never cached.
    let res = login_with(&app, &email.to_uppercase(), PASSWORD).await;
    assert_eq!(res.status(), 200, "e-mails are case-insensitive");
    assert_eq!(
        res.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let token = body["access_token"].as_str().expect("token");
    assert_eq!(token.split('.').count(), 3, "a JWT");
    let me = app.get_json("/auth/me", token).await;
    assert_eq!(
        (me["email"].as_str(), me["role"].as_str()),
        (Some(email.as_str()), Some("operator"))
    );

    // Wrong password and unknown e-mail are indistinguishable.
    let wrong = denied(login_from(&app, 1, &email, WRONG).await).await;
    let unknown_email = format!("{}nobody@example.com", app.env.prefix);
    let unknown = denied(login_from(&app, 2, &unknown_email, PASSWORD).await).await;
    assert_eq!(wrong, unknown);

    // Four failures in a row do not hold the account back; a success clears the count.
    for n in 3..6 {
        denied(login_from(&app, n, &email, WRONG).await).await;
    }
    assert_eq!(login_from(&app, 6, &email, PASSWORD).await.status(), 200);
    assert_eq!(admin_row(&app, &email).await.failed_logins, 0);
    // The fifth starts a back-off (from any address), growing with each failure and capped
    // at 30 s: never the old 15-minute lock a stranger could renew forever.
    for n in 10..15 {
        denied(login_from(&app, n, &email, WRONG).await).await;
    }
    let row = admin_row(&app, &email).await;
    assert_eq!(row.failed_logins, 5);
    let until = row.locked_until.expect("back-off after five failures");
    assert!(
        until <= chrono::Utc::now() + chrono::Duration::seconds(1),
        "{until}"
    );
    // While it lasts, even the right password is refused, with the same message, unchecked.
    let far = chrono::Utc::now() + chrono::Duration::seconds(3600);
    app.catalog_exec(
        "UPDATE admin_master_users SET locked_until = ? WHERE id = ?",
        &[CatalogArg::Time(far), CatalogArg::Id(row.id)],
    )
    .await;
    let held = denied(login_from(&app, 20, &email, PASSWORD).await).await;
    assert_eq!(held, wrong);
    // The token issued before still names an active account.
    assert_eq!(app.get("/auth/me", token).await.status(), 200);
    // Another account is not affected.
    let other = app.admin(Role::Viewer).await;
    app.login(&other).await;
    // Each failure doubles the back-off, up to 30 s.
    app.catalog_exec(
        "UPDATE admin_master_users SET locked_until = NULL, failed_logins = 40 WHERE id = ?",
        &[CatalogArg::Id(row.id)],
    )
    .await;
    denied(login_from(&app, 21, &email, WRONG).await).await;
    let until = admin_row(&app, &email)
        .await
        .locked_until
        .expect("back-off");
    let secs = (until - chrono::Utc::now()).num_seconds();
    assert!((25..=30).contains(&secs), "back-off of {secs} s");
    app.stop().await;
}

/// Item 5 of the hardening: the attempt is counted before the password is checked, so
/// parallel guesses cannot all be checked before the first failure is written.
async fn parallel_guesses_are_counted_before_they_are_checked(b: Backend) {
    let env = crate::common::TestEnv::new(b);
    let app = TestApp::spawn_with(env, |s| s.login.max_concurrent_hashes = 64).await;
    let email = app.admin(Role::Admin).await;
    let guesses = (0..40u16).map(|n| login_from(&app, 100 + n, &email, WRONG));
    let answers = futures_util::future::join_all(guesses).await;
    for res in answers {
        denied(res).await;
    }
    let entries = app.engine.catalog().recent_audit(500).await.expect("audit");
    let checked = entries
        .iter()
        .filter(|e| {
            e.action == "login"
                && e.detail
                    .as_deref()
                    .is_some_and(|d| d.contains("wrong password"))
        })
        .count();
    let refused = entries
        .iter()
        .filter(|e| {
            e.action == "login" && e.detail.as_deref().is_some_and(|d| d.contains("back-off"))
        })
        .count();
    assert_eq!(checked + refused, 40, "{entries:#?}");
    // Five are checked before the back-off starts; one more per back-off that ran out while
    // the burst lasted (1 s, then 2 s).
    assert!(
        checked <= 7,
        "{checked} of 40 parallel guesses were checked"
    );
    assert_eq!(admin_row(&app, &email).await.failed_logins, checked as i64);
    app.stop().await;
}

/// Median time of `n` calls.
async fn median_time<F, Fut>(n: usize, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        f().await;
        times.push(start.elapsed());
    }
    times.sort();
    times[n / 2]
}

async fn unknown_email_costs_a_password_verification(b: Backend) {
    let app = TestApp::spawn(b).await;
    let email = app.admin(Role::Viewer).await;
    let unknown = format!("{}ghost@example.com", app.env.prefix);
    // Three failures each (the back-off starts at five), each from its own address.
    let n = std::sync::atomic::AtomicU16::new(0);
    let next = || n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let known = median_time(3, || async {
        denied(login_from(&app, next(), &email, WRONG).await).await;
    })
    .await;
    let ghost = median_time(3, || async {
        denied(login_from(&app, next(), &unknown, WRONG).await).await;
    })
    .await;
    // Without the decoy hash an unknown e-mail answers in a few milliseconds, while an argon2id
    // verification takes tens: a quarter leaves room for scheduling noise.
    assert!(
        ghost * 4 >= known,
        "unknown e-mail answered in {ghost:?}, a known one in {known:?}: e-mails can be enumerated"
    );
    app.stop().await;
}

fn b64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims(sub: &str) -> Value {
    json!({
        "sub": sub,
        "email": "forged@example.com",
        "role": "admin",
        "iss": "tenant-migrator",
        "aud": "tenant-migrator-admin",
        "iat": now(),
        "exp": now() + 600,
        "tv": 0,
    })
}

fn signed(alg: Algorithm, key: &[u8], claims: &Value) -> String {
    encode(&Header::new(alg), claims, &EncodingKey::from_secret(key)).expect("sign")
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    if value.is_null() {
        claims.as_object_mut().expect("object").remove(key);
    } else {
        claims[key] = value;
    }
    claims
}

async fn forged_expired_and_misaddressed_tokens_are_401() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let token = app.token(Role::Viewer).await;
    let me = app.get_json("/auth/me", &token).await;
    let sub = me["id"].as_str().expect("id").to_owned();
    let good = claims(&sub);
    // The forging works: a token made here with the server's key and right claims is accepted,
    // so every rejection below is about the one thing changed.
    let control = signed(Algorithm::HS256, SECRET.as_bytes(), &good);
    assert_eq!(app.get("/auth/me", &control).await.status(), 200);

    let other_key = "another-secret-key-with-at-least-32-bytes";
    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(good.to_string().as_bytes())
    );
    let tampered = {
        // A valid token whose payload was edited (another subject) after signing.
        let parts: Vec<&str> = control.split('.').collect();
        let payload = with(good.clone(), "sub", json!(uuid::Uuid::new_v4().to_string()));
        format!(
            "{}.{}.{}",
            parts[0],
            b64(payload.to_string().as_bytes()),
            parts[2]
        )
    };
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("garbage", Some("Bearer not-a-jwt".into())),
        ("empty bearer", Some("Bearer ".into())),
        ("basic scheme", Some(format!("Basic {}", b64(b"a:b")))),
        ("alg none", Some(format!("Bearer {unsigned}"))),
        (
            "other key",
            Some(format!(
                "Bearer {}",
                signed(Algorithm::HS256, other_key.as_bytes(), &good)
            )),
        ),
        (
            "HS512",
            Some(format!(
                "Bearer {}",
                signed(Algorithm::HS512, SECRET.as_bytes(), &good)
            )),
        ),
        ("tampered", Some(format!("Bearer {tampered}"))),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                signed(
                    Algorithm::HS256,
                    SECRET.as_bytes(),
                    &with(good.clone(), "exp", json!(now() - 120))
                )
            )),
        ),
        (
            "wrong aud",
            Some(format!(
                "Bearer {}",
                signed(
                    Algorithm::HS256,
                    SECRET.as_bytes(),
                    &with(good.clone(), "aud", json!("someone-else"))
                )
            )),
        ),
        (
            "wrong iss",
            Some(format!(
                "Bearer {}",
                signed(
                    Algorithm::HS256,
                    SECRET.as_bytes(),
                    &with(good.clone(), "iss", json!("evil"))
                )
            )),
        ),
        (
            "missing exp",
            Some(format!(
                "Bearer {}",
                signed(
                    Algorithm::HS256,
                    SECRET.as_bytes(),
                    &with(good.clone(), "exp", Value::Null)
                )
            )),
        ),
        (
            "missing aud",
            Some(format!(
                "Bearer {}",
                signed(
                    Algorithm::HS256,
                    SECRET.as_bytes(),
                    &with(good.clone(), "aud", Value::Null)
                )
            )),
        ),
        (
            "missing sub",
            Some(format!(
                "Bearer {}",
                signed(
                    Algorithm::HS256,
                    SECRET.as_bytes(),
                    &with(good.clone(), "sub", Value::Null)
                )
            )),
        ),
        (
            "unknown admin",
            Some(format!(
                "Bearer {}",
                signed(
                    Algorithm::HS256,
                    SECRET.as_bytes(),
                    &with(good.clone(), "sub", json!(uuid::Uuid::new_v4().to_string()))
                )
            )),
        ),
        (
            "sub not a uuid",
            Some(format!(
                "Bearer {}",
                signed(
                    Algorithm::HS256,
                    SECRET.as_bytes(),
                    &with(good.clone(), "sub", json!("admin"))
                )
            )),
        ),
    ];
    for (what, header) in cases {
        for path in ["/auth/me", "/tenants", "/admins"] {
            let mut req = app.request(Method::GET, path, None);
            if let Some(h) = &header {
                req = req.header("authorization", h);
            }
            let res = req.send().await.expect("request");
            assert_eq!(res.status(), 401, "{what} token on {path}");
            assert_eq!(
                res.headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok()),
                Some("Bearer"),
                "{what}"
            );
            let p = expect_problem(res, 401).await;
            assert_eq!(p["instance"], path, "{p}");
        }
    }
    // Mutations are refused the same way, and nothing happens.
    let res = app
        .request(Method::POST, "/tenants", None)
        .header("authorization", format!("Bearer {unsigned}"))
        .json(&json!({"schema_name": app.env.tenant("x")}))
        .send()
        .await
        .expect("request");
    expect_problem(res, 401).await;
    assert_eq!(app.env.schemas().await, vec![app.env.catalog.clone()]);
    app.stop().await;
}

async fn disabled_admin_and_role_changes_take_effect_at_once(b: Backend) {
    let app = TestApp::spawn(b).await;
    let admin = app.token(Role::Admin).await;
    let email = app.admin(Role::Operator).await;
    let token = app.login(&email).await;
    let id = app.get_json("/auth/me", &token).await["id"]
        .as_str()
        .expect("id")
        .to_owned();

    // Demoted to viewer: the operator's token is retired at once; a new viewer token reads,
    // and provisioning is 403 and creates nothing.
    let res = app
        .patch(&format!("/admins/{id}"), &admin, json!({"role": "viewer"}))
        .await;
    assert_eq!(res.status(), 200);
    expect_problem(app.get("/tenants", &token).await, 401).await;
    let token = app.login(&email).await;
    assert_eq!(app.get("/tenants", &token).await.status(), 200);
    let schema = app.env.tenant("v");
    let res = app
        .post("/tenants", &token, json!({"schema_name": schema}))
        .await;
    let p = expect_problem(res, 403).await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("operator"),
        "{p}"
    );
    let res = app.post("/migrations/upgrade-all", &token, json!({})).await;
    expect_problem(res, 403).await;
    assert_eq!(app.env.schemas().await, vec![app.env.catalog.clone()]);
    let res = app
        .post(
            "/tenants?dry_run=true",
            &token,
            json!({"schema_name": schema}),
        )
        .await;
    expect_problem(res, 403).await;

    // Disabled: the token that was valid a moment ago is 401, and so is a new login.
    let res = app
        .patch(
            &format!("/admins/{id}"),
            &admin,
            json!({"is_active": false}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let row: Value = res.json().await.expect("json");
    assert_eq!(row["is_active"], false);
    expect_problem(app.get("/auth/me", &token).await, 401).await;
    expect_problem(app.get("/tenants", &token).await, 401).await;
    denied(login_with(&app, &email, PASSWORD).await).await;

    // Enabled again: tokens issued before the disable stay dead (they have not expired); a
    // new login works.
    let res = app
        .patch(
            &format!("/admins/{id}"),
            &admin,
            json!({"is_active": true, "role": "operator"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    expect_problem(app.get("/auth/me", &token).await, 401).await;
    let fresh = app.login(&email).await;
    assert_eq!(app.get_json("/auth/me", &fresh).await["role"], "operator");
    app.stop().await;
}

async fn my_id(app: &TestApp, token: &str) -> String {
    app.get_json("/auth/me", token).await["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// Two admins disabling (or demoting) each other at once: one of them must stay.
async fn the_last_active_admin_cannot_be_removed(b: Backend) {
    let app = TestApp::spawn(b).await;
    for round in 0..4 {
        let (a, b_) = (app.admin(Role::Admin).await, app.admin(Role::Admin).await);
        let (ta, tb) = (app.login(&a).await, app.login(&b_).await);
        let (ia, ib) = (my_id(&app, &ta).await, my_id(&app, &tb).await);
        // Every other admin of this catalog is disabled first, so these two are the last.
        for other in app.engine.catalog().list_admins().await.expect("admins") {
            let other_id = other.id.to_string();
            if other.is_active && other_id != ia && other_id != ib {
                let res = app
                    .patch(
                        &format!("/admins/{other_id}"),
                        &ta,
                        json!({"is_active": false}),
                    )
                    .await;
                assert_eq!(res.status(), 200, "round {round}");
            }
        }
        let change = if round % 2 == 1 {
            json!({"role": "viewer"})
        } else {
            json!({"is_active": false})
        };
        let (pa, pb) = (format!("/admins/{ib}"), format!("/admins/{ia}"));
        if round < 2 {
            // Through the repository, truly at once: one change wins, the other is refused.
            let patch = if round == 1 {
                AdminPatch {
                    role: Some(Role::Viewer),
                    is_active: None,
                }
            } else {
                AdminPatch {
                    role: None,
                    is_active: Some(false),
                }
            };
            let catalog = app.engine.catalog();
            let (ra, rb) = tokio::join!(
                catalog.update_admin(ib.parse().expect("uuid"), &patch),
                catalog.update_admin(ia.parse().expect("uuid"), &patch),
            );
            let mut outcomes = [ra.expect("update"), rb.expect("update")]
                .map(|o| matches!(o, AdminUpdate::Updated(_)));
            outcomes.sort();
            assert_eq!(outcomes, [false, true], "round {round}");
        } else {
            // Through the API: the loser is refused (409), or its token died with the
            // winner's change (401).
            let (ra, rb) = tokio::join!(
                app.patch(&pa, &ta, change.clone()),
                app.patch(&pb, &tb, change.clone()),
            );
            let mut statuses = vec![ra.status().as_u16(), rb.status().as_u16()];
            statuses.sort();
            assert!(
                statuses == vec![200, 409] || statuses == vec![200, 401],
                "round {round}: {statuses:?}"
            );
            if statuses == vec![200, 409] {
                let loser = if ra.status() == 409 { ra } else { rb };
                let p = expect_problem(loser, 409).await;
                assert!(
                    p["detail"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("no active admin"),
                    "{p}"
                );
            }
        }
        let admins = app.engine.catalog().list_admins().await.expect("admins");
        let active = admins
            .iter()
            .filter(|x| x.is_active && x.role == Role::Admin)
            .count();
        assert_eq!(active, 1, "round {round}: {admins:#?}");
    }
    app.stop().await;
}

async fn admin_users_endpoints(b: Backend) {
    let app = TestApp::spawn(b).await;
    let admin_email = app.admin(Role::Admin).await;
    let admin = app.login(&admin_email).await;
    let operator = app.token(Role::Operator).await;
    let viewer = app.token(Role::Viewer).await;
    let me = app.get_json("/auth/me", &admin).await["id"]
        .as_str()
        .expect("id")
        .to_owned();

    // Admin role only.
    for t in [&operator, &viewer] {
        expect_problem(app.get("/admins", t).await, 403).await;
        let res = app
            .post(
                "/admins",
                t,
                json!({"email": "x@example.com", "password": PASSWORD, "role": "admin"}),
            )
            .await;
        expect_problem(res, 403).await;
        let res = app
            .patch(&format!("/admins/{me}"), t, json!({"is_active": false}))
            .await;
        expect_problem(res, 403).await;
    }

    let new_email = format!("{}new@example.com", app.env.prefix);
    let new_password = "a brand new passphrase 42";
    let res = app
        .post(
            "/admins",
            &admin,
            json!({"email": new_email, "password": new_password, "role": "viewer"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.expect("json");
    assert_eq!(
        (created["email"].as_str(), created["role"].as_str()),
        (Some(new_email.as_str()), Some("viewer"))
    );
    assert_eq!(created["is_active"], true);
    assert!(
        created.get("password_hash").is_none() && created.get("password").is_none(),
        "{created}"
    );
    // The new admin can log in with that password.
    assert_eq!(
        login_with(&app, &new_email, new_password).await.status(),
        200
    );

    // The list shows everyone, never a hash.
    let res = app.get("/admins", &admin).await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.expect("body");
    assert!(
        !text.contains("argon2") && !text.contains("password"),
        "{text}"
    );
    let list: Value = serde_json::from_str(&text).expect("json");
    let emails: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|a| a["email"].as_str())
        .collect();
    assert!(
        emails.contains(&new_email.as_str()) && emails.contains(&admin_email.as_str()),
        "{list}"
    );
    assert_eq!(emails.len(), 4);

    // Invalid input is 422 naming the field; a taken e-mail is 409.
    let cases = [
        (
            json!({"email": new_email, "password": "short", "role": "viewer"}),
            422,
            Some("password"),
        ),
        (
            json!({"email": "not-an-email", "password": PASSWORD, "role": "viewer"}),
            422,
            Some("email"),
        ),
        (
            json!({"email": "a@example.com", "password": PASSWORD, "role": "root"}),
            422,
            Some("role"),
        ),
        (
            json!({"email": "a@example.com", "password": PASSWORD}),
            422,
            Some("role"),
        ),
        (
            json!({"email": "a@example.com", "password": PASSWORD, "role": "viewer", "is_admin": true}),
            422,
            Some("is_admin"),
        ),
        (
            json!({"email": new_email, "password": PASSWORD, "role": "admin"}),
            409,
            None,
        ),
    ];
    for (body, status, field) in cases {
        let p = expect_problem(app.post("/admins", &admin, body.clone()).await, status).await;
        if let Some(f) = field {
            assert_eq!(p["field"], f, "{body} → {p}");
        }
    }

    // An admin cannot disable or demote themselves; another admin's account can be changed.
    for body in [json!({"is_active": false}), json!({"role": "operator"})] {
        let p = expect_problem(app.patch(&format!("/admins/{me}"), &admin, body).await, 409).await;
        assert!(
            p["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("yourself"),
            "{p}"
        );
    }
    assert_eq!(app.get("/auth/me", &admin).await.status(), 200);
    let res = app
        .patch(&format!("/admins/{me}"), &admin, json!({"role": "admin"}))
        .await;
    assert_eq!(res.status(), 200, "a no-op change of yourself is fine");
    let missing = uuid::Uuid::new_v4();
    expect_problem(
        app.patch(
            &format!("/admins/{missing}"),
            &admin,
            json!({"is_active": false}),
        )
        .await,
        404,
    )
    .await;
    let p = expect_problem(
        app.patch("/admins/not-a-uuid", &admin, json!({"is_active": false}))
            .await,
        422,
    )
    .await;
    assert!(p["detail"].is_string());
    let p = expect_problem(
        app.patch(&format!("/admins/{me}"), &admin, json!({"active": false}))
            .await,
        422,
    )
    .await;
    assert_eq!(p["field"], "active");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_forged_expired_or_misaddressed_are_rejected() {
    forged_expired_and_misaddressed_tokens_are_401().await;
}

backend_tests!(
    login_ok_wrong_password_backoff_and_unknown_email,
    parallel_guesses_are_counted_before_they_are_checked,
    unknown_email_costs_a_password_verification,
    disabled_admin_and_role_changes_take_effect_at_once,
    the_last_active_admin_cannot_be_removed,
    admin_users_endpoints,
);
