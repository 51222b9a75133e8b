//! The operations console at `/ui`: one HTML page, its script and its style sheet, compiled
//! into the binary (`include_str!`), so it works offline and needs no build step. The page
//! talks to the same API with the same accounts; the token it gets at sign-in lives in a
//! JavaScript variable only (never in storage or a cookie), so it goes with the tab or when it
//! expires. Roles are enforced by the API; the page only hides what a role cannot do.
//!
//! The assets carry a strict Content-Security-Policy (see [`super::headers`]): scripts and
//! styles from this origin only, no inline code, requests to this origin only.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::AppState;

const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/console.js");
const STYLE: &str = include_str!("ui/console.css");
const ICON: &str = include_str!("ui/icon.svg");

/// The console's routes: `/ui` (and `/ui/`) the page, `/ui/assets/*` what it loads.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/ui",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route("/ui/", get(|| async { Redirect::permanent("/ui") }))
        .route(
            "/ui/assets/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/ui/assets/console.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/ui/assets/icon.svg",
            get(|| async { asset("image/svg+xml", ICON) }),
        )
}

/// An embedded file. `no-cache`: a browser revalidates, so a new binary's console is used
/// at once (the files are small and compressed on the way).
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        body,
    )
        .into_response()
}
