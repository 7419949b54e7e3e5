//! `GET /openapi.json`: an OpenAPI 3 description of the HTTP API, built from [`ENDPOINTS`].
//! A test requests every listed endpoint from the real router, so the list cannot name a route
//! that does not exist; the body schemas describe the types of `nexus-api`, and a unit test
//! holds each against a serialized value of its type, so the two cannot drift.

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
    /// `get`, `post`, `put`, `patch`, `delete`.
    pub method: &'static str,
    /// The path, with `{name}` parameters.
    pub path: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// Who may call it.
    pub auth: Auth,
    /// The success status and the error statuses it documents.
    pub statuses: &'static [u16],
    /// The schema of the request body (a name under `components/schemas`), if it takes one.
    pub request: Option<&'static str>,
    /// The schema of the success answer's `data` (for an envelope), or of the whole body (for
    /// health); a name, or `[name]` for a list with `meta.nextCursor`.
    pub data: Option<&'static str>,
    /// The query parameters it takes.
    pub query: &'static [&'static str],
}

impl Endpoint {
    const fn body(mut self, schema: &'static str) -> Self {
        self.request = Some(schema);
        self
    }

    const fn answers(mut self, schema: &'static str) -> Self {
        self.data = Some(schema);
        self
    }

    const fn query(mut self, names: &'static [&'static str]) -> Self {
        self.query = names;
        self
    }
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
        request: None,
        data: None,
        query: &[],
    }
}

