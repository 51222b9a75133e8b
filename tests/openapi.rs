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

/// Statuses a JSON document of the spec lists for one operation.
fn statuses(op: &serde_json::Value) -> Vec<&str> {
    op["responses"]
        .as_object()
        .map(|r| r.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// Every status the middleware stack and the shared extractors can answer is documented on
/// every operation it can answer for (see `StackResponses` in src/http/openapi.rs), and every
/// error response is a problem document: a client generated from the spec handles every
/// answer the service gives.
#[test]
fn every_operation_documents_every_status_the_stack_answers() {
    let spec: serde_json::Value =
        serde_json::from_str(&tenant_migrator::http::openapi::spec_json()).expect("valid JSON");
    let methods = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let mut operations = 0;
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if !methods.contains(&method.as_str()) {
                continue;
            }
            operations += 1;
            let name = format!("{} {path}", method.to_uppercase());
            let documented = statuses(op);
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            let body = op.get("requestBody").is_some();
            let params = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["in"] == "path" || p["in"] == "query"));
            let mut expected = vec!["408", "431", "500"];
            if secured {
                expected.extend(["401", "503"]);
            }
            if body {
                expected.extend(["400", "413", "415", "422"]);
            }
            if params {
                expected.push("422");
            }
            for status in expected {
                assert!(
                    documented.contains(&status),
                    "{name} does not document {status} (it has {documented:?})"
                );
            }
            for (status, response) in op["responses"].as_object().expect("responses") {
                if !(status.starts_with('4') || status.starts_with('5')) {
                    continue;
                }
                let content = response["content"]
                    .as_object()
                    .unwrap_or_else(|| panic!("{name} {status} has no content"));
                assert_eq!(
                    content.keys().collect::<Vec<_>>(),
                    ["application/problem+json"],
                    "{name} {status} is a problem document and nothing else"
                );
                assert_eq!(
                    content["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{name} {status} references the Problem schema"
                );
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{name} {status} says when it happens"
                );
                if status == "401" {
                    assert!(
                        response["headers"]["WWW-Authenticate"].is_object(),
                        "{name} 401 documents WWW-Authenticate"
                    );
                }
            }
        }
    }
    assert!(
        operations >= 20,
        "only {operations} operations were checked"
    );
    assert!(spec["components"]["schemas"]["Problem"].is_object());
}

/// What a handler documents itself wins over the generic rule, and the statuses only some
/// operations answer are on those operations.
#[test]
fn handler_statuses_are_kept_and_specific_ones_documented() {
    let spec: serde_json::Value =
        serde_json::from_str(&tenant_migrator::http::openapi::spec_json()).expect("valid JSON");
    let paths = &spec["paths"];
    // A handler's own description is not replaced by the generic one.
    assert_eq!(
        paths["/tenants"]["post"]["responses"]["500"]["description"],
        "Provisioning failed; the tenant is marked failed and a repeat resumes it"
    );
    // Login: throttled per client (429) and bounded password checks (503), both with
    // Retry-After; no token, so no 401 for a token but 401 for bad credentials.
    let login = &paths["/auth/login"]["post"];
    for status in ["429", "503"] {
        assert!(
            login["responses"][status]["headers"]["Retry-After"].is_object(),
            "login {status} documents Retry-After"
        );
    }
    assert!(login["security"].is_null());
    assert!(statuses(login).contains(&"401"));
    // /metrics answers 401 when METRICS_TOKEN is set; probes never need the catalog token.
    assert!(statuses(&paths["/metrics"]["get"]).contains(&"401"));
    assert!(!statuses(&paths["/healthz"]["get"]).contains(&"401"));
    // Query parameters are in the query (not path parameters), and optional.
    for p in paths["/tenants"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
    {
        assert_eq!(p["in"], "query", "{p}");
        assert_eq!(p["required"], false, "{p}");
    }
}

/// Operation ids are unique (OpenAPI requires it; client generators name methods after them)
/// and every link points at one of them.
#[test]
fn operation_ids_are_unique_and_links_resolve() {
    let spec: serde_json::Value =
        serde_json::from_str(&tenant_migrator::http::openapi::spec_json()).expect("valid JSON");
    let mut ids = std::collections::BTreeSet::new();
    let mut links = Vec::new();
    for item in spec["paths"].as_object().expect("paths").values() {
        for op in item.as_object().expect("path item").values() {
            let Some(id) = op["operationId"].as_str() else {
                continue;
            };
            assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
            for response in op["responses"]
                .as_object()
                .into_iter()
                .flat_map(|r| r.values())
            {
                for link in response["links"]
                    .as_object()
                    .into_iter()
                    .flat_map(|l| l.values())
                {
                    links.push(link["operationId"].as_str().unwrap_or_default().to_owned());
                }
            }
        }
    }
    assert!(
        !links.is_empty(),
        "POST /migrations/upgrade-all links to its job"
    );
    for target in links {
        assert!(
            ids.contains(&target),
            "a link points at unknown operation {target:?}"
        );
    }
}
