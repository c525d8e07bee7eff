//! When and how long to wait before trying a failed call again.

use std::time::Duration;

/// Bounded, jittered exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; `1` disables retries.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// No retry starts later than this after the first attempt began.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            max_elapsed: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    pub const NONE: RetryPolicy = RetryPolicy {
        max_attempts: 1,
        initial_backoff: Duration::ZERO,
        max_backoff: Duration::ZERO,
        max_elapsed: Duration::ZERO,
    };

    /// The delay before attempt `failed_attempts + 1`: exponential, capped,
    /// with "equal jitter" (half fixed, half random) so concurrent clients
    /// spread out yet never retry at once. After a server's `Retry-After`
    /// the delay is never shorter than it asks, plus the random half, so
    /// clients throttled together do not all return at the same instant.
    pub fn delay(&self, failed_attempts: u32, retry_after: Option<Duration>) -> Duration {
        let exponent = failed_attempts.saturating_sub(1).min(31);
        let ceiling = self
            .initial_backoff
            .saturating_mul(1u32 << exponent)
            .min(self.max_backoff);
        let half = ceiling / 2;
        let spread = half.mul_f64(rand::random::<f64>());
        retry_after.map_or(half + spread, |after| after.max(half) + spread)
    }

    /// Whether another attempt may start `delay` from now, given the
    /// attempts made and the time since the first began.
    pub fn allows(&self, attempts: u32, elapsed: Duration, delay: Duration) -> bool {
        attempts < self.max_attempts && elapsed + delay <= self.max_elapsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_grows_exponentially_within_jitter_bounds_and_caps() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(800),
            max_elapsed: Duration::from_secs(60),
        };
        for (failed, ceiling_ms) in [(1, 100), (2, 200), (3, 400), (4, 800), (9, 800)] {
            for _ in 0..50 {
                let d = policy.delay(failed, None);
                let ceiling = Duration::from_millis(ceiling_ms);
                assert!(d >= ceiling / 2 && d <= ceiling, "{failed}: {d:?}");
            }
        }
    }

    #[test]
    fn retry_after_is_honoured_and_spread() {
        let policy = RetryPolicy::default();
        let delays: Vec<Duration> = (0..50)
            .map(|_| policy.delay(1, Some(Duration::from_secs(3))))
            .collect();
        // Never earlier than asked, at most half the first backoff later.
        for d in &delays {
            assert!(*d >= Duration::from_secs(3), "{d:?}");
            assert!(*d <= Duration::from_millis(3_100), "{d:?}");
        }
        assert!(
            delays.iter().any(|d| *d != delays[0]),
            "clients throttled together must not all retry at the same instant"
        );
        assert!(policy.delay(1, Some(Duration::ZERO)) >= Duration::from_millis(100));
    }

    #[test]
    fn bounded_by_count_and_time() {
        let policy = RetryPolicy::default();
        assert!(policy.allows(1, Duration::ZERO, Duration::from_secs(1)));
        assert!(!policy.allows(5, Duration::ZERO, Duration::ZERO));
        assert!(!policy.allows(1, Duration::from_secs(59), Duration::from_secs(2)));
        assert!(!RetryPolicy::NONE.allows(1, Duration::ZERO, Duration::ZERO));
    }
}