const PAGE: &[&str] = &["limit", "cursor"];

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
    )
    .body("PublishEvent")
    .answers("Ack"),
    e(
        "post",
        "/events/batch",
        "Publish 1 to 1000 events, all or nothing",
        Auth::Node,
        INGRESS,
    )
    .body("PublishBatch")
    .answers("BatchAck"),
    e(
        "post",
        "/webhook/{node}",
        "A node's own payload, turned into an event by its mapping",
        Auth::Node,
        &[202, 200, 400, 401, 403, 404, 409, 413, 415, 429, 503],
    )
    .answers("Ack"),
    e(
        "get",
        "/api/retry/stats",
        "Retry queue counts",
        Auth::Admin,
        &[200, 401],
    )
    .answers("RetryStats"),
    e(
        "get",
        "/api/retry/dead-letters",
        "Dead letters, newest first",
        Auth::Admin,
        ADMIN_READ,
    )
    .answers("[DeadLetter]")
    .query(PAGE),
    e(
        "post",
        "/api/retry/dead-letters/redrive",
        "Move dead letters back to the queue",
        Auth::Admin,
        ADMIN_READ,
    )
    .body("IdsSelection")
    .answers("Redriven"),
    e(
        "delete",
        "/api/retry/dead-letters",
        "Delete dead letters",
        Auth::Admin,
        ADMIN_READ,
    )
    .body("IdsSelection")
    .answers("Deleted"),
    e(
        "get",
        "/api/breakers",
        "Every target's circuit breaker",
        Auth::Admin,
        ADMIN_READ,
    )
    .answers("[Breaker]")
    .query(PAGE),
    e(
        "post",
        "/api/breakers/{target}/reset",
        "Close one breaker (target percent-encoded)",
        Auth::Admin,
        &[200, 401, 404],
    )
    .answers("Reset"),
    e(
        "get",
        "/api/instances",
        "The live server instances on the store",
        Auth::Admin,
        ADMIN_READ,
    )
    .answers("[Instance]")
    .query(PAGE),
    e(
        "get",
        "/api/subscriptions",
        "Webhook subscriptions",
        Auth::Admin,
        ADMIN_READ,
    )
    .answers("[Subscription]")
    .query(PAGE),
    e(
        "post",
        "/api/subscriptions",
        "Create a subscription (its secret is shown once)",
        Auth::Admin,
        &[201, 400, 401],
    )
    .body("NewSubscription")
    .answers("Subscription"),
    e(
        "get",
        "/api/subscriptions/{id}",
        "One subscription",
        Auth::Admin,
        &[200, 401, 404],
    )
    .answers("Subscription"),
    e(
        "patch",
        "/api/subscriptions/{id}",
        "Change a subscription",
        Auth::Admin,
        &[200, 400, 401, 404],
    )
    .body("SubscriptionPatch")
    .answers("Subscription"),
    e(
        "delete",
        "/api/subscriptions/{id}",
        "Delete a subscription",
        Auth::Admin,
        &[200, 401, 404],
    )
    .answers("Deleted"),
    e(
        "get",
        "/api/subscriptions/{id}/deliveries",
        "A subscription's deliveries with their attempts, newest first",
        Auth::Admin,
        &[200, 400, 401, 404],
    )
    .answers("[Delivery]")
    .query(&["state", "after", "limit", "cursor"]),
    e(
        "post",
        "/api/subscriptions/{id}/test",
        "Send a signed nexus.test event to the subscription now (nothing is stored)",
        Auth::Admin,
        &[200, 401, 404],
    )
    .answers("TestSend"),
    e(
        "get",
        "/api/events",
        "Read the log: ascending sequence order, or newest first with order=desc",
        Auth::Admin,
        ADMIN_READ,
    )
    .answers("[Event]")
    .query(&["type", "after", "until", "order", "limit", "cursor"]),
    e(
        "get",
        "/api/events/{id}",
        "One event",
        Auth::Admin,
        &[200, 401, 404],
    )
    .answers("Event"),
    e(
        "get",
        "/api/events/{id}/deliveries",
        "Every delivery of an event with its attempts",
        Auth::Admin,
        &[200, 401, 404],
    )
    .answers("Deliveries"),
    e(
        "post",
        "/api/replay",
        "Deliver a range of the log again",
        Auth::Admin,
        &[202, 400, 401, 404],
    )
    .body("Replay")
    .answers("Enqueued"),
    e(
        "get",
        "/api/nodes",
        "Configured nodes and their permissions",
        Auth::Admin,
        ADMIN_READ,
    )
    .answers("[Node]")
    .query(PAGE),
    e(
        "get",
        "/api/reactors",
        "Configured reactors, read only (never their secrets)",
        Auth::Admin,
        ADMIN_READ,
    )
    .answers("[Reactor]")
    .query(PAGE),
    e(
        "get",
        "/ws",
        "WebSocket: subscribe to events",
        Auth::Token,
        &[101, 401, 429],
    )
    .query(&["token"]),
    e(
        "get",
        "/health",
        "Fast liveness, no I/O",
        Auth::None,
        &[200],
    )
    .answers("Health"),
    e("get", "/health/live", "Liveness", Auth::None, &[200]).answers("Health"),
    e(
        "get",
        "/health/ready",
        "Readiness: 503 until ready and while draining",
        Auth::None,
        &[200, 503],
    )
    .answers("Health"),
    e(
        "get",
        "/health/detailed",
        "Uptime, database, retry queue, breakers, connections, memory, store, instances",
        Auth::None,
        &[200],
    )
    .answers("HealthDetailed"),
    e("get", "/metrics", "Prometheus metrics", Auth::None, &[200]),
    e("get", "/openapi.json", "This document", Auth::None, &[200]),
    e(
        "get",
        "/api/event-types",
        "The declared event types, by name",
        Auth::Admin,
        ADMIN_READ,
    )
    .answers("[EventType]")
    .query(PAGE),
    e(
        "get",
        "/api/event-types/{name}",
        "One declared event type",
        Auth::Admin,
        &[200, 400, 401, 404],
    )
    .answers("EventType"),
    e(
        "put",
        "/api/event-types/{name}",
        "Declare or replace an event type (201 when created, 200 when replaced)",
        Auth::Admin,
        &[201, 200, 400, 401, 409],
    )
    .body("EventTypePut")
    .answers("EventType"),
    e(
        "delete",
        "/api/event-types/{name}",
        "Delete a declared event type (events already stored are kept)",
        Auth::Admin,
        &[200, 400, 401, 404, 409],
    )
    .answers("Deleted"),
    e(
        "get",
        "/asyncapi.json",
        "An AsyncAPI 3.0 document of the event-type catalogue, webhook delivery and WebSocket",
        Auth::None,
        &[200],
    )
    .answers("AsyncApi"),
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
        409 => {
            "CONFLICT: the id was published by another node, or the event type is declared in the config file"
        }
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
            // Health bodies are plain JSON whatever the status (`/health/ready` answers 503 with
            // one); everything else answers errors with the envelope.
            let plain = ep.auth == Auth::None && ep.data.is_some();
            let schema = if status >= 400 && !plain {
                reference("Error")
            } else {
                success_schema(ep, status)
            };
            let content = if ep.path == "/metrics" {
                json!({ "text/plain": { "schema": { "type": "string",
                    "description": "Prometheus text exposition format 0.0.4" } } })
            } else {
                json!({ "application/json": { "schema": schema } })
            };
            responses.insert(
                status.to_string(),
                json!({ "description": describe(status), "content": content }),
            );
        }
        let mut op = json!({ "summary": ep.summary, "responses": responses });
        let mut params: Vec<Value> = ep
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": path_parameter(ep.path, name) }))
            .collect();
        params.extend(ep.query.iter().map(|name| {
            let schema = match *name {
                "limit" => {
                    json!({ "type": "integer", "minimum": 1, "maximum": 1000, "default": 100 })
                }
                "after" | "until" => sequence(),
                "state" => json!({ "type": "string",
                    "enum": ["", "pending", "in_flight", "delivered", "held", "dead"],
                    "description": "one state; empty for every state" }),
                "type" => json!({ "type": "string", "maxLength": nexus_event::MAX_TYPE_LEN,
                    "pattern": "^[A-Za-z0-9_.:*-]*$",
                    "description": "a type glob; empty for every type" }),
                "cursor" => cursor(ep.path),
                "order" => json!({ "type": "string", "enum": ["asc", "desc"], "default": "asc" }),
                _ => json!({ "type": "string" }),
            };
            json!({ "name": name, "in": "query", "required": false, "schema": schema })
        }));
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        op["security"] = match ep.auth {
            Auth::None => json!([]),
            Auth::Node => json!([{ "nexusSignature": [] }, { "standardWebhooks": [] }]),
            Auth::Admin => json!([{ "adminToken": [] }]),
            Auth::Token => json!([{ "adminToken": [] }, { "wsToken": [] }]),
        };
        if let Some(request) = ep.request {
            op["requestBody"] = json!({ "required": true,
                "content": { "application/json": { "schema": reference(request) } } });
            if ep.path == "/events" {
                op["requestBody"]["content"]["application/cloudevents+json"] =
                    json!({ "schema": reference("CloudEvent") });
            }
        } else if ep.path == "/webhook/{node}" {
            op["requestBody"] = json!({ "required": true,
                "content": { "application/json": { "schema": { "nullable": true, "description": "the node's own payload, any JSON value (null included)" } } } });
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
                    "payload": any(), "correlation_id": { "type": "string", "nullable": true } } },
                "ListMeta": object(&[("nextCursor", nullable("string"))], &["nextCursor"], true),
                "PublishEvent": object(&[
                    ("type", event_type()), ("id", nullable_event_id()), ("payload", any()),
                    ("correlation_id", nullable_event_id()),
                ], &["type"], true),
                "CloudEvent": object(&[
                    ("specversion", json!({ "type": "string", "enum": ["1.0"] })), ("id", event_id()),
                    ("type", event_type()), ("data", any()), ("data_base64", nullable("string")),
                ], &["specversion", "id", "type"], true),
                "PublishBatch": object(&[("events", json!({ "type": "array", "minItems": 1, "maxItems": 1000,
                    "items": reference("PublishEvent") }))], &["events"], true),
                "Ack": object(&[("id", string()), ("sequence", integer()), ("duplicate", boolean())],
                    &["id", "sequence", "duplicate"], true),
                "BatchAck": object(&[("events", array(reference("Ack")))], &["events"], true),
                "RetryStats": object(&[("pending", integer()), ("deadLetters", integer()),
                    ("oldestRetry", nullable_time()), ("inFlight", integer())],
                    &["pending", "deadLetters", "oldestRetry", "inFlight"], true),
                "DeadLetter": object(&[("id", integer()), ("eventId", string()), ("eventType", string()),
                    ("eventSequence", integer()), ("target", string()), ("subscriptionId", nullable("string")),
                    ("reactor", nullable("string")), ("attempts", integer()), ("lastError", string()),
                    ("lastStatus", nullable("integer")), ("createdAt", time()), ("firstAttemptAt", nullable_time()),
                    ("failedAt", time()), ("payload", any())],
                    &["id", "eventId", "eventType", "target", "subscriptionId", "reactor", "attempts",
                      "lastError", "lastStatus", "createdAt", "failedAt", "payload"], true),
                "IdsSelection": object(&[("ids", array(json!({ "nullable": true,
                    "description": "a dead letter id, as a number or a string of digits; any other value (or an id that names no dead letter) is not counted, and is no error" })))], &[], false),
                "Breaker": object(&[("target", string()),
                    ("state", json!({ "type": "string", "enum": ["closed", "open", "half_open"] })),
                    ("consecutiveFailures", integer()), ("trips", integer()), ("openedAt", nullable_time()),
                    ("nextTrialAt", nullable_time())],
                    &["target", "state", "consecutiveFailures", "trips", "openedAt", "nextTrialAt"], true),
                "Instance": object(&[("id", string()), ("host", string()), ("startedAt", time()),
                    ("lastSeenAt", time()), ("version", string())],
                    &["id", "host", "startedAt", "lastSeenAt", "version"], true),
                "Filter": {
                    "type": "object",
                    "description": "conditions on the payload, all of which must hold: JSON pointers (RFC 6901; \"\" for the whole payload) to one or more tests; an event whose payload fails them gets no delivery",
                    "additionalProperties": {
                        "type": "object", "minProperties": 1, "additionalProperties": false,
                        "properties": {
                            "eq": { "description": "equal (numbers by value)" },
                            "ne": { "description": "not equal; a missing value is not equal to anything" },
                            "gt": { "oneOf": [{ "type": "number" }, string()] },
                            "gte": { "oneOf": [{ "type": "number" }, string()] },
                            "lt": { "oneOf": [{ "type": "number" }, string()] },
                            "lte": { "oneOf": [{ "type": "number" }, string()] },
                            "exists": boolean()
                        }
                    },
                    "example": { "/amount": { "gte": 10000 }, "/currency": { "eq": "EUR" } }
                },
                "NewSubscription": object(&[("url", url()),
                    ("events", json!({ "type": "array", "minItems": 1, "maxItems": 256, "items": glob() })),
                    ("secret", new_secret()), ("ordered", boolean()),
                    ("filter", json!({ "nullable": true, "allOf": [reference("Filter")] }))], &["url", "events"], false),
                "SubscriptionPatch": {
                    "minProperties": 1,
                    "description": "a key left out leaves that setting as it is; null is refused but for filter",
                    "allOf": [object(&[("url", url()), ("events", json!({ "type": "array", "minItems": 1, "maxItems": 256, "items": glob() })),
                        ("secret", secret()), ("ordered", boolean()), ("enabled", boolean()),
                        ("filter", json!({ "nullable": true, "allOf": [reference("Filter")],
                            "description": "a filter replaces the one it has; null removes it; events stored after the change follow it" }))],
                        &[], false)]
                },
                "Subscription": object(&[("id", string()), ("url", string()), ("events", array(string())),
                    ("ordered", boolean()), ("enabled", boolean()),
                    ("filter", json!({ "nullable": true, "allOf": [reference("Filter")] })), ("createdAt", time()),
                    ("secret", json!({ "type": "string", "description": "in the answer to its creation only" })),
                    ("stats", object(&[("delivered", integer()), ("failed", integer()), ("pending", integer()),
                        ("dead", integer())], &["delivered", "failed", "pending", "dead"], true))],
                    &["id", "url", "events", "ordered", "enabled", "filter", "createdAt", "stats"], true),
                "Delivery": object(&[("id", integer()), ("eventId", string()), ("subscriptionId", nullable("string")),
                    ("reactor", nullable("string")), ("target", string()),
                    ("state", json!({ "type": "string", "enum": ["pending", "in_flight", "delivered", "held", "dead"] })),
                    ("attempts", array(object(&[("at", time()), ("durationMs", integer()), ("status", nullable("integer")),
                        ("error", nullable("string"))], &["at", "durationMs", "status", "error"], true))),
                    ("nextAttemptAt", nullable_time()), ("createdAt", time())],
                    &["id", "eventId", "subscriptionId", "reactor", "target", "state", "attempts", "nextAttemptAt",
                      "createdAt"], true),
                "Deliveries": array(reference("Delivery")),
                "TestSend": object(&[("status", nullable("integer")), ("error", nullable("string")),
                    ("durationMs", integer())], &["status", "error", "durationMs"], true),
                "Replay": object(&[("after", sequence()), ("until", sequence()),
                    ("types", json!({ "type": "array", "minItems": 1, "maxItems": 256, "items": glob(),
                        "description": "left out for every type" })),
                    ("target", json!({ "type": "string", "minLength": 1, "description": "a subscription id, or \"reactors\"" }))],
                    &["after", "target"], false),
                "Node": object(&[("name", string()), ("publish", array(string())),
                    ("webhook", json!({ "nullable": true, "allOf": [object(&[("eventType", string()),
                        ("idPointer", nullable("string"))], &["eventType", "idPointer"], true)] }))],
                    &["name", "publish", "webhook"], true),
                "Reactor": object(&[("name", string()), ("on", string()),
                    ("when", json!({ "type": "object",
                        "description": "JSON pointers into the payload to tests (eq, ne, gt, gte, lt, lte, exists); {} for none" })),
                    ("call", object(&[("method", string()), ("url", string()), ("timeoutMs", integer())],
                        &["method", "url", "timeoutMs"], true)),
                    ("emitOnSuccess", nullable("string")), ("emitOnFailure", nullable("string"))],
                    &["name", "on", "when", "call", "emitOnSuccess", "emitOnFailure"], true),
                "EventType": object(&[("name", string()), ("description", string()),
                    ("schema", json!({ "nullable": true,
                        "description": "the payload's JSON Schema (draft 2020-12, an object or a boolean); null for none" })),
                    ("examples", array(any())), ("deprecated", boolean()),
                    ("createdAt", time()), ("updatedAt", time())],
                    &["name", "description", "schema", "examples", "deprecated", "createdAt", "updatedAt"], true),
                "EventTypePut": object(&[("description", string()),
                    ("schema", json!({ "nullable": true, "oneOf": [{ "type": "object" }, boolean()],
                        "description": "a JSON Schema (draft 2020-12) that compiles: an object or a boolean; null or absent for none" })),
                    ("examples", json!({ "type": "array", "items": any(),
                        "description": "each valid against the schema" })),
                    ("deprecated", boolean())], &[], false),
                "AsyncApi": object(&[("asyncapi", json!({ "type": "string", "enum": ["3.0.0"] })),
                    ("info", json!({ "type": "object" })), ("defaultContentType", string()),
                    ("servers", json!({ "type": "object" })), ("channels", json!({ "type": "object" })),
                    ("operations", json!({ "type": "object" })), ("components", json!({ "type": "object" }))],
                    &["asyncapi", "info", "channels", "operations"], true),
                "Deleted": count("deleted"),
                "Redriven": count("redriven"),
                "Reset": count("reset"),
                "Enqueued": count("enqueued"),
                "Health": object(&[("status", health_status())], &["status"], true),
                "HealthDetailed": object(&[("status", health_status()), ("version", string()), ("uptimeSeconds", integer()),
                    ("database", object(&[("sizeBytes", nullable("integer"))], &["sizeBytes"], true)),
                    ("retry", object(&[("pending", nullable("integer")), ("deadLetters", nullable("integer"))],
                        &["pending", "deadLetters"], true)),
                    ("breakers", object(&[("open", integer()), ("halfOpen", integer())], &["open", "halfOpen"], true)),
                    ("websocket", object(&[("connections", integer())], &["connections"], true)),
                    ("memory", object(&[("rssBytes", nullable("integer"))], &["rssBytes"], true)),
                    ("store", object(&[("kind", json!({ "type": "string", "enum": ["sqlite", "postgres"] }))], &["kind"], true)),
                    ("instances", json!({ "type": "integer", "nullable": true,
                        "description": "live instances on the store; null when the store cannot be read" }))],
                    &["status", "version", "uptimeSeconds", "database", "retry", "breakers", "websocket", "memory",
                      "instances"], true)
            }
        }
    })
}

