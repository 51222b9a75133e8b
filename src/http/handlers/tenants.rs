//! Tenants: list (paged, filtered), show (catalog row + schema state), create (201, or 200
//! for a repeat; a failed tenant is resumed; `?dry_run=true` returns the plan), upgrade one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{audit, detached, page_limit, page_offset};
use crate::catalog::{TenantFilter, TenantRow, TenantStatus};
use crate::domain::{DisplayName, Role, SchemaName, TenantCursor, ValidationError};
use crate::engine::TenantState;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::{AppState, AuthUser};
use crate::jobs::{NoProgress, OutcomeStatus, TenantReport};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Page size (1 to 500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u64>,
    /// Rows to skip (offset paging).
    pub offset: Option<u64>,
    /// Only tenants after this schema name (cursor paging; use `next_cursor`).
    #[param(pattern = r"^[a-z][a-z0-9_]{0,62}$")]
    pub cursor: Option<String>,
    /// Only tenants in this status.
    pub status: Option<TenantStatus>,
    /// Only tenants whose schema name starts with this (a-z, 0-9 and _, at most 63).
    #[param(pattern = r"^[a-z0-9_]{1,63}$")]
    pub search: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantList {
    pub tenants: Vec<TenantRow>,
    /// Tenants matching the filter, over all pages.
    pub total: i64,
    pub limit: u64,
    pub offset: u64,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantRequest {
    /// a-z, 0-9 and _, starting with a letter, at most 63 characters; not a name a database
    /// server reserves (`mysql`, `public`, `pg_*`, `sqlite_*` …) nor `tm_reference_*`.
    #[schema(
        example = "salon_bella",
        pattern = r"^(?!(?:mysql|information_schema|performance_schema|sys|public|template0|template1|postgres|sqlite_master|sqlite_schema|sqlite_temp_master|main|temp)$)(?!pg_|sqlite_|tm_reference_)[a-z][a-z0-9_]{0,62}$"
    )]
    pub schema_name: String,
    /// 1 to 255 characters once surrounding whitespace is trimmed; no control, line-separator
    /// or bidirectional-formatting characters.
    #[schema(
        example = "Salão Bella",
        pattern = r"^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028-\u202f\u205f\u2066-\u2069\u3000](?:[^\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]{0,253}[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028-\u202f\u205f\u2066-\u2069\u3000])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub display_name: Option<String>,
    /// The database server to put the tenant on (a name of `TENANT_SERVERS`, not draining;
    /// see `GET /servers`). Default: the active server with the fewest tenants. A tenant that
    /// exists already stays on its server.
    #[schema(example = "db2", pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    pub server: Option<String>,
}

