//! Circuit breakers, one per target origin (API.md section 5).
//!
//! `closed` -> `open` after `failure_threshold` consecutive failures; once `reset_timeout` has
//! passed, `half_open` admits one trial at a time; `success_threshold` trial successes close it,
//! a trial failure opens it again. Time comes from the caller, so the state machine is pure.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
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
    /// A breaker moved to open (counted in `trips`).
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

    fn snapshot(&self, target: &str, cfg: &BreakerConfig) -> BreakerSnapshot {
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

/// Every target's breaker, created on first use.
pub struct Breakers {
    config: BreakerConfig,
    breakers: Mutex<HashMap<String, CircuitBreaker>>,
    instrument: Arc<dyn BreakerInstrument>,
}

impl std::fmt::Debug for Breakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breakers")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Default for Breakers {
    fn default() -> Self {
        Breakers::new(BreakerConfig::default())
    }
}

impl Breakers {
    /// Breakers with these settings and no instrument.
    pub fn new(config: BreakerConfig) -> Self {
        Breakers::with_instrument(config, Arc::new(NoInstrument))
    }

    /// Breakers that report state changes to `instrument`.
    pub fn with_instrument(config: BreakerConfig, instrument: Arc<dyn BreakerInstrument>) -> Self {
        Breakers {
            config,
            breakers: Mutex::new(HashMap::new()),
            instrument,
        }
    }

