//! The metrics `nexus-outbound` records (API.md section 8), named beside the code that records them,
//! with their kind and description. The binary that installs the Prometheus exporter describes
//! every crate's [`ALL`]. Names follow `nexus_<what>_<unit>`; the server's ops test checks the
//! convention and that all the lists together are API.md section 8, each name once.

use metrics_util::MetricKind;

/// Outbound HTTP calls, by `target`, `method` and `status_code` (a number, `error` or `timeout`).
pub const HTTP_CALLS_TOTAL: &str = "nexus_http_calls_total";
/// Outbound HTTP call time, by `target`.
pub const HTTP_CALL_DURATION_SECONDS: &str = "nexus_http_call_duration_seconds";

/// Every metric of this crate: name, kind and description.
pub const ALL: &[(&str, MetricKind, &str)] = &[
    (
        HTTP_CALLS_TOTAL,
        MetricKind::Counter,
        "Outbound HTTP calls, by target origin, method and status code",
    ),
    (
        HTTP_CALL_DURATION_SECONDS,
        MetricKind::Histogram,
        "Outbound HTTP call time in seconds, by target origin",
    ),
];
