//! `POST /events`, `POST /events/batch`, `POST /webhook/{node}` (API.md section 2).

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use nexus_api::publish::{
    Ack, BatchAck, CLOUDEVENTS_SPEC_VERSION, CloudEvent, PublishBatch, PublishEvent,
};
use nexus_event::{CorrelationId, EventId, EventType, NewEvent, Timestamp};
use nexus_store::Appended;
use serde_json::{Map, Value};

use crate::app::AppState;
use crate::auth::{self, Verified};
use crate::envelope::{ApiError, ok};
use crate::extract::{Path, typed};
use crate::intake::{self, Intake};
use crate::metric_names;

/// Most events in one batch.
pub const MAX_BATCH: usize = 1000;

/// Reads the whole body, refusing more than `limit` bytes with `413`: at once when the body
/// declares a longer length (`Content-Length`), before a byte is read or `100 Continue` sent.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let declared = axum::body::HttpBody::size_hint(&body).lower();
    if declared > limit as u64 {
        return Err(ApiError::too_large(format!(
            "the body is {declared} bytes, more than the limit of {limit}"
        )));
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // `to_bytes` fails for an over-long body or a broken connection; only the first is
        // the caller's business as 413.
        if over_limit(&e) {
            ApiError::too_large(format!("the body is larger than {limit} bytes"))
        } else {
            ApiError::bad_request(format!("cannot read the body: {e}"))
        }
    })
}

/// Whether a body error is the size limit's, found by type anywhere in the chain.
fn over_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(cause) = next {
        if cause.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        next = cause.source();
    }
    false
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

fn is_json(ct: &str) -> bool {
    ct == "application/json" || (ct.starts_with("application/") && ct.ends_with("+json"))
}

/// JSON as every parser reads it the same way: no duplicate keys, no integer beyond 64 bits
/// ([`crate::json`]).
fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    crate::json::parse(body)
}

/// What `POST /events` carries, told by its headers before the body is read.
#[derive(Debug, Clone, Copy)]
enum Form {
    /// `{type, payload?, id?, correlation_id?}` as `application/json`.
    Plain,
    /// A structured-mode CloudEvent (`application/cloudevents+json`).
    Structured,
    /// A binary-mode CloudEvent (`ce-*` headers; JSON or text data).
    Binary,
}

fn form(headers: &HeaderMap) -> Result<Form, ApiError> {
    let ct = content_type(headers);
    if headers.contains_key("ce-specversion") {
        // Without a content type only an empty body is accepted, which the body tells.
        return match ct.as_deref() {
            None => Ok(Form::Binary),
            Some(ct) if is_json(ct) || ct.starts_with("text/") => Ok(Form::Binary),
            Some(_) => Err(ApiError::unsupported_media_type(
                "binary CloudEvents data must be JSON or text",
            )),
        };
    }
    match ct.as_deref() {
        Some("application/cloudevents+json") => Ok(Form::Structured),
        Some(ct) if is_json(ct) => Ok(Form::Plain),
        _ => Err(ApiError::unsupported_media_type(
            "Content-Type must be application/json or application/cloudevents+json",
        )),
    }
}

fn json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    if content_type(headers).is_some_and(|ct| is_json(&ct)) {
        Ok(())
    } else {
        Err(ApiError::unsupported_media_type(
            "Content-Type must be application/json",
        ))
    }
}

/// Everything an ingress request's headers can be refused for, checked before its body is
/// read (API.md section 2; [`crate::intake`]): a declared length over `limit` (`413`), the node,
/// the signature headers and the timestamp window (`401`), the content coding (`415`). A
/// refused request's body that the client sends anyway is dropped ([`intake::discard`]) before
/// the answer. Then the body is read within the budget and its signature checked.
/// `route` checks what else the route can tell from the headers (its content type, say) once
/// the caller is known, and gives what it found.
async fn admit_body<T>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    path_node: Option<&str>,
    limit: usize,
    route: impl FnOnce() -> Result<T, ApiError>,
) -> Result<(Verified, Intake, T), ApiError> {
    let checked = (|| {
        let declared = intake::declared_length(headers, limit)?;
        let signed = auth::precheck(&state.config.nodes, headers, path_node, now_secs())?;
        let found = route()?;
        let coding = intake::coding(headers)?;
        Ok((declared, signed, found, coding))
    })();
    let (declared, signed, found, coding) = match checked {
        Ok(checked) => checked,
        Err(e) => {
            intake::discard(headers, body).await;
            return Err(e);
        }
    };
    let body = intake::read(&state.bodies, body, declared, coding, limit).await?;
    let verified = signed.verify(&body)?;
    Ok((verified, body, found))
}

