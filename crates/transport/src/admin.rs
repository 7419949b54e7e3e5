//! The admin API (API.md section 6), behind `Authorization: Bearer <NEXUS_ADMIN_TOKEN>`.

use std::collections::HashMap;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nexus_event::{EventId, Pattern, Timestamp, TypeFilter};
use nexus_outbound::refuse_private;
use nexus_resilience::BreakerSnapshot;
use nexus_store::{
    Consumer, DeadLetter, MAX_PAGE, NewSubscription, ReplayTo, Selection, Subscription,
    SubscriptionPatch,
};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::app::AppState;
use crate::auth::{self, Secret};
use crate::envelope::{ApiError, ok, page};
use crate::ingress::read_body;

pub(crate) fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/api/retry/stats", get(retry_stats))
        .route(
            "/api/retry/dead-letters",
            get(dead_letters).delete(delete_dead_letters),
        )
        .route("/api/retry/dead-letters/redrive", post(redrive))
        .route("/api/breakers", get(breakers))
        .route("/api/breakers/{target}/reset", post(reset_breaker))
        .route(
            "/api/subscriptions",
            get(list_subscriptions).post(create_subscription),
        )
        .route(
            "/api/subscriptions/{id}",
            get(get_subscription)
                .patch(update_subscription)
                .delete(delete_subscription),
        )
        .route("/api/events", get(list_events))
        .route("/api/events/{id}", get(get_event))
        .route("/api/replay", post(replay))
        .route("/api/nodes", get(nodes))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin))
}

async fn require_admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if auth::bearer(request.headers(), &[&state.config.admin_token]).is_none() {
        return ApiError::unauthorized("the admin API needs Authorization: Bearer <admin token>")
            .into_response();
    }
    next.run(request).await
}

/// Query parameters, parsed by hand so each bad one is named in the error.
struct Query(HashMap<String, String>);

impl Query {
    fn parse(raw: Option<String>, allowed: &[&str]) -> Result<Query, ApiError> {
        let mut map = HashMap::new();
        for pair in raw
            .as_deref()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_decode(k);
            if !allowed.contains(&k.as_str()) {
                return Err(ApiError::validation(
                    &k,
                    format!("unknown query parameter {k:?}"),
                ));
            }
            map.insert(k, percent_decode(v));
        }
        Ok(Query(map))
    }

    fn limit(&self) -> Result<usize, ApiError> {
        match self.0.get("limit") {
            None => Ok(100),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
                _ => Err(ApiError::validation(
                    "limit",
                    format!("limit must be 1 to {MAX_PAGE}, got {v:?}"),
                )),
            },
        }
    }

    fn u64(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.0
            .get(name)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    ApiError::validation(
                        name,
                        format!("{name} must be a sequence number, got {v:?}"),
                    )
                })
            })
            .transpose()
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A JSON object body (admin calls take small bodies).
async fn object_body(state: &AppState, body: Body) -> Result<Map<String, Value>, ApiError> {
    let bytes = read_body(body, state.config.max_body_bytes).await?;
    if bytes.is_empty() {
        return Err(ApiError::validation(
            "body",
            "a JSON object body is required",
        ));
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::validation(
            "body",
            "the body must be a JSON object",
        )),
        Err(e) => Err(ApiError::bad_request(format!(
            "the body is not valid JSON: {e}"
        ))),
    }
}

fn only_keys(map: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::validation(k, format!("unknown field {k:?}"))),
        None => Ok(()),
    }
}

fn rfc3339(t: Option<Timestamp>) -> Value {
    t.map_or(Value::Null, |t| Value::String(t.to_string()))
}

async fn retry_stats(State(state): State<AppState>) -> Result<Response, ApiError> {
    let s = state.store.stats().await?;
    Ok(ok(json!({
        "pending": s.pending,
        "deadLetters": s.dead_letters,
        "oldestRetry": rfc3339(s.oldest_retry),
        "inFlight": s.in_flight,
    }))
    .into_response())
}

