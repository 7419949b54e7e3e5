//! The retry queue and its dead letters (API.md sections 5 and 6): the stats, a dead letter,
//! the `{ids?}` selection of redrive and delete, and the counts those answer.

use nexus_event::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `GET /api/retry/stats`: `{pending, deadLetters, oldestRetry, inFlight}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryStats {
    /// Deliveries waiting.
    pub pending: u64,
    /// Dead letters.
    pub dead_letters: u64,
    /// When the oldest delivery that failed at least once was enqueued; `null` when none.
    pub oldest_retry: Option<Timestamp>,
    /// Deliveries being attempted.
    pub in_flight: u64,
}

/// A dead letter: a delivery that kept failing, with its full error context.
///
/// `eventSequence` and `firstAttemptAt` are additions to the contract's list (README,
/// decisions); a reader that does not know them ignores them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// Its id (for redrive and delete).
    pub id: i64,
    /// The event's id.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The event's sequence.
    #[serde(default)]
    pub event_sequence: u64,
    /// The target's origin.
    pub target: String,
    /// The subscription it was for, `null` for a reactor's call.
    pub subscription_id: Option<String>,
    /// The reactor it was for, `null` for a subscription's delivery.
    pub reactor: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// The last failure.
    pub last_error: String,
    /// The last HTTP status, `null` when the target did not answer.
    pub last_status: Option<u16>,
    /// When the delivery was enqueued.
    pub created_at: Timestamp,
    /// When the first attempt ended.
    #[serde(default)]
    pub first_attempt_at: Option<Timestamp>,
    /// When it became a dead letter.
    pub failed_at: Timestamp,
    /// The event's payload (`null` when the event's payload is `null`).
    #[serde(default)]
    pub payload: Value,
}

/// One id of a `{"ids": [...]}` selection: a number, or the same number as a string.
///
/// Anything else a caller writes there names no dead letter, so it counts as an id that does
/// not exist (no error, API.md section 6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DeadLetterRef {
    /// `42`.
    Number(serde_json::Number),
    /// `"42"`.
    Text(String),
    /// Anything else (`true`, `null`, an object): it names no dead letter.
    Other(serde_json::Value),
}

impl DeadLetterRef {
    /// The dead letter id it names, if it can name one.
    pub fn id(&self) -> Option<i64> {
        match self {
            DeadLetterRef::Number(n) => n.as_i64(),
            DeadLetterRef::Text(s) => s.parse().ok(),
            DeadLetterRef::Other(_) => None,
        }
    }
}

impl From<i64> for DeadLetterRef {
    fn from(id: i64) -> Self {
        DeadLetterRef::Number(id.into())
    }
}

/// The body of redrive and delete: `{"ids": [...]}`, or `{}` for every dead letter. Unknown
/// keys are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdsSelection {
    /// The ids; `None` (the key left out) for all. An explicit `"ids": null` is refused, so a
    /// body that meant to name ids never selects every dead letter by accident.
    #[serde(
        default,
        deserialize_with = "ids_given",
        skip_serializing_if = "Option::is_none"
    )]
    pub ids: Option<Vec<DeadLetterRef>>,
}

/// `ids` when the key is present: an array, never `null`.
fn ids_given<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<DeadLetterRef>>, D::Error> {
    Vec::<DeadLetterRef>::deserialize(deserializer).map(Some)
}

impl IdsSelection {
    /// Keys a body must have: none.
    pub const REQUIRED: &'static [&'static str] = &[];

    /// Every dead letter.
    pub fn all() -> Self {
        IdsSelection { ids: None }
    }

    /// These ids.
    pub fn ids(ids: impl IntoIterator<Item = i64>) -> Self {
        IdsSelection {
            ids: Some(ids.into_iter().map(DeadLetterRef::from).collect()),
        }
    }
}

/// `{"deleted": n}`: the answer of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// How many were deleted.
    pub deleted: u64,
}

/// `{"redriven": n}`: the answer of a redrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redriven {
    /// How many went back to the queue.
    pub redriven: u64,
}

/// `{"reset": n}`: the answer of a breaker reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reset {
    /// How many breakers were closed.
    pub reset: u64,
}

/// `{"enqueued": n}`: the answer of a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enqueued {
    /// How many deliveries were enqueued.
    pub enqueued: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stats_round_trip() {
        for body in [
            json!({"pending": 0, "deadLetters": 3, "oldestRetry": null, "inFlight": 0}),
            json!({"pending": 2, "deadLetters": 0, "oldestRetry": "2026-02-09T20:30:00.123Z", "inFlight": 1}),
        ] {
            let stats: RetryStats = serde_json::from_value(body.clone()).expect("stats");
            assert_eq!(serde_json::to_value(&stats).expect("ser"), body);
        }
    }

    #[test]
    fn dead_letters_round_trip() {
        let body = json!({"id": 7, "eventId": "p2", "eventType": "PAYMENT_RECEIVED",
            "eventSequence": 3, "target": "http://127.0.0.1:9", "subscriptionId": "sub-1",
            "reactor": null, "attempts": 6, "lastError": "HTTP 500: boom", "lastStatus": 500,
            "createdAt": "2026-02-09T20:30:00.123Z", "firstAttemptAt": "2026-02-09T20:30:00.123Z",
            "failedAt": "2026-02-09T20:31:02.123Z", "payload": {"n": 2}});
        let d: DeadLetter = serde_json::from_value(body.clone()).expect("dead letter");
        assert_eq!(serde_json::to_value(&d).expect("ser"), body);
        let reactor = json!({"id": 8, "eventId": "p3", "eventType": "T", "target": "http://h:1",
            "subscriptionId": null, "reactor": "mint", "attempts": 1, "lastError": "timeout",
            "lastStatus": null, "createdAt": "2026-02-09T20:30:00.123Z",
            "failedAt": "2026-02-09T20:30:00.123Z", "payload": null});
        let d: DeadLetter = serde_json::from_value(reactor).expect("the contract's keys suffice");
        assert_eq!(
            (d.reactor.as_deref(), &d.payload),
            (Some("mint"), &Value::Null)
        );
    }

    #[test]
    fn selections_take_numbers_and_strings() {
        let all: IdsSelection = serde_json::from_value(json!({})).expect("all");
        assert_eq!(all, IdsSelection::all());
        assert_eq!(serde_json::to_value(&all).expect("ser"), json!({}));
        let some: IdsSelection =
            serde_json::from_value(json!({"ids": [3, "4", "nope", 1.5, true, null, {}]}))
                .expect("ids");
        let ids: Vec<Option<i64>> = some.ids.iter().flatten().map(DeadLetterRef::id).collect();
        assert_eq!(ids, vec![Some(3), Some(4), None, None, None, None, None]);
        // An explicit null is refused: it must never mean "every dead letter".
        assert!(serde_json::from_value::<IdsSelection>(json!({"ids": null})).is_err());
        assert_eq!(
            serde_json::to_value(IdsSelection::ids([3, 4])).expect("ser"),
            json!({"ids": [3, 4]})
        );
        assert!(serde_json::from_value::<IdsSelection>(json!({"ids": "all"})).is_err());
        assert!(serde_json::from_value::<IdsSelection>(json!({"idz": []})).is_err());
    }

    #[test]
    fn counts_round_trip() {
        assert_eq!(
            serde_json::to_value(Deleted { deleted: 2 }).expect("ser"),
            json!({"deleted": 2})
        );
        assert_eq!(
            serde_json::to_value(Redriven { redriven: 1 }).expect("ser"),
            json!({"redriven": 1})
        );
        assert_eq!(
            serde_json::to_value(Reset { reset: 1 }).expect("ser"),
            json!({"reset": 1})
        );
        assert_eq!(
            serde_json::to_value(Enqueued { enqueued: 2 }).expect("ser"),
            json!({"enqueued": 2})
        );
        let d: Deleted = serde_json::from_value(json!({"deleted": 5})).expect("de");
        assert_eq!(d.deleted, 5);
    }
}
