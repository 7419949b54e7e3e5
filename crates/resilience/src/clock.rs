//! Time, injected: the retry worker and the breakers read the time and sleep through a [`Clock`],
//! so tests drive them with a [`ManualClock`] instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use nexus_event::Timestamp;
use tokio::sync::watch;

/// `t` moved forward by `by`, saturating at the largest timestamp the model allows (an
/// out-of-range result keeps `t`).
pub(crate) fn later(t: Timestamp, by: Duration) -> Timestamp {
    let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
    Timestamp::from_unix_millis(t.as_unix_millis().saturating_add(ms)).unwrap_or(t)
}

/// A source of time that can also be slept on.
#[async_trait]
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
    /// Returns once [`Clock::now`] has reached `deadline`.
    async fn sleep_until(&self, deadline: Timestamp);
}

/// The system's wall clock, sleeping with tokio's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        loop {
            let left = deadline.as_unix_millis() - self.now().as_unix_millis();
            if left <= 0 {
                return;
            }
            // The wall clock can be stepped while we sleep; check again when we wake.
            tokio::time::sleep(Duration::from_millis(left as u64)).await;
        }
    }
}

/// A clock that moves only when told to. Sleepers wake as soon as it reaches their deadline.
///
/// ```
/// use nexus_resilience::{Clock, ManualClock};
/// use std::time::Duration;
/// let clock = ManualClock::new(nexus_event::Timestamp::from_unix_millis(0)?);
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(clock.now().as_unix_millis(), 2000);
/// # Ok::<(), nexus_event::Error>(())
/// ```
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
    moved: watch::Sender<i64>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> Self {
        let (moved, _) = watch::channel(start.as_unix_millis());
        ManualClock {
            now: AtomicI64::new(start.as_unix_millis()),
            moved,
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        let now = self.now.fetch_add(by, Ordering::AcqRel) + by;
        self.moved.send_replace(now);
    }

    /// Sets the clock (forward only; an earlier time is ignored).
    pub fn set(&self, to: Timestamp) {
        let to = to.as_unix_millis();
        let now = self.now.fetch_max(to, Ordering::AcqRel).max(to);
        self.moved.send_replace(now);
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_millis(self.now.load(Ordering::Acquire)).unwrap_or(Timestamp::now())
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        let mut moved = self.moved.subscribe();
        loop {
            if self.now.load(Ordering::Acquire) >= deadline.as_unix_millis() {
                return;
            }
            if moved.changed().await.is_err() {
                // The clock is gone; nothing will ever move it again.
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn manual_sleepers_wake_at_their_deadline() {
        let clock = Arc::new(ManualClock::new(
            Timestamp::from_unix_millis(1_000).expect("valid"),
        ));
        let c = Arc::clone(&clock);
        let sleeper = tokio::spawn(async move {
            c.sleep_until(Timestamp::from_unix_millis(5_000).expect("valid"))
                .await;
            c.now().as_unix_millis()
        });
        tokio::task::yield_now().await;
        clock.advance(Duration::from_secs(2));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.set(Timestamp::from_unix_millis(500).expect("valid"));
        assert_eq!(clock.now().as_unix_millis(), 3_000, "never goes back");
        clock.advance(Duration::from_secs(2));
        assert_eq!(sleeper.await.expect("sleeper"), 5_000);
    }
}
