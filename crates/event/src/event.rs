//! The event as stored and delivered, and the draft a publisher hands in before the log numbers it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{CorrelationId, EventId, EventType, Timestamp};

/// The `source` of events that Nexus emits itself (reactors).
pub const NEXUS_SOURCE: &str = "nexus";

/// Whether `name` is a valid node name (an event's `source`), also the rule for reactor names:
/// 1 to 64 characters of `A-Z a-z 0-9 _ . -`.
///
/// ```
/// use nexus_event::valid_node_name;
/// assert!(valid_node_name("flowpay-eu.1"));
/// assert!(!valid_node_name("two words"));
/// assert!(!valid_node_name(""));
/// ```
pub fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// An event as stored and delivered (API.md section 1).
///
/// The JSON form is exactly the wire form:
///
/// ```
/// use nexus_event::{Event, WellKnown};
/// let json = r#"{"id":"pay-1","type":"PAYMENT_RECEIVED","source":"flowpay","sequence":42,
///   "time":"2026-02-09T20:30:00.123Z","payload":{"amount":5},"correlation_id":"req-123"}"#;
/// let event: Event = serde_json::from_str(json)?;
/// assert_eq!(event.event_type, WellKnown::PaymentReceived);
/// assert_eq!(event.sequence, 42);
/// assert_eq!(event.payload["amount"], 5);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique across the whole log.
    pub id: EventId,
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The authenticated node that published it, or [`NEXUS_SOURCE`] for reactor output.
    pub source: String,
    /// Gap-free, strictly increasing number given by the log at commit.
    pub sequence: u64,
    /// When Nexus accepted it.
    pub time: Timestamp,
    /// Any JSON value; `{}` when the publisher sent none.
    #[serde(default = "empty_object")]
    pub payload: Value,
    /// The id of the event that caused this one, if any. Written as `null` when absent.
    #[serde(default)]
    pub correlation_id: Option<CorrelationId>,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// An event before the log has given it a sequence number.
///
/// ```
/// use nexus_event::{NewEvent, WellKnown};
/// let draft = NewEvent::new(WellKnown::PaymentReceived, "flowpay")
///     .payload(serde_json::json!({"amount": 5}));
/// let event = draft.into_event(1);
/// assert_eq!(event.sequence, 1);
/// assert_eq!(event.source, "flowpay");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The publisher's id, or a new UUIDv7.
    pub id: EventId,
    /// What happened.
    pub event_type: EventType,
    /// The publishing node.
    pub source: String,
    /// When Nexus accepted it.
    pub time: Timestamp,
    /// Any JSON value.
    pub payload: Value,
    /// The id of the event that caused this one, if any.
    pub correlation_id: Option<CorrelationId>,
}

impl NewEvent {
    /// A draft with a fresh UUIDv7 id, the current time and an empty object as payload.
    pub fn new(event_type: impl Into<EventType>, source: impl Into<String>) -> Self {
        NewEvent {
            id: EventId::new_v7(),
            event_type: event_type.into(),
            source: source.into(),
            time: Timestamp::now(),
            payload: empty_object(),
            correlation_id: None,
        }
    }

    /// Uses the publisher's own id instead of a new one (the log deduplicates by it).
    ///
    /// ```
    /// use nexus_event::{CorrelationId, EventId, NewEvent, Timestamp, WellKnown};
    /// let draft = NewEvent::new(WellKnown::MintRequested, "orders")
    ///     .id(EventId::new("mint-o-1")?)
    ///     .correlation_id(CorrelationId::new("pay-o-1")?)
    ///     .time(Timestamp::from_unix_millis(1_770_669_000_123)?)
    ///     .payload(serde_json::Value::Null);
    /// let event = draft.into_event(7);
    /// assert_eq!(event.id.as_str(), "mint-o-1");
    /// assert_eq!(event.correlation_id.map(|c| c.to_string()).as_deref(), Some("pay-o-1"));
    /// assert_eq!(event.time.to_string(), "2026-02-09T20:30:00.123Z");
    /// assert!(event.payload.is_null()); // a null payload stays null
    /// # Ok::<(), nexus_event::Error>(())
    /// ```
    pub fn id(mut self, id: EventId) -> Self {
        self.id = id;
        self
    }

    /// Sets the payload.
    pub fn payload(mut self, payload: Value) -> Self {
        self.payload = payload;
        self
    }

    /// Sets the correlation id.
    pub fn correlation_id(mut self, id: CorrelationId) -> Self {
        self.correlation_id = Some(id);
        self
    }

    /// Sets the time of acceptance.
    pub fn time(mut self, time: Timestamp) -> Self {
        self.time = time;
        self
    }

    /// The committed event, with the sequence the log gave it.
    pub fn into_event(self, sequence: u64) -> Event {
        Event {
            id: self.id,
            event_type: self.event_type,
            source: self.source,
            sequence,
            time: self.time,
            payload: self.payload,
            correlation_id: self.correlation_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WellKnown;
    use serde_json::json;

    fn sample() -> Event {
        NewEvent::new(WellKnown::PaymentReceived, "flowpay")
            .id(EventId::new("pay-1").expect("valid"))
            .time("2026-02-09T20:30:00.123Z".parse().expect("valid"))
            .payload(json!({"amount": 5, "currency": "EUR"}))
            .correlation_id(CorrelationId::new("req-123").expect("valid"))
            .into_event(42)
    }

    #[test]
    fn json_matches_the_contract_exactly() {
        let value = serde_json::to_value(sample()).expect("serializes");
        assert_eq!(
            value,
            json!({
                "id": "pay-1", "type": "PAYMENT_RECEIVED", "source": "flowpay", "sequence": 42,
                "time": "2026-02-09T20:30:00.123Z", "payload": {"amount": 5, "currency": "EUR"},
                "correlation_id": "req-123"
            })
        );
        let text = serde_json::to_string(&sample()).expect("serializes");
        assert_eq!(
            serde_json::from_str::<Event>(&text).expect("parses"),
            sample()
        );
    }

    #[test]
    fn absent_fields() {
        let mut e = sample();
        e.correlation_id = None;
        let value = serde_json::to_value(&e).expect("serializes");
        assert_eq!(value["correlation_id"], Value::Null);
        let parsed: Event = serde_json::from_value(json!({
            "id": "x", "type": "T", "source": "s", "sequence": 1, "time": "2026-01-01T00:00:00Z"
        }))
        .expect("payload and correlation_id may be left out");
        assert_eq!(parsed.payload, json!({}));
        assert_eq!(parsed.correlation_id, None);
    }

    #[test]
    fn invalid_fields_are_refused() {
        let base = json!({"id": "x", "type": "T", "source": "s", "sequence": 1, "time": "2026-01-01T00:00:00Z"});
        for (field, bad) in [
            ("type", json!("bad type")),
            ("id", json!("")),
            ("time", json!("yesterday")),
            ("sequence", json!(-1)),
            ("correlation_id", json!("a b")),
        ] {
            let mut v = base.clone();
            v[field] = bad;
            assert!(
                serde_json::from_value::<Event>(v).is_err(),
                "{field} should be refused"
            );
        }
        let mut extra = base.clone();
        extra["added_in_a_later_version"] = json!(1);
        assert!(
            serde_json::from_value::<Event>(extra).is_ok(),
            "unknown fields are ignored, so receivers survive additions"
        );
    }
}
