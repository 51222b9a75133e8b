//! Headers every response carries and every request is checked for: a request id made by the
//! server (a client's `x-request-id` is kept beside it, never instead of it), a bound on the
//! size of request headers (431 as a problem document), `X-Content-Type-Options: nosniff`,
//! `X-Frame-Options: DENY`, and a Content-Security-Policy (strict for the API, what Swagger UI
//! needs on `/docs`, the console's own files on `/ui`).

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::problem;

/// The response header (and request header, once replaced) naming the request.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Total bytes of request header names and values accepted.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Request headers accepted.
pub const MAX_HEADERS: usize = 100;
/// Longest client request id kept (longer ones are cut).
const MAX_CLIENT_ID: usize = 64;

const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";
const DOCS_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
     script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'self'";
/// The console: its own scripts, styles and API only; no inline code, no frames, no forms
/// posted anywhere (it sends its requests with `fetch`).
const UI_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// The `x-request-id` a client sent, kept for the audit log beside the server's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequestId(pub String);

/// Replaces any client `x-request-id` with a new UUID (the client's goes into a
/// [`ClientRequestId`] extension when it is printable), and refuses oversized headers.
pub async fn request_guard(mut req: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().to_string();
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len())
        .sum();
    if bytes > MAX_HEADER_BYTES || headers.len() > MAX_HEADERS {
        let mut p = problem(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "about:blank",
            Some(format!(
                "request headers are too large (at most {MAX_HEADERS} headers and {} KiB)",
                MAX_HEADER_BYTES / 1024
            )),
        );
        p.instance = Some(req.uri().path().to_owned());
        p.request_id = Some(id.clone());
        let mut res = p.into_response();
        if let Ok(v) = HeaderValue::from_str(&id) {
            res.headers_mut().insert(REQUEST_ID, v);
        }
        return res;
    }
    let client = headers
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim())
        .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_graphic()))
        .map(|v| ClientRequestId(v.chars().take(MAX_CLIENT_ID).collect()));
    if let Ok(v) = HeaderValue::from_str(&id) {
        req.headers_mut().insert(REQUEST_ID, v);
    }
    if let Some(c) = client {
        req.extensions_mut().insert(c);
    }
    next.run(req).await
}

/// Adds the security headers to every response.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let csp = if path.starts_with("/docs") {
        DOCS_CSP
    } else if path == "/ui" || path.starts_with("/ui/") {
        UI_CSP
    } else {
        API_CSP
    };
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(csp));
    res
}
