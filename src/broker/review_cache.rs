//! Review answers kept for a few seconds, so that a workload asking for
//! codes in a burst costs the API server one TokenReview and one
//! SubjectAccessReview, not one each per code; and the front of the
//! TokenReviews, which a token the broker has not authenticated before
//! passes only within the [`ReviewBudget`].
//!
//! Tokens are keyed by their SHA-256, never kept themselves. Only definite
//! answers are kept (a token authenticated or not, an access allowed or
//! denied), never "the API server did not answer". Grants and refusals are
//! kept apart, each with its own capacity, and a full map takes no new
//! entry rather than dropping fresh ones: refusals, which anyone can cause
//! with junk tokens, never push out a grant.
//!
//! A token the API server authenticated stays known for
//! [`ReviewTtl::remembered`] after its answer expires: asking again about it
//! spends nothing of the budget, so a flood of junk tokens, which spends
//! it, holds up no caller that was served before.
//!
//! A token revoked or a RoleBinding removed is honoured within
//! [`ReviewTtl::allowed`] (10 s by default).

use super::contract::Denial;
use super::limits::ReviewBudget;
use super::review::{Caller, Reviewer};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// How long answers are kept.
#[derive(Debug, Clone, Copy)]
pub struct ReviewTtl {
    /// A token authenticated, an access allowed.
    pub allowed: Duration,
    /// A token refused, an access denied: shorter, so that a fix (a new
    /// RoleBinding) shows soon.
    pub denied: Duration,
    /// How long a token stays known after it was last authenticated: its
    /// next review is not new work. A projected token lives an hour by
    /// default.
    pub remembered: Duration,
}

impl Default for ReviewTtl {
    fn default() -> Self {
        Self {
            allowed: Duration::from_secs(10),
            denied: Duration::from_secs(3),
            remembered: Duration::from_secs(3600),
        }
    }
}

/// Entries per map (grants and refusals each).
const CAPACITY: usize = 10_000;

/// A [`Reviewer`] that asks `inner` only when it has no fresh answer, and
/// about a token it does not know only within its budget.
pub struct CachedReviewer<R> {
    inner: R,
    ttl: ReviewTtl,
    budget: ReviewBudget,
    tokens: Verdicts<[u8; 32], Caller>,
    access: Verdicts<(String, String, String), ()>,
}

impl<R: Reviewer> CachedReviewer<R> {
    pub fn new(inner: R, ttl: ReviewTtl, budget: ReviewBudget) -> Self {
        Self {
            inner,
            ttl,
            budget,
            tokens: Verdicts::default(),
            access: Verdicts::default(),
        }
    }
}

impl<R: Reviewer> Reviewer for CachedReviewer<R> {
    async fn authenticate(&self, token: &str) -> Result<Caller, Denial> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        match self.tokens.lookup(&key) {
            Lookup::Fresh(answer) => return answer,
            Lookup::Known => {}
            Lookup::Unknown => self.budget.admit()?,
        }
        let answer = self.inner.authenticate(token).await;
        let ttl = self.ttl;
        self.tokens
            .record(key, &answer, (ttl.allowed, ttl.remembered), ttl.denied);
        answer
    }

    async fn authorize(&self, caller: &Caller, connection: &str) -> Result<(), Denial> {
        let key = (
            caller.username.clone(),
            caller.uid.clone(),
            connection.to_owned(),
        );
        if let Lookup::Fresh(answer) = self.access.lookup(&key) {
            return answer;
        }
        let answer = self.inner.authorize(caller, connection).await;
        let ttl = self.ttl;
        self.access
            .record(key, &answer, (ttl.allowed, ttl.allowed), ttl.denied);
        answer
    }
}

/// What the cache knows of a key.
enum Lookup<T> {
    /// An answer still fresh.
    Fresh(T),
    /// Granted before; the answer has expired.
    Known,
    Unknown,
}

/// Grants and refusals by key, apart.
struct Verdicts<K, T> {
    granted: Answers<K, T>,
    refused: Answers<K, Denial>,
}

impl<K, T> Default for Verdicts<K, T> {
    fn default() -> Self {
        Self {
            granted: Answers::default(),
            refused: Answers::default(),
        }
    }
}

impl<K: Hash + Eq + Clone, T: Clone> Verdicts<K, T> {
    fn lookup(&self, key: &K) -> Lookup<Result<T, Denial>> {
        match self.granted.get(key) {
            Some(Kept::Fresh(value)) => return Lookup::Fresh(Ok(value)),
            Some(Kept::Expired) => return Lookup::Known,
            None => {}
        }
        match self.refused.get(key) {
            Some(Kept::Fresh(denial)) => Lookup::Fresh(Err(denial)),
            _ => Lookup::Unknown,
        }
    }

