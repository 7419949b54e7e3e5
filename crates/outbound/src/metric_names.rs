//! The metrics nexus-outbound records (API.md section 8), named once beside the code that records them,
//! with their kind and description. The binary that installs the Prometheus exporter describes
//! every crate's [`ALL`]; names follow `nexus_<what>_<unit>`.

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
                MetricKind::Counter => assert!(name.ends_with("_total"), "{name}"),
                MetricKind::Histogram => assert!(name.ends_with("_seconds"), "{name}"),
                MetricKind::Gauge => {}
            }
        }
    }
}
