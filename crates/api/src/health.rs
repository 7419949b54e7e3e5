//! The health bodies (API.md section 8): plain JSON, without the envelope. `/health`,
//! `/health/live` and `/health/ready` answer [`Health`]; `/health/detailed` [`HealthDetailed`].

use serde::{Deserialize, Serialize};

/// What a health body says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Serving (`/health`, `/health/live`, `/health/detailed`).
    Ok,
    /// Ready for traffic (`/health/ready`, 200).
    Ready,
    /// Not ready yet: the store is opening or the workers are starting (`/health/ready`, 503).
    Starting,
    /// Shutting down (`/health/ready` 503, `/health/detailed`).
    Draining,
    /// Serving, but the store cannot be read (`/health/detailed`; `/health/ready` answers it with
    /// 503).
    Degraded,
    /// A status this version does not know (a newer server's): read, never written by the
    /// server.
    #[serde(other)]
    Unknown,
}

/// `{"status": ...}`: the body of `/health`, `/health/live` and `/health/ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// What it says.
    pub status: HealthStatus,
}

/// `{status, version, uptimeSeconds, database, retry, breakers, websocket, memory, store,
/// instances}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthDetailed {
    /// `ok`, `degraded` (the store cannot be read) or `draining`.
    pub status: HealthStatus,
    /// The server's version.
    pub version: String,
    /// Seconds since the start.
    pub uptime_seconds: u64,
    /// The store's size.
    pub database: DatabaseHealth,
    /// The retry queue.
    pub retry: RetryHealth,
    /// Breakers that are not closed.
    pub breakers: BreakersHealth,
    /// Open WebSocket connections.
    pub websocket: WebSocketHealth,
    /// The process's memory.
    pub memory: MemoryHealth,
    /// Which store serves (API.md section 13); absent when the embedding did not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreHealth>,
    /// Live instances on the store (API.md section 13); `null` when the store cannot be read.
    /// Read as `null` from a server that does not say.
    #[serde(default)]
    pub instances: Option<u64>,
}

/// `store: {kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreHealth {
    /// The backend.
    pub kind: StoreKind,
}

/// The store's backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// The embedded SQLite store under `DATA_DIR`.
    Sqlite,
    /// PostgreSQL at `DATABASE_URL`.
    Postgres,
    /// A kind this version does not know (a newer server's): read, never written by the server.
    #[serde(other)]
    Unknown,
}

/// `database: {sizeBytes}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseHealth {
    /// Bytes on disk; `null` when the embedding gave no probe.
    pub size_bytes: Option<u64>,
}

/// `retry: {pending, deadLetters}`; both `null` when the store cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryHealth {
    /// Deliveries waiting or in flight.
    pub pending: Option<u64>,
    /// Dead letters.
    pub dead_letters: Option<u64>,
}

/// `breakers: {open, halfOpen}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakersHealth {
    /// Breakers open.
    pub open: u64,
    /// Breakers half-open.
    pub half_open: u64,
}

/// `websocket: {connections}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebSocketHealth {
    /// Open connections.
    pub connections: u64,
}

/// `memory: {rssBytes}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryHealth {
    /// Resident set size; `null` where the platform does not tell.
    pub rss_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_short_bodies_round_trip() {
        for status in ["ok", "ready", "starting", "draining", "degraded"] {
            let body = json!({ "status": status });
            let h: Health = serde_json::from_value(body.clone()).expect("health");
            assert_eq!(serde_json::to_value(h).expect("ser"), body);
        }
        // A newer server's status is read, not refused.
        let newer: Health = serde_json::from_value(json!({"status": "fine"})).expect("newer");
        assert_eq!(newer.status, HealthStatus::Unknown);
        assert!(serde_json::from_value::<Health>(json!({"status": 1})).is_err());
    }

    #[test]
    fn the_detailed_body_round_trips() {
        let body = json!({"status": "ok", "version": "0.1.0", "uptimeSeconds": 12,
            "database": {"sizeBytes": 4096}, "retry": {"pending": 0, "deadLetters": 1},
            "breakers": {"open": 1, "halfOpen": 0}, "websocket": {"connections": 2},
            "memory": {"rssBytes": 1048576}, "instances": 2});
        let h: HealthDetailed = serde_json::from_value(body.clone()).expect("health");
        assert_eq!(serde_json::to_value(&h).expect("ser"), body);
        for kind in ["sqlite", "postgres"] {
            let mut with_store = body.clone();
            with_store["store"] = json!({ "kind": kind });
            let h: HealthDetailed = serde_json::from_value(with_store.clone()).expect("store");
            assert_eq!(serde_json::to_value(&h).expect("ser"), with_store);
        }
        let mut newer = body.clone();
        newer["store"] = json!({ "kind": "cassandra" });
        let h: HealthDetailed = serde_json::from_value(newer).expect("newer kind");
        assert_eq!(h.store.map(|s| s.kind), Some(StoreKind::Unknown));
        let mut older = body.clone();
        older.as_object_mut().expect("object").remove("instances");
        let h: HealthDetailed = serde_json::from_value(older).expect("no instances");
        assert_eq!(h.instances, None);
        let degraded = json!({"status": "degraded", "version": "0.1.0", "uptimeSeconds": 1,
            "database": {"sizeBytes": null}, "retry": {"pending": null, "deadLetters": null},
            "breakers": {"open": 0, "halfOpen": 0}, "websocket": {"connections": 0},
            "memory": {"rssBytes": null}, "instances": null});
        let h: HealthDetailed = serde_json::from_value(degraded.clone()).expect("degraded");
        assert_eq!(serde_json::to_value(&h).expect("ser"), degraded);
    }
}