    /// Keeps a definite `answer`: a grant fresh for `granted.0` and known
    /// for `granted.1`, a refusal (401, 403) fresh for `denied`.
    fn record(
        &self,
        key: K,
        answer: &Result<T, Denial>,
        granted: (Duration, Duration),
        denied: Duration,
    ) {
        match answer {
            Ok(value) => {
                self.refused.remove(&key);
                self.granted.put(key, value.clone(), granted.0, granted.1);
            }
            Err(denial) if matches!(denial.status, 401 | 403) => {
                self.granted.remove(&key);
                self.refused.put(key, denial.clone(), denied, denied);
            }
            Err(_) => {}
        }
    }
}

/// What a map holds for a key.
enum Kept<V> {
    Fresh(V),
    Expired,
}

struct Entry<V> {
    fresh_until: Instant,
    kept_until: Instant,
    value: V,
}

/// Answers by key, each fresh until one deadline and kept until another.
struct Answers<K, V>(Mutex<Table<K, V>>);

struct Table<K, V> {
    entries: HashMap<K, Entry<V>>,
    /// Full of fresh answers until then: not worth scanning before.
    full_until: Option<Instant>,
}

impl<K, V> Default for Answers<K, V> {
    fn default() -> Self {
        Self(Mutex::new(Table {
            entries: HashMap::new(),
            full_until: None,
        }))
    }
}

impl<K: Hash + Eq, V: Clone> Answers<K, V> {
    fn get(&self, key: &K) -> Option<Kept<V>> {
        let now = Instant::now();
        let table = self.0.lock().expect("review cache lock");
        let entry = table.entries.get(key).filter(|e| e.kept_until > now)?;
        Some(if entry.fresh_until > now {
            Kept::Fresh(entry.value.clone())
        } else {
            Kept::Expired
        })
    }

    fn remove(&self, key: &K) {
        self.0
            .lock()
            .expect("review cache lock")
            .entries
            .remove(key);
    }

    /// Keeps `value`, unless the map is full of fresh answers.
    fn put(&self, key: K, value: V, fresh: Duration, kept: Duration) {
        let now = Instant::now();
        let mut table = self.0.lock().expect("review cache lock");
        let full = table.entries.len() >= CAPACITY && !table.entries.contains_key(&key);
        if full && !table.make_room(now) {
            return;
        }
        let entry = Entry {
            fresh_until: now + fresh,
            kept_until: now + kept.max(fresh),
            value,
        };
        table.entries.insert(key, entry);
    }
}

