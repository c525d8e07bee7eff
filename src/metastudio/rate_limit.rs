//! A client-side rate limit: a token bucket (as GCRA: one timestamp, no
//! refill task) shared by every call it paces.
//!
//! A caller takes a slot only when one is free ([`RateLimiter::try_reserve`]);
//! otherwise it lines up ([`RateLimiter::line_up`]) and tries again when its
//! turn is due, or sooner when the limit or the line changes
//! ([`RateLimiter::changed`]). Waiters are served first come, first served,
//! so callers sharing one budget each get their turn (none is starved by
//! faster wakers), yet a waiter holds no reservation: a new limit applies
//! at once to every waiter, and a caller that gives up (its call cut short)
//! leaves its place and nothing else behind.
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

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;
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

/// The lowest rate a 429 cut leaves of `limit`.
fn floor(limit: RateLimit) -> f64 {
    (limit.per_second * FLOOR_SHARE).max(MIN_RATE)
}

/// The time between two calls at `rate` (requests per second, at least
/// [`MIN_RATE`]): computed in whole nanoseconds, so no rate can overflow
/// it.
fn interval(rate: f64) -> Duration {
    let nanos = 1e9 / rate.max(MIN_RATE);
    // `as` saturates; the bound keeps it at MAX_INTERVAL anyway.
    Duration::from_nanos((nanos as u64).min(MAX_INTERVAL.as_nanos() as u64))
}

/// `ahead` (slots taken, spaced `old` apart) spaced `new` apart instead,
/// and never more than `burst` slots of `new`.
fn rescaled(ahead: Duration, old: Duration, new: Duration, burst: u32) -> Duration {
    let most = new.saturating_mul(burst);
    if old.is_zero() {
        return Duration::ZERO;
    }
    let scaled = ahead.as_secs_f64() * (new.as_secs_f64() / old.as_secs_f64());
    Duration::try_from_secs_f64(scaled).map_or(most, |scaled| scaled.min(most))
}

#[derive(Debug)]
pub struct RateLimiter {
    state: Mutex<State>,
    /// Wakes the waiters when the limit changes.
    changes: Notify,
}

#[derive(Debug)]
struct State {
    /// The configured limit, bounded (see [`RateLimit::bounded`]).
    limit: RateLimit,
    /// Theoretical arrival time of the next request.
    next: Option<Instant>,
    /// The last cut after a 429: when, and the rate it set.
    cut: Option<(Instant, f64)>,
    /// The waiters' tickets, first come first.
    line: VecDeque<u64>,
    /// The ticket the next waiter gets.
    tickets: u64,
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

    /// Takes the next slot if it is free at `now`; otherwise how long until
    /// it is.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let Some((allowed_at, next)) = self.slot(now) else {
            return Ok(());
        };
        if allowed_at > now {
            return Err(allowed_at - now);
        }
        self.next = Some(next);
        Ok(())
    }

    /// How long a caller with `ahead` waiters before it may expect to
    /// wait: until the next slot, then one interval per waiter ahead.
    fn wait_behind(&mut self, now: Instant, ahead: usize) -> Duration {
        let Some((allowed_at, _)) = self.slot(now) else {
            return Duration::ZERO;
        };
        let ahead = u32::try_from(ahead).unwrap_or(u32::MAX);
        (allowed_at - now).saturating_add(interval(self.rate_at(now)).saturating_mul(ahead))
    }
}

/// Why a waiter has no slot yet, and how long it may expect to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// It is first in line: its slot is free after this long.
    Due(Duration),
    /// Others are ahead of it: about this long, but it learns its turn
    /// from [`RateLimiter::changed`] when the line moves.
    Behind(Duration),
}

impl Turn {
    /// The expected wait, either way.
    pub fn wait(self) -> Duration {
        match self {
            Turn::Due(wait) | Turn::Behind(wait) => wait,
        }
    }
}

/// A waiter's place in a limiter's line; leaving it (dropping it, e.g. when
/// the call is cut short) lets the next waiter move up.
#[derive(Debug)]
pub struct Place<'a> {
    limiter: &'a RateLimiter,
    ticket: u64,
}

