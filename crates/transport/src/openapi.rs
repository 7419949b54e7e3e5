//! `GET /openapi.json`: an OpenAPI 3 description of the HTTP API, built from [`ENDPOINTS`].
//! A test requests every listed endpoint from the real router, so the list cannot name a route
//! that does not exist.

use axum::Json;
use serde_json::{Map, Value, json};

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Anyone.
    None,
    /// A publishing node's signature.
    Node,
    /// `Authorization: Bearer <NEXUS_ADMIN_TOKEN>`.
    Admin,
    /// The admin token or a WebSocket token (header or `?token=`).
    Token,
}

/// One operation of the API.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// `get`, `post`, `patch`, `delete`.
    pub method: &'static str,
    /// The path, with `{name}` parameters.
    pub path: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// Who may call it.
    pub auth: Auth,
    /// The success status and the error statuses it documents.
    pub statuses: &'static [u16],
}

const fn e(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    auth: Auth,
    statuses: &'static [u16],
) -> Endpoint {
    Endpoint {
        method,
        path,
        summary,
        auth,
        statuses,
    }
}

const INGRESS: &[u16] = &[202, 200, 400, 401, 403, 409, 413, 415, 429, 503];
const ADMIN_READ: &[u16] = &[200, 400, 401];

/// Every operation, in the order of API.md.
pub const ENDPOINTS: &[Endpoint] = &[
    e(
        "post",
        "/events",
        "Publish one event (plain, or a CloudEvent in structured or binary mode)",
        Auth::Node,
        INGRESS,
    ),
    e(
        "post",
        "/events/batch",
        "Publish 1 to 1000 events, all or nothing",
        Auth::Node,
        INGRESS,
    ),
    e(
        "post",
        "/webhook/{node}",
        "A node's own payload, turned into an event by its mapping",
        Auth::Node,
        &[202, 200, 400, 401, 403, 404, 409, 413, 415, 429, 503],
    ),
    e(
        "get",
        "/api/retry/stats",
        "Retry queue counts",
        Auth::Admin,
        &[200, 401],
    ),
    e(
        "get",
        "/api/retry/dead-letters",
        "Dead letters, newest first",
        Auth::Admin,
        ADMIN_READ,
    ),
    e(
        "post",
        "/api/retry/dead-letters/redrive",
        "Move dead letters back to the queue",
        Auth::Admin,
        ADMIN_READ,
    ),
    e(
        "delete",
        "/api/retry/dead-letters",
        "Delete dead letters",
        Auth::Admin,
        ADMIN_READ,
    ),
    e(
        "get",
        "/api/breakers",
        "Every target's circuit breaker",
        Auth::Admin,
        ADMIN_READ,
    ),
    e(
        "post",
        "/api/breakers/{target}/reset",
        "Close one breaker (target percent-encoded)",
        Auth::Admin,
        &[200, 401, 404],
    ),
    e(
        "get",
        "/api/subscriptions",
        "Webhook subscriptions",
        Auth::Admin,
        ADMIN_READ,
    ),
    e(
        "post",
        "/api/subscriptions",
        "Create a subscription (its secret is shown once)",
        Auth::Admin,
        &[201, 400, 401],
    ),
    e(
        "get",
        "/api/subscriptions/{id}",
        "One subscription",
        Auth::Admin,
        &[200, 401, 404],
    ),
    e(
        "patch",
        "/api/subscriptions/{id}",
        "Change a subscription",
        Auth::Admin,
        &[200, 400, 401, 404],
    ),
    e(
        "delete",
        "/api/subscriptions/{id}",
        "Delete a subscription",
        Auth::Admin,
        &[200, 401, 404],
    ),
    e(
        "get",
        "/api/events",
        "Read the log in ascending sequence order",
        Auth::Admin,
        ADMIN_READ,
    ),
    e(
        "get",
        "/api/events/{id}",
        "One event",
        Auth::Admin,
        &[200, 401, 404],
    ),
    e(
        "post",
        "/api/replay",
        "Deliver a range of the log again",
        Auth::Admin,
        &[202, 400, 401, 404],
    ),
    e(
        "get",
        "/api/nodes",
        "Configured nodes and their permissions",
        Auth::Admin,
        &[200, 401],
    ),
    e(
        "get",
        "/ws",
        "WebSocket: subscribe to events",
        Auth::Token,
        &[101, 401, 429],
    ),
    e(
        "get",
        "/health",
        "Fast liveness, no I/O",
        Auth::None,
        &[200],
    ),
    e("get", "/health/live", "Liveness", Auth::None, &[200]),
    e(
        "get",
        "/health/ready",
        "Readiness: 503 until ready and while draining",
        Auth::None,
        &[200, 503],
    ),
    e(
        "get",
        "/health/detailed",
        "Uptime, database, retry queue, breakers, connections, memory",
        Auth::None,
        &[200],
    ),
    e("get", "/metrics", "Prometheus metrics", Auth::None, &[200]),
    e("get", "/openapi.json", "This document", Auth::None, &[200]),
];

