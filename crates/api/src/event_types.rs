//! The event-type catalogue (API.md section 11): a declared type as the admin API shows it and
//! the body of `PUT /api/event-types/{name}`.

use nexus_event::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A declared type: `{name, description, schema | null, examples, deprecated, createdAt,
/// updatedAt}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventType {
    /// The type's name (section 1: 1 to 128 characters of `A-Z a-z 0-9 _ . : -`).
    pub name: String,
    /// What the type means (may be empty).
    pub description: String,
    /// The JSON Schema (draft 2020-12) its payloads must match; `None` accepts any payload.
    pub schema: Option<Value>,
    /// Example payloads, each valid against `schema`.
    pub examples: Vec<Value>,
    /// Still accepted, answered with `Deprecation: true`.
    pub deprecated: bool,
    /// When it was first declared.
    pub created_at: Timestamp,
    /// When it was last replaced.
    pub updated_at: Timestamp,
}

/// `PUT /api/event-types/{name}`: `{description?, schema?, examples?, deprecated?}`; unknown
/// keys are refused. It replaces the whole type: a key left out takes its default (empty
/// description, no schema, no examples, not deprecated).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTypePut {
    /// What the type means.
    #[serde(default)]
    pub description: String,
    /// Its payload schema; `null` or absent for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// Example payloads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<Value>,
    /// Deprecated or not.
    #[serde(default)]
    pub deprecated: bool,
}

impl EventTypePut {
    /// Keys a body must have: none.
    pub const REQUIRED: &'static [&'static str] = &[];
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn types_round_trip() {
        let body = json!({"name": "PAYMENT_RECEIVED", "description": "A customer paid.",
            "schema": {"type": "object", "required": ["amount"]},
            "examples": [{"amount": 2500}], "deprecated": false,
            "createdAt": "2026-02-09T20:30:00.123Z", "updatedAt": "2026-02-09T20:31:00.000Z"});
        let t: EventType = serde_json::from_value(body.clone()).expect("type");
        assert_eq!(serde_json::to_value(&t).expect("ser"), body);
        let open = json!({"name": "X", "description": "", "schema": null, "examples": [],
            "deprecated": true, "createdAt": "2026-02-09T20:30:00Z",
            "updatedAt": "2026-02-09T20:30:00Z"});
        let t: EventType = serde_json::from_value(open).expect("no schema");
        assert!(t.schema.is_none() && t.deprecated);
    }

    #[test]
    fn puts_take_defaults_and_refuse_unknown_keys() {
        let put: EventTypePut = serde_json::from_value(json!({})).expect("empty");
        assert_eq!(put, EventTypePut::default());
        let put: EventTypePut =
            serde_json::from_value(json!({"schema": null, "deprecated": true})).expect("null");
        assert!(put.schema.is_none() && put.deprecated);
        let full = json!({"description": "d", "schema": {"type": "object"},
            "examples": [{}], "deprecated": false});
        let put: EventTypePut = serde_json::from_value(full.clone()).expect("full");
        assert_eq!(serde_json::to_value(&put).expect("ser"), full);
        assert!(serde_json::from_value::<EventTypePut>(json!({"name": "X"})).is_err());
    }
}
