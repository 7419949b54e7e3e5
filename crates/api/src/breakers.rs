//! Circuit breakers as the admin API shows them (API.md sections 5 and 6).

use std::fmt;

use nexus_event::Timestamp;
use serde::{Deserialize, Serialize};

/// Where a breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls wait; a trial goes through after the reset timeout.
    Open,
    /// One trial is let through.
    HalfOpen,
}

impl BreakerState {
    /// The wire form: `closed`, `open`, `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A breaker: `{target, state, consecutiveFailures, trips, openedAt | null, nextTrialAt | null}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Breaker {
    /// The target's origin, `scheme://host:port`.
    pub target: String,
    /// Where it is.
    pub state: BreakerState,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Moves to `open` so far.
    pub trips: u64,
    /// When it last opened.
    pub opened_at: Option<Timestamp>,
    /// When the next trial may go through.
    pub next_trial_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn breakers_round_trip() {
        for body in [
            json!({"target": "http://127.0.0.1:4000", "state": "open", "consecutiveFailures": 5,
                "trips": 1, "openedAt": "2026-02-09T20:30:00.123Z",
                "nextTrialAt": "2026-02-09T20:30:30.123Z"}),
            json!({"target": "https://h:443", "state": "half_open", "consecutiveFailures": 0,
                "trips": 2, "openedAt": null, "nextTrialAt": null}),
            json!({"target": "https://h:443", "state": "closed", "consecutiveFailures": 0,
                "trips": 0, "openedAt": null, "nextTrialAt": null}),
        ] {
            let b: Breaker = serde_json::from_value(body.clone()).expect("breaker");
            assert_eq!(serde_json::to_value(&b).expect("ser"), body);
            assert_eq!(json!(b.state.as_str()), body["state"]);
        }
        assert!(serde_json::from_value::<BreakerState>(json!("ajar")).is_err());
    }
}