/// Any JSON value, `null` included.
fn any() -> Value {
    json!({ "nullable": true, "description": "any JSON value; null is kept as null; integers within -2^63 to 2^64-1 (400 beyond), each key once per object (400 for a repeat)" })
}

/// An event type: 1 to 128 characters of `A-Z a-z 0-9 _ . : -`.
fn event_type() -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": nexus_event::MAX_TYPE_LEN,
        "pattern": "^[A-Za-z0-9_.:-]+$" })
}

/// A type glob: an event type's characters and `*`.
fn glob() -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": nexus_event::MAX_TYPE_LEN,
        "pattern": "^[A-Za-z0-9_.:*-]+$" })
}

/// An event id or correlation id: 1 to 128 visible ASCII characters.
fn event_id() -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": nexus_event::MAX_ID_LEN,
        "pattern": "^[!-~]+$" })
}

/// An event id or correlation id, or `null` for none (the server gives an id).
fn nullable_event_id() -> Value {
    nullable_schema(event_id())
}

/// A sequence number (`after`, `until`): 0 to 2^64 - 1.
fn sequence() -> Value {
    json!({ "type": "integer", "minimum": 0, "maximum": u64::MAX })
}

/// A subscription's signing secret.
fn secret() -> Value {
    json!({ "type": "string", "minLength": 16,
        "description": "at least 16 key bytes: `whsec_<base64>` is used as its decoded bytes, any other text as its UTF-8 bytes" })
}