fn describe(status: u16) -> &'static str {
    match status {
        101 => "Switching to the WebSocket protocol",
        200 => "OK (for publishing: a repeat, `duplicate: true`)",
        201 => "Created",
        202 => "Accepted: durably committed",
        400 => "BAD_REQUEST or VALIDATION_ERROR (details.field, details.index)",
        401 => "UNAUTHORIZED: missing or wrong signature or token, unknown node, stale timestamp",
        403 => "FORBIDDEN: type not permitted for this node",
        404 => "NOT_FOUND",
        409 => "CONFLICT: the id was published by another node",
        413 => "PAYLOAD_TOO_LARGE: body too large or more than 1000 events",
        415 => "UNSUPPORTED_MEDIA_TYPE",
        429 => "RATE_LIMITED, with Retry-After",
        503 => "UNAVAILABLE (shutting down, store unavailable), with Retry-After",
        _ => "See API.md",
    }
}

/// The document.
pub fn document(version: &str) -> Value {
    let mut paths = Map::new();
    for ep in ENDPOINTS {
        let mut responses = Map::new();
        for &status in ep.statuses {
            let schema = if status >= 400 {
                "#/components/schemas/Error"
            } else {
                "#/components/schemas/Success"
            };
            responses.insert(
                status.to_string(),
                json!({ "description": describe(status), "content": { "application/json": { "schema": { "$ref": schema } } } }),
            );
        }
        let mut op = json!({ "summary": ep.summary, "responses": responses });
        let params: Vec<Value> = ep
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        op["security"] = match ep.auth {
            Auth::None => json!([]),
            Auth::Node => json!([{ "nexusSignature": [] }, { "standardWebhooks": [] }]),
            Auth::Admin => json!([{ "adminToken": [] }]),
            Auth::Token => json!([{ "adminToken": [] }, { "wsToken": [] }]),
        };
        if ep.method != "get" && ep.auth != Auth::None {
            op["requestBody"] =
                json!({ "content": { "application/json": { "schema": { "type": "object" } } } });
        }
        paths
            .entry(ep.path)
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .map(|m| m.insert(ep.method.to_owned(), op));
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Nexus",
            "version": version,
            "description": "The Nexus event gateway. The wire contract is API.md; this document lists its operations."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "adminToken": { "type": "http", "scheme": "bearer" },
                "wsToken": { "type": "apiKey", "in": "query", "name": "token" },
                "nexusSignature": { "type": "apiKey", "in": "header", "name": "X-Nexus-Signature",
                    "description": "sha256=<hex HMAC-SHA256 over \"<X-Nexus-Timestamp>.<body>\">, with X-Nexus-Node" },
                "standardWebhooks": { "type": "apiKey", "in": "header", "name": "webhook-signature",
                    "description": "v1,<base64 HMAC-SHA256 over \"<webhook-id>.<webhook-timestamp>.<body>\">" }
            },
            "schemas": {
                "Success": { "type": "object", "required": ["success", "data", "timestamp", "requestId"], "properties": {
                    "success": { "type": "boolean", "enum": [true] }, "data": {}, "meta": { "type": "object" },
                    "timestamp": { "type": "string", "format": "date-time" }, "requestId": { "type": "string" } } },
                "Error": { "type": "object", "required": ["success", "error", "timestamp", "requestId"], "properties": {
                    "success": { "type": "boolean", "enum": [false] },
                    "error": { "type": "object", "required": ["code", "message"], "properties": {
                        "code": { "type": "string" }, "message": { "type": "string" }, "details": { "type": "object" } } },
                    "timestamp": { "type": "string", "format": "date-time" }, "requestId": { "type": "string" } } },
                "Event": { "type": "object", "required": ["id", "type", "source", "sequence", "time", "payload"], "properties": {
                    "id": { "type": "string" }, "type": { "type": "string" }, "source": { "type": "string" },
                    "sequence": { "type": "integer" }, "time": { "type": "string", "format": "date-time" },
                    "payload": {}, "correlation_id": { "type": "string", "nullable": true } } }
            }
        }
    })
}

/// `GET /openapi.json`.
pub(crate) async fn serve(
    axum::extract::State(state): axum::extract::State<crate::app::AppState>,
) -> Json<Value> {
    Json(document(&state.config.version))
}
