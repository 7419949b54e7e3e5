//! A token bucket per client IP (`RATE_LIMIT_WINDOW_MS`, `RATE_LIMIT_MAX_REQUESTS`), on the
//! ingress routes and the `/ws` upgrade; `429` with `Retry-After` when empty.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::envelope::ApiError;

/// Rate limit settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// The window the budget refills over. Default 1000 ms.
    pub window: Duration,
    /// Requests per window and client IP; 0 turns limiting off. Default 1000.
    pub max_requests: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            window: Duration::from_millis(1000),
            max_requests: 1000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of every client seen recently.
#[derive(Debug)]
pub struct Limiter {
    limit: RateLimit,
    /// The buckets, and when idle ones were last dropped.
    buckets: Mutex<(HashMap<IpAddr, Bucket>, Instant)>,
}

/// Buckets kept before idle (full) ones are dropped.
const PRUNE_AT: usize = 10_000;

impl Limiter {
    /// A limiter with these settings.
    pub fn new(limit: RateLimit) -> Arc<Self> {
        Arc::new(Limiter {
            limit,
            buckets: Mutex::new((HashMap::new(), Instant::now())),
        })
    }

    /// Takes one request from `ip`'s budget; `Err(wait)` when there is none.
    pub fn take(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.limit.max_requests == 0 {
            return Ok(());
        }
        let max = f64::from(self.limit.max_requests);
        let per_sec = max / self.limit.window.as_secs_f64().max(0.001);
        let mut guard = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let (buckets, pruned_at) = &mut *guard;
        // Dropping the full buckets scans the table: at most once a window, so many active
        // clients do not make every request pay for it.
        if buckets.len() >= PRUNE_AT
            && now.saturating_duration_since(*pruned_at) >= self.limit.window
        {
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_sec < max
            });
            *pruned_at = now;
        }
        let b = buckets.entry(ip).or_insert(Bucket {
            tokens: max,
            at: now,
        });
        b.tokens =
            (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_sec).min(max);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / per_sec))
        }
    }
}

/// Middleware: the client IP comes from the connection.
pub(crate) async fn layer(
    State(limiter): State<Arc<Limiter>>,
    request: Request,
    next: Next,
) -> Response {
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = ip
        && let Err(wait) = limiter.take(ip, Instant::now())
    {
        return ApiError::rate_limited(wait.max(Duration::from_secs(1))).into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_per_ip_refills_over_the_window() {
        let l = Limiter::new(RateLimit {
            window: Duration::from_millis(1000),
            max_requests: 3,
        });
        let (a, b) = (
            "10.0.0.1".parse().expect("ip"),
            "10.0.0.2".parse().expect("ip"),
        );
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.take(a, t0).is_ok());
        }
        let wait = l.take(a, t0).expect_err("empty");
        assert!(
            wait > Duration::from_millis(300) && wait <= Duration::from_millis(334),
            "{wait:?}"
        );
        assert!(l.take(b, t0).is_ok(), "another client has its own bucket");
        assert!(
            l.take(a, t0 + Duration::from_millis(334)).is_ok(),
            "one token back after a third of the window"
        );
        let off = Limiter::new(RateLimit {
            window: Duration::from_secs(1),
            max_requests: 0,
        });
        for _ in 0..10_000 {
            assert!(off.take(a, t0).is_ok());
        }
    }

    #[test]
    fn idle_buckets_are_dropped_at_most_once_a_window() {
        let l = Limiter::new(RateLimit {
            window: Duration::from_millis(1000),
            max_requests: 2,
        });
        let t0 = Instant::now();
        let ip = |i: usize| IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        for i in 0..PRUNE_AT {
            assert!(l.take(ip(i), t0).is_ok());
        }
        let len = || l.buckets.lock().map(|g| g.0.len()).unwrap_or(0);
        // Within the window every bucket is still in use: nothing is dropped, nothing rescanned.
        assert!(l.take(ip(PRUNE_AT), t0 + Duration::from_millis(10)).is_ok());
        assert_eq!(len(), PRUNE_AT + 1);
        // A window later they are full again (idle): dropped, save the one just used.
        let later = t0 + Duration::from_millis(1500);
        assert!(l.take(ip(0), later).is_ok());
        assert_eq!(len(), 1);
    }
}
