//! The delivery history (API.md section 12): `GET /api/events/{id}/deliveries`,
//! `GET /api/subscriptions/{id}/deliveries` and `POST /api/subscriptions/{id}/test`.

use nexus_event::Timestamp;
use serde::{Deserialize, Serialize};

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting in the queue (due now or later, parked behind an open breaker, or its lease
    /// expired).
    Pending,
    /// A worker is attempting it now.
    InFlight,
    /// A target answered with success.
    Delivered,
    /// Waiting for its subscription to be enabled again.
    Held,
    /// Its retries are spent: it became a dead letter.
    Dead,
}

impl DeliveryState {
    /// Every state, as the `state` filter accepts them.
    pub const ALL: [DeliveryState; 5] = [
        DeliveryState::Pending,
        DeliveryState::InFlight,
        DeliveryState::Delivered,
        DeliveryState::Held,
        DeliveryState::Dead,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::InFlight => "in_flight",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Held => "held",
            DeliveryState::Dead => "dead",
        }
    }

    /// The state with this wire name.
    pub fn parse(name: &str) -> Option<DeliveryState> {
        DeliveryState::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// One attempt: `{at, durationMs, status | null, error | null}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// When it started.
    pub at: Timestamp,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// The HTTP status, when the target answered.
    pub status: Option<u16>,
    /// What went wrong; null for the attempt that succeeded.
    pub error: Option<String>,
}

/// One delivery of an event: `{id, eventId, subscriptionId | null, reactor | null, target, state,
/// attempts, nextAttemptAt | null, createdAt}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The delivery's id.
    pub id: i64,
    /// The event's id.
    pub event_id: String,
    /// The subscription it is for, when it is for one.
    pub subscription_id: Option<String>,
    /// The reactor it is for, when it is for one.
    pub reactor: Option<String>,
    /// The target origin.
    pub target: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Its attempts, oldest first.
    pub attempts: Vec<Attempt>,
    /// When it is due next (pending only).
    pub next_attempt_at: Option<Timestamp>,
    /// When it was enqueued.
    pub created_at: Timestamp,
}

/// `GET /api/subscriptions/{id}/deliveries?state=&after=&limit=&cursor=`. Unknown parameters are
/// refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// Only deliveries in this state (`pending`, `in_flight`, `delivered`, `held`, `dead`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Only deliveries of events after this sequence (exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// Items per page, 1 to 1000 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// The cursor a previous page gave; empty is the first page.
    #[serde(
        default,
        deserialize_with = "crate::envelope::empty_cursor_is_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub cursor: Option<String>,
}

/// The answer to `POST /api/subscriptions/{id}/test`: `{status | null, error | null,
/// durationMs}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestSend {
    /// The HTTP status the subscriber answered; null when it did not answer.
    pub status: Option<u16>,
    /// What went wrong (no answer, or a status that is not 2xx); null on success.
    pub error: Option<String>,
    /// How long the call took, in milliseconds.
    pub duration_ms: u64,
}

/// The type of the event a test send carries.
pub const TEST_EVENT_TYPE: &str = "nexus.test";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deliveries_round_trip_in_camel_case() {
        let body = json!({"id": 7, "eventId": "e-1", "subscriptionId": "sub-1", "reactor": null,
            "target": "https://crm.example:443", "state": "in_flight",
            "attempts": [{"at": "2026-02-09T20:30:00.123Z", "durationMs": 40, "status": 503,
                "error": "HTTP 503"}],
            "nextAttemptAt": null, "createdAt": "2026-02-09T20:30:00.000Z"});
        let parsed: Delivery = serde_json::from_value(body.clone()).expect("delivery");
        assert_eq!(parsed.state, DeliveryState::InFlight);
        assert_eq!(serde_json::to_value(&parsed).expect("ser"), body);
        let sent = json!({"status": null, "error": "connection refused", "durationMs": 3});
        let parsed: TestSend = serde_json::from_value(sent.clone()).expect("test send");
        assert_eq!(serde_json::to_value(&parsed).expect("ser"), sent);
    }

    #[test]
    fn states_parse_by_their_wire_names() {
        for state in DeliveryState::ALL {
            assert_eq!(DeliveryState::parse(state.as_str()), Some(state));
            assert_eq!(
                serde_json::to_value(state).expect("ser"),
                json!(state.as_str())
            );
        }
        assert_eq!(DeliveryState::parse("failed"), None);
    }
}