/// The secret of a new subscription: `null` or left out for one the server generates.
fn new_secret() -> Value {
    nullable_schema(secret())
}

/// `schema`, or `null`.
fn nullable_schema(mut schema: Value) -> Value {
    schema["nullable"] = json!(true);
    schema
}

/// A node name: 1 to 64 characters of `A-Z a-z 0-9 _ . -`.
fn node_name() -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9_.-]+$" })
}

/// An outbound target: an absolute `http` or `https` URL.
fn url() -> Value {
    json!({ "type": "string", "format": "uri", "pattern": "^https?://[^/?#@\\s]+(/|$)",
        "description": "an absolute http or https URL with a host" })
}

/// The schema of a path parameter.
fn path_parameter(path: &str, name: &str) -> Value {
    match (path, name) {
        ("/webhook/{node}", "node") => node_name(),
        (_, "name") => event_type(),
        ("/api/events/{id}" | "/api/events/{id}/deliveries", "id") => event_id(),
        ("/api/breakers/{target}/reset", "target") => {
            json!({ "type": "string", "pattern": "^[A-Za-z0-9%_.:~-]+$",
                "description": "the target (its URL's scheme, host and port), percent-encoded" })
        }
        _ => json!({ "type": "string", "minLength": 1 }),
    }
}

