//! How fast once-codes go out: a token bucket per calling ServiceAccount
//! (one workload cannot starve the others), and a budget per MetaStudio
//! endpoint and project under CreateOnceCode's quota (20/s in cn-north-4),
//! shared by every caller of that project. Neither waits: a request over
//! either is answered 429 with Retry-After at once.

use super::contract::{Denial, reason};
use crate::metastudio::rate_limit::{RateLimit, RateLimiter};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Buckets per map; beyond, the map starts afresh (a caller may then get
/// one extra burst).
const CAPACITY: usize = 10_000;

/// The broker's limits.
#[derive(Debug)]
pub struct Limits {
    caller: RateLimit,
    quota: RateLimit,
    callers: Buckets,
    projects: Buckets,
}

impl Limits {
    /// `caller`: once-codes per second and burst for one ServiceAccount;
    /// `quota`: CreateOnceCode calls per second and burst for one project.
    pub fn new(caller: RateLimit, quota: RateLimit) -> Self {
        Self {
            caller,
            quota,
            callers: Buckets::default(),
            projects: Buckets::default(),
        }
    }

    /// Takes one from the bucket of the ServiceAccount `caller` (`ns/name`).
    pub fn admit_caller(&self, caller: &str) -> Result<(), Denial> {
        self.callers.take(caller, self.caller).map_err(|wait| {
            Denial::too_many(
                reason::CALLER_RATE_LIMITED,
                format!(
                    "ServiceAccount {caller} asked for more than {} once-code(s) per second (burst {}): wait, or ask for the broker's --broker-caller-rate to be raised",
                    self.caller.per_second, self.caller.burst
                ),
                wait,
            )
        })
    }

    /// Takes one from the budget of `endpoint` and `project`.
    pub fn admit_project(&self, endpoint: &str, project: &str) -> Result<(), Denial> {
        let key = format!("{endpoint} {project}");
        self.projects.take(&key, self.quota).map_err(|wait| {
            Denial::too_many(
                reason::QUOTA_EXHAUSTED,
                format!(
                    "the project's share of CreateOnceCode's quota ({} per second, --broker-quota) is used up: try again after Retry-After",
                    self.quota.per_second
                ),
                wait,
            )
        })
    }
}

#[derive(Debug, Default)]
struct Buckets(Mutex<HashMap<String, Arc<RateLimiter>>>);

impl Buckets {
    fn take(&self, key: &str, limit: RateLimit) -> Result<(), std::time::Duration> {
        let limiter = {
            let mut map = self.0.lock().expect("broker limits lock");
            if map.len() >= CAPACITY && !map.contains_key(key) {
                map.clear();
            }
            map.entry(key.to_owned())
                .or_insert_with(|| Arc::new(RateLimiter::new(limit)))
                .clone()
        };
        limiter.try_reserve()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limit(per_second: f64, burst: u32) -> RateLimit {
        RateLimit { per_second, burst }
    }

    #[tokio::test(start_paused = true)]
    async fn each_caller_has_its_own_bucket_and_every_caller_shares_the_project() {
        let limits = Limits::new(limit(1.0, 2), limit(10.0, 3));
        assert!(limits.admit_caller("retail/a").is_ok());
        assert!(limits.admit_caller("retail/a").is_ok());
        let denial = limits.admit_caller("retail/a").unwrap_err();
        assert_eq!(
            (denial.status, denial.reason),
            (429, reason::CALLER_RATE_LIMITED)
        );
        assert_eq!(denial.retry_after, Some(Duration::from_secs(1)));
        assert!(
            limits.admit_caller("retail/b").is_ok(),
            "b has its own bucket"
        );
        for _ in 0..3 {
            assert!(limits.admit_project("https://e", "p").is_ok());
        }
        let denial = limits.admit_project("https://e", "p").unwrap_err();
        assert_eq!(denial.reason, reason::QUOTA_EXHAUSTED);
        assert_eq!(denial.retry_after_secs(), Some(1));
        assert!(limits.admit_project("https://e", "other").is_ok());
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(limits.admit_project("https://e", "p").is_ok());
    }
}
