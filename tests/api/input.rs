//! Free text from clients: NUL and other control characters in a display name or a paging
//! cursor are 422 naming the field on every backend, and nothing is stored.

use serde_json::json;
use tenant_migrator::domain::Role;

use crate::backend_tests;
use crate::common::Backend;
use crate::support::{TestApp, assert_nothing_created, expect_problem};

/// Display names no backend should store: NUL (PostgreSQL refuses it, MySQL and SQLite keep
/// it), other C0/C1 controls, DEL, and text-direction overrides.
const BAD_DISPLAY_NAMES: &[&str] = &[
    "Sal\u{0}ão",
    "\u{0}",
    "trailing\u{0}",
    "tab\there",
    "line\nbreak",
    "carriage\rreturn",
    "escape\u{1b}[2J",
    "del\u{7f}",
    "c1\u{85}x",
    "bidi\u{202e}txt.exe",
];

/// Cursors that no schema name can be (percent-encoded as a client would send them).
const BAD_CURSORS: &[&str] = &[
    "%00", "a%00", "a%00b", "a%09b", "a%0Ab", "Upper", "a'--", "a%20b", "%C3%A9", "9a", "",
];

async fn control_characters_are_422_and_store_nothing(b: Backend) {
    let app = TestApp::spawn(b).await;
    let token = app.token(Role::Operator).await;
    let schema = app.env.tenant("ctl");
    for display in BAD_DISPLAY_NAMES {
        for path in ["/tenants", "/tenants?dry_run=true"] {
            let res = app
                .post(
                    path,
                    &token,
                    json!({"schema_name": schema, "display_name": display}),
                )
                .await;
            let problem = expect_problem(res, 422).await;
            assert_eq!(problem["field"], "display_name", "{display:?}: {problem}");
            let detail = problem["detail"].as_str().unwrap_or_default();
            assert!(detail.contains("U+"), "{display:?}: {problem}");
            assert!(
                !detail.chars().any(char::is_control),
                "the detail echoes the control character: {problem}"
            );
        }
        assert_nothing_created(&app, display).await;
    }

    let viewer = app.token(Role::Viewer).await;
    for cursor in BAD_CURSORS {
        for query in [
            format!("cursor={cursor}"),
            format!("limit=2&status=active&cursor={cursor}"),
        ] {
            let res = app.get(&format!("/tenants?{query}"), &viewer).await;
            let problem = expect_problem(res, 422).await;
            assert_eq!(problem["field"], "cursor", "{query}: {problem}");
        }
    }
    let too_long = "a".repeat(64);
    let res = app
        .get(&format!("/tenants?cursor={too_long}"), &viewer)
        .await;
    assert_eq!(expect_problem(res, 422).await["field"], "cursor");

    // Well-formed input still works: a display name with accents and emoji, and cursors
    // before, between and after the names (reserved names are positions too).
    let res = app
        .post(
            "/tenants",
            &token,
            json!({"schema_name": schema, "display_name": "  Salão Bella 💇 "}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let created: serde_json::Value = res.json().await.expect("json");
    assert_eq!(created["tenant"]["display_name"], "Salão Bella 💇");
    for (cursor, listed) in [("a", 1), ("public", 1), (schema.as_str(), 0), ("zzz", 0)] {
        let page = app
            .get_json(&format!("/tenants?cursor={cursor}"), &viewer)
            .await;
        assert_eq!(
            page["tenants"].as_array().map(Vec::len),
            Some(listed),
            "cursor {cursor}: {page}"
        );
    }
    app.stop().await;
}

backend_tests!(control_characters_are_422_and_store_nothing);
