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

use super::error::Operation;
use super::rate_limit::{RateLimit, RateLimiter};
use std::time::Duration;

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

/// The smallest share of a quota that may be configured.
pub const MIN_SHARE: f64 = 0.01;

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

    /// The budgets for a tenant in `region`.
    pub fn budgets(&self, region: Option<&str>) -> Budgets {
        let documented = Quotas::documented(region);
        let share = self.share.unwrap_or(1.0);
        let burst = self.burst.unwrap_or(1).max(1);
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

/// The two budgets of one tenant, shared by every client of it.
#[derive(Debug)]
pub struct Pacer {
    budgets: Budgets,
    reads: RateLimiter,
    writes: RateLimiter,
}

impl Pacer {
    pub fn new(budgets: Budgets) -> Self {
        Self {
            budgets,
            reads: RateLimiter::new(budgets.reads),
            writes: RateLimiter::new(budgets.writes),
        }
    }

    /// The budgets as configured (before any 429 cut them).
    pub fn budgets(&self) -> Budgets {
        self.budgets
    }

    pub fn limiter(&self, class: CallClass) -> &RateLimiter {
        match class {
            CallClass::Read => &self.reads,
            CallClass::Write => &self.writes,
        }
    }

    /// Waits for a slot of `operation`'s class; returns the time waited.
    pub async fn acquire(&self, operation: Operation) -> Duration {
        self.limiter(CallClass::of(operation)).acquire().await
    }

    /// The server throttled `operation`: its class slows down. Returns
    /// the class when its rate was cut.
    pub fn throttled(&self, operation: Operation) -> Option<CallClass> {
        let class = CallClass::of(operation);
        self.limiter(class).throttled().then_some(class)
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

    #[tokio::test(start_paused = true)]
    async fn reads_and_writes_are_paced_apart_and_a_429_slows_only_its_class() {
        let pacer = Pacer::new(Pacing::default().budgets(Some("cn-north-4")));
        let write = pacer.limiter(CallClass::Write);
        assert_eq!(write.reserve(), Duration::ZERO);
        assert_eq!(write.reserve(), Duration::from_millis(200), "5/s");
        assert_eq!(
            pacer.limiter(CallClass::Read).reserve(),
            Duration::ZERO,
            "writes do not spend reads"
        );
        assert_eq!(
            pacer.throttled(Operation::ResetActiveCode),
            Some(CallClass::Write)
        );
        assert_eq!(pacer.limiter(CallClass::Write).current_rate(), 2.5);
        assert_eq!(pacer.limiter(CallClass::Read).current_rate(), 20.0);
    }
}
