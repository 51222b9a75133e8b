//! Errors as RFC 9457 `application/problem+json`, everywhere: `ApiError` for handlers, and a
//! middleware that turns any other error response (axum's rejections, unknown routes, wrong
//! methods, body limits, timeouts) into a problem document with the request id. Internal
//! details (SQL, file paths, driver messages) are logged, never returned.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::error;
use uuid::Uuid;

use crate::engine::EngineError;

/// The problem document (RFC 9457).
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`about:blank` for plain HTTP statuses).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The `x-request-id` of the request, to find its log lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The input the problem is about (validation errors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The job in the way (409 on a second fleet job).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<Uuid>,
}

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error a handler returns.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{detail}")]
    Conflict {
        detail: String,
        job_id: Option<Uuid>,
    },
    #[error("{detail}")]
    Validation {
        field: Option<String>,
        detail: String,
    },
    #[error("{0}")]
    Unavailable(String),
    /// 429 (`busy` false) or 503 (`busy` true) with `Retry-After`.
    #[error("{detail}")]
    RetryLater {
        detail: String,
        retry_after_secs: u64,
        busy: bool,
    },
    /// Logged with its cause; the client sees a generic message.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn validation(field: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::Validation {
            field: Some(field.into()),
            detail: detail.into(),
        }
    }

    /// Logs `cause` and returns a 500 that does not reveal it.
    pub fn internal(context: &str, cause: &dyn std::fmt::Display) -> Self {
        error!(error = %cause, "{context}");
        ApiError::Internal(format!("{context} failed; the server log has the details"))
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RetryLater { busy: true, .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RetryLater { busy: false, .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad-request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not-found",
            ApiError::Conflict { .. } => "conflict",
            ApiError::Validation { .. } => "validation",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::RetryLater { busy: true, .. } => "busy",
            ApiError::RetryLater { busy: false, .. } => "too-many-requests",
            ApiError::Internal(_) => "internal",
        }
    }
}

/// A problem response for `status` with `detail`.
pub fn problem(status: StatusCode, kind: &str, detail: Option<String>) -> Problem {
    Problem {
        kind: kind.to_owned(),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail,
        instance: None,
        request_id: None,
        field: None,
        job_id: None,
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut res = (status, body).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut p = problem(
            status,
            &format!("urn:tenant-migrator:problem:{}", self.slug()),
            Some(self.to_string()),
        );
        let retry_after = match self {
            ApiError::Validation { field, .. } => {
                p.field = field;
                None
            }
            ApiError::Conflict { job_id, .. } => {
                p.job_id = job_id;
                None
            }
            ApiError::RetryLater {
                retry_after_secs, ..
            } => Some(retry_after_secs.max(1)),
            _ => None,
        };
        let mut res = p.into_response();
        if let Some(secs) = retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Validation(v) => ApiError::validation(v.field, v.message),
            EngineError::NotFound(m) => ApiError::NotFound(m),
            EngineError::Conflict(m) => ApiError::Conflict {
                detail: m,
                job_id: None,
            },
            EngineError::Catalog(_) => {
                error!(error = %e, "catalog unusable");
                ApiError::Unavailable(
                    "the catalog cannot be used right now; see the server log".into(),
                )
            }
            // Only a stopping process interrupts engine work.
            EngineError::Interrupted(_) => {
                ApiError::Unavailable("the service is stopping; try again".into())
            }
            EngineError::Db(ref d) if d.is_transient() => {
                error!(error = %e, "database unavailable");
                ApiError::Unavailable("the database is unavailable; try again".into())
            }
            other => ApiError::internal("the operation", &other),
        }
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        EngineError::Db(e).into()
    }
}

/// Largest error body the middleware rewrites (bigger ones are not ours to touch).
const MAX_REWRITE: usize = 64 * 1024;

/// Makes every error response a problem document carrying the request path and id.
pub async fn problem_responses(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    let (parts, body) = res.into_parts();
    let bytes = to_bytes(body, MAX_REWRITE).await.unwrap_or_default();
    let mut p: Problem = if is_problem {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| problem(status, "about:blank", None))
    } else {
        // A plain-text rejection from axum or a layer: keep its message when it is short and
        // about the request (it never carries internals).
        let text = String::from_utf8_lossy(&bytes).trim().to_owned();
        let detail = match status {
            StatusCode::NOT_FOUND => Some(format!("no route for {path}")),
            StatusCode::METHOD_NOT_ALLOWED => Some("method not allowed for this route".to_owned()),
            StatusCode::PAYLOAD_TOO_LARGE => {
                Some("request body is too large (limit 64 KiB)".to_owned())
            }
            StatusCode::REQUEST_TIMEOUT => Some("the request took too long".to_owned()),
            s if s.is_server_error() => None,
            _ if !text.is_empty() && text.len() < 500 => Some(text),
            _ => None,
        };
        problem(status, "about:blank", detail)
    };
    p.instance = Some(path);
    p.request_id = request_id;
    let mut out = p.into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    let _ = Body::empty();
    out
}
