//! The OpenAPI document, derived from the handlers by utoipa: every route with its request
//! and response schemas, problem responses and the bearer security scheme. On top of what each
//! handler declares, `StackResponses` documents the statuses the middleware stack and the
//! shared extractors answer (401, 400/413/415/422, 408, 431, 500, 503) on every operation they
//! can answer for, and `OperationIds` makes operation ids unique. Served at `/openapi.json`
//! with Swagger UI at `/docs` (assets inside the binary), printed by `tenant-migrator openapi`,
//! committed as `openapi/openapi.json`.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::ObjectBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Type};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use super::AppState;
use super::error::{PROBLEM_JSON, Problem};
use super::handlers::{
    admins, audit, auth, fleet, health, jobs, migrations, servers, structure, tenant_detail,
    tenants,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tenant-migrator",
        description = "Control plane of a schema-per-tenant SaaS: provision tenants, migrate the fleet as jobs, inspect schemas. Errors are RFC 9457 problem documents (application/problem+json). Authenticate with POST /auth/login and send `Authorization: Bearer <token>`; roles: viewer reads, operator also provisions and migrates, admin also manages admin users.",
        license(name = "MIT OR Apache-2.0")
    ),
    modifiers(&BearerAuth),
    components(schemas(Problem)),
    tags(
        (name = "auth", description = "Admin login"),
        (name = "admins", description = "Admin master users (admin role)"),
        (name = "tenants", description = "Tenants and their schemas"),
        (name = "migrations", description = "Migrations of the catalog and the fleet"),
        (name = "jobs", description = "Fleet jobs"),
        (name = "servers", description = "The database servers that hold tenants"),
        (name = "health", description = "Probes and metrics"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.bearer_format = Some("JWT".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}

/// Documents the error statuses the middleware stack and the shared extractors can answer for
/// an operation, so that no status the service sends is missing from the spec. It runs on the
/// finished document (after every route is added) and adds a status only where the handler
/// did not document it itself, so a handler's own, more precise description wins:
///
/// | status | when | from |
/// |---|---|---|
/// | 400 | request body | `ApiJson`: the body is not JSON |
/// | 401 | `security` | `AuthUser`: missing, malformed, expired or revoked token |
/// | 408 | always | `TimeoutLayer` (the request timeout) |
/// | 413 | request body | `DefaultBodyLimit` (64 KiB) |
/// | 415 | request body | `ApiJson`: content type is not `application/json` |
/// | 422 | request body, path or query parameters | `ApiJson`, `ApiPath`, `ApiQuery` and handler validation |
/// | 431 | always | `headers::request_guard` (too many or too large headers) |
/// | 500 | always | any unexpected failure |
/// | 503 | `security` | `AuthUser` reads the account from the catalog, which may be unavailable |
///
/// Every one is a [`Problem`] document (`application/problem+json`). Operations that use the
/// catalog without a token (`/auth/login`, `/readyz`) document their 503 themselves. A wrong
/// method on a known path (405, with `Allow`) is not an operation's status.
struct StackResponses;

impl Modify for StackResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let shared = has_path_or_query_params(item.parameters.as_deref());
            for op in operations_mut(item) {
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let body = op.request_body.is_some();
                let params = shared || has_path_or_query_params(op.parameters.as_deref());
                let add = |op: &mut Operation, status: &str, description: &str| {
                    if !op.responses.responses.contains_key(status) {
                        op.responses
                            .responses
                            .insert(status.to_owned(), RefOr::T(problem_response(description)));
                    }
                };
                if body {
                    add(op, "400", "The body is not valid JSON");
                    add(op, "413", "The body is larger than 64 KiB");
                    add(
                        op,
                        "415",
                        "The body is not sent as `content-type: application/json`",
                    );
                }
                if body || params {
                    add(
                        op,
                        "422",
                        "A body field or a path or query parameter is missing, unknown or invalid (`field` names it)",
                    );
                }
                if secured {
                    add(
                        op,
                        "401",
                        "Missing, malformed, expired or revoked bearer token, or a disabled account",
                    );
                    add(op, "503", "The catalog database is unavailable; try again");
                }
                add(
                    op,
                    "408",
                    "The request took longer than the request timeout",
                );
                add(op, "431", "Too many request headers, or headers too large");
                add(
                    op,
                    "500",
                    "Unexpected server error; the server log has the details (find it by `request_id`)",
                );
                www_authenticate(op);
            }
        }
    }
}

