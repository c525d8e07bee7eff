//! Quota-aware pacing: separate client-side budgets for reads and writes,
//! per tenant, defaulting to MetaStudio's documented flow control.
//!
//! The API reference ("API usage limits") states per-tenant quotas per
//! operation: ListActiveCode, ShowActiveCode and CreateOnceCode 20/s in
//! cn-north-4 and 10/s in cn-east-3; CreateActiveCode, UpdateActiveCode,
//! ResetActiveCode and DeleteActiveCode 5/s and 3/s. Over it the gateway
//! answers 429 `APIGW.0308`. A region without documented figures gets the
//! lowest documented ones.
//!
//! Each budget is a [`RateLimiter`] that adapts to 429s (halve, then
//! recover; see [`super::rate_limit`]), so a wrong quota or another client
//! of the tenant costs a few 429s, never the run.
//!
//! The figures a budget may state are bounded ([`RATE_RANGE`],
//! [`MIN_SHARE`], [`MAX_BURST`]): the CRD schema, validation
//! ([`Pacing::problems`]) and the flags all check these, and the slowest
//! budget they allow is the limiter's own floor ([`rate_limit::MIN_RATE`]).
//! Waiting for a budget gives back the caller's reconcile slot
//! ([`crate::slots`]).

use super::error::Operation;
use super::rate_limit::{self, RateLimit, RateLimiter, Turn};
use std::ops::RangeInclusive;
use std::time::Duration;
use tokio::time::Instant;

/// What a call spends: the quota of reads or of writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallClass {
    Read,
    Write,
}

impl CallClass {
    pub fn of(operation: Operation) -> Self {
        match operation {
            Operation::ListActiveCode | Operation::ShowActiveCode | Operation::CreateOnceCode => {
                CallClass::Read
            }
            Operation::CreateActiveCode
            | Operation::UpdateActiveCode
            | Operation::ResetActiveCode
            | Operation::DeleteActiveCode => CallClass::Write,
        }
    }
}

/// Requests per second a tenant may send, per class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quotas {
    pub reads: f64,
    pub writes: f64,
}

/// The documented quotas of the regions that document them.
const DOCUMENTED: [(&str, Quotas); 2] = [
    (
        "cn-north-4",
        Quotas {
            reads: 20.0,
            writes: 5.0,
        },
    ),
    (
        "cn-east-3",
        Quotas {
            reads: 10.0,
            writes: 3.0,
        },
    ),
];

impl Quotas {
    /// The lowest documented quotas: what a region without figures gets.
    pub const LOWEST: Quotas = Quotas {
        reads: 10.0,
        writes: 3.0,
    };

    /// The documented quotas of `region`, or [`Quotas::LOWEST`].
    pub fn documented(region: Option<&str>) -> Quotas {
        DOCUMENTED
            .iter()
            .find(|(name, _)| Some(*name) == region)
            .map_or(Quotas::LOWEST, |(_, quotas)| *quotas)
    }
}

/// The rates a budget may state besides 0 (no limit), per second: from one
/// call every ten seconds to fifty times the highest documented quota.
pub const RATE_RANGE: RangeInclusive<f64> = 0.1..=1000.0;
/// The smallest share of a quota that may be configured (the largest is 1).
pub const MIN_SHARE: f64 = 0.01;
/// The largest burst that may be configured (the smallest is 1).
pub const MAX_BURST: u32 = rate_limit::MAX_BURST;

/// One figure of a [`Pacing`] out of its bounds: the field, as a
/// connection's `spec.budget` names it, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacingProblem {
    pub field: &'static str,
    pub problem: String,
}

impl PacingProblem {
    /// The field's path in a connection resource, e.g.
    /// `spec.budget.readsPerSecond`.
    pub fn path(&self) -> String {
        format!("spec.budget.{}", self.field)
    }
}

/// Why `rate` is not a rate a budget may state; `None` when it is one.
pub fn rate_problem(rate: f64) -> Option<String> {
    (rate != 0.0 && !RATE_RANGE.contains(&rate)).then(|| {
        format!(
            "must be 0 (no limit) or from {} to {} requests per second, not {rate:?}",
            RATE_RANGE.start(),
            RATE_RANGE.end()
        )
    })
}

