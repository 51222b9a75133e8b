//! The OpenAPI document, derived from the handlers by utoipa: every route with its request
//! and response schemas, problem responses and the bearer security scheme. Served at
//! `/openapi.json` with Swagger UI at `/docs` (assets inside the binary), printed by
//! `tenant-migrator openapi`, committed as `openapi/openapi.json`.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use super::AppState;
use super::error::Problem;
use super::handlers::{admins, auth, health, jobs, migrations, structure, tenants};

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

/// Every API route, with its documentation.
pub fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(auth::login))
        .routes(routes!(auth::me))
        .routes(routes!(admins::list, admins::create))
        .routes(routes!(admins::update))
        .routes(routes!(tenants::list, tenants::create))
        .routes(routes!(tenants::show))
        .routes(routes!(tenants::upgrade))
        .routes(routes!(migrations::list))
        .routes(routes!(migrations::upgrade_all))
        .routes(routes!(migrations::upgrade_public))
        .routes(routes!(jobs::list))
        .routes(routes!(jobs::show))
        .routes(routes!(jobs::cancel))
        .routes(routes!(jobs::resume))
        .routes(routes!(jobs::events))
        .routes(routes!(structure::check))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
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
