//! A client-side rate limit: a token bucket (as GCRA: one timestamp, no
//! refill task) shared by every call it paces.
//!
//! Each caller reserves the next free slot under a short lock and then
//! sleeps outside it, so waiters are served in arrival order.
//!
//! It adapts when the server says it is too fast: [`RateLimiter::throttled`]
//! halves the current rate (at most once per [`CUT_COOLDOWN`], never below
//! [`FLOOR_SHARE`] of the configured rate), and the rate then recovers
//! linearly by [`RECOVERY_PER_SECOND`] of the configured rate per second,
//! back to the configured rate. A wrong configured quota, or another client
//! of the same tenant, thus costs a few 429s and not a run.

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

/// A 429 halves the current rate, but never below this share of the
/// configured rate.
pub const FLOOR_SHARE: f64 = 0.1;
/// After a cut, the rate grows back by this share of the configured rate
/// per second (from the floor to the full rate in 18 seconds).
pub const RECOVERY_PER_SECOND: f64 = 0.05;
/// 429s closer together than this cut the rate once: the calls already in
/// flight when the first came back were sent at the old rate.
pub const CUT_COOLDOWN: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Theoretical arrival time of the next request.
    next: Option<Instant>,
    /// The last cut after a 429: when, and the rate it set.
    cut: Option<(Instant, f64)>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            state: Mutex::new(State::default()),
        }
    }

    /// The limit it enforces when nothing throttles it.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    fn limited(&self) -> bool {
        self.limit.per_second > 0.0 && self.limit.per_second.is_finite()
    }

    /// The rate in force at `now`: the configured one, or what a cut left
    /// of it plus the recovery since.
    fn rate_at(&self, state: &mut State, now: Instant) -> f64 {
        let full = self.limit.per_second;
        let Some((at, rate)) = state.cut else {
            return full;
        };
        let recovered = rate + full * RECOVERY_PER_SECOND * (now - at).as_secs_f64();
        if recovered >= full {
            state.cut = None;
            return full;
        }
        recovered
    }

    /// The rate in force now (requests per second; 0 = no limit).
    pub fn current_rate(&self) -> f64 {
        if !self.limited() {
            return 0.0;
        }
        let mut state = self.state.lock().expect("rate limiter lock");
        self.rate_at(&mut state, Instant::now())
    }

    /// The server answered 429: halve the rate (see the module doc).
    /// Whether it did (not within the cooldown, nor without a limit).
    pub fn throttled(&self) -> bool {
        if !self.limited() {
            return false;
        }
        let now = Instant::now();
        let mut state = self.state.lock().expect("rate limiter lock");
        if state.cut.is_some_and(|(at, _)| now - at < CUT_COOLDOWN) {
            return false;
        }
        let floor = self.limit.per_second * FLOOR_SHARE;
        let rate = (self.rate_at(&mut state, now) / 2.0).max(floor);
        state.cut = Some((now, rate));
        true
    }

    /// The next slot at `now`, and what taking it leaves: `(allowed_at,
    /// next)`; `None` without a limit.
    fn slot(&self, state: &mut State, now: Instant) -> Option<(Instant, Instant)> {
        if !self.limited() {
            return None;
        }
        let interval = Duration::from_secs_f64(1.0 / self.rate_at(state, now));
        let tolerance = interval * self.limit.burst.saturating_sub(1);
        let tat = state.next.map_or(now, |t| t.max(now));
        let allowed_at = tat.checked_sub(tolerance).unwrap_or(now);
        Some((allowed_at, tat + interval))
    }

    /// Reserves a slot; returns how long the caller must wait for it.
    pub fn reserve(&self) -> Duration {
        let now = Instant::now();
        let mut state = self.state.lock().expect("rate limiter lock");
        let Some((allowed_at, next)) = self.slot(&mut state, now) else {
            return Duration::ZERO;
        };
        state.next = Some(next);
        allowed_at.saturating_duration_since(now)
    }

    /// Takes a slot only if one is free now; otherwise takes nothing and
    /// returns how long until one is.
    pub fn try_reserve(&self) -> Result<(), Duration> {
        let now = Instant::now();
        let mut state = self.state.lock().expect("rate limiter lock");
        let Some((allowed_at, next)) = self.slot(&mut state, now) else {
            return Ok(());
        };
        if allowed_at > now {
            return Err(allowed_at - now);
        }
        state.next = Some(next);
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

    #[tokio::test(start_paused = true)]
    async fn a_429_halves_the_rate_once_per_cooldown_down_to_the_floor() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 20.0,
            burst: 1,
        });
        assert!(limiter.throttled());
        assert!(!limiter.throttled(), "within the cooldown");
        assert_eq!(limiter.current_rate(), 10.0, "one cut per burst of 429s");
        for _ in 0..5 {
            tokio::time::advance(Duration::ZERO).await;
            let before = limiter.current_rate();
            limiter.throttled();
            assert!(limiter.current_rate() <= before);
            tokio::time::advance(CUT_COOLDOWN).await;
        }
        limiter.throttled();
        assert!(
            (limiter.current_rate() - 2.0).abs() < 1e-9,
            "never below 10% of 20/s: {}",
            limiter.current_rate()
        );
        assert_eq!(limiter.reserve(), Duration::ZERO);
        assert_eq!(
            limiter.reserve(),
            Duration::from_millis(500),
            "spaced at 2/s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_recovers_five_percent_a_second_to_the_configured_rate() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 20.0,
            burst: 1,
        });
        limiter.throttled();
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!((limiter.current_rate() - 14.0).abs() < 1e-9, "10 + 4 x 1/s");
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(
            limiter.current_rate(),
            20.0,
            "never above the configured rate"
        );
    }

    #[test]
    fn unlimited_never_waits() {
        let limiter = RateLimiter::new(RateLimit::UNLIMITED);
        assert!(!limiter.throttled());
        assert!((0..1000).all(|_| limiter.reserve().is_zero()));
        assert_eq!(limiter.current_rate(), 0.0);
    }
}
