//! The console at `/ui`: its page and assets come from the binary with their types, a strict
//! Content-Security-Policy and no reference to another origin; the page keeps its token out of
//! storage. What it does in a browser is tested by `.ci/browser.sh` (headless Chromium).

use reqwest::Method;
use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION};

use crate::common::Backend;
use crate::support::TestApp;

const ASSETS: &[(&str, &str)] = &[
    ("/ui", "text/html; charset=utf-8"),
    ("/ui/assets/console.js", "text/javascript; charset=utf-8"),
    ("/ui/assets/console.css", "text/css; charset=utf-8"),
    ("/ui/assets/icon.svg", "image/svg+xml"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_from_the_binary_with_a_strict_policy() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for (path, kind) in ASSETS {
        // No token: the page signs in itself, and its files hold no data.
        let res = app
            .request(Method::GET, path, None)
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 200, "{path}");
        let header = |name| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(header(CONTENT_TYPE), *kind, "{path}");
        assert_eq!(header(CACHE_CONTROL), "no-cache", "{path}");
        let csp = header(CONTENT_SECURITY_POLICY);
        for part in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(part), "{path}: {part} missing from {csp}");
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        let body = res.text().await.expect("body");
        assert!(!body.is_empty(), "{path}");
        // Offline: nothing is loaded from another origin.
        for other in ["http://", "https://", "//cdn", "@import"] {
            let outside = body
                .match_indices(other)
                .filter(|(i, _)| !body[..*i].ends_with("xmlns=\""))
                .count();
            assert_eq!(outside, 0, "{path} refers to {other}");
        }
        if path.ends_with(".js") {
            for store in [
                "localStorage",
                "sessionStorage",
                "document.cookie",
                "indexedDB",
            ] {
                assert!(
                    !body.contains(store),
                    "the console must not keep the token in {store}"
                );
            }
            assert!(
                !body.contains("innerHTML"),
                "server text goes in as text, never markup"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_path_with_a_slash_redirects_and_unknown_assets_are_404() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let res = client.get(app.url("/ui/")).send().await.expect("request");
    assert_eq!(res.status(), 308);
    assert_eq!(
        res.headers().get(LOCATION).and_then(|v| v.to_str().ok()),
        Some("/ui")
    );
    // Only the embedded files: no path reaches the file system.
    for path in [
        "/ui/assets/nope.js",
        "/ui/assets/",
        "/ui/index.html",
        "/ui/assets/%2e%2e/Cargo.toml",
    ] {
        let res = client.get(app.url(path)).send().await.expect("request");
        assert_eq!(res.status(), 404, "{path}");
    }
}
