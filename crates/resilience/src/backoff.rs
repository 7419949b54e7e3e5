//! Retry schedules: exponential steps with bounded jitter, as an iterator of delays.

use std::sync::Arc;
use std::time::Duration;

use crate::error::ConfigError;

/// The delays between attempts of a delivery (API.md section 5): after the first failure wait the
/// first step, and so on; once the steps are used up the delivery becomes a dead letter, so a
/// delivery is attempted at most `1 + steps` times.
///
/// Jitter adds up to `jitter` times the step (default 10 %), never less than the step, so
/// retries of many deliveries that failed together spread out without coming early.
///
/// ```
/// use nexus_resilience::Schedule;
/// use std::time::Duration;
/// let s = Schedule::default();
/// assert_eq!(s.max_attempts(), 6);
/// let delays: Vec<Duration> = s.without_jitter().iter().collect();
/// assert_eq!(delays, [2, 4, 8, 16, 32].map(Duration::from_secs));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    steps: Arc<[Duration]>,
    jitter: f64,
}

/// Default steps: 2, 4, 8, 16 and 32 seconds.
pub const DEFAULT_STEPS_MS: [u64; 5] = [2_000, 4_000, 8_000, 16_000, 32_000];
/// Default jitter: up to 10 % added to each step.
pub const DEFAULT_JITTER: f64 = 0.1;

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            steps: DEFAULT_STEPS_MS.map(Duration::from_millis).into(),
            jitter: DEFAULT_JITTER,
        }
    }
}

impl Schedule {
    /// A schedule of `steps` (at least one, none zero) with `jitter` between 0 and 1.
    pub fn new(steps: Vec<Duration>, jitter: f64) -> Result<Self, ConfigError> {
        if steps.is_empty() {
            return Err(ConfigError::Schedule("needs at least one step".into()));
        }
        if let Some(i) = steps.iter().position(Duration::is_zero) {
            return Err(ConfigError::Schedule(format!("step {i} is zero")));
        }
        if !(0.0..=1.0).contains(&jitter) {
            return Err(ConfigError::Jitter(jitter));
        }
        Ok(Schedule {
            steps: steps.into(),
            jitter,
        })
    }

    /// The same steps without jitter.
    pub fn without_jitter(&self) -> Self {
        Schedule {
            steps: Arc::clone(&self.steps),
            jitter: 0.0,
        }
    }

    /// The steps, without jitter.
    pub fn steps(&self) -> &[Duration] {
        &self.steps
    }

    /// The jitter fraction.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// Attempts a delivery gets before it becomes a dead letter: one plus the steps.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.steps.len()).unwrap_or(u32::MAX - 1) + 1
    }

    /// The longest step, which caps a `Retry-After` floor.
    pub fn longest(&self) -> Duration {
        self.steps.iter().copied().max().unwrap_or_default()
    }

    /// How long to wait after failed attempt number `attempt` (from 1), with jitter; `None` when
    /// that was the last attempt.
    pub fn delay_after(&self, attempt: u32) -> Option<Duration> {
        let step = *self
            .steps
            .get(usize::try_from(attempt.checked_sub(1)?).ok()?)?;
        Some(self.jittered(step))
    }

    /// `max(scheduled, min(retry_after, longest step))`: a target's `Retry-After` can make the next
    /// attempt wait longer, but never longer than the longest step.
    pub fn with_retry_after(&self, scheduled: Duration, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(ra) => scheduled.max(ra.min(self.longest())),
            None => scheduled,
        }
    }

    /// The delays, one per step, with jitter.
    pub fn iter(&self) -> Backoff {
        Backoff {
            schedule: self.clone(),
            next: 0,
        }
    }

    fn jittered(&self, step: Duration) -> Duration {
        if self.jitter == 0.0 {
            return step;
        }
        step + step.mul_f64(self.jitter * fastrand::f64())
    }
}

/// The delays of a [`Schedule`], with jitter: an `Iterator<Item = Duration>`.
#[derive(Debug, Clone)]
pub struct Backoff {
    schedule: Schedule,
    next: usize,
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let step = *self.schedule.steps.get(self.next)?;
        self.next += 1;
        Some(self.schedule.jittered(step))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.schedule.steps.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Backoff {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_schedule_is_the_contract() {
        let s = Schedule::default();
        assert_eq!(
            s.without_jitter().iter().collect::<Vec<_>>(),
            [2, 4, 8, 16, 32].map(Duration::from_secs)
        );
        assert_eq!(s.jitter(), 0.1);
        assert_eq!(s.max_attempts(), 6);
        assert_eq!(s.delay_after(0), None);
        assert_eq!(s.delay_after(6), None, "the sixth attempt was the last");
        assert!(s.delay_after(5).is_some());
        assert_eq!(s.iter().len(), 5);
    }

    #[test]
    fn bad_schedules_are_refused() {
        assert!(Schedule::new(vec![], 0.1).is_err());
        assert!(Schedule::new(vec![Duration::ZERO], 0.1).is_err());
        assert_eq!(
            Schedule::new(vec![Duration::from_secs(1)], 1.5),
            Err(ConfigError::Jitter(1.5))
        );
    }

    #[test]
    fn retry_after_is_a_floor_capped_at_the_longest_step() {
        let s = Schedule::default().without_jitter();
        let two = Duration::from_secs(2);
        assert_eq!(s.with_retry_after(two, None), two);
        assert_eq!(
            s.with_retry_after(two, Some(Duration::from_secs(10))),
            Duration::from_secs(10)
        );
        assert_eq!(
            s.with_retry_after(two, Some(Duration::from_secs(3600))),
            Duration::from_secs(32)
        );
        assert_eq!(s.with_retry_after(two, Some(Duration::from_secs(1))), two);
    }

    proptest! {
        #[test]
        fn jitter_stays_within_bounds(
            steps in proptest::collection::vec(1u64..100_000, 1..8),
            jitter in 0.0f64..=1.0,
        ) {
            let s = Schedule::new(steps.iter().map(|&ms| Duration::from_millis(ms)).collect(), jitter)
                .expect("valid");
            for (delay, &ms) in s.iter().zip(&steps) {
                let step = Duration::from_millis(ms);
                prop_assert!(delay >= step, "{delay:?} < {step:?}");
                prop_assert!(delay <= step.mul_f64(1.0 + jitter), "{delay:?} above {jitter}");
            }
            for (i, &ms) in steps.iter().enumerate() {
                let d = s.delay_after(i as u32 + 1).expect("a step");
                prop_assert!(d >= Duration::from_millis(ms));
            }
        }
    }
}