    /// The settings.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    fn with<R>(&self, target: &str, f: impl FnOnce(&mut CircuitBreaker) -> R) -> R {
        let mut map = self.breakers.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get_mut(target) {
            Some(b) => f(b),
            None => f(map.entry(target.to_owned()).or_default()),
        }
    }

    fn report(&self, target: &str, change: Option<BreakerState>) -> Option<BreakerState> {
        if let Some(state) = change {
            if state == BreakerState::Open {
                self.instrument.tripped(target);
            }
            self.instrument.state_changed(target, state);
            tracing::info!(target, state = state.as_str(), "circuit breaker changed");
        }
        change
    }

    /// Asks to call `target` at `now`.
    pub fn admit(&self, target: &str, now: Timestamp) -> Admission {
        let (admission, change) = self.with(target, |b| b.admit(now, &self.config));
        self.report(target, change);
        admission
    }

    /// Reports how a call admitted by [`Breakers::admit`] ended; returns the new state if it
    /// changed.
    pub fn record(
        &self,
        target: &str,
        trial: bool,
        result: CallResult,
        now: Timestamp,
    ) -> Option<BreakerState> {
        let change = self.with(target, |b| b.record(trial, result, now, &self.config));
        self.report(target, change)
    }

    /// Whether a call to `target` would be let through at `now`, without asking for it.
    pub fn would_admit(&self, target: &str, now: Timestamp) -> bool {
        let map = self.breakers.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(target)
            .is_none_or(|b| b.would_admit(now, &self.config))
    }

    /// Closes one breaker; `false` when no breaker is known for `target`.
    pub fn reset(&self, target: &str) -> bool {
        let change = {
            let mut map = self.breakers.lock().unwrap_or_else(PoisonError::into_inner);
            map.get_mut(target).map(CircuitBreaker::reset)
        };
        match change {
            Some(change) => {
                self.report(target, change);
                true
            }
            None => false,
        }
    }

    /// Takes back kept states (at start). A breaker already known here is left as it is.
    pub fn restore(&self, records: impl IntoIterator<Item = BreakerRecord>) {
        let mut restored = Vec::new();
        {
            let mut map = self.breakers.lock().unwrap_or_else(PoisonError::into_inner);
            for record in records {
                if let std::collections::hash_map::Entry::Vacant(slot) =
                    map.entry(record.target.clone())
                {
                    let b = slot.insert(CircuitBreaker::from_record(&record));
                    restored.push((record.target, b.state));
                }
            }
        }
        for (target, state) in restored {
            self.instrument.state_changed(&target, state);
        }
    }

    /// One target's state to keep across a restart.
    pub fn record_of(&self, target: &str) -> Option<BreakerRecord> {
        let map = self.breakers.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(target).map(|b| b.to_record(target))
    }

    /// One target's breaker.
    pub fn get(&self, target: &str) -> Option<BreakerSnapshot> {
        let map = self.breakers.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(target).map(|b| b.snapshot(target, &self.config))
    }

    /// Every known breaker, by target.
    pub fn snapshot(&self) -> Vec<BreakerSnapshot> {
        let map = self.breakers.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<BreakerSnapshot> = map
            .iter()
            .map(|(t, b)| b.snapshot(t, &self.config))
            .collect();
        all.sort_by(|a, b| a.target.cmp(&b.target));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_unix_millis(ms).expect("valid")
    }

    const T: &str = "http://127.0.0.1:4000";

    #[test]
    fn opens_after_consecutive_failures_and_recovers_through_trials() {
        let b = Breakers::default();
        for i in 0..4 {
            assert_eq!(b.admit(T, t(i)), Admission::Allowed { trial: false });
            assert_eq!(b.record(T, false, CallResult::Failure, t(i)), None);
        }
        // A success in between resets the count.
        b.record(T, false, CallResult::Success, t(4));
        for i in 0..4 {
            b.record(T, false, CallResult::Failure, t(10 + i));
        }
        assert_eq!(b.get(T).map(|s| s.state), Some(BreakerState::Closed));
        assert_eq!(
            b.record(T, false, CallResult::Failure, t(20)),
            Some(BreakerState::Open)
        );
        let s = b.get(T).expect("known");
        assert_eq!(
            (s.trips, s.opened_at, s.next_trial_at),
            (1, Some(t(20)), Some(t(30_020)))
        );
        assert_eq!(
            b.admit(T, t(30_019)),
            Admission::Rejected { until: t(30_020) }
        );
        // Half-open: exactly one trial at a time.
        assert_eq!(b.admit(T, t(30_020)), Admission::Allowed { trial: true });
        assert_eq!(b.get(T).map(|s| s.state), Some(BreakerState::HalfOpen));
        assert!(matches!(b.admit(T, t(30_021)), Admission::Rejected { .. }));
        assert_eq!(b.record(T, true, CallResult::Success, t(30_100)), None);
        assert_eq!(b.admit(T, t(30_101)), Admission::Allowed { trial: true });
        assert_eq!(
            b.record(T, true, CallResult::Success, t(30_200)),
            Some(BreakerState::Closed)
        );
        assert_eq!(b.admit(T, t(30_201)), Admission::Allowed { trial: false });
    }

    #[test]
    fn a_failed_trial_opens_again_and_counts_a_trip() {
        let cfg = BreakerConfig {
            failure_threshold: 1,
            ..Default::default()
        };
        let b = Breakers::new(cfg);
        b.record(T, false, CallResult::Failure, t(0));
        assert_eq!(b.admit(T, t(30_000)), Admission::Allowed { trial: true });
        assert_eq!(
            b.record(T, true, CallResult::Failure, t(30_001)),
            Some(BreakerState::Open)
        );
        let s = b.get(T).expect("known");
        assert_eq!(
            (s.state, s.trips, s.next_trial_at),
            (BreakerState::Open, 2, Some(t(60_001)))
        );
        // A late result of a call admitted while closed does not move it.
        assert_eq!(b.record(T, false, CallResult::Success, t(30_002)), None);
        assert_eq!(b.get(T).map(|s| s.state), Some(BreakerState::Open));
        // An abandoned trial frees the slot.
        assert_eq!(b.admit(T, t(60_001)), Admission::Allowed { trial: true });
        b.record(T, true, CallResult::Abandoned, t(60_002));
        assert_eq!(b.admit(T, t(60_003)), Admission::Allowed { trial: true });
        assert!(b.reset(T));
        assert!(!b.reset("http://unknown:1"));
        assert_eq!(b.get(T).map(|s| s.state), Some(BreakerState::Closed));
    }

    #[test]
    fn kept_states_come_back() {
        let b = Breakers::new(BreakerConfig {
            failure_threshold: 1,
            ..Default::default()
        });
        b.record(T, false, CallResult::Failure, t(1_000));
        let kept = b.record_of(T).expect("known");
        assert!(kept.open);
        let after_restart = Breakers::default();
        after_restart.restore([kept, b.record_of(T).expect("known")]);
        let s = after_restart.get(T).expect("restored");
        assert_eq!(
            (s.state, s.trips, s.next_trial_at),
            (BreakerState::Open, 1, Some(t(31_000)))
        );
        assert!(matches!(
            after_restart.admit(T, t(30_999)),
            Admission::Rejected { .. }
        ));
        assert_eq!(
            after_restart.admit(T, t(31_000)),
            Admission::Allowed { trial: true }
        );
    }

    #[test]
    fn instrument_sees_every_change() {
        #[derive(Default)]
        struct Seen(Mutex<Vec<String>>);
        impl BreakerInstrument for Seen {
            fn state_changed(&self, target: &str, state: BreakerState) {
                self.0
                    .lock()
                    .expect("lock")
                    .push(format!("{target} {}", state.as_str()));
            }
            fn tripped(&self, target: &str) {
                self.0.lock().expect("lock").push(format!("{target} trip"));
            }
        }
        let seen = Arc::new(Seen::default());
        let b = Breakers::with_instrument(
            BreakerConfig {
                failure_threshold: 1,
                success_threshold: 1,
                ..Default::default()
            },
            Arc::clone(&seen) as Arc<dyn BreakerInstrument>,
        );
        b.record("x", false, CallResult::Failure, t(0));
        b.admit("x", t(30_000));
        b.record("x", true, CallResult::Success, t(30_001));
        assert_eq!(
            *seen.0.lock().expect("lock"),
            vec!["x trip", "x open", "x half_open", "x closed"]
        );
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
