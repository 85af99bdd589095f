//! `GET /api/v1/openapi.json`: the OpenAPI 3.0 document of the control API, served as written in
//! `docs/openapi.json` (embedded at build time). No authentication: it holds no secrets.
//!
//! Adding or changing a route: update `docs/openapi.json` (path, method, parameters, bodies,
//! answers) and the `ROUTES` list in the test below; the test fails while the two disagree with
//! each other. `./scripts/schemathesis` then checks the running API against the document.

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::agent::Node;

/// The document, as kept in docs.
pub(crate) const DOCUMENT: &str = include_str!("../../../docs/openapi.json");

/// The route (merged into the API router).
pub(super) fn routes() -> Router<Arc<Node>> {
    Router::new().route("/api/v1/openapi.json", get(document))
}

async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::DOCUMENT;

    /// Every (method, path) the router serves (`mod.rs`, `nodes.rs`, `users.rs`, `servers.rs`,
    /// `tasks.rs`, `events.rs`, this file). Keep in step with the router and with `docs/openapi.json`.
    const ROUTES: &[(&str, &str)] = &[
        ("get", "/api/v1/openapi.json"),
        ("get", "/api/v1/status"),
        ("get", "/api/v1/nodes"),
        ("get", "/api/v1/cluster"),
        ("post", "/api/v1/nodes/tokens"),
        ("post", "/api/v1/nodes/promote"),
        ("post", "/api/v1/nodes/demote"),
        ("delete", "/api/v1/nodes/{name}"),
        ("post", "/api/v1/nodes/{name}/maintenance"),
        ("post", "/api/v1/nodes/{name}/evacuate"),
        ("get", "/api/v1/whoami"),
        ("get", "/api/v1/audit"),
        ("get", "/api/v1/users"),
        ("post", "/api/v1/users"),
        ("get", "/api/v1/users/{name}"),
        ("delete", "/api/v1/users/{name}"),
        ("post", "/api/v1/users/{name}/disable"),
        ("post", "/api/v1/users/{name}/enable"),
        ("put", "/api/v1/users/{name}/role"),
        ("put", "/api/v1/users/{name}/quotas"),
        ("post", "/api/v1/users/{name}/ssh-keys"),
        ("post", "/api/v1/users/{name}/ssh-keys/remove"),
        ("post", "/api/v1/users/{name}/credentials"),
        ("get", "/api/v1/users/{name}/tokens"),
        ("post", "/api/v1/users/{name}/tokens"),
        ("delete", "/api/v1/users/{name}/tokens/{id}"),
        ("get", "/api/v1/servers"),
        ("post", "/api/v1/servers"),
        ("get", "/api/v1/servers/{name}"),
        ("delete", "/api/v1/servers/{name}"),
        ("get", "/api/v1/servers/{name}/console"),
        ("get", "/api/v1/servers/{name}/console/attach"),
        ("post", "/api/v1/servers/{name}/console/attach"),
        ("post", "/api/v1/servers/{name}/{action}"),
        ("get", "/api/v1/stacks"),
        ("post", "/api/v1/stacks"),
        ("get", "/api/v1/stacks/{name}"),
        ("delete", "/api/v1/stacks/{name}"),
        ("post", "/api/v1/stacks/{name}/start"),
        ("post", "/api/v1/stacks/{name}/stop"),
        ("get", "/api/v1/images"),
        ("post", "/api/v1/images"),
        ("get", "/api/v1/images/{name}"),
        ("delete", "/api/v1/images/{name}"),
        ("post", "/api/v1/images/{name}/{action}"),
        ("get", "/api/v1/images/{name}/content"),
        ("put", "/api/v1/images/{name}/content"),
        ("get", "/api/v1/backups"),
        ("post", "/api/v1/backups"),
        ("get", "/api/v1/backups/schedules"),
        ("post", "/api/v1/backups/schedules"),
        ("delete", "/api/v1/backups/{id}"),
        ("post", "/api/v1/backups/{id}/restore"),
        ("get", "/api/v1/connections"),
        ("post", "/api/v1/connections"),
        ("get", "/api/v1/connections/{name}"),
        ("delete", "/api/v1/connections/{name}"),
        ("post", "/api/v1/connections/{name}/activate"),
        ("post", "/api/v1/connections/{name}/deactivate"),
        ("get", "/api/v1/network"),
        ("get", "/api/v1/pools"),
        ("post", "/api/v1/pools"),
        ("delete", "/api/v1/pools/{name}"),
        ("put", "/api/v1/network"),
        ("get", "/api/v1/tasks"),
        ("get", "/api/v1/tasks/{id}"),
        ("post", "/api/v1/tasks/{id}/cancel"),
        ("get", "/api/v1/actual"),
        ("get", "/api/v1/events"),
    ];

    #[test]
    fn document_parses_and_lists_every_route() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("docs/openapi.json");
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        let paths = doc["paths"].as_object().expect("paths");
        let documented: BTreeSet<(String, String)> = paths
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .into_iter()
                    .flat_map(|ops| ops.keys())
                    .filter(|m| {
                        ["get", "put", "post", "delete", "patch", "head", "options"]
                            .contains(&m.as_str())
                    })
                    .map(move |m| (m.clone(), path.clone()))
            })
            .collect();
        let served: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(served.len(), ROUTES.len(), "a route is listed twice");
        let missing: Vec<_> = served.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&served).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "docs/openapi.json and the router differ: undocumented {missing:?}, not served {extra:?}"
        );
        // The image actions the document names are the ones the router serves.
        let params = doc["paths"]["/api/v1/images/{name}/{action}"]["post"]["parameters"]
            .as_array()
            .expect("image action parameters");
        let actions: Vec<&str> = params
            .iter()
            .find(|p| p["name"] == "action")
            .and_then(|p| p["schema"]["enum"].as_array())
            .expect("the action enum")
            .iter()
            .filter_map(|a| a.as_str())
            .collect();
        assert_eq!(actions, skiff_cluster::api::images::IMAGE_ACTIONS);
        // Every `$ref` resolves.
        let text = DOCUMENT;
        for r in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
            let name = &r[..r.find('"').unwrap()];
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "dangling $ref {name}"
            );
        }
    }
}
