//! Several database servers over HTTP (SQLite folders stand for the servers): `GET /servers`
//! for any signed-in user, and `POST /tenants` placing a new tenant on the server with the
//! fewest tenants or on the one named; an unknown or draining server is a 422 that creates
//! nothing. (Real MariaDB and PostgreSQL servers: `tests/scale.rs`.)

use serde_json::{Value, json};
use tenant_migrator::domain::Role;

use crate::common::{Backend, TestEnv};
use crate::support::{TestApp, expect_problem};

/// An app whose tenants live in folders `a` and `b` of its working directory.
async fn two_folder_app() -> TestApp {
    let mut env = TestEnv::new(Backend::Sqlite);
    let root = env.dir.path().display().to_string();
    env.tenant_servers = Some(format!(
        "a=sqlite://{root}/a/{{schema}}.db,b=sqlite://{root}/b/{{schema}}.db"
    ));
    TestApp::spawn_env(env).await
}

async fn create(app: &TestApp, token: &str, body: Value) -> (u16, Value) {
    let res = app.post("/tenants", token, body).await;
    let status = res.status().as_u16();
    (status, res.json().await.expect("json"))
}

#[tokio::test]
async fn servers_are_listed_and_new_tenants_placed() {
    let app = two_folder_app().await;
    let operator = app.token(Role::Operator).await;
    let viewer = app.token(Role::Viewer).await;
    let root = app.env.dir.path().to_path_buf();

    // The fewest tenants first: one each.
    let mut placed = Vec::new();
    for short in ["x1", "x2"] {
        let (status, body) = create(
            &app,
            &operator,
            json!({"schema_name": app.env.tenant(short)}),
        )
        .await;
        assert_eq!(status, 201, "{body:#}");
        placed.push(
            body["tenant"]["server"]
                .as_str()
                .expect("server")
                .to_owned(),
        );
    }
    placed.sort();
    assert_eq!(placed, ["a", "b"]);

    // The one named, whatever the counts; the schema is on that server.
    let x3 = app.env.tenant("x3");
    let (status, body) = create(&app, &operator, json!({"schema_name": x3, "server": "b"})).await;
    assert_eq!(status, 201, "{body:#}");
    assert_eq!(body["tenant"]["server"], "b");
    assert!(root.join("b").join(format!("{x3}.db")).exists());
    let shown = app.get_json(&format!("/tenants/{x3}"), &viewer).await;
    assert_eq!(shown["tenant"]["server"], "b");
    assert_eq!(shown["state"]["server"], "b");

    // An unknown server: 422 naming the field and the servers there are; nothing created.
    let x4 = app.env.tenant("x4");
    let res = app
        .post(
            "/tenants",
            &operator,
            json!({"schema_name": x4, "server": "z9"}),
        )
        .await;
    let problem = expect_problem(res, 422).await;
    assert!(problem.to_string().contains("a, b"), "{problem:#}");
    let res = app.get(&format!("/tenants/{x4}"), &viewer).await;
    assert_eq!(res.status(), 404);
    assert!(!root.join("a").join(format!("{x4}.db")).exists());
    assert!(!root.join("b").join(format!("{x4}.db")).exists());

    // Every signed-in user sees the servers, their tenants by version and reachability.
    let servers = app.get_json("/servers", &viewer).await;
    let list = servers["servers"].as_array().expect("servers");
    assert_eq!(list.len(), 2, "{servers:#}");
    assert_eq!(list[0]["name"], "a");
    assert_eq!(list[0]["tenants"], 1);
    assert_eq!(list[1]["tenants"], 2);
    assert_eq!(list[1]["reachable"], true);
    assert_eq!(list[1]["draining"], false);
    assert_eq!(list[1]["versions"][0]["version"], 3);
    let res = app
        .request(reqwest::Method::GET, "/servers", None)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn a_draining_server_gets_no_new_tenants() {
    let mut env = TestEnv::new(Backend::Sqlite);
    let root = env.dir.path().display().to_string();
    env.tenant_servers = Some(format!(
        "a=sqlite://{root}/a/{{schema}}.db,b=sqlite://{root}/b/{{schema}}.db"
    ));
    env.draining_servers = Some("a".into());
    let app = TestApp::spawn_env(env).await;
    let operator = app.token(Role::Operator).await;
    for short in ["d1", "d2"] {
        let (status, body) = create(
            &app,
            &operator,
            json!({"schema_name": app.env.tenant(short)}),
        )
        .await;
        assert_eq!(status, 201, "{body:#}");
        assert_eq!(body["tenant"]["server"], "b", "a is draining");
    }
    let res = app
        .post(
            "/tenants",
            &operator,
            json!({"schema_name": app.env.tenant("d3"), "server": "a"}),
        )
        .await;
    let problem = expect_problem(res, 422).await;
    assert!(problem.to_string().contains("draining"), "{problem:#}");
    let servers = app.get_json("/servers", &operator).await;
    assert_eq!(servers["servers"][0]["draining"], true);
}
