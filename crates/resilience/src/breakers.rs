//! Every target's breaker in one place, shared by the instances of one store.
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

use nexus_event::Timestamp;
use nexus_store::{BreakerLog, BreakerRecord};

use crate::breaker::{
    Admission, BreakerConfig, BreakerInstrument, BreakerSnapshot, BreakerState, CallResult,
    CircuitBreaker, Gate, NoInstrument,
};

/// One target's breaker and where it stands against the store's record of it.
#[derive(Debug, Default)]
struct Kept {
    breaker: CircuitBreaker,
    /// The newest generation of the target's record this process has saved or adopted: a record
    /// up to it is not news.
    seen: u64,
    /// A transition made here that no save has taken yet (or whose save failed, or that an older
    /// state saved alongside it overwrote in the store): it supersedes whatever the store holds
    /// now, so nothing is adopted until it is saved, by [`Breakers::persist`] or else by the next
    /// [`Breakers::sync`].
    unsaved: bool,
    /// Saves of this target running now; nothing is adopted meanwhile either (the record read
    /// may be older than the one being written).
    saving: u32,
    /// How many transitions this process has made here (trips, closes, resets; not the adopted
    /// ones): names the state a save carries.
    changes: u64,
    /// The transition count of the state the store's record at generation `seen` carries: of
    /// this process's newest save that landed, or `changes` once a record is adopted. Saves of
    /// one target may overlap and land in either order; when the last one ends and this is not
    /// `changes`, the store holds an older state than the one here, and it is unsaved again.
    stored: u64,
}

impl Kept {
    fn restored(record: &BreakerRecord) -> Self {
        Kept {
            breaker: CircuitBreaker::from_record(record),
            seen: record.generation,
            ..Kept::default()
        }
    }

