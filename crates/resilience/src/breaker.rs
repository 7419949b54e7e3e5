//! Circuit breakers, one per target origin (API.md section 5).
//!
//! `closed` -> `open` after `failure_threshold` consecutive failures; once `reset_timeout` has
//! passed, `half_open` admits one trial at a time; `success_threshold` trial successes close it,
//! a trial failure opens it again. Time comes from the caller, so the state machine is pure.
//!
//! Instances sharing a store share their breakers (API.md section 13): every transition is saved
//! ([`Breakers::persist`]), the store gives each save a growing generation, and each instance
//! adopts the records it has not seen yet ([`Breakers::sync`], run every 500 ms by the retry
//! worker). The consecutive-failure count stays per instance, and so do half-open trials: once a
//! shared breaker's reset timeout has passed, each instance lets its own trial through, so a
//! target sees at most one trial per instance at a time.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nexus_event::Timestamp;
use nexus_store::{BreakerLog, BreakerRecord};

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
    /// A breaker moved to open (counted in `trips`) here. A trip adopted from another instance
    /// sharing the store ([`Breakers::sync`]) is not reported: the instance that tripped counted
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

/// One target's breaker and where it stands against the store's record of it.
#[derive(Debug, Default)]
struct Kept {
    breaker: CircuitBreaker,
    /// The newest generation of the target's record this process has saved or adopted: a record
    /// up to it is not news.
    seen: u64,
    /// A transition made here that no save has taken yet: the save to come supersedes whatever
    /// the store holds now, so nothing is adopted meanwhile.
    unsaved: bool,
    /// Saves of this target running now; nothing is adopted meanwhile either (the record read
    /// may be older than the one being written).
    saving: u32,
}

impl Kept {
    fn restored(record: &BreakerRecord) -> Self {
        Kept {
            breaker: CircuitBreaker::from_record(record),
            seen: record.generation,
            ..Kept::default()
        }
    }
}

