//! A client-side rate limit: a token bucket (as GCRA: one timestamp, no
//! refill task) shared by every call to one endpoint.
//!
//! Each caller reserves the next free slot under a short lock and then
//! sleeps outside it, so waiters are served in arrival order.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Requests per second and burst; `per_second <= 0` disables the limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

impl RateLimit {
    pub const UNLIMITED: RateLimit = RateLimit {
        per_second: 0.0,
        burst: 1,
    };
}

impl Default for RateLimit {
    fn default() -> Self {
        // MetaStudio's API gateway throttles per account; 20/s with a small
        // burst stays well clear of it for one operator.
        RateLimit {
            per_second: 20.0,
            burst: 10,
        }
    }
}

#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    interval: Option<Duration>,
    tolerance: Duration,
    /// Theoretical arrival time of the next request.
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        let interval = (limit.per_second > 0.0 && limit.per_second.is_finite())
            .then(|| Duration::from_secs_f64(1.0 / limit.per_second));
        let tolerance = interval.unwrap_or_default() * limit.burst.saturating_sub(1);
        Self {
            limit,
            interval,
            tolerance,
            next: Mutex::new(None),
        }
    }

    /// The limit it enforces.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Reserves a slot; returns how long the caller must wait for it.
    pub fn reserve(&self) -> Duration {
        let Some(interval) = self.interval else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let mut next = self.next.lock().expect("rate limiter lock");
        let tat = next.map_or(now, |t| t.max(now));
        let allowed_at = tat.checked_sub(self.tolerance).unwrap_or(now);
        *next = Some(tat + interval);
        allowed_at.saturating_duration_since(now)
    }

    /// Takes a slot only if one is free now; otherwise takes nothing and
    /// returns how long until one is.
    pub fn try_reserve(&self) -> Result<(), Duration> {
        let Some(interval) = self.interval else {
            return Ok(());
        };
        let now = Instant::now();
        let mut next = self.next.lock().expect("rate limiter lock");
        let tat = next.map_or(now, |t| t.max(now));
        let allowed_at = tat.checked_sub(self.tolerance).unwrap_or(now);
        if allowed_at > now {
            return Err(allowed_at - now);
        }
        *next = Some(tat + interval);
        Ok(())
    }

    /// Waits for a slot; returns the time spent waiting.
    pub async fn acquire(&self) -> Duration {
        let wait = self.reserve();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_passes_then_calls_are_spaced() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 10.0,
            burst: 3,
        });
        let waits: Vec<Duration> = (0..6).map(|_| limiter.reserve()).collect();
        assert_eq!(&waits[..3], &[Duration::ZERO; 3]);
        assert_eq!(waits[3], Duration::from_millis(100));
        assert_eq!(waits[4], Duration::from_millis(200));
        assert_eq!(waits[5], Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_refills_the_burst() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 10.0,
            burst: 2,
        });
        limiter.reserve();
        limiter.reserve();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(limiter.reserve(), Duration::ZERO);
        assert_eq!(limiter.reserve(), Duration::ZERO);
        assert_eq!(limiter.reserve(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn try_reserve_takes_free_slots_only_and_says_when_the_next_is() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 4.0,
            burst: 2,
        });
        assert_eq!(limiter.try_reserve(), Ok(()));
        assert_eq!(limiter.try_reserve(), Ok(()));
        assert_eq!(limiter.try_reserve(), Err(Duration::from_millis(250)));
        assert_eq!(
            limiter.try_reserve(),
            Err(Duration::from_millis(250)),
            "a refusal takes no slot"
        );
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(limiter.try_reserve(), Ok(()));
    }

    #[test]
    fn unlimited_never_waits() {
        let limiter = RateLimiter::new(RateLimit::UNLIMITED);
        assert!((0..1000).all(|_| limiter.reserve().is_zero()));
    }
}