impl<K, V> Table<K, V> {
    /// Drops the entries past their keeping, then if need be the expired
    /// ones; whether that made room.
    fn make_room(&mut self, now: Instant) -> bool {
        if self.full_until.is_some_and(|until| now < until) {
            return false;
        }
        self.entries.retain(|_, e| e.kept_until > now);
        if self.entries.len() >= CAPACITY {
            self.entries.retain(|_, e| e.fresh_until > now);
        }
        if self.entries.len() < CAPACITY {
            self.full_until = None;
            return true;
        }
        self.full_until = self.entries.values().map(|e| e.fresh_until).min();
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::contract::reason;
    use crate::metastudio::rate_limit::RateLimit;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Authenticates "good" as retail/kiosk, refuses the rest, answers 503
    /// for "flaky"; allows connection "open" only. Counts the questions.
    #[derive(Default)]
    struct Counting {
        tokens: AtomicUsize,
        access: AtomicUsize,
    }

    fn kiosk() -> Caller {
        Caller {
            username: "system:serviceaccount:retail:kiosk".into(),
            uid: "u1".into(),
            groups: vec![],
            extra: Default::default(),
            namespace: "retail".into(),
            service_account: "kiosk".into(),
        }
    }

    impl Reviewer for Counting {
        async fn authenticate(&self, token: &str) -> Result<Caller, Denial> {
            self.tokens.fetch_add(1, Ordering::SeqCst);
            match token {
                "good" => Ok(kiosk()),
                "flaky" => Err(Denial::new(503, reason::REVIEW_UNAVAILABLE, "down")),
                _ => Err(Denial::unauthenticated("no")),
            }
        }

        async fn authorize(&self, _: &Caller, connection: &str) -> Result<(), Denial> {
            self.access.fetch_add(1, Ordering::SeqCst);
            match connection {
                "open" => Ok(()),
                _ => Err(Denial::new(403, reason::FORBIDDEN, "no")),
            }
        }
    }

    fn cache(budget: RateLimit) -> CachedReviewer<Counting> {
        CachedReviewer::new(
            Counting::default(),
            ReviewTtl::default(),
            ReviewBudget::new(budget),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn answers_are_kept_for_their_ttl_and_unavailability_never() {
        let cache = cache(RateLimit::UNLIMITED);
        for _ in 0..5 {
            assert!(cache.authenticate("good").await.is_ok());
            assert_eq!(cache.authenticate("bad").await.unwrap_err().status, 401);
            assert_eq!(cache.authenticate("flaky").await.unwrap_err().status, 503);
        }
        assert_eq!(
            cache.inner.tokens.load(Ordering::SeqCst),
            2 + 5,
            "flaky asked each time"
        );
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(cache.authenticate("good").await.is_ok());
        assert!(cache.authenticate("bad").await.is_err());
        assert_eq!(
            cache.inner.tokens.load(Ordering::SeqCst),
            8,
            "the refusal expired after 3 s, the authentication is still fresh"
        );
        tokio::time::advance(Duration::from_secs(7)).await;
        assert!(cache.authenticate("good").await.is_ok());
        assert_eq!(cache.inner.tokens.load(Ordering::SeqCst), 9);
    }

    #[tokio::test(start_paused = true)]
    async fn access_is_kept_per_caller_and_connection() {
        let cache = cache(RateLimit::UNLIMITED);
        let caller = kiosk();
        for _ in 0..3 {
            assert!(cache.authorize(&caller, "open").await.is_ok());
            assert_eq!(
                cache.authorize(&caller, "closed").await.unwrap_err().status,
                403
            );
        }
        let other = Caller {
            uid: "u2".into(),
            ..kiosk()
        };
        assert!(cache.authorize(&other, "open").await.is_ok());
        assert_eq!(cache.inner.access.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_refused_tokens_pushes_out_no_grant() {
        let cache = cache(RateLimit::UNLIMITED);
        assert!(cache.authenticate("good").await.is_ok());
        for i in 0..2 * CAPACITY {
            let junk = format!("junk-{i}");
            assert_eq!(cache.authenticate(&junk).await.unwrap_err().status, 401);
        }
        let asked = cache.inner.tokens.load(Ordering::SeqCst);
        assert!(cache.authenticate("good").await.is_ok());
        assert_eq!(
            cache.inner.tokens.load(Ordering::SeqCst),
            asked,
            "the grant was still cached"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_tokens_are_reviewed_within_the_budget_and_known_ones_always() {
        // Two reviews, then one per 1000 s.
        let cache = cache(RateLimit {
            per_second: 0.001,
            burst: 2,
        });
        assert!(cache.authenticate("good").await.is_ok());
        assert_eq!(cache.authenticate("junk-1").await.unwrap_err().status, 401);
        for i in 2..100 {
            let denial = cache.authenticate(&format!("junk-{i}")).await.unwrap_err();
            assert_eq!(
                (denial.status, denial.reason),
                (429, reason::REVIEW_RATE_LIMITED)
            );
            assert!(denial.retry_after.is_some());
        }
        assert_eq!(
            cache.inner.tokens.load(Ordering::SeqCst),
            2,
            "no review past the budget"
        );
        // The grant expires; the token is still known: asked again, past
        // the spent budget.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(cache.authenticate("good").await.is_ok());
        assert_eq!(cache.inner.tokens.load(Ordering::SeqCst), 3);
        assert_eq!(
            cache.authenticate("junk-100").await.unwrap_err().status,
            429
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_known_token_refused_later_is_forgotten() {
        struct Revoking(AtomicUsize);
        impl Reviewer for Revoking {
            async fn authenticate(&self, _: &str) -> Result<Caller, Denial> {
                match self.0.fetch_add(1, Ordering::SeqCst) {
                    0 => Ok(kiosk()),
                    _ => Err(Denial::unauthenticated("revoked")),
                }
            }
            async fn authorize(&self, _: &Caller, _: &str) -> Result<(), Denial> {
                Ok(())
            }
        }
        let cache = CachedReviewer::new(
            Revoking(AtomicUsize::new(0)),
            ReviewTtl::default(),
            ReviewBudget::new(RateLimit {
                per_second: 0.001,
                burst: 1,
            }),
        );
        assert!(cache.authenticate("t").await.is_ok());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(cache.authenticate("t").await.unwrap_err().status, 401);
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(
            cache.authenticate("t").await.unwrap_err().status,
            429,
            "no longer known: a new review needs the budget"
        );
    }
}
