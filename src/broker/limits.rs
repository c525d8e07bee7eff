//! How fast the broker works for whom. None of these waits: a request over
//! any of them is answered 429 with Retry-After at once.
//!
//! * [`ReviewBudget`]: TokenReviews of tokens the broker has not
//!   authenticated before, for every caller together. Anyone who reaches
//!   the port can send a fresh string as a bearer token, and each one would
//!   cost the API server a review; past the budget such a request is refused
//!   before any review. Tokens the API server authenticated before never
//!   wait for it (see [`super::review_cache`]).
//! * [`Limits::admit_caller`]: a token bucket per calling ServiceAccount
//!   (one workload cannot starve the others).
//! * [`Limits::admit_project`]: a budget per set of credentials (endpoint,
//!   project and the credentials themselves, as [`CredentialsId`] names
//!   them) under CreateOnceCode's quota (20/s in cn-north-4), shared by
//!   every caller of those credentials. Keyed by who pays, not by the
//!   project a connection names: a tenant naming someone else's project
//!   with credentials of its own spends only its own budget.

use super::contract::{Denial, reason};
use crate::metastudio::Connection;
use crate::metastudio::breaker::CredentialsId;
use crate::metastudio::rate_limit::{RateLimit, RateLimiter};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Buckets per map. Beyond, the buckets as good as new (their burst whole
/// again) are forgotten first, which changes nothing; if none is, the one
/// used longest ago. A caller in use keeps its bucket: thousands of other
/// keys cannot hand it a fresh burst.
const CAPACITY: usize = 10_000;

/// The broker's limits on once-codes.
#[derive(Debug)]
pub struct Limits {
    caller: RateLimit,
    quota: RateLimit,
    callers: Buckets<String>,
    projects: Buckets<CredentialsId>,
}

impl Limits {
    /// `caller`: once-codes per second and burst for one ServiceAccount;
    /// `quota`: CreateOnceCode calls per second and burst for one set of
    /// credentials.
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

    /// Takes one from the budget of the credentials `connection` calls
    /// with.
    pub fn admit_project(&self, connection: &Connection) -> Result<(), Denial> {
        let key = CredentialsId::of(connection);
        self.projects.take(&key, self.quota).map_err(|wait| {
            Denial::too_many(
                reason::QUOTA_EXHAUSTED,
                format!(
                    "the connection's share of CreateOnceCode's quota ({} per second, --broker-quota) is used up: try again after Retry-After",
                    self.quota.per_second
                ),
                wait,
            )
        })
    }
}

/// The TokenReviews the broker may send for tokens it has not seen
/// authenticated: one bucket for every caller together.
#[derive(Debug)]
pub struct ReviewBudget(RateLimiter);

impl ReviewBudget {
    pub fn new(limit: RateLimit) -> Self {
        Self(RateLimiter::new(limit))
    }

    /// Takes one review from the budget, or refuses the request.
    pub fn admit(&self) -> Result<(), Denial> {
        self.0.try_reserve().map_err(|wait: Duration| {
            let limit = self.0.limit();
            Denial::too_many(
                reason::REVIEW_RATE_LIMITED,
                format!(
                    "the broker is asked to authenticate more new tokens than it reviews ({} per second, burst {}, --broker-review-rate): try again after Retry-After",
                    limit.per_second, limit.burst
                ),
                wait,
            )
        })
    }
}

#[derive(Debug)]
struct Buckets<K> {
    map: Mutex<HashMap<K, Bucket>>,
    capacity: usize,
}

/// One key's limiter and when it was last asked.
#[derive(Debug)]
struct Bucket {
    limiter: Arc<RateLimiter>,
    used: Instant,
}

impl<K> Default for Buckets<K> {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl<K> Buckets<K> {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    fn take<Q>(&self, key: &Q, limit: RateLimit) -> Result<(), Duration>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let limiter = {
            let mut map = self.map.lock().expect("broker limits lock");
            if map.len() >= self.capacity && !map.contains_key(key) {
                make_room(&mut map, self.capacity);
            }
            let bucket = map.entry(key.to_owned()).or_insert_with(|| Bucket {
                limiter: Arc::new(RateLimiter::new(limit)),
                used: Instant::now(),
            });
            bucket.used = Instant::now();
            bucket.limiter.clone()
        };
        limiter.try_reserve()
    }
}

/// Frees one place at least in a full map: the buckets as good as new go,
/// and, if none was, the one used longest ago.
fn make_room<K: Hash + Eq + Clone>(map: &mut HashMap<K, Bucket>, capacity: usize) {
    map.retain(|_, bucket| !bucket.limiter.is_fresh());
    if map.len() < capacity {
        return;
    }
    let oldest = map
        .iter()
        .min_by_key(|(_, bucket)| bucket.used)
        .map(|(key, _)| key.clone());
    if let Some(oldest) = oldest {
        map.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metastudio::Credentials;
    use crate::metastudio::connection::parse_endpoint;

    fn limit(per_second: f64, burst: u32) -> RateLimit {
        RateLimit { per_second, burst }
    }

    fn connection(project: &str, access_key: &str) -> Connection {
        Connection::new(
            parse_endpoint("https://metastudio.cn-north-4.myhuaweicloud.com").unwrap(),
            project,
            Credentials::ak_sk(access_key, "secret"),
            None,
        )
        .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn each_caller_has_its_own_bucket_and_every_caller_shares_the_credentials() {
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
        let victim = connection("p", "victim-ak");
        for _ in 0..3 {
            assert!(limits.admit_project(&victim).is_ok());
        }
        let denial = limits.admit_project(&victim).unwrap_err();
        assert_eq!(denial.reason, reason::QUOTA_EXHAUSTED);
        assert_eq!(denial.retry_after_secs(), Some(1));
        assert!(
            limits
                .admit_project(&connection("other", "victim-ak"))
                .is_ok()
        );
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(limits.admit_project(&victim).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn naming_a_project_with_other_credentials_spends_nothing_of_its_owners_budget() {
        let limits = Limits::new(limit(1.0, 1), limit(1.0, 2));
        let squatter = connection("p", "squatter-ak");
        for _ in 0..100 {
            let _ = limits.admit_project(&squatter);
        }
        assert!(limits.admit_project(&squatter).is_err());
        let owner = connection("p", "victim-ak");
        assert!(limits.admit_project(&owner).is_ok());
        assert!(limits.admit_project(&owner).is_ok());
    }

    /// Before, a full map started afresh: ten thousand keys of someone
    /// else handed a caller that had spent its burst a new one.
    #[tokio::test(start_paused = true)]
    async fn a_full_map_never_hands_a_caller_in_use_a_fresh_burst() {
        let buckets: Buckets<String> = Buckets::with_capacity(3);
        let slow = limit(0.001, 1);
        assert!(buckets.take("victim", slow).is_ok());
        for other in ["a", "b"] {
            tokio::time::advance(Duration::from_millis(1)).await;
            assert!(buckets.take(other, slow).is_ok());
        }
        for round in 0..10 {
            tokio::time::advance(Duration::from_millis(1)).await;
            assert!(
                buckets.take("victim", slow).is_err(),
                "its burst stays spent"
            );
            assert!(buckets.take(&format!("new-{round}"), slow).is_ok());
        }
        let fresh = limit(1000.0, 1);
        let buckets: Buckets<String> = Buckets::with_capacity(2);
        assert!(buckets.take("victim", slow).is_ok());
        assert!(buckets.take("idle", fresh).is_ok());
        tokio::time::advance(Duration::from_millis(10)).await;
        assert!(buckets.take("newcomer", slow).is_ok());
        assert!(
            buckets.take("victim", slow).is_err(),
            "the bucket as good as new made room, not the victim's"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_review_budget_refuses_past_its_burst_and_refills_at_its_rate() {
        let budget = ReviewBudget::new(limit(2.0, 3));
        for _ in 0..3 {
            assert!(budget.admit().is_ok());
        }
        let denial = budget.admit().unwrap_err();
        assert_eq!(
            (denial.status, denial.reason),
            (429, reason::REVIEW_RATE_LIMITED)
        );
        assert!(
            denial.message.contains("--broker-review-rate"),
            "{}",
            denial.message
        );
        assert_eq!(denial.retry_after, Some(Duration::from_millis(500)));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(budget.admit().is_ok());
        assert!(budget.admit().is_err());
    }
}
