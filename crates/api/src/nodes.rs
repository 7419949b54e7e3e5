//! `GET /api/nodes` (API.md section 6): the configured nodes and their permissions, never their
//! secrets.

use serde::{Deserialize, Serialize};

/// A publishing node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Its name (`X-Nexus-Node`).
    pub name: String,
    /// The type globs it may publish (`["*"]` for every type).
    pub publish: Vec<String>,
    /// How `POST /webhook/{node}` maps its payload, `null` when it has no mapping.
    pub webhook: Option<NodeWebhook>,
}

/// The webhook mapping of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeWebhook {
    /// The type of the event its payload becomes.
    pub event_type: String,
    /// The JSON pointer of the event id in its payload, `null` when none.
    pub id_pointer: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nodes_round_trip() {
        for body in [
            json!({"name": "flowpay", "publish": ["PAYMENT_*"],
                "webhook": {"eventType": "PAYMENT_RECEIVED", "idPointer": "/payment_id"}}),
            json!({"name": "crm", "publish": ["*"], "webhook": null}),
        ] {
            let n: Node = serde_json::from_value(body.clone()).expect("node");
            assert_eq!(serde_json::to_value(&n).expect("ser"), body);
        }
    }
}