/// The `cursor` query parameter: what the list's previous page gave as `meta.nextCursor`.
fn cursor(path: &str) -> Value {
    let format = match path {
        // The last sequence of the page before.
        "/api/events" => json!({ "type": "string", "pattern": "^[0-9]{0,19}$" }),
        // The id of the last dead letter, or delivery, of the page before.
        "/api/retry/dead-letters" | "/api/subscriptions/{id}/deliveries" => {
            json!({ "type": "string", "pattern": "^[0-9]{0,18}$" })
        }
        // The start (Unix ms) and id of the last instance of the page before.
        "/api/instances" => json!({ "type": "string", "pattern": "^([0-9]{1,15}\\.[!-~]+)?$" }),
        _ => json!({ "type": "string" }),
    };
    let mut schema = format;
    schema["description"] = json!("meta.nextCursor of the page before; empty for the first page");
    schema
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn string() -> Value {
    json!({ "type": "string" })
}

fn integer() -> Value {
    json!({ "type": "integer" })
}

fn boolean() -> Value {
    json!({ "type": "boolean" })
}

fn health_status() -> Value {
    json!({ "type": "string", "enum": ["ok", "ready", "starting", "draining", "degraded"] })
}

fn time() -> Value {
    json!({ "type": "string", "format": "date-time" })
}

fn nullable(kind: &str) -> Value {
    json!({ "type": kind, "nullable": true })
}

fn nullable_time() -> Value {
    json!({ "type": "string", "format": "date-time", "nullable": true })
}

fn array(items: Value) -> Value {
    json!({ "type": "array", "items": items })
}

/// An object schema; `open` allows keys it does not list (answers may grow), a closed one
/// refuses them as the server does (`400 VALIDATION_ERROR`).
fn object(properties: &[(&str, Value)], required: &[&str], open: bool) -> Value {
    let props: Map<String, Value> = properties
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let mut schema = json!({ "type": "object", "properties": props, "additionalProperties": open });
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    schema
}

fn count(key: &str) -> Value {
    object(&[(key, integer())], &[key], true)
}

/// The schema of a success answer: the envelope with its `data` (and `meta` for a list), or a
/// plain body for the health endpoints.
fn success_schema(ep: &Endpoint, status: u16) -> Value {
    let Some(data) = ep.data.filter(|_| status != 101) else {
        return reference("Success");
    };
    if ep.auth == Auth::None {
        return reference(data);
    }
    let (data, meta) = match data.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        Some(item) => (array(reference(item)), Some(reference("ListMeta"))),
        None => (reference(data), None),
    };
    let mut properties = json!({ "data": data });
    if let Some(meta) = meta {
        properties["meta"] = meta;
    }
    json!({ "allOf": [reference("Success"), { "type": "object", "properties": properties }] })
}

