//! `GET /api/instances` (API.md section 13): the live server instances on the store.

use nexus_event::Timestamp;
use serde::{Deserialize, Serialize};

/// A live instance: `{id, host, startedAt, lastSeenAt, version}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    /// Its id, unique per process (a UUID v7).
    pub id: String,
    /// The host name of the machine it runs on.
    pub host: String,
    /// When it opened the store.
    pub started_at: Timestamp,
    /// When it last showed it is alive (its last heartbeat with PostgreSQL).
    pub last_seen_at: Timestamp,
    /// The version it runs.
    pub version: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn instances_round_trip() {
        let body = json!({"id": "01938a6e-7f3a-7c2e-9b1d-5e8f2a4c6d10", "host": "node-1",
            "startedAt": "2026-02-09T20:30:00.123Z", "lastSeenAt": "2026-02-09T20:31:02.456Z",
            "version": "0.1.0"});
        let i: Instance = serde_json::from_value(body.clone()).expect("instance");
        assert_eq!(serde_json::to_value(&i).expect("ser"), body);
        assert_eq!(i.host, "node-1");
        let missing = json!({"id": "x", "host": "h", "startedAt": "2026-02-09T20:30:00Z",
            "version": "0.1.0"});
        assert!(serde_json::from_value::<Instance>(missing).is_err());
    }
}