fn now_secs() -> i64 {
    Timestamp::now().as_unix_secs()
}

/// The parts of an event a publisher may give.
struct Incoming {
    id: Option<EventId>,
    event_type: EventType,
    payload: Value,
    correlation_id: Option<CorrelationId>,
}

/// `{type, payload?, id?, correlation_id?}`; other keys (such as `source`) are ignored. An
/// explicit `"payload": null` is kept as `null`; `{}` only stands in for a payload left out.
fn plain_event(value: Value) -> Result<Incoming, ApiError> {
    let event: PublishEvent = typed(value, PublishEvent::REQUIRED, "an event")?;
    Ok(Incoming {
        id: event.id,
        event_type: event.event_type,
        payload: event.payload.unwrap_or_else(|| Value::Object(Map::new())),
        correlation_id: event.correlation_id,
    })
}

/// A structured-mode CloudEvent: `id` -> id, `type` -> type, `data` -> payload (an explicit
/// `null` kept), `data_base64` as its string when there is no `data`.
fn cloud_event(value: Value) -> Result<Incoming, ApiError> {
    let ce: CloudEvent = typed(value, CloudEvent::REQUIRED, "a CloudEvent")?;
    if ce.specversion != CLOUDEVENTS_SPEC_VERSION {
        return Err(ApiError::validation(
            "specversion",
            format!(
                "specversion {:?} is not {CLOUDEVENTS_SPEC_VERSION}",
                ce.specversion
            ),
        ));
    }
    let payload = match (ce.data, ce.data_base64) {
        (Some(data), _) => data,
        (None, Some(b64)) => Value::String(b64),
        (None, None) => Value::Object(Map::new()),
    };
    Ok(Incoming {
        id: Some(ce.id),
        event_type: ce.event_type,
        payload,
        correlation_id: None,
    })
}

/// A binary-mode CloudEvent: attributes in `ce-*` headers, the body is the data.
fn binary_cloud_event(headers: &HeaderMap, body: &[u8]) -> Result<Incoming, ApiError> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if get("ce-specversion") != Some(CLOUDEVENTS_SPEC_VERSION) {
        return Err(ApiError::validation(
            "specversion",
            "ce-specversion must be 1.0",
        ));
    }
    let id = get("ce-id")
        .ok_or_else(|| ApiError::validation("id", "ce-id is required"))
        .and_then(|id| EventId::new(id).map_err(ApiError::from))?;
    let event_type = get("ce-type")
        .ok_or_else(|| ApiError::validation("type", "ce-type is required"))
        .and_then(|t| EventType::new(t).map_err(ApiError::from))?;
    let payload = if body.is_empty() {
        Value::Object(Map::new())
    } else {
        match content_type(headers).as_deref() {
            Some(ct) if is_json(ct) => parse_json(body)?,
            Some(ct) if ct.starts_with("text/") => Value::String(
                String::from_utf8(body.to_vec())
                    .map_err(|_| ApiError::bad_request("a text body must be UTF-8"))?,
            ),
            _ => {
                return Err(ApiError::unsupported_media_type(
                    "binary CloudEvents data must be JSON or text",
                ));
            }
        }
    };
    Ok(Incoming {
        id: Some(id),
        event_type,
        payload,
        correlation_id: None,
    })
}

