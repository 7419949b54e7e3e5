//! Reading the log and replaying it (API.md section 6): the query of `GET /api/events` and the
//! body of `POST /api/replay`. The events themselves are [`nexus_event::Event`].

use serde::{Deserialize, Serialize};

/// Which way `GET /api/events` lists: `asc` (oldest first, the default) or `desc` (newest
/// first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventOrder {
    /// Ascending sequence; the next page's cursor is the last sequence of this one and the next
    /// page has larger sequences.
    #[default]
    Asc,
    /// Descending sequence; the next page has smaller sequences than this page's last (the
    /// cursor).
    Desc,
}

/// `GET /api/events?type=&after=&until=&order=&limit=&cursor=`. Unknown parameters are
/// refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// A type glob; empty or `None` for every type.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Events after this sequence (exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// Events up to this sequence (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
    /// `asc` (default) or `desc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<EventOrder>,
    /// Items per page, 1 to 1000 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// The cursor a previous page gave: the last sequence of that page. Ascending, it wins over
    /// `after`; descending, the next page ends below it (and at `until` if that is lower).
    #[serde(
        default,
        deserialize_with = "crate::envelope::empty_cursor_is_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub cursor: Option<String>,
}

/// The target of a replay: a subscription id, or `"reactors"`.
pub const REPLAY_TO_REACTORS: &str = "reactors";

/// `POST /api/replay`: `{"after", "until"?, "types"?, "target"}`. Unknown keys are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replay {
    /// Events after this sequence (exclusive).
    pub after: u64,
    /// Up to this sequence (inclusive); `None` for the head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
    /// Only these type globs; `None` for every type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
    /// A subscription id, or [`REPLAY_TO_REACTORS`].
    pub target: String,
}

impl Replay {
    /// Keys a body must have; a `VALIDATION_ERROR` for a missing one names it.
    pub const REQUIRED: &'static [&'static str] = &["after", "target"];
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replays_round_trip() {
        let body = json!({"after": 1, "until": 3, "types": ["PAYMENT_*"], "target": "sub-1"});
        let r: Replay = serde_json::from_value(body.clone()).expect("replay");
        assert_eq!(serde_json::to_value(&r).expect("ser"), body);
        let minimal = json!({"after": 0, "target": "reactors"});
        let r: Replay = serde_json::from_value(minimal.clone()).expect("minimal");
        assert_eq!(r.target, REPLAY_TO_REACTORS);
        assert_eq!(serde_json::to_value(&r).expect("ser"), minimal);
        for key in Replay::REQUIRED {
            let mut v = minimal.clone();
            v.as_object_mut().map(|m| m.remove(*key));
            assert!(serde_json::from_value::<Replay>(v).is_err(), "{key}");
        }
        assert!(
            serde_json::from_value::<Replay>(json!({"after": 0, "target": "r", "x": 1})).is_err()
        );
    }

    #[test]
    fn event_queries_name_type_as_the_contract_does() {
        let q: EventsQuery =
            serde_json::from_value(json!({"type": "PAYMENT_*", "after": 3})).expect("query");
        assert_eq!(
            (q.event_type.as_deref(), q.after),
            (Some("PAYMENT_*"), Some(3))
        );
        assert_eq!(
            serde_json::to_value(&q).expect("ser"),
            json!({"type": "PAYMENT_*", "after": 3})
        );
        assert!(serde_json::from_value::<EventsQuery>(json!({"bogus": 1})).is_err());
        let q: EventsQuery =
            serde_json::from_value(json!({"order": "desc", "until": 9})).expect("newest first");
        assert_eq!((q.order, q.until), (Some(EventOrder::Desc), Some(9)));
        assert_eq!(
            serde_json::to_value(&q).expect("ser"),
            json!({"order": "desc", "until": 9})
        );
        assert!(serde_json::from_value::<EventsQuery>(json!({"order": "newest"})).is_err());
    }
}
