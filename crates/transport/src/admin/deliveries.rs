//! The delivery history and test sends (API.md section 12): `GET /api/events/{id}/deliveries`,
//! `GET /api/subscriptions/{id}/deliveries` and `POST /api/subscriptions/{id}/test`.

use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use nexus_api::deliveries::{
    Attempt, DeliveriesQuery, Delivery, DeliveryState, TEST_EVENT_TYPE, TestSend,
};
use nexus_api::signature::Secret;
use nexus_event::{Event, EventId, EventType, NEXUS_SOURCE, Timestamp};
use nexus_outbound::{Bytes, Call, Method, classify, delivery_headers};
use nexus_resilience::Outcome;
use nexus_store::{Consumer, DeliveryQuery, DeliveryRecord, DeliveryStatus};
use serde_json::json;

use super::{limit, store_page};
use crate::app::AppState;
use crate::envelope::{ApiError, ok};
use crate::extract::{Path, Query};

fn state(s: DeliveryStatus) -> DeliveryState {
    match s {
        DeliveryStatus::Pending => DeliveryState::Pending,
        DeliveryStatus::InFlight => DeliveryState::InFlight,
        DeliveryStatus::Delivered => DeliveryState::Delivered,
        DeliveryStatus::Held => DeliveryState::Held,
        DeliveryStatus::Dead => DeliveryState::Dead,
    }
}

fn wire(d: DeliveryRecord) -> Delivery {
    let (subscription_id, reactor) = match d.consumer {
        Consumer::Subscription(id) => (Some(id), None),
        Consumer::Reactor(name) => (None, Some(name)),
    };
    Delivery {
        id: d.id,
        event_id: d.event_id.to_string(),
        subscription_id,
        reactor,
        target: d.target,
        state: state(d.state),
        attempts: d
            .attempts
            .into_iter()
            .map(|a| Attempt {
                at: a.at,
                duration_ms: a.duration_ms,
                status: a.status,
                error: a.error,
            })
            .collect(),
        next_attempt_at: d.next_attempt_at,
        created_at: d.created_at,
    }
}

/// `GET /api/events/{id}/deliveries`: every delivery of the event with its attempts.
pub(super) async fn of_event(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found(format!("event {id:?} not found"));
    let event_id = EventId::new(&id).map_err(|_| not_found())?;
    let event = state.store.get(&event_id).await?.ok_or_else(not_found)?;
    let deliveries = state
        .store
        .event_deliveries(event.sequence, Timestamp::now())
        .await?;
    Ok(ok(deliveries.into_iter().map(wire).collect::<Vec<_>>()).into_response())
}

/// `GET /api/subscriptions/{id}/deliveries?state=&after=&limit=&cursor=`: newest first.
pub(super) async fn of_subscription(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<DeliveriesQuery>,
) -> Result<Response, ApiError> {
    let limit = limit(q.limit)?;
    let wanted = match q.state.as_deref() {
        None | Some("") => None,
        Some(name) => Some(DeliveryStatus::parse(name).ok_or_else(|| {
            let names: Vec<&str> = DeliveryState::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::validation(
                "state",
                format!("state must be one of {}, got {name:?}", names.join(", ")),
            )
        })?),
    };
    let page = state
        .store
        .subscription_deliveries(
            &id,
            DeliveryQuery {
                state: wanted,
                after: q.after.unwrap_or(0),
                limit,
                cursor: q.cursor,
                now: Timestamp::now(),
            },
        )
        .await?;
    Ok(store_page(page, wire))
}

/// `POST /api/subscriptions/{id}/test`: a signed `nexus.test` event to the subscription now,
/// outside the queue, through the same outbound client (timeout, private-address guard) and the
/// same signing as deliveries. Nothing is stored and the breaker is not told.
pub(super) async fn test_send(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let sub = super::subscriptions::stored(&state, &id).await?;
    let secret = Secret::parse(&sub.secret).map_err(|e| {
        tracing::error!(subscription = %id, error = %e, "a stored subscription secret does not parse");
        ApiError::internal()
    })?;
    let event = Event {
        id: EventId::new_v7(),
        event_type: EventType::new(TEST_EVENT_TYPE).map_err(|_| ApiError::internal())?,
        source: NEXUS_SOURCE.to_owned(),
        // Never in the log: the receiver sees `X-Nexus-Sequence: 0`.
        sequence: 0,
        time: Timestamp::now(),
        payload: json!({ "subscriptionId": sub.id, "test": true }),
        correlation_id: None,
    };
    let body = Bytes::from(serde_json::to_vec(&event).map_err(|_| ApiError::internal())?);
    let call = Call {
        method: Method::POST,
        url: &sub.url,
        target: &sub.target,
        headers: delivery_headers(&secret, &event, &body),
        body,
        timeout: None,
    };
    let started = Instant::now();
    let answered = state.outbound.send(call).await;
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let sent = match answered {
        Ok(answer) => TestSend {
            status: Some(answer.status),
            error: match classify(&answer) {
                Outcome::Delivered(_) => None,
                Outcome::Failed(e) | Outcome::Gone(e) | Outcome::Refused(e) => Some(e.message),
            },
            duration_ms,
        },
        Err(e) => TestSend {
            status: None,
            error: Some(e.message),
            duration_ms,
        },
    };
    tracing::info!(subscription = %id, status = ?sent.status, "test send");
    Ok(ok(sent).into_response())
}