/// Every target's breaker, created on first use.
///
/// Shared through a store: [`Breakers::persist`] saves a target's state after a transition and
/// [`Breakers::sync`] adopts the newer records other instances saved.
pub struct Breakers {
    config: BreakerConfig,
    breakers: Mutex<HashMap<String, Kept>>,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Kept>> {
        self.breakers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn with<R>(&self, target: &str, f: impl FnOnce(&mut Kept) -> R) -> R {
        let mut map = self.lock();
        match map.get_mut(target) {
            Some(k) => f(k),
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
        // Not a transition to save: a half-open breaker is kept as open.
        let (admission, change) = self.with(target, |k| k.breaker.admit(now, &self.config));
        self.report(target, change);
        admission
    }

    /// Reports how a call admitted by [`Breakers::admit`] ended; returns the new state if it
    /// changed. A change is to be saved with [`Breakers::persist`]: until then this target adopts
    /// nothing from the store.
    pub fn record(
        &self,
        target: &str,
        trial: bool,
        result: CallResult,
        now: Timestamp,
    ) -> Option<BreakerState> {
        let change = self.with(target, |k| {
            let change = k.breaker.record(trial, result, now, &self.config);
            k.unsaved |= change.is_some();
            change
        });
        self.report(target, change)
    }

    /// Whether a call to `target` would be let through at `now`, without asking for it.
    pub fn would_admit(&self, target: &str, now: Timestamp) -> bool {
        self.lock()
            .get(target)
            .is_none_or(|k| k.breaker.would_admit(now, &self.config))
    }

    /// Closes one breaker; `false` when no breaker is known for `target`. Save it with
    /// [`Breakers::persist`] so the other instances close it too.
    pub fn reset(&self, target: &str) -> bool {
        let change = self.lock().get_mut(target).map(|k| {
            let change = k.breaker.reset();
            k.unsaved |= change.is_some();
            change
        });
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
            let mut map = self.lock();
            for record in records {
                if let Entry::Vacant(slot) = map.entry(record.target.clone()) {
                    let k = slot.insert(Kept::restored(&record));
                    restored.push((record.target, k.breaker.state));
                }
            }
        }
        for (target, state) in restored {
            self.instrument.state_changed(&target, state);
        }
    }

    /// Adopts the records other instances saved: for each target whose record is newer than what
    /// this process last saved or adopted for it, takes its state (open since when, or closed)
    /// and trips, without saving anything back (see [`CircuitBreaker::adopt`]). A target with a
    /// change of its own not yet saved, or a save running, is left for a later sync: its save
    /// supersedes the record. A target not known here is taken as it is.
    ///
    /// State changes reach the instrument's [`BreakerInstrument::state_changed`], never
    /// [`BreakerInstrument::tripped`]: a trip adopted was counted where it happened. Returns the
    /// targets this closed (a reset elsewhere, or trials that passed elsewhere), whose parked
    /// deliveries may go again.
    pub fn adopt(&self, records: impl IntoIterator<Item = BreakerRecord>) -> Vec<String> {
        let mut changes = Vec::new();
        {
            let mut map = self.lock();
            for record in records {
                match map.entry(record.target.clone()) {
                    Entry::Vacant(slot) => {
                        let k = slot.insert(Kept::restored(&record));
                        changes.push((record.target, k.breaker.state));
                    }
                    Entry::Occupied(mut slot) => {
                        let k = slot.get_mut();
                        if record.generation <= k.seen || k.unsaved || k.saving > 0 {
                            continue;
                        }
                        k.seen = record.generation;
                        if let Some(state) = k.breaker.adopt(&record) {
                            changes.push((record.target, state));
                        }
                    }
                }
            }
        }
        let mut closed = Vec::new();
        for (target, state) in changes {
            self.instrument.state_changed(&target, state);
            tracing::info!(
                target,
                state = state.as_str(),
                "circuit breaker changed by another instance"
            );
            if state == BreakerState::Closed {
                closed.push(target);
            }
        }
        closed
    }

    /// Reads every record `log` keeps and adopts the newer ones ([`Breakers::adopt`]); returns
    /// the targets that closed.
    pub async fn sync<L: BreakerLog + ?Sized>(&self, log: &L) -> nexus_store::Result<Vec<String>> {
        Ok(self.adopt(log.breakers().await?))
    }

    /// Saves `target`'s state to `log`, after a transition or a reset, and notes the generation
    /// the store gave it so [`Breakers::sync`] does not take it back as news. `Ok(None)` when no
    /// breaker is known for `target`.
    pub async fn persist<L: BreakerLog + ?Sized>(
        &self,
        target: &str,
        log: &L,
    ) -> nexus_store::Result<Option<u64>> {
        let Some(record) = self.lock().get_mut(target).map(|k| {
            k.unsaved = false;
            k.saving += 1;
            k.breaker.to_record(target)
        }) else {
            return Ok(None);
        };
        // Counts the save as finished even if this future is dropped halfway.
        let _saving = Saving {
            breakers: self,
            target,
        };
        let generation = log.save_breaker(record).await?;
        if let Some(k) = self.lock().get_mut(target) {
            k.seen = k.seen.max(generation);
        }
        Ok(Some(generation))
    }

    /// One target's state to keep across a restart.
    pub fn record_of(&self, target: &str) -> Option<BreakerRecord> {
        self.lock().get(target).map(|k| {
            let mut record = k.breaker.to_record(target);
            record.generation = k.seen;
            record
        })
    }

    /// One target's breaker.
    pub fn get(&self, target: &str) -> Option<BreakerSnapshot> {
        self.lock()
            .get(target)
            .map(|k| k.breaker.snapshot(target, &self.config))
    }

    /// Every known breaker, by target.
    pub fn snapshot(&self) -> Vec<BreakerSnapshot> {
        let mut all: Vec<BreakerSnapshot> = self
            .lock()
            .iter()
            .map(|(t, k)| k.breaker.snapshot(t, &self.config))
            .collect();
        all.sort_by(|a, b| a.target.cmp(&b.target));
        all
    }
}

/// A save of [`Breakers::persist`] in progress; its drop counts it finished.
struct Saving<'a> {
    breakers: &'a Breakers,
    target: &'a str,
}

impl Drop for Saving<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.breakers.lock().get_mut(self.target) {
            k.saving = k.saving.saturating_sub(1);
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

