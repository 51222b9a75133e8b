//! The committed `openapi/openapi.json` must be exactly what the code produces, so the spec
//! ops teams read never drifts from the service. Regenerate with
//! `cargo run -- openapi > openapi/openapi.json`.

use std::path::Path;

#[test]
fn committed_openapi_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json");
    let committed = std::fs::read_to_string(&path).expect("openapi/openapi.json exists");
    let generated = tenant_migrator::http::openapi::spec_json();
    assert!(
        committed.trim_end() == generated.trim_end(),
        "openapi/openapi.json is stale: run `cargo run -- openapi > openapi/openapi.json` and commit it"
    );
}

#[test]
fn spec_documents_every_route_and_the_bearer_scheme() {
    let spec: serde_json::Value =
        serde_json::from_str(&tenant_migrator::http::openapi::spec_json()).expect("valid JSON");
    let paths = spec["paths"].as_object().expect("paths");
    for p in [
        "/auth/login",
        "/auth/me",
        "/admins",
        "/admins/{id}",
        "/tenants",
        "/tenants/{schema}",
        "/tenants/{schema}/upgrade",
        "/migrations",
        "/migrations/upgrade-all",
        "/migrations/upgrade-public",
        "/migrations/jobs",
        "/migrations/jobs/{id}",
        "/migrations/jobs/{id}/cancel",
        "/migrations/jobs/{id}/resume",
        "/migrations/jobs/{id}/events",
        "/structure/check",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "{p} is documented");
    }
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // Protected routes declare the scheme; every documented error is a problem document.
    let create = &spec["paths"]["/tenants"]["post"];
    assert_eq!(create["security"][0]["bearer"], serde_json::json!([]));
    assert!(create["responses"]["422"]["content"]["application/problem+json"].is_object());
}
