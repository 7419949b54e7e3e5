//! The metrics `nexus-resilience` records (API.md section 8), named beside the code that records them,
//! with their kind and description. The binary that installs the Prometheus exporter describes
//! every crate's [`ALL`]. Names follow `nexus_<what>_<unit>`; the server's ops test checks the
//! convention and that all the lists together are API.md section 8, each name once.

use metrics_util::MetricKind;

/// Deliveries scheduled for another attempt, by consumer `type` and failure `reason`.
pub const RETRY_QUEUE_ADDITIONS_TOTAL: &str = "nexus_retry_queue_additions_total";
/// Deliveries that became dead letters, by consumer `type`.
pub const DEAD_LETTER_QUEUE_ADDITIONS_TOTAL: &str = "nexus_dead_letter_queue_additions_total";
/// Deliveries waiting in the retry queue.
pub const RETRY_QUEUE_SIZE: &str = "nexus_retry_queue_size";
/// Dead letters.
pub const DEAD_LETTER_QUEUE_SIZE: &str = "nexus_dead_letter_queue_size";
/// Circuit breaker state by `target`: 0 closed, 1 half-open, 2 open.
pub const CIRCUIT_BREAKER_STATE: &str = "nexus_circuit_breaker_state";
/// Moves of a circuit breaker to open, by `target`.
pub const CIRCUIT_BREAKER_TRIPS_TOTAL: &str = "nexus_circuit_breaker_trips_total";

/// Every metric of this crate: name, kind and description.
pub const ALL: &[(&str, MetricKind, &str)] = &[
    (
        RETRY_QUEUE_ADDITIONS_TOTAL,
        MetricKind::Counter,
        "Deliveries scheduled for another attempt, by consumer type and reason",
    ),
    (
        DEAD_LETTER_QUEUE_ADDITIONS_TOTAL,
        MetricKind::Counter,
        "Deliveries that became dead letters, by consumer type",
    ),
    (
        RETRY_QUEUE_SIZE,
        MetricKind::Gauge,
        "Deliveries waiting in the retry queue",
    ),
    (DEAD_LETTER_QUEUE_SIZE, MetricKind::Gauge, "Dead letters"),
    (
        CIRCUIT_BREAKER_STATE,
        MetricKind::Gauge,
        "Circuit breaker state by target: 0 closed, 1 half-open, 2 open",
    ),
    (
        CIRCUIT_BREAKER_TRIPS_TOTAL,
        MetricKind::Counter,
        "Moves of a circuit breaker to open, by target",
    ),
];