/// What the headers and body of `POST /events` hold: a binary-mode CloudEvent when
/// `ce-specversion` is there, else a structured CloudEvent or a plain event by content type.
fn incoming(headers: &HeaderMap, body: &[u8]) -> Result<Incoming, ApiError> {
    incoming_as(form(headers)?, headers, body)
}

/// The event of a `POST /events` body of a form already told from its headers.
fn incoming_as(form: Form, headers: &HeaderMap, body: &[u8]) -> Result<Incoming, ApiError> {
    match form {
        Form::Binary => binary_cloud_event(headers, body),
        Form::Structured => cloud_event(parse_json(body)?),
        Form::Plain => plain_event(parse_json(body)?),
    }
}

/// The events of a `POST /events/batch` body, 1 to [`MAX_BATCH`], each still a JSON value: each
/// is read on its own, so a refusal carries its index.
fn batch_values(body: &[u8]) -> Result<Vec<Value>, ApiError> {
    let PublishBatch { events } =
        typed::<PublishBatch<Value>>(parse_json(body)?, PublishBatch::REQUIRED, "the body")?;
    if events.is_empty() {
        return Err(ApiError::validation(
            "events",
            "a batch needs 1 to 1000 events",
        ));
    }
    if events.len() > MAX_BATCH {
        return Err(ApiError::too_large(format!(
            "a batch holds at most {MAX_BATCH} events, got {}",
            events.len()
        )));
    }
    Ok(events)
}

/// The parsing steps of ingress without the signature, the node, the catalogue or the store, for
/// the fuzz targets in `fuzz/` (README, "Fuzzing"). Not an API: it follows the handlers.
#[doc(hidden)]
pub mod fuzzing {
    use axum::http::HeaderMap;
    use nexus_event::{EventId, EventType};
    use serde_json::Value;

    use crate::envelope::ApiError;

    /// An event as read from a request: its id when it gave one, its type and its payload.
    pub type Parsed = (Option<EventId>, EventType, Value);

    fn parsed(incoming: super::Incoming) -> Parsed {
        (incoming.id, incoming.event_type, incoming.payload)
    }

    /// `POST /events`: plain, structured CloudEvents or binary CloudEvents by the headers.
    pub fn publish(headers: &HeaderMap, body: &[u8]) -> Result<Parsed, ApiError> {
        super::incoming(headers, body).map(parsed)
    }

    /// `POST /events/batch` (the content type aside), as the handler reads it: each event in
    /// turn, a refusal naming its index.
    pub fn batch(body: &[u8]) -> Result<Vec<Parsed>, ApiError> {
        super::batch_values(body)?
            .into_iter()
            .enumerate()
            .map(|(index, value)| {
                super::plain_event(value)
                    .map(parsed)
                    .map_err(|e| e.at_index(index))
            })
            .collect()
    }
}

/// Turns what a node sent into a draft: the node is the source, permissions are checked.
fn draft(
    verified: &Verified,
    incoming: Incoming,
    fallback_id: Option<&str>,
) -> Result<NewEvent, ApiError> {
    if !verified.node.publish.matches(&incoming.event_type) {
        return Err(ApiError::forbidden(format!(
            "node {} may not publish {}",
            verified.node.name, incoming.event_type
        )));
    }
    let id = match (incoming.id, fallback_id) {
        (Some(id), _) => id,
        (None, Some(fallback)) => EventId::new(fallback).map_err(|_| {
            ApiError::validation(
                "id",
                "webhook-id is not a valid event id (1 to 128 visible ASCII characters)",
            )
        })?,
        (None, None) => EventId::new_v7(),
    };
    let mut draft = NewEvent::new(incoming.event_type, verified.node.name.clone())
        .id(id)
        .payload(incoming.payload);
    draft.correlation_id = incoming.correlation_id;
    Ok(draft)
}

/// Checks a draft against the event-type catalogue (API.md section 11): `Ok(true)` when its type
/// is deprecated, a `400 VALIDATION_ERROR` when its type is undeclared (and declared types are
/// required) or its payload fails the type's schema.
fn admit(state: &AppState, draft: &NewEvent) -> Result<bool, ApiError> {
    state
        .catalog
        .check(&draft.event_type, &draft.payload)
        .map(|accepted| accepted.deprecated)
        .map_err(ApiError::from)
}

