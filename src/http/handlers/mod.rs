//! Route handlers, one module per resource. Each is a thin layer over `Engine` or the catalog
//! repository: parse and validate input, check the role, call, audit mutating calls, shape
//! the response.

pub mod admins;
pub mod auth;
pub mod health;
pub mod jobs;
pub mod migrations;
pub mod structure;
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

tokio::task_local! {
    /// The `x-request-id` of the request being handled, for the audit log.
    static REQUEST_ID: Option<String>;
}

/// Makes the request id available to [`audit`] while the request is handled.
pub async fn scope_request_id(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    REQUEST_ID.scope(id, next.run(req)).await
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
    let id = REQUEST_ID.try_with(Clone::clone).ok().flatten();
    tokio::spawn(
        REQUEST_ID
            .scope(id, work)
            .instrument(tracing::Span::current()),
    )
    .await
    .map_err(|e| ApiError::internal("the operation", &e))
}

/// Writes an audit record (with the request id); a failure to write it is logged, not returned.
pub async fn audit(
    state: &AppState,
    actor: &str,
    action: &str,
    target: Option<&str>,
    outcome: &str,
    detail: Option<serde_json::Value>,
) {
    // Both come from the client: cut them to their columns' width rather than lose the
    // record (a long made-up e-mail at login must not slip past the audit log).
    let request_id = REQUEST_ID
        .try_with(Clone::clone)
        .ok()
        .flatten()
        .map(|id| clip(&id, 64));
    let actor = clip(actor, 254);
    if let Err(e) = state
        .engine
        .catalog()
        .audit(
            &actor,
            action,
            target,
            outcome,
            detail.as_ref(),
            request_id.as_deref(),
        )
        .await
    {
        tracing::warn!(error = %e, action, "could not write the audit log");
    }
}

/// At most `max` characters of `s`.
fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
