//! Every metric Nexus exports (API.md section 8), named once, with its description and kind.
//!
//! Libraries emit through the `metrics` facade using these names; the binary that installs the
//! Prometheus exporter registers the descriptions from [`ALL`]. Names follow
//! `nexus_<what>_<unit>`.

/// How a metric behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution of observations.
    Histogram,
}

/// Events accepted, by `event_type` and `source`.
pub const EVENTS_TOTAL: &str = "nexus_events_total";
/// Reactor executions, by `reactor` and `status`.
pub const REACTOR_EXECUTIONS_TOTAL: &str = "nexus_reactor_executions_total";
/// Outbound HTTP calls, by `target`, `method` and `status_code` (a number, `error` or `timeout`).
pub const HTTP_CALLS_TOTAL: &str = "nexus_http_calls_total";
/// Deliveries scheduled for another attempt, by consumer `type` and failure `reason`.
pub const RETRY_QUEUE_ADDITIONS_TOTAL: &str = "nexus_retry_queue_additions_total";
/// Deliveries that became dead letters, by consumer `type`.
pub const DEAD_LETTER_QUEUE_ADDITIONS_TOTAL: &str = "nexus_dead_letter_queue_additions_total";
/// Reactor execution time, by `reactor`.
pub const REACTOR_DURATION_SECONDS: &str = "nexus_reactor_duration_seconds";
/// Outbound HTTP call time, by `target`.
pub const HTTP_CALL_DURATION_SECONDS: &str = "nexus_http_call_duration_seconds";
/// Time to durably commit published events.
pub const EVENT_PERSIST_DURATION_SECONDS: &str = "nexus_event_persist_duration_seconds";
/// Deliveries waiting in the retry queue.
pub const RETRY_QUEUE_SIZE: &str = "nexus_retry_queue_size";
/// Dead letters.
pub const DEAD_LETTER_QUEUE_SIZE: &str = "nexus_dead_letter_queue_size";
/// Open WebSocket connections.
pub const WEBSOCKET_CONNECTIONS: &str = "nexus_websocket_connections";
/// Size of the database files.
pub const DATABASE_SIZE_BYTES: &str = "nexus_database_size_bytes";
/// Circuit breaker state by `target`: 0 closed, 1 half-open, 2 open.
pub const CIRCUIT_BREAKER_STATE: &str = "nexus_circuit_breaker_state";
/// Moves of a circuit breaker to open, by `target`.
pub const CIRCUIT_BREAKER_TRIPS_TOTAL: &str = "nexus_circuit_breaker_trips_total";

/// Resident set size of the server process, in bytes, under the name Prometheus client libraries
/// use, so stock dashboards and alerts find it. Not one of API.md section 8: see [`PROCESS`].
pub const PROCESS_RESIDENT_MEMORY_BYTES: &str = "process_resident_memory_bytes";

/// Process metrics the server exports besides [`ALL`]: name, kind and description.
pub const PROCESS: &[(&str, Kind, &str)] = &[(
    PROCESS_RESIDENT_MEMORY_BYTES,
    Kind::Gauge,
    "Resident memory size of the process, in bytes",
)];

/// Every metric: name, kind and description.
pub const ALL: &[(&str, Kind, &str)] = &[
    (
        EVENTS_TOTAL,
        Kind::Counter,
        "Events accepted, by type and source",
    ),
    (
        REACTOR_EXECUTIONS_TOTAL,
        Kind::Counter,
        "Reactor executions, by reactor and status",
    ),
    (
        HTTP_CALLS_TOTAL,
        Kind::Counter,
        "Outbound HTTP calls, by target origin, method and status code",
    ),
    (
        RETRY_QUEUE_ADDITIONS_TOTAL,
        Kind::Counter,
        "Deliveries scheduled for another attempt, by consumer type and reason",
    ),
    (
        DEAD_LETTER_QUEUE_ADDITIONS_TOTAL,
        Kind::Counter,
        "Deliveries that became dead letters, by consumer type",
    ),
    (
        REACTOR_DURATION_SECONDS,
        Kind::Histogram,
        "Reactor execution time in seconds",
    ),
    (
        HTTP_CALL_DURATION_SECONDS,
        Kind::Histogram,
        "Outbound HTTP call time in seconds, by target origin",
    ),
    (
        EVENT_PERSIST_DURATION_SECONDS,
        Kind::Histogram,
        "Time to durably commit published events, in seconds",
    ),
    (
        RETRY_QUEUE_SIZE,
        Kind::Gauge,
        "Deliveries waiting in the retry queue",
    ),
    (DEAD_LETTER_QUEUE_SIZE, Kind::Gauge, "Dead letters"),
    (
        WEBSOCKET_CONNECTIONS,
        Kind::Gauge,
        "Open WebSocket connections",
    ),
    (
        DATABASE_SIZE_BYTES,
        Kind::Gauge,
        "Size of the database and its write-ahead log, in bytes",
    ),
    (
        CIRCUIT_BREAKER_STATE,
        Kind::Gauge,
        "Circuit breaker state by target: 0 closed, 1 half-open, 2 open",
    ),
    (
        CIRCUIT_BREAKER_TRIPS_TOTAL,
        Kind::Counter,
        "Moves of a circuit breaker to open, by target",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_convention_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for (name, kind, description) in ALL {
            assert!(name.starts_with("nexus_"), "{name}");
            assert!(seen.insert(name), "{name} twice");
            assert!(!description.is_empty());
            match kind {
                Kind::Counter => assert!(name.ends_with("_total"), "{name}"),
                Kind::Histogram => assert!(name.ends_with("_seconds"), "{name}"),
                Kind::Gauge => {}
            }
        }
        assert_eq!(ALL.len(), 14, "every metric of API.md section 8");
        for (name, _, description) in PROCESS {
            assert!(name.starts_with("process_"), "{name}");
            assert!(seen.insert(name), "{name} twice");
            assert!(!description.is_empty());
        }
    }
}
