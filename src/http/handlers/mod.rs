//! Route handlers, one module per resource. Each is a thin layer over `Engine` (accounts,
//! audit and readiness in [`crate::engine::access`], jobs through the `JobManager` of
//! [`crate::engine::jobs`]): parse and validate input, check the role, call, audit mutating
//! calls, shape the response. (The tenant and migration handlers still read the catalog
//! directly in places; those move with the server-placement work.)

pub mod admins;
pub mod audit;
pub mod auth;
pub mod fleet;
pub mod health;
pub mod jobs;
pub mod migrations;
pub mod servers;
pub mod structure;
pub mod tenant_detail;
pub mod tenants;

use super::AppState;
use super::error::ApiError;

/// Largest page of a list endpoint.
pub const MAX_LIMIT: u64 = 500;

/// The page size a list request asked for: 50 when unset, 1 to [`MAX_LIMIT`] otherwise.
pub fn page_limit(limit: Option<u64>) -> Result<u64, ApiError> {
    match limit {
        None => Ok(50),
        Some(l) if (1..=MAX_LIMIT).contains(&l) => Ok(l),
        Some(l) => Err(ApiError::validation(
            "limit",
            format!("{l} is out of range (1 to {MAX_LIMIT})"),
        )),
    }
}

/// The rows a list request skips: 0 when unset, at most `i64::MAX` (the catalogs' `OFFSET`
/// is a signed 64-bit number, and the spec says `int64`).
pub fn page_offset(offset: Option<u64>) -> Result<u64, ApiError> {
    match offset {
        None => Ok(0),
        Some(o) if i64::try_from(o).is_ok() => Ok(o),
        Some(o) => Err(ApiError::validation(
            "offset",
            format!("{o} is out of range (0 to {})", i64::MAX),
        )),
    }
}

/// The ids of the request being handled: the server's, and the one its client sent.
#[derive(Debug, Clone, Default)]
struct RequestIds {
    server: Option<String>,
    client: Option<String>,
}

tokio::task_local! {
    /// The ids of the request being handled, for the audit log.
    static REQUEST_ID: RequestIds;
}

/// Makes the request's ids available to [`audit`] while the request is handled.
pub async fn scope_request_id(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let ids = RequestIds {
        server: req
            .headers()
            .get(crate::http::headers::REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        client: req
            .extensions()
            .get::<crate::http::headers::ClientRequestId>()
            .map(|c| c.0.clone()),
    };
    REQUEST_ID.scope(ids, next.run(req)).await
}

/// Runs `work` to its end even when the request goes away (client disconnect, request
/// timeout): a schema change must not stop half-way because an HTTP connection did. The
/// request's id and tracing span go along.
pub async fn detached<F>(work: F) -> Result<F::Output, ApiError>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    use tracing::Instrument;
    let id = REQUEST_ID.try_with(Clone::clone).unwrap_or_default();
    tokio::spawn(
        REQUEST_ID
            .scope(id, work)
            .instrument(tracing::Span::current()),
    )
    .await
    .map_err(|e| ApiError::internal("the operation", &e))
}

/// Writes an audit record with the server's request id (a client's own id goes into the
/// detail as `client_request_id`); a failure to write it is logged, not returned.
pub async fn audit(
    state: &AppState,
    actor: &str,
    action: &str,
    target: Option<&str>,
    outcome: &str,
    detail: Option<serde_json::Value>,
) {
    let ids = REQUEST_ID.try_with(Clone::clone).unwrap_or_default();
    let request_id = ids.server.map(|id| clip(&id, 64));
    let detail = match ids.client {
        None => detail,
        Some(client) => {
            let mut d = match detail {
                Some(serde_json::Value::Object(m)) => m,
                Some(other) => serde_json::Map::from_iter([("detail".to_owned(), other)]),
                None => serde_json::Map::new(),
            };
            d.insert("client_request_id".into(), client.into());
            Some(serde_json::Value::Object(d))
        }
    };
    // The actor comes from the client at login: cut it to its column's width rather than lose
    // the record (a long made-up e-mail must not slip past the audit log).
    let actor = clip(actor, 254);
    state
        .engine
        .audit(
            &actor,
            action,
            target,
            outcome,
            detail.as_ref(),
            request_id.as_deref(),
        )
        .await;
}

/// At most `max` characters of `s`.
fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