/// The answer, with `Deprecation: true` when an event's type is deprecated.
fn answer<T: serde::Serialize>(data: T, appended: &[Appended], deprecated: bool) -> Response {
    let mut response = ok(data).status(status_of(appended)).into_response();
    if deprecated {
        response.headers_mut().insert(
            axum::http::HeaderName::from_static("deprecation"),
            axum::http::HeaderValue::from_static("true"),
        );
    }
    response
}

fn ack(a: &Appended) -> Ack {
    Ack {
        id: a.id.to_string(),
        sequence: a.sequence,
        duplicate: a.duplicate,
    }
}

async fn commit(state: &AppState, drafts: Vec<NewEvent>) -> Result<Vec<Appended>, ApiError> {
    if !state.accepting() {
        return Err(ApiError::unavailable("the server is shutting down"));
    }
    let types: Vec<(String, String)> = drafts
        .iter()
        .map(|d| (d.event_type.to_string(), d.source.clone()))
        .collect();
    let started = Instant::now();
    let appended = state.store.try_append(drafts).await.map_err(|e| match e {
        nexus_store::StoreError::Conflict { index, .. }
        | nexus_store::StoreError::DuplicateInBatch { index, .. } => {
            ApiError::from(e).at_index(index)
        }
        other => ApiError::from(other),
    })?;
    metrics::histogram!(metric_names::EVENT_PERSIST_DURATION_SECONDS)
        .record(started.elapsed().as_secs_f64());
    for (a, (event_type, source)) in appended.iter().zip(types) {
        if !a.duplicate {
            metrics::counter!(metric_names::EVENTS_TOTAL, "event_type" => event_type, "source" => source).increment(1);
        }
    }
    Ok(appended)
}

fn status_of(appended: &[Appended]) -> StatusCode {
    if appended.iter().all(|a| a.duplicate) {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    }
}

/// `POST /events`.
pub(crate) async fn publish(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = state.config.max_body_bytes;
    let (verified, body, kind) =
        admit_body(&state, &headers, body, None, limit, || form(&headers)).await?;
    let incoming = incoming_as(kind, &headers, &body)?;
    let draft = draft(&verified, incoming, verified.webhook_id.as_deref())?;
    let deprecated = admit(&state, &draft)?;
    let appended = commit(&state, vec![draft]).await?;
    Ok(answer(ack(&appended[0]), &appended, deprecated))
}

/// `POST /events/batch`.
pub(crate) async fn publish_batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = state.config.max_body_bytes.saturating_mul(16);
    let (verified, body, ()) = admit_body(&state, &headers, body, None, limit, || {
        json_content_type(&headers)
    })
    .await?;
    let events = batch_values(&body)?;
    let mut drafts = Vec::with_capacity(events.len());
    let mut deprecated = false;
    for (index, value) in events.into_iter().enumerate() {
        let incoming = plain_event(value).map_err(|e| e.at_index(index))?;
        let draft = draft(&verified, incoming, None).map_err(|e| e.at_index(index))?;
        deprecated |= admit(&state, &draft).map_err(|e| e.at_index(index))?;
        drafts.push(draft);
    }
    let appended = commit(&state, drafts).await?;
    let events = appended.iter().map(ack).collect();
    Ok(answer(BatchAck { events }, &appended, deprecated))
}

/// How a node's own webhook payload becomes an event.
#[derive(Debug, Clone)]
pub struct WebhookMapping {
    /// The node.
    pub node: String,
    /// The type of the event it becomes.
    pub event_type: EventType,
    /// A JSON pointer into the body whose value is the event id (for deduplication).
    pub id_pointer: Option<String>,
}