/// Makes every `operationId` unique, as OpenAPI requires and client generators rely on:
/// utoipa takes the handler's function name, and several modules have a `list`, `create` or
/// `show`. Each becomes `<first tag>_<function>` (`tenants_list`, `jobs_show`, `auth_login`).
struct OperationIds;

impl Modify for OperationIds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for op in operations_mut(item) {
                let tag = op.tags.as_ref().and_then(|t| t.first()).cloned();
                if let (Some(tag), Some(id)) = (tag, op.operation_id.as_mut())
                    && !id.starts_with(&format!("{tag}_"))
                {
                    *id = format!("{tag}_{id}");
                }
            }
        }
    }
}

/// Every operation of a path item, whatever its method.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.options.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
        item.trace.as_mut(),
        item.query.as_mut(),
    ]
    .into_iter()
    .flatten()
    .chain(item.additional_operations.values_mut())
}

/// True when `params` has a path or query parameter (a `$ref` counts: it may be one).
fn has_path_or_query_params(params: Option<&[RefOr<utoipa::openapi::path::Parameter>]>) -> bool {
    params.unwrap_or_default().iter().any(|p| match p {
        RefOr::T(p) => matches!(p.parameter_in, ParameterIn::Path | ParameterIn::Query),
        RefOr::Ref(_) => true,
    })
}

/// A response carrying a [`Problem`] document.
fn problem_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

/// Documents the `WWW-Authenticate: Bearer` header every 401 carries (where one is documented).
fn www_authenticate(op: &mut Operation) {
    if let Some(RefOr::T(res)) = op.responses.responses.get_mut("401") {
        res.headers
            .entry("WWW-Authenticate".to_owned())
            .or_insert_with(|| {
                HeaderBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .description(Some("`Bearer`: the scheme the service expects"))
                    .build()
                    .into()
            });
    }
}

/// Every API route, with its documentation.
pub fn api_router() -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(auth::login))
        .routes(routes!(auth::me))
        .routes(routes!(admins::list, admins::create))
        .routes(routes!(admins::update))
        .routes(routes!(admins::unlock))
        .routes(routes!(audit::list))
        .routes(routes!(tenants::list, tenants::create))
        .routes(routes!(tenants::show))
        .routes(routes!(fleet::summary))
        .routes(routes!(tenants::upgrade))
        .routes(routes!(tenant_detail::history))
        .routes(routes!(tenant_detail::structure))
        .routes(routes!(tenant_detail::repair))
        .routes(routes!(migrations::list))
        .routes(routes!(migrations::upgrade_all))
        .routes(routes!(migrations::upgrade_public))
        .routes(routes!(jobs::list))
        .routes(routes!(jobs::show))
        .routes(routes!(jobs::cancel))
        .routes(routes!(jobs::resume))
        .routes(routes!(jobs::events))
        .routes(routes!(structure::check))
        .routes(routes!(servers::list))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics));
    // After the routes: the rule needs every operation in place.
    StackResponses.modify(router.get_openapi_mut());
    OperationIds.modify(router.get_openapi_mut());
    router
}

/// The OpenAPI document as the service serves it.
pub fn spec() -> utoipa::openapi::OpenApi {
    let mut doc = api_router().into_openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// The document as pretty JSON (what `openapi/openapi.json` holds).
pub fn spec_json() -> String {
    spec().to_pretty_json().unwrap_or_default()
}

/// `/openapi.json` and the Swagger UI at `/docs`.
pub fn docs_router(mut spec: utoipa::openapi::OpenApi) -> axum::Router<AppState> {
    spec.info.version = env!("CARGO_PKG_VERSION").to_owned();
    axum::Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", spec))
}
