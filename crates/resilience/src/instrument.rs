//! Breaker metrics through the `metrics` facade.

use crate::metric_names;

use crate::breaker::{BreakerInstrument, BreakerState};

/// Reports breakers as `nexus_circuit_breaker_state{target}` (0 closed, 1 half-open, 2 open) and
/// `nexus_circuit_breaker_trips_total{target}`. With instances sharing a store, the gauge follows
/// states adopted from the others too, while the counter counts this instance's own trips only
/// (each trip is counted once, by the instance that tripped).
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsInstrument;

impl BreakerInstrument for MetricsInstrument {
    fn state_changed(&self, target: &str, state: BreakerState) {
        metrics::gauge!(metric_names::CIRCUIT_BREAKER_STATE, "target" => target.to_owned())
            .set(gauge(state));
    }

    fn tripped(&self, target: &str) {
        metrics::counter!(metric_names::CIRCUIT_BREAKER_TRIPS_TOTAL, "target" => target.to_owned())
            .increment(1);
    }
}

/// The gauge value of `nexus_circuit_breaker_state` (API.md section 8): 0 closed, 1 half-open,
/// 2 open.
fn gauge(state: BreakerState) -> f64 {
    match state {
        BreakerState::Closed => 0.0,
        BreakerState::HalfOpen => 1.0,
        BreakerState::Open => 2.0,
    }
}