fn dead_letter_json(d: DeadLetter) -> Value {
    let (subscription, reactor) = match d.consumer {
        Consumer::Subscription(id) => (Value::String(id), Value::Null),
        Consumer::Reactor(name) => (Value::Null, Value::String(name)),
    };
    json!({
        "id": d.id,
        "eventId": d.event_id,
        "eventType": d.event_type,
        "eventSequence": d.event_sequence,
        "target": d.target,
        "subscriptionId": subscription,
        "reactor": reactor,
        "attempts": d.attempts,
        "lastError": d.last_error,
        "lastStatus": d.last_status,
        "createdAt": d.created_at,
        "firstAttemptAt": rfc3339(d.first_attempt_at),
        "failedAt": d.failed_at,
        "payload": d.payload,
    })
}

async fn dead_letters(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(q, &["limit", "cursor"])?;
    let p = state
        .store
        .dead_letters(q.limit()?, q.get("cursor"))
        .await?;
    Ok(page(
        p.items.into_iter().map(dead_letter_json).collect(),
        p.next_cursor,
    )
    .into_response())
}

/// `{"ids": [...]}` or `{}` for all.
fn selection(map: &Map<String, Value>) -> Result<Selection, ApiError> {
    only_keys(map, &["ids"])?;
    match map.get("ids") {
        None => Ok(Selection::All),
        Some(Value::Array(ids)) => ids
            .iter()
            .map(|v| match v {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            })
            .collect::<Option<Vec<i64>>>()
            .map(Selection::Ids)
            .ok_or_else(|| ApiError::validation("ids", "ids must be dead letter ids")),
        Some(_) => Err(ApiError::validation("ids", "ids must be an array")),
    }
}

async fn redrive(State(state): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let which = selection(&object_body(&state, body).await?)?;
    let n = state.store.redrive(which, Timestamp::now()).await?;
    Ok(ok(json!({ "redriven": n })).into_response())
}

async fn delete_dead_letters(
    State(state): State<AppState>,
    body: Body,
) -> Result<Response, ApiError> {
    let which = selection(&object_body(&state, body).await?)?;
    let n = state.store.purge(which).await?;
    Ok(ok(json!({ "deleted": n })).into_response())
}

fn breaker_json(b: BreakerSnapshot) -> Value {
    json!({
        "target": b.target,
        "state": b.state.as_str(),
        "consecutiveFailures": b.consecutive_failures,
        "trips": b.trips,
        "openedAt": rfc3339(b.opened_at),
        "nextTrialAt": rfc3339(b.next_trial_at),
    })
}

async fn breakers(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(q, &["limit", "cursor"])?;
    let limit = q.limit()?;
    let after = q.get("cursor").unwrap_or("");
    let mut all: Vec<BreakerSnapshot> = state
        .breakers
        .snapshot()
        .into_iter()
        .filter(|b| b.target.as_str() > after)
        .collect();
    let next = (all.len() > limit).then(|| all[limit - 1].target.clone());
    all.truncate(limit);
    Ok(page(all.into_iter().map(breaker_json).collect(), next).into_response())
}

async fn reset_breaker(
    State(state): State<AppState>,
    Path(target): Path<String>,
) -> Result<Response, ApiError> {
    if !state.breakers.reset(&target) {
        return Err(ApiError::not_found(format!(
            "no circuit breaker for target {target:?}"
        )));
    }
    if let Some(record) = state.breakers.record_of(&target) {
        state.store.save_breaker(record).await?;
    }
    Ok(ok(json!({ "reset": 1 })).into_response())
}

