//! Circuit breakers, one per target origin (API.md section 5).
//!
//! `closed` -> `open` after `failure_threshold` consecutive failures; once `reset_timeout` has
//! passed, `half_open` admits one trial at a time; `success_threshold` trial successes close it,
//! a trial failure opens it again. Time comes from the caller, so the state machine is pure.
//! [`crate::Breakers`] keeps one per target and shares them through the store.

use std::time::Duration;

use nexus_event::Timestamp;
use nexus_store::BreakerRecord;

use crate::clock::later;
use crate::error::ConfigError;

/// Breaker settings (`[breaker]` in the config file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open a closed breaker. Default 5.
    pub failure_threshold: u32,
    /// Trial successes that close a half-open breaker. Default 2.
    pub success_threshold: u32,
    /// How long an open breaker waits before its first trial. Default 30 s.
    pub reset_timeout: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            success_threshold: 2,
            reset_timeout: Duration::from_secs(30),
        }
    }
}

impl BreakerConfig {
    /// Checks that every setting can work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.failure_threshold == 0 {
            return Err(ConfigError::Threshold {
                field: "failure_threshold",
            });
        }
        if self.success_threshold == 0 {
            return Err(ConfigError::Threshold {
                field: "success_threshold",
            });
        }
        if self.reset_timeout.is_zero() {
            return Err(ConfigError::ResetTimeout);
        }
        Ok(())
    }
}

/// Where a breaker stands: the wire type of the admin API (`closed`, `open`, `half_open`), so
/// the state the breaker keeps and the state the API shows are one type.
pub use nexus_api::breakers::BreakerState;

/// Whether a call may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead. `trial` when this call is the half-open breaker's trial: report its result with
    /// the same flag.
    Allowed {
        /// Whether this is a trial.
        trial: bool,
    },
    /// Do not call; try again at `until` at the latest.
    Rejected {
        /// The next trial time.
        until: Timestamp,
    },
}

/// What the deliveries parked behind a breaker wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Closed (or never seen): nothing needs to wait.
    Closed,
    /// Open: no call until `until`, the first trial time.
    Open {
        /// When a trial may go through.
        until: Timestamp,
    },
    /// A trial may go through now.
    TrialDue,
    /// A trial is running; its result decides.
    TrialRunning,
}

/// What a call came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallResult {
    /// The target answered well.
    Success,
    /// The target failed.
    Failure,
    /// The call was given up before it finished (a shutdown): it says nothing about the target.
    Abandoned,
}

/// One breaker's state and counts: the admin API's `Breaker` body itself, so what the breaker
/// reports and what `GET /api/breakers` shows are one type.
pub type BreakerSnapshot = nexus_api::breakers::Breaker;

/// Receives state changes, for metrics. Every method does nothing by default.
pub trait BreakerInstrument: Send + Sync {
    /// A breaker moved to `state`.
    fn state_changed(&self, _target: &str, _state: BreakerState) {}
    /// A breaker moved to open (counted in `trips`) here. A trip adopted from another instance
    /// sharing the store ([`crate::Breakers::sync`]) is not reported: the instance that tripped counted
    /// it; only its [`BreakerInstrument::state_changed`] is.
    fn tripped(&self, _target: &str) {}
}

/// The instrument that does nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoInstrument;

impl BreakerInstrument for NoInstrument {}

/// The state machine of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitBreaker {
    state: BreakerState,
    consecutive_failures: u32,
    half_open_successes: u32,
    trial_in_flight: bool,
    trips: u64,
    opened_at: Option<Timestamp>,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker {
            state: BreakerState::Closed,
            consecutive_failures: 0,
            half_open_successes: 0,
            trial_in_flight: false,
            trips: 0,
            opened_at: None,
        }
    }
}

impl CircuitBreaker {
    /// Where it stands.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Moves to open so far.
    pub fn trips(&self) -> u64 {
        self.trips
    }

    /// Whether a half-open trial is running.
    pub fn trial_in_flight(&self) -> bool {
        self.trial_in_flight
    }

    /// Asks to make a call at `now`. Returns the answer and the new state if it changed.
    pub fn admit(
        &mut self,
        now: Timestamp,
        cfg: &BreakerConfig,
    ) -> (Admission, Option<BreakerState>) {
        match self.state {
            BreakerState::Closed => (Admission::Allowed { trial: false }, None),
            BreakerState::Open => {
                let next = later(self.opened_at.unwrap_or(now), cfg.reset_timeout);
                if now < next {
                    (Admission::Rejected { until: next }, None)
                } else {
                    self.state = BreakerState::HalfOpen;
                    self.half_open_successes = 0;
                    self.trial_in_flight = true;
                    (
                        Admission::Allowed { trial: true },
                        Some(BreakerState::HalfOpen),
                    )
                }
            }
            BreakerState::HalfOpen if self.trial_in_flight => (
                Admission::Rejected {
                    until: later(now, cfg.reset_timeout),
                },
                None,
            ),
            BreakerState::HalfOpen => {
                self.trial_in_flight = true;
                (Admission::Allowed { trial: true }, None)
            }
        }
    }