impl Place<'_> {
    /// Takes a slot if this place is first in line and a slot is free now.
    pub fn try_take(&self) -> Result<(), Turn> {
        let now = Instant::now();
        let mut state = self.limiter.state();
        match state.line.iter().position(|t| *t == self.ticket) {
            Some(0) | None => {}
            Some(ahead) => return Err(Turn::Behind(state.wait_behind(now, ahead))),
        }
        state.take(now).map_err(Turn::Due)
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut state = self.limiter.state();
        state.line.retain(|t| *t != self.ticket);
        drop(state);
        self.limiter.changes.notify_waiters();
    }
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            state: Mutex::new(State {
                limit: limit.bounded(),
                next: None,
                cut: None,
                line: VecDeque::new(),
                tickets: 0,
            }),
            changes: Notify::new(),
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

    /// Enforces `limit` from now on. The slots already taken are kept, as
    /// many of them, but spaced at the new rate (a burst spent stays spent,
    /// and a slow rate's long gap shrinks with a faster one); a 429 cut is
    /// kept too, and recovers towards the new rate: a client with other
    /// figures for the same tenant changes the pace, not the history.
    /// Waiters try again at once ([`RateLimiter::changed`]).
    pub fn set_limit(&self, limit: RateLimit) {
        let limit = limit.bounded();
        let now = Instant::now();
        let mut state = self.state();
        if state.limit == limit {
            return;
        }
        let old = interval(state.rate_at(now));
        state.limit = limit;
        // A cut kept within the new limit's range (none without a limit):
        // never below its floor, however the limits came and went.
        state.cut = match state.cut {
            Some((at, rate)) if limit.limits() => {
                Some((at, rate.min(limit.per_second).max(floor(limit))))
            }
            _ => None,
        };
        state.next = match state.next {
            Some(next) if limit.limits() && next > now => {
                let new = interval(state.rate_at(now));
                Some(now + rescaled(next - now, old, new, limit.burst))
            }
            _ => None,
        };
        drop(state);
        self.changes.notify_waiters();
    }

    /// Completes when the limit or the line of waiters changes after this
    /// call (even if not yet polled): a waiter selects on it beside its
    /// sleep, and tries again when either ends.
    pub fn changed(&self) -> Notified<'_> {
        self.changes.notified()
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
        let rate = (state.rate_at(now) / 2.0).max(floor(state.limit));
        state.cut = Some((now, rate));
        true
    }

    /// Whether it is as a new limiter would be: every slot of its burst
    /// free again and no 429 cut left. Forgetting such a limiter (and
    /// making a new one later) changes nothing.
    pub fn is_fresh(&self) -> bool {
        let now = Instant::now();
        let mut state = self.state();
        let rate = state.rate_at(now);
        let full = state.limit.per_second;
        state.next.is_none_or(|next| next <= now) && (rate == full)
    }

    /// Takes a slot only if one is free now and nobody waits in line;
    /// otherwise takes nothing and returns how long until one might be.
    pub fn try_reserve(&self) -> Result<(), Duration> {
        let now = Instant::now();
        let mut state = self.state();
        if !state.line.is_empty() {
            let ahead = state.line.len();
            return Err(state.wait_behind(now, ahead));
        }
        state.take(now)
    }

    /// A place at the end of the line of waiters (see [`Place::try_take`]).
    pub fn line_up(&self) -> Place<'_> {
        let mut state = self.state();
        let ticket = state.tickets;
        state.tickets = state.tickets.wrapping_add(1);
        state.line.push_back(ticket);
        Place {
            limiter: self,
            ticket,
        }
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
        let tries: Vec<_> = (0..4).map(|_| limiter.try_reserve()).collect();
        assert_eq!(
            tries,
            [Ok(()), Ok(()), Ok(()), Err(Duration::from_millis(100))]
        );
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(limiter.try_reserve(), Ok(()));
        assert_eq!(limiter.try_reserve(), Err(Duration::from_millis(100)));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_refills_the_burst() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 10.0,
            burst: 2,
        });
        let _ = (limiter.try_reserve(), limiter.try_reserve());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(limiter.try_reserve(), Ok(()));
        assert_eq!(limiter.try_reserve(), Ok(()));
        assert_eq!(limiter.try_reserve(), Err(Duration::from_millis(100)));
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

    /// Two clients of the same credentials with other budgets (one of them
    /// none) change the limit back and forth: a 429 cut kept across them
    /// stays at or above the floor of the limit in force.
    #[tokio::test(start_paused = true)]
    async fn a_cut_kept_across_limit_changes_stays_above_the_floor() {
        let ten = RateLimit {
            per_second: 10.0,
            burst: 1,
        };
        let limiter = RateLimiter::new(ten);
        assert!(limiter.throttled());
        limiter.set_limit(RateLimit::UNLIMITED);
        assert_eq!(limiter.current_rate(), 0.0, "no limit");
        limiter.set_limit(ten);
        assert_eq!(limiter.current_rate(), 10.0, "the cut went with the limit");
        assert!(limiter.throttled());
        limiter.set_limit(RateLimit {
            per_second: 0.5,
            burst: 1,
        });
        assert_eq!(limiter.current_rate(), 0.5, "within the new limit");
        limiter.set_limit(ten);
        assert!(limiter.current_rate() >= 1.0, "{}", limiter.current_rate());
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
        assert_eq!(limiter.try_reserve(), Ok(()));
        assert_eq!(
            limiter.try_reserve(),
            Err(Duration::from_millis(500)),
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
                for _ in 0..5 {
                    if let Err(wait) = limiter.try_reserve() {
                        assert!(
                            wait <= MAX_INTERVAL,
                            "{per_second}/s burst {burst}: told to wait {wait:?}"
                        );
                    }
                }
                limiter.set_limit(RateLimit {
                    per_second: 1.0 / per_second,
                    burst: burst.wrapping_add(1),
                });
                if let Err(wait) = limiter.try_reserve() {
                    assert!(wait <= MAX_INTERVAL, "after a new limit: {wait:?}");
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
        assert_eq!(limiter.try_reserve(), Ok(()));
        assert_eq!(limiter.try_reserve(), Err(MAX_INTERVAL));
        assert_eq!(limiter.limit().per_second, MIN_RATE);
        let nan = RateLimiter::new(RateLimit {
            per_second: f64::NAN,
            burst: 1,
        });
        assert_eq!(nan.limit(), RateLimit::UNLIMITED, "not a rate: no limit");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_limit_respaces_the_slots_taken_keeps_the_cut_and_wakes_the_waiters() {
        let limit = |per_second| RateLimit {
            per_second,
            burst: 1,
        };
        let limiter = RateLimiter::new(limit(0.1));
        assert_eq!(limiter.try_reserve(), Ok(()));
        assert_eq!(limiter.try_reserve(), Err(Duration::from_secs(10)));
        let changed = limiter.changed();
        limiter.set_limit(limit(10.0));
        tokio::time::timeout(Duration::ZERO, changed)
            .await
            .expect("a waiter is woken by the new limit");
        assert_eq!(
            limiter.try_reserve(),
            Err(Duration::from_millis(100)),
            "the slot taken is spaced at the new rate: no 10 s gap left"
        );
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(limiter.try_reserve(), Ok(()));
        assert!(limiter.throttled(), "10/s cut to 5/s");
        limiter.set_limit(limit(20.0));
        assert!(
            limiter.try_reserve().is_err(),
            "the burst already spent stays spent"
        );
        assert_eq!(
            limiter.current_rate(),
            5.0,
            "the cut is kept and recovers towards the new rate"
        );
        assert!(!limiter.throttled(), "still within the cut's cooldown");
        limiter.set_limit(limit(4.0));
        assert_eq!(limiter.current_rate(), 4.0, "never above the new rate");
    }

    #[tokio::test(start_paused = true)]
    async fn a_limiter_is_fresh_once_its_burst_and_rate_are_whole_again() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 10.0,
            burst: 2,
        });
        assert!(limiter.is_fresh());
        assert_eq!(limiter.try_reserve(), Ok(()));
        assert!(!limiter.is_fresh(), "a slot is spent");
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(limiter.is_fresh());
        limiter.throttled();
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!limiter.is_fresh(), "a 429 cut is not recovered yet");
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(limiter.is_fresh());
    }

    #[test]
    fn unlimited_never_waits() {
        let limiter = RateLimiter::new(RateLimit::UNLIMITED);
        assert!(!limiter.throttled());
        assert!((0..1000).all(|_| limiter.try_reserve().is_ok()));
        assert_eq!(limiter.current_rate(), 0.0);
    }
}
