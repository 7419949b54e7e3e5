//! A stand-in for the event-type catalogue of API.md section 11 (`/api/event-types`), on a
//! loopback port, for the client and CLI tests of the catalogue calls. It follows the section
//! to the letter (admin token, the envelope, paging with `limit` and `cursor`, `201` on
//! creation and `200` on replacement, `400 VALIDATION_ERROR` with `details.field` for a schema
//! that does not compile or an example that does not match, `409 CONFLICT` for a type of the
//! config file, `404` for an unknown one), so the tests hold the client to the contract, not to
//! one server's code.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use nexus_api::event_types::{EventType, EventTypePut};
use nexus_event::Timestamp;
use serde_json::{Value, json};

use super::server::ADMIN;

/// The name of the type the stub's "config file" declares: the API may not change it.
pub const CONFIG_TYPE: &str = "CONFIG_DECLARED";

type Types = Arc<Mutex<BTreeMap<String, EventType>>>;

pub struct CatalogueStub {
    pub base: String,
    types: Types,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _rt: tokio::runtime::Runtime,
}

impl Drop for CatalogueStub {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl CatalogueStub {
    /// A catalogue holding only [`CONFIG_TYPE`].
    pub fn start() -> Self {
        let now = Timestamp::now();
        let mut types = BTreeMap::new();
        types.insert(
            CONFIG_TYPE.to_owned(),
            EventType {
                name: CONFIG_TYPE.to_owned(),
                description: "declared in the config file".into(),
                schema: None,
                examples: vec![],
                deprecated: false,
                created_at: now,
                updated_at: now,
            },
        );
        let types: Types = Arc::new(Mutex::new(types));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = Router::new()
            .route("/api/event-types", get(list))
            .route("/api/event-types/{name}", get(one).put(put).delete(delete))
            .with_state(Arc::clone(&types));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        CatalogueStub {
            base: format!("http://{addr}"),
            types,
            shutdown: Some(tx),
            _rt: rt,
        }
    }

    /// The names it holds.
    pub fn names(&self) -> Vec<String> {
        self.types.lock().expect("lock").keys().cloned().collect()
    }
}

fn success(status: StatusCode, data: Value, meta: Option<Value>) -> Response {
    let mut body = json!({ "success": true, "data": data,
        "timestamp": Timestamp::now().to_string(), "requestId": "stub-request" });
    if let Some(meta) = meta {
        body["meta"] = meta;
    }
    (status, Json(body)).into_response()
}

fn failure(status: StatusCode, code: &str, message: &str, details: Option<Value>) -> Response {
    let mut error = json!({ "code": code, "message": message });
    if let Some(details) = details {
        error["details"] = details;
    }
    let body = json!({ "success": false, "error": error,
        "timestamp": Timestamp::now().to_string(), "requestId": "stub-request" });
    (status, [("x-request-id", "stub-request")], Json(body)).into_response()
}

fn invalid(field: &str, message: &str) -> Response {
    failure(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        message,
        Some(json!({ "field": field })),
    )
}

/// The refusal of a request without the admin token, if it lacks it.
fn unauthorized(headers: &HeaderMap) -> Option<Response> {
    let expected = format!("Bearer {ADMIN}");
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        Some(v) if v == expected => None,
        _ => Some(failure(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "missing or wrong admin token",
            None,
        )),
    }
}

async fn list(
    State(types): State<Types>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(refused) = unauthorized(&headers) {
        return refused;
    }
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 100,
        Some(Ok(l)) if (1..=1000).contains(&l) => l,
        Some(_) => return invalid("limit", "limit must be 1 to 1000"),
    };
    let types = types.lock().expect("lock");
    let after = q.get("cursor").cloned().unwrap_or_default();
    let rest: Vec<&EventType> = types
        .values()
        .filter(|t| after.is_empty() || t.name > after)
        .collect();
    let page: Vec<&EventType> = rest.iter().take(limit).copied().collect();
    let next = (rest.len() > limit).then(|| page.last().map(|t| t.name.clone()));
    success(
        StatusCode::OK,
        json!(page),
        Some(json!({ "nextCursor": next.flatten() })),
    )
}

async fn one(State(types): State<Types>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    if let Some(refused) = unauthorized(&headers) {
        return refused;
    }
    match types.lock().expect("lock").get(&name) {
        Some(t) => success(StatusCode::OK, json!(t), None),
        None => failure(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "no such event type",
            None,
        ),
    }
}

async fn put(
    State(types): State<Types>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(refused) = unauthorized(&headers) {
        return refused;
    }
    if nexus_event::EventType::new(&name).is_err() {
        return invalid("name", "not a valid event type name");
    }
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return failure(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "the body is not JSON",
            None,
        );
    };
    let put: EventTypePut = match serde_json::from_value(value) {
        Ok(put) => put,
        Err(e) => return invalid("body", &e.to_string()),
    };
    if let Some(schema) = &put.schema {
        let validator = match jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(schema)
        {
            Ok(v) => v,
            Err(e) => return invalid("schema", &format!("the schema does not compile: {e}")),
        };
        for (i, example) in put.examples.iter().enumerate() {
            if let Err(e) = validator.validate(example) {
                return invalid(&format!("examples/{i}"), &e.to_string());
            }
        }
    }
    let mut types = types.lock().expect("lock");
    if name == CONFIG_TYPE {
        return failure(
            StatusCode::CONFLICT,
            "CONFLICT",
            "declared in the config file",
            None,
        );
    }
    let now = Timestamp::now();
    let created_at = types.get(&name).map(|t| t.created_at);
    let declared = EventType {
        name: name.clone(),
        description: put.description,
        schema: put.schema,
        examples: put.examples,
        deprecated: put.deprecated,
        created_at: created_at.unwrap_or(now),
        updated_at: now,
    };
    types.insert(name, declared.clone());
    let status = if created_at.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    success(status, json!(declared), None)
}

async fn delete(
    State(types): State<Types>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Some(refused) = unauthorized(&headers) {
        return refused;
    }
    let mut types = types.lock().expect("lock");
    if name == CONFIG_TYPE {
        return failure(
            StatusCode::CONFLICT,
            "CONFLICT",
            "declared in the config file",
            None,
        );
    }
    match types.remove(&name) {
        Some(_) => success(StatusCode::OK, json!({ "deleted": 1 }), None),
        None => failure(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "no such event type",
            None,
        ),
    }
}