/// The `{schema}` of a tenant route, as every such route documents it (checked by
/// [`parse_schema`], which the pattern mirrors).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SchemaPath {
    /// Tenant schema name
    #[param(
        pattern = r"^(?!(?:mysql|information_schema|performance_schema|sys|public|template0|template1|postgres|sqlite_master|sqlite_schema|sqlite_temp_master|main|temp)$)(?!pg_|sqlite_|tm_reference_)[a-z][a-z0-9_]{0,62}$"
    )]
    pub schema: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DryRunQuery {
    /// Return the plan and write nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// A tenant after (or, in a dry run, before) provisioning, with what was done.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProvisionResponse {
    /// The catalog row (absent in a dry run for a new tenant).
    pub tenant: Option<TenantRow>,
    pub result: TenantReport,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantDetail {
    pub tenant: TenantRow,
    pub state: TenantState,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradeTenantRequest {
    /// Stop at this version (inclusive); it must be the version of a tenant migration (see
    /// `GET /migrations`), else 422.
    pub target: Option<i64>,
    #[serde(default)]
    pub dry_run: bool,
}

fn invalid(e: ValidationError) -> ApiError {
    ApiError::validation(e.field, e.message)
}

pub(super) fn parse_schema(raw: &str) -> Result<SchemaName, ApiError> {
    SchemaName::parse(raw).map_err(invalid)
}

/// Tenants from the catalog, by schema name.
#[utoipa::path(
    get,
    path = "/tenants",
    tag = "tenants",
    security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of tenants", body = TenantList),
        (status = 422, description = "Invalid paging or filter", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    _user: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = page_limit(q.limit)?;
    let offset = page_offset(q.offset)?;
    let cursor = q
        .cursor
        .as_deref()
        .map(TenantCursor::parse)
        .transpose()
        .map_err(invalid)?;
    if let Some(search) = &q.search
        && (search.is_empty()
            || search.len() > 63
            || !search
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
    {
        return Err(ApiError::validation(
            "search",
            "must be 1 to 63 of a-z, 0-9 and _ (the start of a schema name)",
        ));
    }
    let key = PageKey {
        status: q.status,
        search: q.search.clone(),
        limit,
        offset,
        cursor: cursor.clone(),
    };
    let generation = state.engine.tenant_generation();
    state
        .pages
        .serve(Snapshot::Tenants(key), generation, "tenants", || async {
            let page = state
                .engine
                .tenant_page(&TenantFilter {
                    status: q.status,
                    after: cursor,
                    offset,
                    limit: Some(limit),
                    name_prefix: q.search,
                })
                .await?;
            let next_cursor = (page.tenants.len() as u64 == limit)
                .then(|| page.tenants.last().map(|t| t.schema_name.clone()))
                .flatten();
            Ok(TenantList {
                tenants: page.tenants,
                total: page.total,
                limit,
                offset,
                next_cursor,
            })
        })
        .await
}

fn json_body(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A page of `GET /tenants` as requested.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    status: Option<TenantStatus>,
    search: Option<String>,
    limit: u64,
    offset: u64,
    cursor: Option<TenantCursor>,
}

/// A catalog read whose encoded answer [`PageCache`] keeps.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Snapshot {
    /// A page of `GET /tenants`.
    Tenants(PageKey),
    /// `GET /fleet`.
    Fleet,
}

/// How long an encoded page may be served again.
const PAGE_TTL: Duration = Duration::from_secs(1);
/// Pages kept at most (the cache is emptied when full).
const MAX_PAGES: usize = 1024;

type PageMap = HashMap<Snapshot, (Instant, u64, Bytes)>;

/// Encoded `GET /tenants` pages and `GET /fleet` summaries, served again for up to [`PAGE_TTL`] while no tenant row was
/// written by this process (the catalog's generation is unchanged). Writes by other processes
/// (the CLI, another replica) show within that second. Dashboards polling the list cost one
/// catalog read per page and second instead of one per request.
#[derive(Default)]
pub struct PageCache {
    pages: Mutex<PageMap>,
}

impl PageCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, PageMap> {
        self.pages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The snapshot of `key` when it is still good for `generation`; otherwise `compute`s it,
    /// encodes it (`what` names it in an encoding error) and keeps it.
    pub(super) async fn serve<T, F, Fut>(
        &self,
        key: Snapshot,
        generation: u64,
        what: &str,
        compute: F,
    ) -> Result<Response, ApiError>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, ApiError>>,
    {
        if let Some(body) = self.get(&key, generation) {
            return Ok(json_body(body));
        }
        let value = compute().await?;
        let body = Bytes::from(
            serde_json::to_vec(&value)
                .map_err(|e| ApiError::internal(&format!("encoding {what}"), &e))?,
        );
        self.put(key, generation, body.clone());
        Ok(json_body(body))
    }

    fn get(&self, key: &Snapshot, generation: u64) -> Option<Bytes> {
        self.lock()
            .get(key)
            .filter(|(at, g, _)| *g == generation && at.elapsed() < PAGE_TTL)
            .map(|(_, _, body)| body.clone())
    }

    fn put(&self, key: Snapshot, generation: u64, body: Bytes) {
        let mut pages = self.lock();
        if pages.len() >= MAX_PAGES {
            pages.clear();
        }
        pages.insert(key, (Instant::now(), generation, body));
    }
}

/// One tenant: its catalog row and where its schema stands.
#[utoipa::path(
    get,
    path = "/tenants/{schema}",
    tag = "tenants",
    security(("bearer" = [])),
    params(SchemaPath),
    responses(
        (status = 200, description = "The tenant", body = TenantDetail),
        (status = 404, description = "No such tenant", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid schema name", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn show(
    State(state): State<AppState>,
    _user: AuthUser,
    ApiPath(SchemaPath { schema }): ApiPath<SchemaPath>,
) -> Result<Json<TenantDetail>, ApiError> {
    let name = parse_schema(&schema)?;
    let tenant = state
        .engine
        .tenant(&name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no tenant {name}")))?;
    let (_, mut states) = state.engine.status(Some(&name)).await?;
    let st = states
        .pop()
        .ok_or_else(|| ApiError::NotFound(format!("no tenant {name}")))?;
    Ok(Json(TenantDetail { tenant, state: st }))
}

/// Provision a tenant: catalog row, schema, migrations. Safe to repeat.
#[utoipa::path(
    post,
    path = "/tenants",
    tag = "tenants",
    security(("bearer" = [])),
    params(DryRunQuery),
    request_body = CreateTenantRequest,
    responses(
        (status = 201, description = "Provisioned now", body = ProvisionResponse, headers(("Location" = String, description = "/tenants/{schema}"))),
        (status = 200, description = "Already existed (repeat request), or the plan of a dry run", body = ProvisionResponse),
        (status = 403, description = "Needs the operator role", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The schema already exists and was not made by tenant-migrator; nothing was changed", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid schema name or body, or a server that is unknown or draining; nothing was created", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Provisioning failed; the tenant is marked failed and a repeat resumes it", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<DryRunQuery>,
    ApiJson(req): ApiJson<CreateTenantRequest>,
) -> Result<Response, ApiError> {
    user.require(Role::Operator)?;
    let name = parse_schema(&req.schema_name)?;
    let display = req
        .display_name
        .as_deref()
        .map(DisplayName::parse)
        .transpose()
        .map_err(invalid)?;
    let dry_run = q.dry_run;
    let server = req.server;
    if let Some(s) = &server {
        state
            .engine
            .server_for_new_tenants(s)
            .map_err(ApiError::from)?;
    }
    let work = {
        let (state, name, actor) = (state.clone(), name.clone(), user.email.clone());
        async move {
            let engine = &state.engine;
            let mut opts = engine.fleet_options(dry_run, None);
            opts.server = server;
            let result = engine.create_tenant(&name, display.as_ref(), &opts).await?;
            let tenant = if dry_run {
                engine.tenant(&name).await.ok().flatten()
            } else {
                engine.tenant(&name).await?
            };
            if !dry_run {
                let outcome = if result.status.is_failure() {
                    "failed"
                } else {
                    "ok"
                };
                audit(
                    &state,
                    &actor,
                    "tenant.create",
                    Some(name.as_str()),
                    outcome,
                    Some(serde_json::json!({"status": result.status, "to": result.to})),
                )
                .await;
            }
            Ok::<_, ApiError>((result, tenant))
        }
    };
    // Provisioning finishes (and is recorded) even if the client stops waiting for it.
    let (result, tenant) = detached(work).await??;
    if result.status == OutcomeStatus::Foreign {
        return Err(ApiError::Conflict {
            detail: result.error.unwrap_or_else(|| {
                format!("schema {name} already exists and was not made by tenant-migrator")
            }),
            job_id: None,
        });
    }
    if result.status.is_failure() {
        tracing::error!(schema = %name, error = result.error.as_deref().unwrap_or_default(), "provisioning failed");
        return Err(ApiError::Internal(format!(
            "provisioning {name} failed; the tenant is marked failed (see GET /tenants/{name}) and repeating this request resumes it"
        )));
    }
    let status = match result.status {
        OutcomeStatus::Created => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    let mut headers = HeaderMap::new();
    if status == StatusCode::CREATED
        && let Ok(v) = HeaderValue::from_str(&format!("/tenants/{name}"))
    {
        headers.insert(header::LOCATION, v);
    }
    Ok((status, headers, Json(ProvisionResponse { tenant, result })).into_response())
}

/// Bring one tenant to the newest (or target) version.
#[utoipa::path(
    post,
    path = "/tenants/{schema}/upgrade",
    tag = "tenants",
    security(("bearer" = [])),
    params(SchemaPath),
    request_body = UpgradeTenantRequest,
    responses(
        (status = 200, description = "What happened (status migrated, up_to_date, planned, failed, dirty, checksum_mismatch…)", body = TenantReport),
        (status = 403, description = "Needs the operator role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid schema name or target", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn upgrade(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(SchemaPath { schema }): ApiPath<SchemaPath>,
    ApiJson(req): ApiJson<UpgradeTenantRequest>,
) -> Result<Json<TenantReport>, ApiError> {
    user.require(Role::Operator)?;
    let name = parse_schema(&schema)?;
    let actor = user.email;
    // The migration runs to its end (and is recorded) even if the client stops waiting.
    let result = detached(async move {
        let opts = state.engine.fleet_options(req.dry_run, req.target);
        let report = state.engine.upgrade_tenant(&name, &opts, &NoProgress).await?;
        let result = report
            .tenants
            .into_iter()
            .next()
            .unwrap_or_else(|| TenantReport::new(name.as_str(), OutcomeStatus::NotAttempted));
        if !req.dry_run {
            let outcome = if result.status.is_failure() { "failed" } else { "ok" };
            audit(&state, &actor, "tenant.upgrade", Some(name.as_str()), outcome,
                Some(serde_json::json!({"status": result.status, "from": result.from, "to": result.to}))).await;
        }
        Ok::<_, ApiError>(result)
    })
    .await??;
    Ok(Json(result))
}