    /// Notes a transition made here (if `changed`): it is to be saved.
    fn changed(&mut self, changed: bool) {
        if changed {
            self.unsaved = true;
            self.changes += 1;
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
    /// changed. A change is to be saved with [`Breakers::persist`] (or it is by the next
    /// [`Breakers::sync`]): until then this target adopts nothing from the store.
    pub fn record(
        &self,
        target: &str,
        trial: bool,
        result: CallResult,
        now: Timestamp,
    ) -> Option<BreakerState> {
        let change = self.with(target, |k| {
            let change = k.breaker.record(trial, result, now, &self.config);
            k.changed(change.is_some());
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

    /// What deliveries parked behind `target`'s breaker wait for at `now` ([`Gate::Closed`] for
    /// a target never seen).
    pub fn gate(&self, target: &str, now: Timestamp) -> Gate {
        self.lock()
            .get(target)
            .map_or(Gate::Closed, |k| k.breaker.gate(now, &self.config))
    }

    /// Closes one breaker; `false` when no breaker is known for `target`. Save it with
    /// [`Breakers::persist`] so the other instances close it too.
    pub fn reset(&self, target: &str) -> bool {
        let change = self.lock().get_mut(target).map(|k| {
            let change = k.breaker.reset();
            k.changed(change.is_some());
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
                    restored.push((record.target, k.breaker.state()));
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
                        changes.push((record.target, k.breaker.state()));
                    }
                    Entry::Occupied(mut slot) => {
                        let k = slot.get_mut();
                        if record.generation <= k.seen || k.unsaved || k.saving > 0 {
                            continue;
                        }
                        k.seen = record.generation;
                        k.stored = k.changes;
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

    /// Brings this process and `log` together: first saves the local changes no save has taken
    /// yet (a failed save, a change no caller saved), then reads every record `log` keeps and
    /// adopts the newer ones ([`Breakers::adopt`]). Returns the targets that closed. On an error
    /// the local states stay as they are, and what was unsaved stays so for the next sync.
    pub async fn sync<L: BreakerLog + ?Sized>(&self, log: &L) -> nexus_store::Result<Vec<String>> {
        let unsaved: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, k)| k.unsaved && k.saving == 0)
            .map(|(target, _)| target.clone())
            .collect();
        for target in unsaved {
            self.persist(&target, log).await?;
        }
        Ok(self.adopt(log.breakers().await?))
    }

    /// Saves `target`'s state to `log`, after a transition or a reset, and notes the generation
    /// the store gave it so [`Breakers::sync`] does not take it back as news. `Ok(None)` when no
    /// breaker is known for `target`. A save that fails (or is dropped halfway) leaves the state
    /// unsaved, for the next sync to save.
    ///
    /// Saves of one target may run at once (a worker's trip and an admin's reset) and reach the
    /// store in either order. When the last of them ends, if the one the store took last (the
    /// highest generation) carries an older state than the one here, the state is unsaved again:
    /// the next sync saves it over, instead of this process keeping its state while the others
    /// adopt the older one.
    pub async fn persist<L: BreakerLog + ?Sized>(
        &self,
        target: &str,
        log: &L,
    ) -> nexus_store::Result<Option<u64>> {
        let Some((record, changes)) = self.lock().get_mut(target).map(|k| {
            k.unsaved = false;
            k.saving += 1;
            (k.breaker.to_record(target), k.changes)
        }) else {
            return Ok(None);
        };
        // Counts the save as finished even if this future is dropped halfway.
        let mut saving = Saving {
            breakers: self,
            target,
            changes,
            generation: None,
        };
        let generation = log.save_breaker(record).await?;
        saving.generation = Some(generation);
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

/// A save of [`Breakers::persist`] in progress; its drop counts it finished and notes what the
/// store holds now. A save without a `generation` (failed, or dropped halfway) leaves the state
/// for the next sync to save, and so does the last save of a target ending while the store's
/// newest record of ours is older than the state here.
struct Saving<'a> {
    breakers: &'a Breakers,
    target: &'a str,
    /// The transition count of the state being saved.
    changes: u64,
    /// The generation the store gave the record, once it did.
    generation: Option<u64>,
}

impl Drop for Saving<'_> {
    fn drop(&mut self) {
        let mut map = self.breakers.lock();
        let Some(k) = map.get_mut(self.target) else {
            return;
        };
        k.saving = k.saving.saturating_sub(1);
        match self.generation {
            // The newest record of this target the store holds: what it carries is kept.
            Some(generation) if generation > k.seen => {
                k.seen = generation;
                k.stored = self.changes;
            }
            // Overtaken: a save of ours running alongside landed after this one in the store
            // (a later generation) and returned first; its state is the one the store holds.
            Some(_) => {}
            None => k.unsaved = true,
        }
        // Decided once no save is running: a save still running may yet land over this one.
        if k.saving == 0 && k.stored != k.changes {
            k.unsaved = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    /// holds every save back; while `down`, every call fails. The next save to start after
    /// [`MemLog::hold_before`] waits for its release before it reaches the table; the next one
    /// after [`MemLog::hold_after`] writes, then waits before it answers.
    #[derive(Default)]
    struct MemLog {
        kept: Mutex<HashMap<String, BreakerRecord>>,
        gate: tokio::sync::Mutex<()>,
        down: std::sync::atomic::AtomicBool,
        before: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
        after: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    }

    impl MemLog {
        fn up(&self) -> nexus_store::Result<()> {
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(nexus_store::StoreError::Unavailable {
                    reason: "the test's store is down".into(),
                });
            }
            Ok(())
        }

        /// Holds the next save back before it writes, until the answer is sent.
        fn hold_before(&self) -> tokio::sync::oneshot::Sender<()> {
            let (release, held) = tokio::sync::oneshot::channel();
            *self.before.lock().expect("lock") = Some(held);
            release
        }

        /// Holds the next save's answer back once it wrote, until the answer is sent.
        fn hold_after(&self) -> tokio::sync::oneshot::Sender<()> {
            let (release, held) = tokio::sync::oneshot::channel();
            *self.after.lock().expect("lock") = Some(held);
            release
        }

        /// What the table holds for `T`: open or not, at which generation.
        fn kept_of_t(&self) -> Option<(bool, u64)> {
            self.kept
                .lock()
                .expect("lock")
                .get(T)
                .map(|r| (r.open, r.generation))
        }
    }

    /// Waits for a hold of [`MemLog`] to be released, if `slot` has one.
    async fn wait_release(slot: &Mutex<Option<tokio::sync::oneshot::Receiver<()>>>) {
        let held = slot.lock().expect("lock").take();
        if let Some(held) = held {
            held.await.expect("the test releases the held save");
        }
    }

    #[async_trait::async_trait]
    impl BreakerLog for MemLog {
        async fn save_breaker(&self, mut record: BreakerRecord) -> nexus_store::Result<u64> {
            wait_release(&self.before).await;
            let open = self.gate.lock().await;
            self.up()?;
            let generation = {
                let mut kept = self.kept.lock().expect("lock");
                record.generation = kept.get(&record.target).map_or(0, |r| r.generation) + 1;
                let generation = record.generation;
                kept.insert(record.target.clone(), record);
                generation
            };
            // Written: a save held after this point lets the others through.
            drop(open);
            wait_release(&self.after).await;
            Ok(generation)
        }

        async fn breakers(&self) -> nexus_store::Result<Vec<BreakerRecord>> {
            self.up()?;
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
        assert!(a.adopt(log.breakers().await.expect("read")).is_empty());
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

    /// Polls `save` once: it must be held back, not done.
    async fn held<F: std::future::Future + Unpin>(save: &mut F) {
        tokio::select! {
            biased;
            _ = save => panic!("the save was not held back"),
            () = std::future::ready(()) => {}
        }
    }

    #[tokio::test]
    async fn a_reset_that_lands_before_an_older_trip_is_saved_again() {
        let log = MemLog::default();
        let (a, other) = (
            instance(&Arc::new(Heard::default())),
            instance(&Arc::new(Heard::default())),
        );
        // A worker trips the breaker and saves it; the save is held back before the store.
        assert_eq!(
            a.record(T, false, CallResult::Failure, t(0)),
            Some(BreakerState::Open)
        );
        let release = log.hold_before();
        let trip = a.persist(T, &log);
        tokio::pin!(trip);
        held(&mut trip).await;
        // An admin resets it meanwhile, and that save lands first.
        assert!(a.reset(T));
        assert_eq!(a.persist(T, &log).await.expect("save"), Some(1));
        // Then the trip's, over it: the store says open, at the newer generation.
        release.send(()).expect("the trip's save waits");
        assert_eq!(trip.await.expect("save"), Some(2));
        assert_eq!(log.kept_of_t(), Some((true, 2)));
        assert!(other.sync(&log).await.expect("sync").is_empty());
        assert_eq!(state(&other), Some(BreakerState::Open));
        // Closed here, so the next sync saves the reset again, over the trip.
        assert_eq!(state(&a), Some(BreakerState::Closed));
        assert!(a.sync(&log).await.expect("sync").is_empty());
        assert_eq!(
            log.kept_of_t(),
            Some((false, 3)),
            "the reset is saved again"
        );
        assert_eq!(
            other.sync(&log).await.expect("sync"),
            vec![T.to_owned()],
            "the reset reaches the others"
        );
        assert_eq!(state(&other), Some(BreakerState::Closed));
        // Saved again once: every instance agrees, nothing more to save.
        assert!(a.sync(&log).await.expect("sync").is_empty());
        assert_eq!(log.kept_of_t(), Some((false, 3)));
        assert_eq!(state(&a), Some(BreakerState::Closed));
    }

    #[tokio::test]
    async fn overlapping_saves_that_land_in_order_are_not_saved_again() {
        let log = MemLog::default();
        let a = instance(&Arc::new(Heard::default()));
        a.record(T, false, CallResult::Failure, t(0));
        // The trip's save queues first, the reset's second (the gate lets them in in order).
        let gate = log.gate.lock().await;
        let trip = a.persist(T, &log);
        tokio::pin!(trip);
        held(&mut trip).await;
        assert!(a.reset(T));
        let reset = a.persist(T, &log);
        tokio::pin!(reset);
        held(&mut reset).await;
        drop(gate);
        let (trip, reset) = tokio::join!(trip, reset);
        assert_eq!(
            (trip.expect("save"), reset.expect("save")),
            (Some(1), Some(2))
        );
        // The store holds the newest state already: the next sync saves nothing.
        assert!(a.sync(&log).await.expect("sync").is_empty());
        assert_eq!(log.kept_of_t(), Some((false, 2)));
        assert_eq!(a.record_of(T).map(|r| r.generation), Some(2));
    }

    #[tokio::test]
    async fn a_save_answered_after_a_newer_one_changes_nothing() {
        let log = MemLog::default();
        let a = instance(&Arc::new(Heard::default()));
        a.record(T, false, CallResult::Failure, t(0));
        // The trip is written at generation 1, its answer held back.
        let release = log.hold_after();
        let trip = a.persist(T, &log);
        tokio::pin!(trip);
        held(&mut trip).await;
        assert_eq!(log.kept_of_t(), Some((true, 1)));
        assert!(a.reset(T));
        assert_eq!(a.persist(T, &log).await.expect("save"), Some(2));
        release.send(()).expect("the trip's save waits");
        assert_eq!(trip.await.expect("save"), Some(1));
        // The reset, written last, is what the store holds: nothing to save again.
        assert!(a.sync(&log).await.expect("sync").is_empty());
        assert_eq!(log.kept_of_t(), Some((false, 2)));
        assert_eq!(a.record_of(T).map(|r| r.generation), Some(2));
        assert_eq!(state(&a), Some(BreakerState::Closed));
    }

    #[tokio::test]
    async fn a_failed_save_is_saved_by_the_next_sync() {
        let log = MemLog::default();
        let heard = Arc::new(Heard::default());
        let (a, other) = (instance(&heard), instance(&Arc::new(Heard::default())));
        log.down.store(true, std::sync::atomic::Ordering::SeqCst);
        a.record(T, false, CallResult::Failure, t(0));
        assert!(a.persist(T, &log).await.is_err());
        assert!(a.sync(&log).await.is_err());
        assert_eq!(
            state(&a),
            Some(BreakerState::Open),
            "kept while the store is down"
        );
        log.down.store(false, std::sync::atomic::Ordering::SeqCst);
        assert!(a.sync(&log).await.expect("sync").is_empty());
        assert_eq!(
            a.record_of(T).map(|r| (r.open, r.generation)),
            Some((true, 1))
        );
        assert!(other.sync(&log).await.expect("sync").is_empty());
        assert_eq!(
            state(&other),
            Some(BreakerState::Open),
            "the trip reached the others"
        );
        // Saved once: the next sync has nothing to save.
        assert!(a.sync(&log).await.expect("sync").is_empty());
        assert_eq!(log.breakers().await.expect("read")[0].generation, 1);
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
        let seen = Arc::new(Heard::default());
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
}