#[derive(Serialize)]
struct SubscriptionJson {
    id: String,
    url: String,
    events: Vec<String>,
    ordered: bool,
    enabled: bool,
    #[serde(rename = "createdAt")]
    created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

fn subscription_json(s: Subscription, secret: Option<String>) -> SubscriptionJson {
    SubscriptionJson {
        id: s.id,
        url: s.url,
        events: s.events.iter().map(|p| p.as_str().to_owned()).collect(),
        ordered: s.ordered,
        enabled: s.enabled,
        created_at: s.created_at,
        secret,
    }
}

fn patterns(value: &Value) -> Result<Vec<Pattern>, ApiError> {
    let Value::Array(items) = value else {
        return Err(ApiError::validation(
            "events",
            "events must be an array of type globs",
        ));
    };
    if items.is_empty() {
        return Err(ApiError::validation(
            "events",
            "events needs at least one type glob",
        ));
    }
    items
        .iter()
        .map(|v| match v {
            Value::String(s) => {
                Pattern::new(s).map_err(|e| ApiError::validation("events", e.to_string()))
            }
            _ => Err(ApiError::validation("events", "events must be strings")),
        })
        .collect()
}

fn string(map: &Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    match map.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::validation(
            field,
            format!("{field} must be a string"),
        )),
    }
}

fn boolean(map: &Map<String, Value>, field: &str) -> Result<Option<bool>, ApiError> {
    match map.get(field) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::validation(
            field,
            format!("{field} must be true or false"),
        )),
    }
}

fn check_secret(written: &str) -> Result<(), ApiError> {
    if written.is_empty() {
        return Err(ApiError::validation("secret", "secret must not be empty"));
    }
    Secret::parse(written)
        .map(|_| ())
        .map_err(|e| ApiError::validation("secret", e.to_string()))
}

/// Refuses, in production, a URL whose host resolves to a private address (unless allowed).
pub(crate) async fn check_target(state: &AppState, url: &str) -> Result<(), ApiError> {
    if !state.config.production || state.config.allow_private_targets {
        nexus_store::target_origin(url)?;
        return Ok(());
    }
    refuse_private(url)
        .await
        .map_err(|e| ApiError::validation("url", e.to_string()))
}

async fn create_subscription(
    State(state): State<AppState>,
    body: Body,
) -> Result<Response, ApiError> {
    let map = object_body(&state, body).await?;
    only_keys(&map, &["url", "events", "secret", "ordered"])?;
    let url = string(&map, "url")?.ok_or_else(|| ApiError::validation("url", "url is required"))?;
    check_target(&state, &url).await?;
    let events = patterns(
        map.get("events")
            .ok_or_else(|| ApiError::validation("events", "events is required"))?,
    )?;
    let secret = match string(&map, "secret")? {
        Some(s) => {
            check_secret(&s)?;
            s
        }
        None => {
            let (_, written) = Secret::generate().map_err(|_| {
                tracing::error!("the system random generator failed; no secret generated");
                ApiError::internal()
            })?;
            written
        }
    };
    let ordered = boolean(&map, "ordered")?.unwrap_or(false);
    let sub = state
        .store
        .create_subscription(NewSubscription {
            url,
            events,
            secret: secret.clone(),
            ordered,
        })
        .await?;
    Ok(ok(subscription_json(sub, Some(secret)))
        .status(StatusCode::CREATED)
        .into_response())
}

async fn list_subscriptions(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(q, &["limit", "cursor"])?;
    let p = state
        .store
        .subscriptions(q.limit()?, q.get("cursor"))
        .await?;
    Ok(page(
        p.items
            .into_iter()
            .map(|s| subscription_json(s, None))
            .collect(),
        p.next_cursor,
    )
    .into_response())
}

async fn get_subscription(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let sub = state
        .store
        .subscription(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("subscription {id} not found")))?;
    Ok(ok(subscription_json(sub, None)).into_response())
}

async fn update_subscription(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let map = object_body(&state, body).await?;
    only_keys(&map, &["url", "events", "secret", "ordered", "enabled"])?;
    if map.is_empty() {
        return Err(ApiError::validation("body", "nothing to change"));
    }
    let url = string(&map, "url")?;
    if let Some(url) = &url {
        check_target(&state, url).await?;
    }
    let secret = string(&map, "secret")?;
    if let Some(s) = &secret {
        check_secret(s)?;
    }
    let patch = SubscriptionPatch {
        url,
        events: map.get("events").map(patterns).transpose()?,
        secret,
        ordered: boolean(&map, "ordered")?,
        enabled: boolean(&map, "enabled")?,
    };
    let sub = state.store.update_subscription(&id, patch).await?;
    Ok(ok(subscription_json(sub, None)).into_response())
}

