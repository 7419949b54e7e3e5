//! Exponential backoff with full jitter, the retry policy of the publisher, and `Retry-After`.

use std::time::Duration;

use crate::Error;

/// Exponential backoff with full jitter: before retry `n` (0-based) wait a uniformly random
/// time between zero and `min(max, base * 2^n)`. Full jitter spreads clients that failed
/// together over the whole window instead of bunching them at its end.
///
/// ```
/// use nexus_client::Backoff;
/// use std::time::Duration;
/// let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30))?;
/// let ceilings: Vec<u64> = (0..7).map(|n| b.ceiling(n).as_secs()).collect();
/// assert_eq!(ceilings, [1, 2, 4, 8, 16, 30, 30]);
/// let mut rng = fastrand::Rng::with_seed(7);
/// assert!(b.delays(&mut rng).take(20).zip(0..).all(|(d, n)| d <= b.ceiling(n)));
/// # Ok::<(), nexus_client::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
}

impl Backoff {
    /// A backoff starting at `base` and doubling up to `max`; `base` must not be zero and `max`
    /// must not be below it.
    pub fn new(base: Duration, max: Duration) -> Result<Backoff, Error> {
        if base.is_zero() {
            return Err(Error::invalid("backoff", "the base delay must not be zero"));
        }
        if max < base {
            return Err(Error::invalid(
                "backoff",
                format!("the longest delay ({max:?}) is shorter than the base ({base:?})"),
            ));
        }
        Ok(Backoff { base, max })
    }

    /// The first window.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The largest window.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The window before retry `n` (0-based): `min(max, base * 2^n)`, without jitter.
    pub fn ceiling(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// The delay before retry `n`: `ceiling(n)` scaled by `unit`, a number in `[0, 1]` (a
    /// uniform random number for full jitter). Pure, so tables can check it.
    pub fn delay(&self, n: u32, unit: f64) -> Duration {
        self.ceiling(n).mul_f64(unit.clamp(0.0, 1.0))
    }

    /// The delays before retry 0, 1, 2, ... with full jitter drawn from `rng`; endless.
    pub fn delays<'r>(&self, rng: &'r mut fastrand::Rng) -> impl Iterator<Item = Duration> + 'r {
        let this = *self;
        (0u32..).map(move |n| this.delay(n, rng.f64()))
    }
}

/// When the publisher tries again, and for how long.
///
/// Retryable failures (network, timeout, 429, 5xx) are retried after a full-jitter backoff
/// delay, or after the server's `Retry-After` when that is longer (capped at
/// `max_retry_after`). Every other failure is returned at once.
///
/// ```
/// use nexus_client::RetryPolicy;
/// use std::time::Duration;
/// let p = RetryPolicy::default();
/// assert_eq!(p.max_attempts, 5);
/// assert_eq!(p.backoff.base(), Duration::from_millis(250));
/// assert_eq!(p.backoff.max(), Duration::from_secs(10));
/// assert_eq!(p.max_retry_after, Duration::from_secs(60));
/// let none = RetryPolicy::no_retries();
/// assert_eq!(none.max_attempts, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; at least 1. Default 5.
    pub max_attempts: u32,
    /// The delays between attempts. Default 250 ms doubling to 10 s.
    pub backoff: Backoff,
    /// The longest `Retry-After` honoured; a longer one waits this long. Default 60 s.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            backoff: Backoff {
                base: Duration::from_millis(250),
                max: Duration::from_secs(10),
            },
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retry.
    pub fn no_retries() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The wait before retry `n` given the backoff's jittered delay and the server's
    /// `Retry-After`: the longer of the two, the latter capped at `max_retry_after`.
    pub fn wait(&self, n: u32, unit: f64, retry_after: Option<Duration>) -> Duration {
        let backoff = self.backoff.delay(n, unit);
        match retry_after {
            Some(after) => backoff.max(after.min(self.max_retry_after)),
            None => backoff,
        }
    }
}

pub use nexus_api::retry_after::parse_retry_after;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::UNIX_EPOCH;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn reconnect_defaults_double_from_one_second_to_thirty() {
        let b = Backoff::new(secs(1), secs(30)).expect("valid");
        let table = [
            (0, 1),
            (1, 2),
            (2, 4),
            (3, 8),
            (4, 16),
            (5, 30),
            (6, 30),
            (40, 30),
        ];
        for (n, ceiling) in table {
            assert_eq!(b.ceiling(n), secs(ceiling), "retry {n}");
            assert_eq!(
                b.delay(n, 1.0),
                secs(ceiling),
                "retry {n}, top of the window"
            );
            assert_eq!(
                b.delay(n, 0.0),
                Duration::ZERO,
                "retry {n}, bottom of the window"
            );
            assert_eq!(b.delay(n, 0.5), secs(ceiling) / 2, "retry {n}, middle");
        }
        // u32::MAX doublings must neither overflow nor panic.
        assert_eq!(b.ceiling(u32::MAX), secs(30));
    }

    #[test]
    fn bad_backoffs_are_refused_with_the_reason() {
        let e = Backoff::new(Duration::ZERO, secs(1)).expect_err("zero base");
        assert!(e.to_string().contains("base delay must not be zero"), "{e}");
        let e = Backoff::new(secs(2), secs(1)).expect_err("max below base");
        assert!(e.to_string().contains("shorter than the base"), "{e}");
    }

    #[test]
    fn retry_after_raises_the_wait_up_to_its_cap() {
        let p = RetryPolicy {
            max_attempts: 5,
            backoff: Backoff::new(secs(1), secs(8)).expect("valid"),
            max_retry_after: secs(20),
        };
        // (retry, jitter unit, Retry-After, expected wait)
        let table = [
            (0, 1.0, None, secs(1)),
            (2, 1.0, None, secs(4)),
            (2, 0.5, Some(secs(3)), secs(3)),
            (2, 1.0, Some(secs(3)), secs(4)),
            (0, 0.0, Some(secs(120)), secs(20)),
            (0, 0.0, Some(Duration::ZERO), Duration::ZERO),
        ];
        for (n, unit, after, expected) in table {
            assert_eq!(p.wait(n, unit, after), expected, "{n} {unit} {after:?}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = UNIX_EPOCH + secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(" 30 ", now), Some(secs(30)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now),
            Some(secs(60))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:40:37 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    proptest! {
        #[test]
        fn jittered_delays_stay_inside_a_window_that_doubles_up_to_max(
            base_ms in 1u64..5_000,
            extra_ms in 0u64..100_000,
            seed in any::<u64>(),
        ) {
            let b = Backoff::new(Duration::from_millis(base_ms), Duration::from_millis(base_ms + extra_ms))
                .expect("valid");
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut previous = Duration::ZERO;
            for (n, d) in (0u32..40).zip(b.delays(&mut rng)) {
                let ceiling = b.ceiling(n);
                prop_assert!(d <= ceiling);
                prop_assert!(ceiling >= previous, "windows never shrink");
                prop_assert!(ceiling <= b.max());
                prop_assert!(ceiling == b.max() || ceiling == b.base() * 2u32.pow(n));
                previous = ceiling;
            }
        }
    }
}