    /// What the instrument heard, in order.
    #[derive(Default)]
    struct Heard(Mutex<Vec<String>>);

    impl BreakerInstrument for Heard {
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

    impl Heard {
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.0.lock().expect("lock"))
        }
    }

    /// A store's breaker table: each save bumps the target's generation. `gate`, while held,
    /// holds every save back.
    #[derive(Default)]
    struct MemLog {
        kept: Mutex<HashMap<String, BreakerRecord>>,
        gate: tokio::sync::Mutex<()>,
    }

    #[async_trait::async_trait]
    impl BreakerLog for MemLog {
        async fn save_breaker(&self, mut record: BreakerRecord) -> nexus_store::Result<u64> {
            let _open = self.gate.lock().await;
            let mut kept = self.kept.lock().expect("lock");
            record.generation = kept.get(&record.target).map_or(0, |r| r.generation) + 1;
            let generation = record.generation;
            kept.insert(record.target.clone(), record);
            Ok(generation)
        }

        async fn breakers(&self) -> nexus_store::Result<Vec<BreakerRecord>> {
            let mut all: Vec<_> = self.kept.lock().expect("lock").values().cloned().collect();
            all.sort_by(|a, b| a.target.cmp(&b.target));
            Ok(all)
        }
    }

    fn kept(open_at: Option<i64>, trips: u64, generation: u64) -> BreakerRecord {
        BreakerRecord {
            target: T.into(),
            open: open_at.is_some(),
            consecutive_failures: 0,
            trips,
            opened_at: open_at.map(t),
            generation,
        }
    }

    fn state(b: &Breakers) -> Option<BreakerState> {
        b.get(T).map(|s| s.state)
    }

    fn instance(heard: &Arc<Heard>) -> Breakers {
        Breakers::with_instrument(
            BreakerConfig {
                failure_threshold: 1,
                ..Default::default()
            },
            Arc::clone(heard) as Arc<dyn BreakerInstrument>,
        )
    }

    #[test]
    fn newer_records_win_and_older_ones_are_ignored() {
        let heard = Arc::new(Heard::default());
        let b = instance(&heard);
        // Unknown here: taken as it is.
        assert!(b.adopt([kept(Some(1_000), 1, 3)]).is_empty());
        let s = b.get(T).expect("adopted");
        assert_eq!(
            (s.state, s.trips, s.opened_at, s.next_trial_at),
            (BreakerState::Open, 1, Some(t(1_000)), Some(t(31_000)))
        );
        // Not newer than generation 3: ignored.
        assert!(b.adopt([kept(None, 1, 3), kept(None, 1, 2)]).is_empty());
        assert_eq!(state(&b), Some(BreakerState::Open));
        // A newer trip moves the next trial; the state stays open.
        assert!(b.adopt([kept(Some(5_000), 2, 4)]).is_empty());
        let s = b.get(T).expect("known");
        assert_eq!((s.trips, s.next_trial_at), (2, Some(t(35_000))));
        // A newer close (a reset elsewhere) closes it here and says so.
        assert_eq!(b.adopt([kept(None, 2, 5)]), vec![T.to_owned()]);
        assert_eq!(state(&b), Some(BreakerState::Closed));
        assert!(b.would_admit(T, t(5_001)));
        // Adopted trips are not counted as trips here; the state changes are reported.
        assert_eq!(
            heard.take(),
            vec![format!("{T} open"), format!("{T} closed")]
        );
    }

    #[test]
    fn an_adopted_trip_keeps_a_running_trial_of_the_same_trip() {
        let heard = Arc::new(Heard::default());
        let b = instance(&heard);
        b.adopt([kept(Some(0), 1, 1)]);
        assert_eq!(b.admit(T, t(30_000)), Admission::Allowed { trial: true });
        // Another instance saves the same trip again (its own trial started, say): no change.
        assert!(b.adopt([kept(Some(0), 1, 2)]).is_empty());
        assert_eq!(state(&b), Some(BreakerState::HalfOpen));
        assert!(matches!(b.admit(T, t(30_001)), Admission::Rejected { .. }));
        // Its trial failed and opened it again: open here too, this trial's slot given back.
        assert!(b.adopt([kept(Some(30_500), 2, 3)]).is_empty());
        let s = b.get(T).expect("known");
        assert_eq!(
            (s.state, s.trips, s.next_trial_at),
            (BreakerState::Open, 2, Some(t(60_500)))
        );
        // This instance's late trial result no longer moves it.
        assert_eq!(b.record(T, true, CallResult::Success, t(30_600)), None);
        assert_eq!(
            heard.take(),
            vec![
                format!("{T} open"),
                format!("{T} half_open"),
                format!("{T} open")
            ]
        );
    }

    #[tokio::test]
    async fn two_instances_share_trips_and_resets_through_the_store() {
        let log = MemLog::default();
        let (heard_a, heard_b) = (Arc::new(Heard::default()), Arc::new(Heard::default()));
        let (a, b) = (instance(&heard_a), instance(&heard_b));
        assert_eq!(
            a.record(T, false, CallResult::Failure, t(0)),
            Some(BreakerState::Open)
        );
        assert_eq!(a.persist(T, &log).await.expect("save"), Some(1));
        assert!(b.sync(&log).await.expect("sync").is_empty());
        assert_eq!(state(&b), Some(BreakerState::Open));
        assert!(matches!(b.admit(T, t(1)), Admission::Rejected { .. }));
        // Its own save is no news to A.
        assert!(a.sync(&log).await.expect("sync").is_empty());
        assert!(b.reset(T));
        assert_eq!(b.persist(T, &log).await.expect("save"), Some(2));
        assert_eq!(a.sync(&log).await.expect("sync"), vec![T.to_owned()]);
        assert_eq!(state(&a), Some(BreakerState::Closed));
        assert!(a.sync(&log).await.expect("sync").is_empty());
        assert!(b.sync(&log).await.expect("sync").is_empty());
        assert_eq!(a.record_of(T).map(|r| r.generation), Some(2));
        assert_eq!(
            heard_a.take(),
            vec![
                format!("{T} trip"),
                format!("{T} open"),
                format!("{T} closed")
            ]
        );
        assert_eq!(
            heard_b.take(),
            vec![format!("{T} open"), format!("{T} closed")],
            "B counts no trip of its own"
        );
        assert_eq!(
            b.persist("http://unknown:1", &log).await.expect("save"),
            None
        );
    }

    #[tokio::test]
    async fn a_change_not_yet_saved_is_not_overwritten() {
        let log = MemLog::default();
        let heard = Arc::new(Heard::default());
        let (a, other) = (instance(&heard), instance(&Arc::new(Heard::default())));
        // Another instance saved a closed breaker before this one tripped.
        other.record(T, false, CallResult::Success, t(0));
        other.persist(T, &log).await.expect("save");
        a.record(T, false, CallResult::Failure, t(10));
        assert!(a.sync(&log).await.expect("sync").is_empty());
        assert_eq!(
            state(&a),
            Some(BreakerState::Open),
            "the trip awaits its save"
        );
        // Nor while its save runs.
        let gate = log.gate.lock().await;
        let save = a.persist(T, &log);
        tokio::pin!(save);
        tokio::select! {
            biased;
            _ = &mut save => panic!("the save went through the gate"),
            () = std::future::ready(()) => {}
        }
        assert!(a.sync(&log).await.expect("sync").is_empty());
        assert_eq!(
            state(&a),
            Some(BreakerState::Open),
            "the trip is being saved"
        );
        drop(gate);
        assert_eq!(save.await.expect("save"), Some(2));
        // Saved over the older record: the store and every instance agree on the trip.
        assert!(a.sync(&log).await.expect("sync").is_empty());
        assert!(other.sync(&log).await.expect("sync").is_empty());
        assert_eq!(state(&other), Some(BreakerState::Open));
        assert_eq!(state(&a), Some(BreakerState::Open));
    }

    #[test]
    fn kept_states_carry_their_generation() {
        let b = Breakers::default();
        b.restore([kept(Some(0), 1, 7)]);
        assert_eq!(b.record_of(T).map(|r| r.generation), Some(7));
        assert!(b.adopt([kept(None, 1, 7)]).is_empty(), "restored: not news");
        assert_eq!(b.adopt([kept(None, 1, 8)]), vec![T.to_owned()]);
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