/// Why `share` is not a share a budget may state; `None` when it is one.
pub fn share_problem(share: f64) -> Option<String> {
    (!(MIN_SHARE..=1.0).contains(&share)).then(|| {
        format!(
            "must be from {MIN_SHARE} to 1 (e.g. 0.8 leaves a fifth of the quota to other clients), not {share:?}"
        )
    })
}

/// Why `burst` is not a burst a budget may state; `None` when it is one.
pub fn burst_problem(burst: u32) -> Option<String> {
    (!(1..=MAX_BURST).contains(&burst))
        .then(|| format!("{burst} is out of range: use 1 (evenly spaced) to {MAX_BURST}"))
}

/// Pacing settings as configured (flags, chart values, a connection's
/// `spec.budget`); each unset field falls back to the layer below and, at
/// the bottom, to the documented quota of the region.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Pacing {
    /// Reads per second (0 = no limit).
    pub reads_per_second: Option<f64>,
    /// Writes per second (0 = no limit).
    pub writes_per_second: Option<f64>,
    /// The share of each budget to use, in [`MIN_SHARE`], 1; default 1.
    pub share: Option<f64>,
    /// Requests of a class that may go out at once; default 1 (evenly
    /// spaced, so a server counting per second never sees more than its
    /// quota).
    pub burst: Option<u32>,
    /// An upper bound for both classes (0 = none): the deprecated single
    /// `requestsPerSecond`.
    pub cap: Option<f64>,
}

impl Pacing {
    /// No limit on either class.
    pub const UNLIMITED: Pacing = Pacing {
        reads_per_second: Some(0.0),
        writes_per_second: Some(0.0),
        share: None,
        burst: None,
        cap: None,
    };

    /// `other`'s values where it has them, ours elsewhere.
    pub fn overlay(&self, other: &Pacing) -> Pacing {
        Pacing {
            reads_per_second: other.reads_per_second.or(self.reads_per_second),
            writes_per_second: other.writes_per_second.or(self.writes_per_second),
            share: other.share.or(self.share),
            burst: other.burst.or(self.burst),
            cap: other.cap.or(self.cap),
        }
    }

    /// Every figure out of its bounds, named as `spec.budget` names it
    /// (`cap` is `requestsPerSecond`); empty when all are within them.
    pub fn problems(&self) -> Vec<PacingProblem> {
        [
            (
                "readsPerSecond",
                self.reads_per_second.and_then(rate_problem),
            ),
            (
                "writesPerSecond",
                self.writes_per_second.and_then(rate_problem),
            ),
            ("requestsPerSecond", self.cap.and_then(rate_problem)),
            ("share", self.share.and_then(share_problem)),
            ("burst", self.burst.and_then(burst_problem)),
        ]
        .into_iter()
        .filter_map(|(field, problem)| problem.map(|problem| PacingProblem { field, problem }))
        .collect()
    }

    /// The budgets for a tenant in `region`. Figures out of bounds (which
    /// validation refuses) are held within them by the limiters.
    pub fn budgets(&self, region: Option<&str>) -> Budgets {
        let documented = Quotas::documented(region);
        let share = self
            .share
            .filter(|s| s.is_finite())
            .unwrap_or(1.0)
            .clamp(MIN_SHARE, 1.0);
        let burst = self.burst.unwrap_or(1).clamp(1, MAX_BURST);
        let budget = |configured: Option<f64>, quota: f64| {
            let rate = configured.unwrap_or(quota);
            let rate = match self.cap.filter(|c| *c > 0.0) {
                Some(cap) if rate == 0.0 || rate > cap => cap,
                _ => rate,
            };
            RateLimit {
                per_second: rate * share,
                burst,
            }
        };
        Budgets {
            reads: budget(self.reads_per_second, documented.reads),
            writes: budget(self.writes_per_second, documented.writes),
        }
    }
}

/// The resolved budgets of one tenant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budgets {
    pub reads: RateLimit,
    pub writes: RateLimit,
}

/// The two budgets of one set of credentials, shared by every client of
/// them.
#[derive(Debug)]
pub struct Pacer {
    reads: RateLimiter,
    writes: RateLimiter,
}

impl Pacer {
    pub fn new(budgets: Budgets) -> Self {
        Self {
            reads: RateLimiter::new(budgets.reads),
            writes: RateLimiter::new(budgets.writes),
        }
    }