/// `POST /webhook/{node}`.
pub(crate) async fn webhook(
    State(state): State<AppState>,
    Path(node): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = state.config.max_body_bytes;
    let (verified, body, mapping) = admit_body(&state, &headers, body, Some(&node), limit, || {
        let mapping = state
            .config
            .webhook_mapping(&node)
            .ok_or_else(|| ApiError::not_found(format!("node {node:?} has no webhook mapping")))?;
        json_content_type(&headers)?;
        Ok(mapping)
    })
    .await?;
    let payload = parse_json(&body)?;
    let id = match mapping
        .id_pointer
        .as_deref()
        .and_then(|p| payload.pointer(p))
    {
        Some(Value::String(s)) => Some(EventId::new(s).map_err(|_| {
            ApiError::validation(
                "id",
                format!(
                    "the value at {} is not a valid event id",
                    mapping.id_pointer.as_deref().unwrap_or("")
                ),
            )
        })?),
        Some(Value::Number(n)) => Some(EventId::new(&n.to_string())?),
        Some(_) => {
            return Err(ApiError::validation(
                "id",
                format!(
                    "the value at {} must be a string or a number",
                    mapping.id_pointer.as_deref().unwrap_or("")
                ),
            ));
        }
        None => None,
    };
    let incoming = Incoming {
        id,
        event_type: mapping.event_type.clone(),
        payload,
        correlation_id: None,
    };
    let draft = draft(&verified, incoming, verified.webhook_id.as_deref())?;
    let deprecated = admit(&state, &draft)?;
    let appended = commit(&state, vec![draft]).await?;
    Ok(answer(ack(&appended[0]), &appended, deprecated))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzz targets' entry points read requests as the handlers do.
    #[test]
    fn the_fuzzing_entry_points_parse_as_the_handlers_do() {
        let mut headers = HeaderMap::new();
        headers.insert("ce-specversion", "1.0".parse().expect("header"));
        headers.insert("ce-id", "b-1".parse().expect("header"));
        headers.insert("ce-type", "NOTE".parse().expect("header"));
        headers.insert("content-type", "text/plain".parse().expect("header"));
        let (id, event_type, payload) = fuzzing::publish(&headers, b"hello").expect("binary");
        assert_eq!(id.map(|i| i.to_string()).as_deref(), Some("b-1"));
        assert_eq!(event_type.as_str(), "NOTE");
        assert_eq!(payload, Value::String("hello".into()));

        let mut plain = HeaderMap::new();
        plain.insert("content-type", "application/json".parse().expect("header"));
        let (id, _, payload) =
            fuzzing::publish(&plain, br#"{"type":"T","payload":null}"#).expect("plain");
        assert!(id.is_none());
        assert_eq!(payload, Value::Null);
        let refused = fuzzing::publish(&HeaderMap::new(), b"{}").expect_err("no content type");
        assert_eq!(refused.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

        let events = fuzzing::batch(br#"{"events":[{"type":"A"},{"type":"B"}]}"#).expect("batch");
        assert_eq!(events.len(), 2);
        let bad = fuzzing::batch(br#"{"events":[{"type":"A"},{"type":"not a type"}]}"#)
            .expect_err("second event");
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        let index = bad.details.as_ref().and_then(|d| d.get("index"));
        assert_eq!(index, Some(&Value::from(1)), "{bad:?}");
        let empty = fuzzing::batch(br#"{"events":[]}"#).expect_err("empty");
        assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn an_over_long_body_is_413_by_type_and_a_broken_one_is_400() {
        let too_long = read_body(Body::from(vec![b'x'; 11]), 10)
            .await
            .expect_err("over the limit");
        assert_eq!(too_long.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            read_body(Body::from(vec![b'x'; 10]), 10).await.ok(),
            Some(Bytes::from(vec![b'x'; 10]))
        );
        // A broken stream whose message happens to read like the limit's is still no 413.
        let broken = Body::from_stream(futures_util::stream::iter([
            Ok(Bytes::from_static(b"{")),
            Err(std::io::Error::other("length limit exceeded upstream")),
        ]));
        let e = read_body(broken, 1024).await.expect_err("broken");
        assert_eq!(e.status, StatusCode::BAD_REQUEST, "{}", e.message);
    }
}
