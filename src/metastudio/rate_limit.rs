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
//!
//! The rates come from tenants (a connection's `spec.budget`), so the
//! arithmetic holds whatever it is given: a rate that is not a positive
//! finite number means no limit, any other is kept at or above
//! [`MIN_RATE`] (cuts included), the burst within 1..=[`MAX_BURST`], and
//! every sum saturates. No wait for one slot is longer than
//! [`MAX_INTERVAL`] per call queued ahead of it.

use std::sync::{Mutex, MutexGuard, PoisonError};
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

    /// Whether it limits at all: a positive, finite rate.
    pub fn limits(&self) -> bool {
        self.per_second > 0.0 && self.per_second.is_finite()
    }

    /// The limit as the arithmetic keeps it: no limit for a rate that is
    /// not a positive finite number, otherwise a rate of at least
    /// [`MIN_RATE`]; a burst of 1 to [`MAX_BURST`].
    fn bounded(self) -> RateLimit {
        RateLimit {
            per_second: if self.limits() {
                self.per_second.max(MIN_RATE)
            } else {
                0.0
            },
            burst: self.burst.clamp(1, MAX_BURST),
        }
    }
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

/// The slowest rate a limiter keeps, configured or after 429 cuts: one
/// call per [`MAX_INTERVAL`].
pub const MIN_RATE: f64 = 0.001;
/// The longest interval between two calls: `1 / MIN_RATE`.
pub const MAX_INTERVAL: Duration = Duration::from_secs(1000);
/// The most calls a limiter lets through at once.
pub const MAX_BURST: u32 = 1000;

/// A 429 halves the current rate, but never below this share of the
/// configured rate (nor below [`MIN_RATE`]).
pub const FLOOR_SHARE: f64 = 0.1;
/// After a cut, the rate grows back by this share of the configured rate
/// per second (from the floor to the full rate in 18 seconds).
pub const RECOVERY_PER_SECOND: f64 = 0.05;
/// 429s closer together than this cut the rate once: the calls already in
/// flight when the first came back were sent at the old rate.
pub const CUT_COOLDOWN: Duration = Duration::from_secs(1);

/// The time between two calls at `rate` (requests per second, at least
/// [`MIN_RATE`]): computed in whole nanoseconds, so no rate can overflow
/// it.
fn interval(rate: f64) -> Duration {
    let nanos = 1e9 / rate.max(MIN_RATE);
    // `as` saturates; the bound keeps it at MAX_INTERVAL anyway.
    Duration::from_nanos((nanos as u64).min(MAX_INTERVAL.as_nanos() as u64))
}

#[derive(Debug)]
pub struct RateLimiter {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The configured limit, bounded (see [`RateLimit::bounded`]).
    limit: RateLimit,
    /// Theoretical arrival time of the next request.
    next: Option<Instant>,
    /// The last cut after a 429: when, and the rate it set.
    cut: Option<(Instant, f64)>,
}

impl State {
    /// The rate in force at `now`: the configured one, or what a cut left
    /// of it plus the recovery since.
    fn rate_at(&mut self, now: Instant) -> f64 {
        let full = self.limit.per_second;
        let Some((at, rate)) = self.cut else {
            return full;
        };
        let recovered = rate + full * RECOVERY_PER_SECOND * (now - at).as_secs_f64();
        if recovered >= full {
            self.cut = None;
            return full;
        }
        recovered
    }

