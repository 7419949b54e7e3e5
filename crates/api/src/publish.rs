//! Publishing (API.md section 2): the body of `POST /events` and `/events/batch`, and the acks.

use nexus_event::{CorrelationId, EventId, EventType};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// One event as a node publishes it: `{type, payload?, id?, correlation_id?}`.
///
/// Other keys (such as `source`, which the server always sets itself) are ignored. `payload`
/// keeps the difference between a key left out (`None`: the server stores `{}`) and an explicit
/// `null` (`Some(Value::Null)`: stored and returned as `null`).
///
/// ```
/// use nexus_api::publish::PublishEvent;
/// let absent: PublishEvent = serde_json::from_str(r#"{"type": "PAYMENT_RECEIVED"}"#)?;
/// assert_eq!(absent.payload, None);
/// let null: PublishEvent = serde_json::from_str(r#"{"type": "PAYMENT_RECEIVED", "payload": null}"#)?;
/// assert_eq!(null.payload, Some(serde_json::Value::Null));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishEvent {
    /// The event's type.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The publisher's id (deduplication); the server gives a UUIDv7 when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<EventId>,
    /// Any JSON value, `null` included; `None` when the key is left out.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub payload: Option<Value>,
    /// The id of the event that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<CorrelationId>,
}

impl PublishEvent {
    /// Keys a body must have; a `VALIDATION_ERROR` for a missing one names it.
    pub const REQUIRED: &'static [&'static str] = &["type"];
}

/// A key that is there, whatever its value (`null` included), is `Some`.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// The CloudEvents version Nexus takes.
pub const CLOUDEVENTS_SPEC_VERSION: &str = "1.0";

/// A structured-mode CloudEvent (`Content-Type: application/cloudevents+json`) on `POST
/// /events`: `id` -> id, `type` -> type, `data` -> payload; other attributes are not kept.
///
/// Like [`PublishEvent::payload`], `data` keeps an explicit `null` apart from a key left out.
/// `data_base64` (binary data) becomes the payload as its base64 string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    /// Must be [`CLOUDEVENTS_SPEC_VERSION`].
    pub specversion: String,
    /// The event id.
    pub id: EventId,
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The payload; `None` when the key is left out.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub data: Option<Value>,
    /// Binary data, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
}

impl CloudEvent {
    /// Keys a body must have; a `VALIDATION_ERROR` for a missing one names it.
    pub const REQUIRED: &'static [&'static str] = &["specversion", "id", "type"];
}

/// The body of `POST /events/batch`: `{"events": [ ... 1 to 1000 ... ]}`.
///
/// `E` is [`PublishEvent`] for a publisher; a server may read `E = serde_json::Value` first to
/// place a refusal at its index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishBatch<E = PublishEvent> {
    /// The events, in order.
    pub events: Vec<E>,
}

impl PublishBatch {
    /// Keys a body must have.
    pub const REQUIRED: &'static [&'static str] = &["events"];
}

/// What the server answered for one stored event: `{id, sequence, duplicate}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The event's id.
    pub id: String,
    /// Its place in the log.
    pub sequence: u64,
    /// `true` when the server already had it (a retry, or the same id published again): it
    /// was not stored or dispatched again, and `sequence` is the first one's.
    pub duplicate: bool,
}

/// The answer of a batch: `{"events": [{id, sequence, duplicate}, ...]}` in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchAck {
    /// One ack per event, in request order.
    pub events: Vec<Ack>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn publish_bodies_round_trip() {
        let body = json!({"type": "PAYMENT_RECEIVED", "id": "pay-1",
            "payload": {"amount": 5}, "correlation_id": "req-123"});
        let parsed: PublishEvent = serde_json::from_value(body.clone()).expect("event");
        assert_eq!(parsed.event_type.as_str(), "PAYMENT_RECEIVED");
        assert_eq!(serde_json::to_value(&parsed).expect("ser"), body);

        let null = json!({"type": "T", "payload": null});
        let parsed: PublishEvent = serde_json::from_value(null.clone()).expect("null payload");
        assert_eq!(parsed.payload, Some(Value::Null));
        assert_eq!(serde_json::to_value(&parsed).expect("ser"), null);

        let ignored: PublishEvent =
            serde_json::from_value(json!({"type": "T", "source": "someone else"}))
                .expect("other keys are ignored");
        assert_eq!(ignored.payload, None);
        assert!(serde_json::from_value::<PublishEvent>(json!({"type": "bad type"})).is_err());
        assert!(serde_json::from_value::<PublishEvent>(json!({"payload": {}})).is_err());

        let batch = json!({"events": [{"type": "A"}, {"type": "B", "payload": [1]}]});
        let parsed: PublishBatch = serde_json::from_value(batch.clone()).expect("batch");
        assert_eq!(serde_json::to_value(&parsed).expect("ser"), batch);
    }

    #[test]
    fn cloud_events_round_trip() {
        let body = json!({"specversion": "1.0", "id": "ce-1", "type": "PAYMENT_RECEIVED",
            "data": {"amount": 9}});
        let ce: CloudEvent = serde_json::from_value(body.clone()).expect("cloud event");
        assert_eq!(ce.specversion, CLOUDEVENTS_SPEC_VERSION);
        assert_eq!(serde_json::to_value(&ce).expect("ser"), body);
        let null: CloudEvent = serde_json::from_value(
            json!({"specversion": "1.0", "id": "n", "type": "T", "data": null, "source": "/x"}),
        )
        .expect("data null, other attributes ignored");
        assert_eq!(null.data, Some(Value::Null));
        for key in CloudEvent::REQUIRED {
            let mut v = body.clone();
            v.as_object_mut().map(|m| m.remove(*key));
            assert!(serde_json::from_value::<CloudEvent>(v).is_err(), "{key}");
        }
    }

    #[test]
    fn acks_round_trip() {
        let single = json!({"id": "0192f6c0-uuidv7", "sequence": 42, "duplicate": false});
        let ack: Ack = serde_json::from_value(single.clone()).expect("ack");
        assert_eq!(serde_json::to_value(&ack).expect("ser"), single);
        let batch = json!({"events": [{"id": "a", "sequence": 1, "duplicate": false},
            {"id": "b", "sequence": 2, "duplicate": true}]});
        let acks: BatchAck = serde_json::from_value(batch.clone()).expect("batch ack");
        assert_eq!(serde_json::to_value(&acks).expect("ser"), batch);
    }
}
