//! Extractors whose rejections are problem documents: `ApiJson` (bad JSON → 400, wrong
//! content type → 415, not an object, unknown or wrong fields → 422 naming the field, too
//! large → 413), `ApiQuery` and `ApiPath`.

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::error::problem;

fn field_of(message: &str) -> Option<String> {
    // serde: "unknown field `foo`, expected …" / "missing field `bar`" / "foo: invalid type …"
    // A path prefix names the field whose value was wrong ("role: unknown variant `root`"):
    // the backticks there quote the value, not the field.
    if let Some((path, _)) = message.split_once(": ")
        && !path.is_empty()
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']'))
    {
        return Some(path.to_owned());
    }
    if let Some(start) = message.find('`') {
        let rest = &message[start + 1..];
        if let Some(end) = rest.find('`') {
            return Some(rest[..end].to_owned());
        }
    }
    None
}

fn reject(status: StatusCode, kind: &str, detail: String) -> Response {
    let mut p = problem(status, kind, Some(detail.clone()));
    if status == StatusCode::UNPROCESSABLE_ENTITY {
        p.field = field_of(&detail);
    }
    p.into_response()
}

/// JSON body extractor with problem-document rejections, for bodies that are JSON objects
/// (every request body of the API is one). Anything else is refused with 422, also where serde
/// would take it: a struct deserializes from an array of its fields in order, so
/// `[null, false]` would otherwise pass for `{"role": null, "is_active": false}`.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(reject(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "about:blank",
                "expected a body with content-type: application/json".to_owned(),
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|r| json_rejection(r.into()))?;
        let is_object = bytes.trim_ascii_start().first() == Some(&b'{');
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(_) | Err(JsonRejection::JsonDataError(_)) if !is_object => Err(reject(
                StatusCode::UNPROCESSABLE_ENTITY,
                "urn:tenant-migrator:problem:validation",
                "the body must be a JSON object".to_owned(),
            )),
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// `application/json` or any `application/*+json`, parameters (`charset`) aside: what
/// `axum::Json` accepts.
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", subtype)) => subtype == "json" || subtype.ends_with("+json"),
        _ => false,
    }
}

fn json_rejection(r: JsonRejection) -> Response {
    let status = r.status();
    let detail = match &r {
        JsonRejection::JsonDataError(e) => {
            // "Failed to deserialize the JSON body into the target type: field: message"
            let full = e.body_text();
            full.split_once(": ")
                .map(|(_, m)| m.to_owned())
                .unwrap_or(full)
        }
        JsonRejection::JsonSyntaxError(_) => "the body is not valid JSON".to_owned(),
        JsonRejection::MissingJsonContentType(_) => {
            "expected a body with content-type: application/json".to_owned()
        }
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => {
            "request body is too large (limit 64 KiB)".to_owned()
        }
        other => other.body_text(),
    };
    let kind = match status {
        StatusCode::UNPROCESSABLE_ENTITY => "urn:tenant-migrator:problem:validation",
        _ => "about:blank",
    };
    reject(status, kind, detail)
}

/// Query-string extractor with problem-document rejections (422).
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(r) => Err(query_rejection(r)),
        }
    }
}

fn query_rejection(r: QueryRejection) -> Response {
    let text = r.body_text();
    let detail = text
        .split_once(": ")
        .map(|(_, m)| m.to_owned())
        .unwrap_or(text);
    reject(
        StatusCode::UNPROCESSABLE_ENTITY,
        "urn:tenant-migrator:problem:validation",
        detail,
    )
}

/// Path-parameter extractor with problem-document rejections.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(r) => Err(path_rejection(r)),
        }
    }
}

fn path_rejection(r: PathRejection) -> Response {
    let status = match r.status() {
        s if s.is_server_error() => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    reject(
        status,
        "urn:tenant-migrator:problem:validation",
        r.body_text(),
    )
}