    /// The budgets as configured (before any 429 cut them), as the
    /// limiters hold them.
    pub fn budgets(&self) -> Budgets {
        Budgets {
            reads: self.reads.limit(),
            writes: self.writes.limit(),
        }
    }

    /// Paces at `budgets` from now on, keeping the slots already taken and
    /// any 429 cut (see [`RateLimiter::set_limit`]).
    pub fn set_budgets(&self, budgets: Budgets) {
        self.reads.set_limit(budgets.reads);
        self.writes.set_limit(budgets.writes);
    }

    pub fn limiter(&self, class: CallClass) -> &RateLimiter {
        match class {
            CallClass::Read => &self.reads,
            CallClass::Write => &self.writes,
        }
    }

    /// Waits for a slot of `operation`'s class free no later than
    /// `deadline` (any slot without one); returns the time waited, or, as
    /// soon as the next free slot is expected later than the deadline,
    /// how long until it is expected, having taken nothing. While it waits, the caller's reconcile slot is
    /// given back ([`crate::slots::released_while`]): waiting for one
    /// tenant's budget holds nothing another tenant needs. It holds no
    /// budget either, only a place in line (first come, first served): it
    /// tries again when its turn is due, or at once when the budget or the
    /// line changes (see [`super::rate_limit`]).
    pub async fn acquire(
        &self,
        operation: Operation,
        deadline: Option<Instant>,
    ) -> Result<Duration, Duration> {
        let class = CallClass::of(operation);
        let limiter = self.limiter(class);
        let Err(wait) = limiter.try_reserve() else {
            return Ok(Duration::ZERO);
        };
        let too_late = |wait: Duration| deadline.is_some_and(|d| Instant::now() + wait > d);
        let reached = || deadline.is_some_and(|d| Instant::now() >= d);
        if too_late(wait) {
            return Err(wait);
        }
        tracing::debug!(
            ?class,
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "waiting for the budget of these credentials"
        );
        let started = Instant::now();
        let place = limiter.line_up();
        let taken = crate::slots::released_while(async move {
            loop {
                let changed = limiter.changed();
                match place.try_take() {
                    // A slot is no use past the deadline, even one free now.
                    Ok(()) if too_late(Duration::ZERO) => return Err(Duration::ZERO),
                    Ok(()) => return Ok(()),
                    // At the deadline itself too: a wait of zero behind
                    // others (no limit) must not spin on a deadline passed.
                    Err(turn) if too_late(turn.wait()) || reached() => {
                        return Err(turn.wait());
                    }
                    Err(Turn::Due(wait)) => tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = changed => {}
                    },
                    // Behind others: the line moving wakes it, and so does
                    // its deadline (a 429 may slow the line past it).
                    Err(Turn::Behind(_)) => tokio::select! {
                        () = until(deadline) => {}
                        () = changed => {}
                    },
                }
            }
        })
        .await;
        taken.map(|()| started.elapsed())
    }

    /// As [`Pacer::acquire`] with the deadline `by`, but behind the line
    /// rather than in it: it takes a slot only when nobody waits and one is
    /// free, so a caller that gives up soon (the broker) never delays the
    /// calls that wait their turn (the operator's own). Returns the time
    /// waited, or when a slot is expected, having taken nothing.
    pub async fn acquire_behind_the_line(
        &self,
        operation: Operation,
        by: Instant,
    ) -> Result<Duration, Duration> {
        let limiter = self.limiter(CallClass::of(operation));
        let started = Instant::now();
        loop {
            match limiter.try_reserve() {
                Ok(()) => return Ok(started.elapsed()),
                Err(wait) if Instant::now() + wait > by => return Err(wait),
                // At least a millisecond: a line with no limit is gone at once.
                Err(wait) => tokio::time::sleep(wait.max(Duration::from_millis(1))).await,
            }
        }
    }

    /// Takes a slot of `operation`'s class only if one is free now;
    /// otherwise takes nothing and says how long until one is. For callers
    /// that must not wait (the broker answers 429 instead).
    pub fn try_acquire(&self, operation: Operation) -> Result<(), Duration> {
        self.limiter(CallClass::of(operation)).try_reserve()
    }

    /// The server throttled `operation`: its class slows down. Returns
    /// the class when its rate was cut.
    pub fn throttled(&self, operation: Operation) -> Option<CallClass> {
        let class = CallClass::of(operation);
        self.limiter(class).throttled().then_some(class)
    }
}

