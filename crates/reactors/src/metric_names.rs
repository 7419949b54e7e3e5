//! The metrics `nexus-reactors` records (API.md section 8), named beside the code that records them,
//! with their kind and description. The binary that installs the Prometheus exporter describes
//! every crate's [`ALL`]. Names follow `nexus_<what>_<unit>`; the server's ops test checks the
//! convention and that all the lists together are API.md section 8, each name once.

use metrics_util::MetricKind;

/// Reactor executions, by `reactor` and `status`.
pub const REACTOR_EXECUTIONS_TOTAL: &str = "nexus_reactor_executions_total";
/// Reactor execution time, by `reactor`.
pub const REACTOR_DURATION_SECONDS: &str = "nexus_reactor_duration_seconds";

/// Every metric of this crate: name, kind and description.
pub const ALL: &[(&str, MetricKind, &str)] = &[
    (
        REACTOR_EXECUTIONS_TOTAL,
        MetricKind::Counter,
        "Reactor executions, by reactor and status",
    ),
    (
        REACTOR_DURATION_SECONDS,
        MetricKind::Histogram,
        "Reactor execution time in seconds",
    ),
];