    /// What deliveries parked behind this breaker wait for at `now`.
    pub fn gate(&self, now: Timestamp, cfg: &BreakerConfig) -> Gate {
        match self.state {
            BreakerState::Closed => Gate::Closed,
            BreakerState::Open => {
                let until = later(self.opened_at.unwrap_or(now), cfg.reset_timeout);
                if now < until {
                    Gate::Open { until }
                } else {
                    Gate::TrialDue
                }
            }
            BreakerState::HalfOpen if self.trial_in_flight => Gate::TrialRunning,
            BreakerState::HalfOpen => Gate::TrialDue,
        }
    }

    /// Whether [`CircuitBreaker::admit`] would let a call through at `now`, without asking.
    pub fn would_admit(&self, now: Timestamp, cfg: &BreakerConfig) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open => now >= later(self.opened_at.unwrap_or(now), cfg.reset_timeout),
            BreakerState::HalfOpen => !self.trial_in_flight,
        }
    }

    /// Reports how an admitted call ended. `trial` is what [`CircuitBreaker::admit`] said. Results
    /// of calls admitted before the breaker opened do not move it again.
    pub fn record(
        &mut self,
        trial: bool,
        result: CallResult,
        now: Timestamp,
        cfg: &BreakerConfig,
    ) -> Option<BreakerState> {
        match (self.state, trial, result) {
            (_, _, CallResult::Abandoned) => {
                if trial {
                    self.trial_in_flight = false;
                }
                None
            }
            (BreakerState::Closed, false, CallResult::Success) => {
                self.consecutive_failures = 0;
                None
            }
            (BreakerState::Closed, false, CallResult::Failure) => {
                self.consecutive_failures += 1;
                (self.consecutive_failures >= cfg.failure_threshold).then(|| self.open(now))
            }
            (BreakerState::HalfOpen, true, CallResult::Success) => {
                self.trial_in_flight = false;
                self.half_open_successes += 1;
                (self.half_open_successes >= cfg.success_threshold).then(|| self.close())
            }
            (BreakerState::HalfOpen, true, CallResult::Failure) => {
                self.trial_in_flight = false;
                Some(self.open(now))
            }
            // A call admitted while closed that ends after the breaker opened, or a trial whose
            // breaker was reset meanwhile: it no longer says anything about the current state.
            _ => None,
        }
    }

    /// Closes the breaker (an operator's reset).
    pub fn reset(&mut self) -> Option<BreakerState> {
        (self.state != BreakerState::Closed).then(|| self.close())
    }

    /// Takes another instance's newer record of this target: open since its `opened_at`, or
    /// closed, with its trips. The consecutive-failure count stays this instance's own (a close
    /// clears it). Returns the new state if it changed. A record of the trip this breaker already
    /// holds (open since the same time) leaves it as it is, half-open trial included.
    pub fn adopt(&mut self, record: &BreakerRecord) -> Option<BreakerState> {
        self.trips = record.trips;
        match record.opened_at.filter(|_| record.open) {
            Some(at) if self.state != BreakerState::Closed && self.opened_at == Some(at) => None,
            Some(at) => {
                let was = self.state;
                self.state = BreakerState::Open;
                self.opened_at = Some(at);
                self.half_open_successes = 0;
                self.trial_in_flight = false;
                (was != BreakerState::Open).then_some(BreakerState::Open)
            }
            None => self.reset(),
        }
    }

    fn open(&mut self, now: Timestamp) -> BreakerState {
        self.state = BreakerState::Open;
        self.opened_at = Some(now);
        self.trips += 1;
        self.half_open_successes = 0;
        self.trial_in_flight = false;
        BreakerState::Open
    }

    fn close(&mut self) -> BreakerState {
        self.state = BreakerState::Closed;
        self.consecutive_failures = 0;
        self.half_open_successes = 0;
        self.trial_in_flight = false;
        self.opened_at = None;
        BreakerState::Closed
    }

    /// The state to keep across a restart.
    pub fn to_record(&self, target: &str) -> BreakerRecord {
        BreakerRecord {
            target: target.to_owned(),
            open: self.state != BreakerState::Closed,
            consecutive_failures: self.consecutive_failures,
            trips: self.trips,
            opened_at: self.opened_at,
            // The store assigns it at the save.
            generation: 0,
        }
    }

    /// A breaker as it was kept: an open (or half-open) one resumes open since `opened_at`, so its
    /// next trial comes when it would have.
    pub fn from_record(record: &BreakerRecord) -> Self {
        CircuitBreaker {
            state: if record.open && record.opened_at.is_some() {
                BreakerState::Open
            } else {
                BreakerState::Closed
            },
            consecutive_failures: record.consecutive_failures,
            half_open_successes: 0,
            trial_in_flight: false,
            trips: record.trips,
            opened_at: record.opened_at.filter(|_| record.open),
        }
    }

    pub(crate) fn snapshot(&self, target: &str, cfg: &BreakerConfig) -> BreakerSnapshot {
        nexus_api::breakers::Breaker {
            target: target.to_owned(),
            state: self.state,
            consecutive_failures: self.consecutive_failures,
            trips: self.trips,
            opened_at: self.opened_at,
            next_trial_at: match self.state {
                BreakerState::Open => self.opened_at.map(|t| later(t, cfg.reset_timeout)),
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_unix_millis(ms).expect("valid")
    }

    #[derive(Debug, Clone)]
    enum Op {
        Admit,
        Succeed,
        Fail,
        Abandon,
        Wait(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Admit),
            2 => Just(Op::Succeed),
            3 => Just(Op::Fail),
            1 => Just(Op::Abandon),
            2 => (0u64..40_000).prop_map(Op::Wait),
        ]
    }

    /// The contract written as plainly as possible: the model the breaker is checked against.
    #[derive(Debug, Default)]
    struct Model {
        open_since: Option<i64>,
        half_open: bool,
        failures: u32,
        successes: u32,
        trips: u64,
    }

    proptest! {
        #[test]
        fn agrees_with_a_simple_model(ops in proptest::collection::vec(op(), 1..200)) {
            let cfg = BreakerConfig::default();
            let reset = cfg.reset_timeout.as_millis() as i64;
            let mut b = CircuitBreaker::default();
            let mut m = Model::default();
            let mut now = 0i64;
            // Admitted calls still running: whether each is a trial.
            let mut running: Vec<bool> = Vec::new();
            for op in ops {
                match op {
                    Op::Wait(ms) => now += ms as i64,
                    Op::Admit => {
                        let (a, _) = b.admit(t(now), &cfg);
                        let trial_running = running.iter().any(|&trial| trial);
                        let expect = match (m.open_since, m.half_open) {
                            (None, _) => Some(false),
                            (Some(since), false) if now >= since + reset => {
                                m.half_open = true;
                                m.successes = 0;
                                Some(true)
                            }
                            (Some(_), false) => None,
                            (Some(_), true) if trial_running => None,
                            (Some(_), true) => Some(true),
                        };
                        match (a, expect) {
                            (Admission::Allowed { trial }, Some(want)) => {
                                prop_assert_eq!(trial, want);
                                running.push(trial);
                            }
                            (Admission::Rejected { .. }, None) => {}
                            (got, want) => prop_assert!(false, "admit gave {:?}, model {:?}", got, want),
                        }
                    }
                    Op::Succeed | Op::Fail | Op::Abandon if !running.is_empty() => {
                        let trial = running.remove(0);
                        let result = match op {
                            Op::Succeed => CallResult::Success,
                            Op::Fail => CallResult::Failure,
                            _ => CallResult::Abandoned,
                        };
                        b.record(trial, result, t(now), &cfg);
                        match (m.open_since.is_some(), m.half_open, trial, result) {
                            (false, _, false, CallResult::Success) => m.failures = 0,
                            (false, _, false, CallResult::Failure) => {
                                m.failures += 1;
                                if m.failures >= cfg.failure_threshold {
                                    m.open_since = Some(now);
                                    m.trips += 1;
                                    m.failures = 0;
                                }
                            }
                            (true, true, true, CallResult::Success) => {
                                m.successes += 1;
                                if m.successes >= cfg.success_threshold {
                                    m = Model { trips: m.trips, ..Model::default() };
                                }
                            }
                            (true, true, true, CallResult::Failure) => {
                                m.open_since = Some(now);
                                m.half_open = false;
                                m.trips += 1;
                            }
                            _ => {}
                        }
                    }
                    _ => {}
                }
                let want = match (m.open_since, m.half_open) {
                    (None, _) => BreakerState::Closed,
                    (Some(_), false) => BreakerState::Open,
                    (Some(_), true) => BreakerState::HalfOpen,
                };
                prop_assert_eq!(b.state(), want);
                prop_assert_eq!(b.trips(), m.trips);
                prop_assert!(running.iter().filter(|&&trial| trial).count() <= 1, "two trials at once");
            }
        }
    }
}