/// `GET /openapi.json`.
pub(crate) async fn serve(
    axum::extract::State(state): axum::extract::State<crate::app::AppState>,
) -> Json<Value> {
    Json(document(&state.config.version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexus_api::breakers::{Breaker, BreakerState};
    use nexus_api::dead_letters::{
        DeadLetter, Deleted, Enqueued, IdsSelection, Redriven, Reset, RetryStats,
    };
    use nexus_api::deliveries::{Attempt, Delivery, DeliveryState, TestSend};
    use nexus_api::envelope::ListMeta;
    use nexus_api::event_types::{EventType as ApiEventType, EventTypePut};
    use nexus_api::health::{
        BreakersHealth, DatabaseHealth, Health, HealthDetailed, HealthStatus, MemoryHealth,
        RetryHealth, StoreHealth, StoreKind, WebSocketHealth,
    };
    use nexus_api::instances::Instance;
    use nexus_api::log::Replay;
    use nexus_api::nodes::{Node, NodeWebhook};
    use nexus_api::publish::{Ack, BatchAck, CloudEvent, PublishBatch, PublishEvent};
    use nexus_api::reactors::{Reactor, ReactorCall};
    use nexus_api::subscriptions::{
        NewSubscription, Subscription, SubscriptionPatch, SubscriptionStats,
    };
    use nexus_event::{CorrelationId, Event, EventId, EventType, Timestamp};

    /// Holds a schema against a serialized value of its type: every key the type writes is a
    /// property, and every required property is written; nested objects likewise.
    fn matches(name: &str, schema: &Value, sample: &Value) {
        let schema = schema
            .get("allOf")
            .and_then(|all| all.get(0))
            .unwrap_or(schema);
        let (Some(props), Some(sample)) = (schema["properties"].as_object(), sample.as_object())
        else {
            return;
        };
        for (key, value) in sample {
            let prop = props
                .get(key)
                .unwrap_or_else(|| panic!("{name}: the type writes {key:?}, the schema lacks it"));
            matches(&format!("{name}.{key}"), prop, value);
        }
        for key in schema["required"].as_array().into_iter().flatten() {
            let key = key.as_str().expect("a key");
            assert!(
                sample.contains_key(key),
                "{name}: {key:?} is required but the type does not write it"
            );
        }
    }

    #[test]
    fn the_event_type_endpoints_and_the_asyncapi_document_are_described() {
        let doc = document("test");
        let list = &doc["paths"]["/api/event-types"]["get"];
        let params: Vec<&str> = list["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(params, ["limit", "cursor"]);
        assert_eq!(
            list["responses"]["200"]["content"]["application/json"]["schema"]["allOf"][1]["properties"]
                ["data"]["items"]["$ref"],
            "#/components/schemas/EventType"
        );
        let one = &doc["paths"]["/api/event-types/{name}"];
        let put = &one["put"];
        assert_eq!(
            put["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/EventTypePut"
        );
        for status in ["200", "201", "400", "401", "409"] {
            assert!(put["responses"][status].is_object(), "PUT answers {status}");
        }
        assert_eq!(put["parameters"][0]["name"], "name");
        assert_eq!(put["security"], json!([{ "adminToken": [] }]));
        assert!(one["get"]["responses"]["404"].is_object());
        assert_eq!(
            one["delete"]["responses"]["200"]["content"]["application/json"]["schema"]["allOf"][1]
                ["properties"]["data"]["$ref"],
            "#/components/schemas/Deleted"
        );
        let asyncapi = &doc["paths"]["/asyncapi.json"]["get"];
        assert_eq!(asyncapi["security"], json!([]), "no token");
        assert_eq!(
            asyncapi["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/AsyncApi",
            "a plain body, not an envelope"
        );
    }

    fn value<T: serde::Serialize>(t: T) -> Value {
        serde_json::to_value(t).expect("serializes")
    }

    #[test]
    fn the_schemas_describe_the_nexus_api_types() {
        let now = Timestamp::now();
        let event_type = EventType::new("PAYMENT_RECEIVED").expect("valid");
        let publish = PublishEvent {
            event_type: event_type.clone(),
            id: Some(EventId::new("pay-1").expect("valid")),
            payload: Some(Value::Null),
            correlation_id: Some(CorrelationId::new("req-1").expect("valid")),
        };
        let filter = nexus_event::When::from_value(&serde_json::json!({"/amount": {"gte": 1}}))
            .expect("valid");
        let ack = Ack {
            id: "pay-1".into(),
            sequence: 1,
            duplicate: false,
        };
        let samples: Vec<(&str, Value)> = vec![
            ("PublishEvent", value(&publish)),
            (
                "PublishBatch",
                value(PublishBatch {
                    events: vec![publish.clone()],
                }),
            ),
            (
                "CloudEvent",
                value(CloudEvent {
                    specversion: "1.0".into(),
                    id: EventId::new("ce-1").expect("valid"),
                    event_type: event_type.clone(),
                    data: Some(Value::Null),
                    data_base64: Some("AA==".into()),
                }),
            ),
            ("Ack", value(&ack)),
            (
                "BatchAck",
                value(BatchAck {
                    events: vec![ack.clone()],
                }),
            ),
            (
                "ListMeta",
                value(ListMeta {
                    next_cursor: Some("c".into()),
                }),
            ),
            (
                "RetryStats",
                value(RetryStats {
                    pending: 1,
                    dead_letters: 2,
                    oldest_retry: Some(now),
                    in_flight: 3,
                }),
            ),
            (
                "DeadLetter",
                value(DeadLetter {
                    id: 1,
                    event_id: "e".into(),
                    event_type: "T".into(),
                    event_sequence: 1,
                    target: "http://h:1".into(),
                    subscription_id: Some("s".into()),
                    reactor: None,
                    attempts: 6,
                    last_error: "boom".into(),
                    last_status: Some(500),
                    created_at: now,
                    first_attempt_at: Some(now),
                    failed_at: now,
                    payload: Value::Null,
                }),
            ),
            ("IdsSelection", value(IdsSelection::ids([1]))),
            (
                "Breaker",
                value(Breaker {
                    target: "http://h:1".into(),
                    state: BreakerState::HalfOpen,
                    consecutive_failures: 0,
                    trips: 1,
                    opened_at: Some(now),
                    next_trial_at: Some(now),
                }),
            ),
            (
                "NewSubscription",
                value(NewSubscription {
                    url: "https://x/".into(),
                    events: vec!["*".into()],
                    secret: Some("a-secret-of-24-bytes-ok!".into()),
                    ordered: true,
                    filter: Some(filter.clone()),
                }),
            ),
            (
                "SubscriptionPatch",
                value(SubscriptionPatch {
                    url: Some("https://x/".into()),
                    events: Some(vec!["*".into()]),
                    secret: Some("a-secret-of-24-bytes-ok!".into()),
                    ordered: Some(true),
                    enabled: Some(true),
                    filter: Some(Some(filter.clone())),
                }),
            ),
            (
                "Subscription",
                value(Subscription {
                    id: "s".into(),
                    url: "https://x/".into(),
                    events: vec!["*".into()],
                    ordered: false,
                    enabled: true,
                    filter: Some(filter),
                    created_at: now,
                    secret: Some("whsec_x".into()),
                    stats: SubscriptionStats {
                        delivered: 1,
                        failed: 2,
                        pending: 3,
                        dead: 4,
                    },
                }),
            ),
            (
                "Delivery",
                value(Delivery {
                    id: 1,
                    event_id: "e".into(),
                    subscription_id: Some("s".into()),
                    reactor: None,
                    target: "http://h:1".into(),
                    state: DeliveryState::Pending,
                    attempts: vec![Attempt {
                        at: now,
                        duration_ms: 3,
                        status: Some(503),
                        error: Some("HTTP 503".into()),
                    }],
                    next_attempt_at: Some(now),
                    created_at: now,
                }),
            ),
            (
                "TestSend",
                value(TestSend {
                    status: Some(204),
                    error: None,
                    duration_ms: 2,
                }),
            ),
            (
                "Replay",
                value(Replay {
                    after: 1,
                    until: Some(2),
                    types: Some(vec!["*".into()]),
                    target: "reactors".into(),
                }),
            ),
            (
                "Node",
                value(Node {
                    name: "flowpay".into(),
                    publish: vec!["*".into()],
                    webhook: Some(NodeWebhook {
                        event_type: "PAYMENT_RECEIVED".into(),
                        id_pointer: Some("/id".into()),
                    }),
                }),
            ),
            (
                "Reactor",
                value(Reactor {
                    name: "mint".into(),
                    on: "PAYMENT_*".into(),
                    when: serde_json::Map::new(),
                    call: ReactorCall {
                        method: "POST".into(),
                        url: "http://h:1/mint".into(),
                        timeout_ms: 10_000,
                    },
                    emit_on_success: Some("MINT_REQUESTED".into()),
                    emit_on_failure: None,
                }),
            ),
            (
                "Health",
                value(Health {
                    status: HealthStatus::Ready,
                }),
            ),
            (
                "EventType",
                value(ApiEventType {
                    name: "PAYMENT_RECEIVED".into(),
                    description: "A customer paid.".into(),
                    schema: Some(json!({"type": "object"})),
                    examples: vec![json!({})],
                    deprecated: false,
                    created_at: now,
                    updated_at: now,
                }),
            ),
            (
                "EventTypePut",
                value(EventTypePut {
                    description: "A customer paid.".into(),
                    schema: Some(json!({"type": "object"})),
                    examples: vec![json!({})],
                    deprecated: true,
                }),
            ),
            (
                "AsyncApi",
                crate::asyncapi::document(
                    &[],
                    crate::asyncapi::Info {
                        version: "1",
                        base_url: None,
                    },
                ),
            ),
            ("Deleted", value(Deleted { deleted: 1 })),
            ("Redriven", value(Redriven { redriven: 1 })),
            ("Reset", value(Reset { reset: 1 })),
            ("Enqueued", value(Enqueued { enqueued: 1 })),
            (
                "HealthDetailed",
                value(HealthDetailed {
                    status: HealthStatus::Ok,
                    version: "0.1.0".into(),
                    uptime_seconds: 1,
                    database: DatabaseHealth {
                        size_bytes: Some(1),
                    },
                    retry: RetryHealth {
                        pending: Some(0),
                        dead_letters: Some(0),
                    },
                    breakers: BreakersHealth {
                        open: 0,
                        half_open: 0,
                    },
                    websocket: WebSocketHealth { connections: 0 },
                    memory: MemoryHealth { rss_bytes: Some(1) },
                    store: Some(StoreHealth {
                        kind: StoreKind::Postgres,
                    }),
                    instances: Some(2),
                }),
            ),
            (
                "Instance",
                value(Instance {
                    id: "01938a6e-7f3a-7c2e-9b1d-5e8f2a4c6d10".into(),
                    host: "node-1".into(),
                    started_at: now,
                    last_seen_at: now,
                    version: "0.1.0".into(),
                }),
            ),
            (
                "Event",
                value(Event {
                    id: EventId::new("e").expect("valid"),
                    event_type,
                    source: "flowpay".into(),
                    sequence: 1,
                    time: now,
                    payload: Value::Null,
                    correlation_id: None,
                }),
            ),
        ];
        let doc = document("test");
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        for (name, sample) in &samples {
            let schema = schemas
                .get(*name)
                .unwrap_or_else(|| panic!("no schema {name}"));
            matches(name, schema, sample);
        }
        // Every schema an endpoint names exists.
        for ep in ENDPOINTS {
            for name in ep.request.into_iter().chain(ep.data) {
                let name = name.trim_start_matches('[').trim_end_matches(']');
                assert!(schemas.contains_key(name), "{} names {name}", ep.path);
            }
        }
    }
}