/// Completes at `deadline`; never without one.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(budgets: Budgets) -> (f64, f64, u32) {
        (
            budgets.reads.per_second,
            budgets.writes.per_second,
            budgets.reads.burst,
        )
    }

    #[test]
    fn every_operation_has_the_class_the_quota_table_gives_it() {
        let reads: Vec<_> = Operation::ALL
            .into_iter()
            .filter(|op| CallClass::of(*op) == CallClass::Read)
            .collect();
        assert_eq!(
            reads,
            [
                Operation::ListActiveCode,
                Operation::ShowActiveCode,
                Operation::CreateOnceCode
            ]
        );
    }

    #[test]
    fn budgets_default_to_the_documented_quota_of_the_region() {
        let none = Pacing::default();
        assert_eq!(rates(none.budgets(Some("cn-north-4"))), (20.0, 5.0, 1));
        assert_eq!(rates(none.budgets(Some("cn-east-3"))), (10.0, 3.0, 1));
        assert_eq!(
            rates(none.budgets(Some("ap-southeast-1"))),
            (10.0, 3.0, 1),
            "a region without figures gets the lowest documented"
        );
        assert_eq!(rates(none.budgets(None)), (10.0, 3.0, 1));
    }

    #[test]
    fn configured_rates_share_and_cap_apply_per_class() {
        let pacing = Pacing {
            writes_per_second: Some(8.0),
            share: Some(0.5),
            burst: Some(3),
            ..Pacing::default()
        };
        assert_eq!(rates(pacing.budgets(Some("cn-north-4"))), (10.0, 4.0, 3));
        let capped = Pacing {
            cap: Some(4.0),
            ..Pacing::default()
        };
        assert_eq!(rates(capped.budgets(Some("cn-north-4"))), (4.0, 4.0, 1));
        let unlimited_capped = Pacing::UNLIMITED.overlay(&capped);
        assert_eq!(rates(unlimited_capped.budgets(None)), (4.0, 4.0, 1));
        assert_eq!(rates(Pacing::UNLIMITED.budgets(None)), (0.0, 0.0, 1));
    }

    #[test]
    fn a_resource_overrides_only_the_fields_it_sets() {
        let operator = Pacing {
            reads_per_second: Some(15.0),
            share: Some(0.8),
            ..Pacing::default()
        };
        let resource = Pacing {
            share: Some(0.5),
            ..Pacing::default()
        };
        let merged = operator.overlay(&resource);
        assert_eq!(merged.reads_per_second, Some(15.0));
        assert_eq!(merged.share, Some(0.5));
    }

    #[test]
    fn figures_out_of_bounds_are_named_with_the_range() {
        let pacing = Pacing {
            reads_per_second: Some(1e-30),
            writes_per_second: Some(f64::NAN),
            share: Some(0.0),
            burst: Some(0),
            cap: Some(-1.0),
        };
        let problems = pacing.problems();
        let fields: Vec<&str> = problems.iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [
                "readsPerSecond",
                "writesPerSecond",
                "requestsPerSecond",
                "share",
                "burst"
            ]
        );
        assert_eq!(
            problems[0].problem,
            "must be 0 (no limit) or from 0.1 to 1000 requests per second, not 1e-30"
        );
        let fine = Pacing {
            reads_per_second: Some(0.0),
            writes_per_second: Some(1000.0),
            share: Some(MIN_SHARE),
            burst: Some(MAX_BURST),
            cap: Some(0.1),
        };
        assert!(fine.problems().is_empty());
        assert!(Pacing::default().problems().is_empty());
    }

    #[test]
    fn the_slowest_budget_allowed_is_the_limiters_floor() {
        let slowest = Pacing {
            reads_per_second: Some(*RATE_RANGE.start()),
            share: Some(MIN_SHARE),
            ..Pacing::default()
        };
        assert!(slowest.problems().is_empty());
        let rate = slowest.budgets(None).reads.per_second;
        assert!((rate - rate_limit::MIN_RATE).abs() < 1e-12, "{rate}");
    }

    #[test]
    fn budgets_hold_figures_that_bypassed_validation_within_bounds() {
        let wild = Pacing {
            reads_per_second: Some(1e-30),
            writes_per_second: Some(f64::INFINITY),
            share: Some(f64::NAN),
            burst: Some(u32::MAX),
            cap: None,
        };
        let budgets = wild.budgets(None);
        assert_eq!(budgets.reads.burst, MAX_BURST);
        let pacer = Pacer::new(budgets);
        assert_eq!(
            pacer.budgets().reads.per_second,
            rate_limit::MIN_RATE,
            "held at the floor"
        );
        assert_eq!(
            pacer.budgets().writes,
            RateLimit {
                per_second: 0.0,
                burst: MAX_BURST
            },
            "an infinite rate is no limit"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reads_and_writes_are_paced_apart_and_a_429_slows_only_its_class() {
        let pacer = Pacer::new(Pacing::default().budgets(Some("cn-north-4")));
        assert_eq!(pacer.try_acquire(Operation::ResetActiveCode), Ok(()));
        assert_eq!(
            pacer.try_acquire(Operation::UpdateActiveCode),
            Err(Duration::from_millis(200)),
            "5/s"
        );
        assert_eq!(
            pacer.try_acquire(Operation::ListActiveCode),
            Ok(()),
            "writes do not spend reads"
        );
        assert_eq!(
            pacer.throttled(Operation::ResetActiveCode),
            Some(CallClass::Write)
        );
        assert_eq!(pacer.limiter(CallClass::Write).current_rate(), 2.5);
        assert_eq!(pacer.limiter(CallClass::Read).current_rate(), 20.0);
    }

    /// A create or delete must not be sent after its batch's call window:
    /// a slot later than the deadline is not waited for nor taken, so the
    /// next call still gets it.
    #[tokio::test(start_paused = true)]
    async fn a_slot_later_than_the_deadline_is_neither_waited_for_nor_taken() {
        let pacer = Pacer::new(Pacing::default().budgets(Some("cn-north-4")));
        let write = Operation::CreateActiveCode;
        let now = Instant::now();
        assert_eq!(pacer.acquire(write, Some(now)).await, Ok(Duration::ZERO));
        // The next write slot is 200 ms away (5/s).
        let soon = now + Duration::from_millis(50);
        assert_eq!(
            pacer.acquire(write, Some(soon)).await,
            Err(Duration::from_millis(200)),
            "when it is expected"
        );
        assert_eq!(Instant::now(), now, "gave up without waiting");
        assert_eq!(
            pacer.acquire(write, None).await,
            Ok(Duration::from_millis(200)),
            "the slot was not taken"
        );
    }

    /// Callers sharing one budget take turns: each waiter is served in the
    /// order it came, whichever task wakes first, so no caller of a fleet
    /// sharing credentials is starved until its call window ends.
    #[tokio::test(start_paused = true)]
    async fn waiters_are_served_in_the_order_they_came() {
        let pacer = std::sync::Arc::new(Pacer::new(Pacing::default().budgets(Some("cn-north-4"))));
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        // The burst spent: every caller waits from its first call on.
        pacer
            .acquire(Operation::CreateActiveCode, None)
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for caller in 0..3 {
            let (pacer, order) = (pacer.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..4 {
                    pacer
                        .acquire(Operation::CreateActiveCode, None)
                        .await
                        .unwrap();
                    order.lock().unwrap().push(caller);
                }
            }));
            // Each caller asks once before the next one starts.
            tokio::task::yield_now().await;
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]);
    }

    /// A waiter that gives up (its call cut short) leaves its place: the
    /// one behind it gets the next slot at its time, not a slot later.
    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_lets_the_next_move_up() {
        let pacer = Pacer::new(Pacing::default().budgets(Some("cn-north-4")));
        let write = Operation::CreateActiveCode;
        assert_eq!(pacer.acquire(write, None).await, Ok(Duration::ZERO));
        let started = Instant::now();
        let gave_up = tokio::time::timeout(Duration::from_millis(10), pacer.acquire(write, None));
        assert!(gave_up.await.is_err());
        assert!(pacer.acquire(write, None).await.is_ok());
        assert_eq!(
            Instant::now() - started,
            Duration::from_millis(200),
            "the next slot of 5/s, not one more"
        );
    }
}