    /// The next slot at `now`, and what taking it leaves: `(allowed_at,
    /// next)`; `None` without a limit.
    fn slot(&mut self, now: Instant) -> Option<(Instant, Instant)> {
        if !self.limit.limits() {
            return None;
        }
        let interval = interval(self.rate_at(now));
        let tolerance = interval.saturating_mul(self.limit.burst - 1);
        let tat = self.next.map_or(now, |t| t.max(now));
        let allowed_at = tat.checked_sub(tolerance).unwrap_or(now).max(now);
        Some((allowed_at, tat.checked_add(interval).unwrap_or(tat)))
    }
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            state: Mutex::new(State {
                limit: limit.bounded(),
                next: None,
                cut: None,
            }),
        }
    }

    /// The state; a panic elsewhere while it was held (there is none in
    /// this file) leaves it usable.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The limit it enforces when nothing throttles it.
    pub fn limit(&self) -> RateLimit {
        self.state().limit
    }

    /// Enforces `limit` from now on, keeping the slots already taken and a
    /// 429 cut (which then recovers towards the new rate): a client with
    /// other figures for the same tenant changes the pace, not the history.
    pub fn set_limit(&self, limit: RateLimit) {
        let mut state = self.state();
        state.limit = limit.bounded();
        if let Some((at, rate)) = state.cut {
            state.cut = Some((at, rate.min(state.limit.per_second)));
        }
    }

    /// The rate in force now (requests per second; 0 = no limit).
    pub fn current_rate(&self) -> f64 {
        let mut state = self.state();
        if !state.limit.limits() {
            return 0.0;
        }
        state.rate_at(Instant::now())
    }

    /// The server answered 429: halve the rate (see the module doc).
    /// Whether it did (not within the cooldown, nor without a limit).
    pub fn throttled(&self) -> bool {
        let now = Instant::now();
        let mut state = self.state();
        if !state.limit.limits() || state.cut.is_some_and(|(at, _)| now - at < CUT_COOLDOWN) {
            return false;
        }
        let floor = (state.limit.per_second * FLOOR_SHARE).max(MIN_RATE);
        let rate = (state.rate_at(now) / 2.0).max(floor);
        state.cut = Some((now, rate));
        true
    }

    /// Reserves a slot; returns how long the caller must wait for it.
    pub fn reserve(&self) -> Duration {
        self.reserve_by(None)
            .expect("a slot without a deadline is always taken")
    }

    /// Reserves a slot free no later than `deadline` (any slot without
    /// one); returns how long the caller must wait for it, or `None`,
    /// taking nothing, when the next slot is later than the deadline.
    pub fn reserve_by(&self, deadline: Option<Instant>) -> Option<Duration> {
        let now = Instant::now();
        let mut state = self.state();
        let Some((allowed_at, next)) = state.slot(now) else {
            return Some(Duration::ZERO);
        };
        if deadline.is_some_and(|d| allowed_at > d) {
            return None;
        }
        state.next = Some(next);
        Some(allowed_at.saturating_duration_since(now))
    }

    /// Takes a slot only if one is free now; otherwise takes nothing and
    /// returns how long until one is.
    pub fn try_reserve(&self) -> Result<(), Duration> {
        let now = Instant::now();
        let mut state = self.state();
        let Some((allowed_at, next)) = state.slot(now) else {
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
    async fn a_slot_later_than_the_deadline_is_not_taken() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 10.0,
            burst: 1,
        });
        let now = Instant::now();
        assert_eq!(limiter.reserve_by(Some(now)), Some(Duration::ZERO));
        // The next slot is 100 ms away: not by a deadline 50 ms away, and
        // asking took nothing, so it is still the next one.
        let soon = now + Duration::from_millis(50);
        assert_eq!(limiter.reserve_by(Some(soon)), None);
        assert_eq!(limiter.reserve(), Duration::from_millis(100));
        let unlimited = RateLimiter::new(RateLimit {
            per_second: 0.0,
            burst: 1,
        });
        assert_eq!(unlimited.reserve_by(Some(now)), Some(Duration::ZERO));
    }

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

    #[tokio::test(start_paused = true)]
    async fn any_rate_and_burst_are_held_without_overflow_or_endless_waits() {
        let rates = [
            1e-30,
            1e-6,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            1e300,
            f64::MAX,
        ];
        for per_second in rates {
            for burst in [0, 1, 7, u32::MAX] {
                let limiter = RateLimiter::new(RateLimit { per_second, burst });
                for _ in 0..3 {
                    limiter.throttled();
                    tokio::time::advance(CUT_COOLDOWN).await;
                }
                let waits: Vec<Duration> = (0..5).map(|_| limiter.reserve()).collect();
                for (queued, wait) in waits.iter().enumerate() {
                    assert!(
                        *wait <= MAX_INTERVAL * (queued as u32 + 1),
                        "{per_second}/s burst {burst}: call {queued} waits {wait:?}"
                    );
                }
                assert!(limiter.current_rate() == 0.0 || limiter.current_rate() >= MIN_RATE);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_too_small_to_mean_is_held_at_the_minimum() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 1e-30,
            burst: 1,
        });
        assert_eq!(limiter.reserve(), Duration::ZERO);
        assert_eq!(limiter.reserve(), MAX_INTERVAL);
        assert_eq!(limiter.limit().per_second, MIN_RATE);
        let nan = RateLimiter::new(RateLimit {
            per_second: f64::NAN,
            burst: 1,
        });
        assert_eq!(nan.limit(), RateLimit::UNLIMITED, "not a rate: no limit");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_limit_keeps_the_slots_taken_and_the_cut() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 10.0,
            burst: 1,
        });
        limiter.reserve();
        assert!(limiter.throttled(), "10/s cut to 5/s");
        limiter.set_limit(RateLimit {
            per_second: 20.0,
            burst: 1,
        });
        assert!(
            limiter.reserve() > Duration::ZERO,
            "the burst already spent stays spent"
        );
        assert_eq!(
            limiter.current_rate(),
            5.0,
            "the cut is kept and recovers towards the new rate"
        );
        assert!(!limiter.throttled(), "still within the cut's cooldown");
        limiter.set_limit(RateLimit {
            per_second: 4.0,
            burst: 1,
        });
        assert_eq!(limiter.current_rate(), 4.0, "never above the new rate");
    }

    #[test]
    fn unlimited_never_waits() {
        let limiter = RateLimiter::new(RateLimit::UNLIMITED);
        assert!(!limiter.throttled());
        assert!((0..1000).all(|_| limiter.reserve().is_zero()));
        assert_eq!(limiter.current_rate(), 0.0);
    }
}