async fn delete_subscription(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !state.store.delete_subscription(&id).await? {
        return Err(ApiError::not_found(format!("subscription {id} not found")));
    }
    Ok(ok(json!({ "deleted": 1 })).into_response())
}

async fn list_events(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(q, &["type", "after", "limit", "cursor"])?;
    let limit = q.limit()?;
    let filter = match q.get("type") {
        None | Some("") => TypeFilter::all(),
        Some(t) => TypeFilter::from(
            Pattern::new(t).map_err(|e| ApiError::validation("type", e.to_string()))?,
        ),
    };
    let after = match q.get("cursor") {
        Some(c) => c.parse::<u64>().map_err(|_| {
            ApiError::validation("cursor", format!("{c:?} is not a cursor this list gave"))
        })?,
        None => q.u64("after")?.unwrap_or(0),
    };
    let mut events = state.store.read(after, limit + 1, &filter).await?;
    let next = (events.len() > limit).then(|| events[limit - 1].sequence.to_string());
    events.truncate(limit);
    Ok(page(events, next).into_response())
}

async fn get_event(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id =
        EventId::new(&id).map_err(|_| ApiError::not_found(format!("event {id:?} not found")))?;
    let event = state
        .store
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("event {id} not found")))?;
    Ok(ok(event).into_response())
}

async fn replay(State(state): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let map = object_body(&state, body).await?;
    only_keys(&map, &["after", "until", "types", "target"])?;
    let seq = |field: &str| -> Result<Option<u64>, ApiError> {
        match map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                ApiError::validation(field, format!("{field} must be a sequence number"))
            }),
        }
    };
    let after = seq("after")?.ok_or_else(|| ApiError::validation("after", "after is required"))?;
    let until = seq("until")?;
    if until.is_some_and(|u| u <= after) {
        return Err(ApiError::validation("until", "until must be above after"));
    }
    let filter = match map.get("types") {
        None | Some(Value::Null) => TypeFilter::all(),
        Some(v) => TypeFilter::new(patterns(v).map_err(|e| ApiError {
            details: Some(json!({ "field": "types" })),
            ..e
        })?),
    };
    let to = match string(&map, "target")?.as_deref() {
        None => return Err(ApiError::validation("target", "target is required")),
        Some("reactors") => ReplayTo::Reactors,
        Some(id) => ReplayTo::Subscription(id.to_owned()),
    };
    let n = state
        .store
        .replay(after, until, &filter, to, Timestamp::now())
        .await?;
    Ok(ok(json!({ "enqueued": n }))
        .status(StatusCode::ACCEPTED)
        .into_response())
}

async fn nodes(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let q = Query::parse(q, &["limit", "cursor"])?;
    let limit = q.limit()?;
    let after = q.get("cursor").unwrap_or("");
    let mut nodes: Vec<_> = state
        .config
        .nodes
        .list()
        .into_iter()
        .filter(|n| n.name.as_str() > after)
        .collect();
    let next = (nodes.len() > limit).then(|| nodes[limit - 1].name.clone());
    nodes.truncate(limit);
    let list: Vec<Value> = nodes
        .into_iter()
        .map(|n| {
            let publish: Vec<&str> = if n.publish.is_all() {
                vec!["*"]
            } else {
                n.publish.patterns().iter().map(Pattern::as_str).collect()
            };
            let webhook = state
                .config
                .webhook_mapping(&n.name)
                .map(|m| json!({ "eventType": m.event_type, "idPointer": m.id_pointer }));
            json!({ "name": n.name, "publish": publish, "webhook": webhook })
        })
        .collect();
    Ok(page(list, next).into_response())
}
