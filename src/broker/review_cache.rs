//! Review answers kept for a few seconds, so that a workload asking for
//! codes in a burst costs the API server one TokenReview and one
//! SubjectAccessReview, not one each per code. Tokens are keyed by their
//! SHA-256, never kept themselves. Only definite answers are kept (a
//! token authenticated or not, an access allowed or denied), never "the
//! API server did not answer".
//!
//! A token revoked or a RoleBinding removed is therefore honoured within
//! [`ReviewTtl::allowed`] (10 s by default).

use super::contract::Denial;
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
}

impl Default for ReviewTtl {
    fn default() -> Self {
        Self {
            allowed: Duration::from_secs(10),
            denied: Duration::from_secs(3),
        }
    }
}

/// Entries per cache; when full, expired ones go, and if none has, all.
const CAPACITY: usize = 10_000;

/// A [`Reviewer`] that asks `inner` only when it has no fresh answer.
pub struct CachedReviewer<R> {
    inner: R,
    ttl: ReviewTtl,
    tokens: Answers<[u8; 32], Result<Caller, Denial>>,
    access: Answers<(String, String, String), Result<(), Denial>>,
}

impl<R: Reviewer> CachedReviewer<R> {
    pub fn new(inner: R, ttl: ReviewTtl) -> Self {
        Self {
            inner,
            ttl,
            tokens: Answers::default(),
            access: Answers::default(),
        }
    }

    fn ttl_of<T>(&self, answer: &Result<T, Denial>) -> Option<Duration> {
        match answer {
            Ok(_) => Some(self.ttl.allowed),
            Err(denial) if matches!(denial.status, 401 | 403) => Some(self.ttl.denied),
            Err(_) => None,
        }
    }
}

impl<R: Reviewer> Reviewer for CachedReviewer<R> {
    async fn authenticate(&self, token: &str) -> Result<Caller, Denial> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(answer) = self.tokens.get(&key) {
            return answer;
        }
        let answer = self.inner.authenticate(token).await;
        if let Some(ttl) = self.ttl_of(&answer) {
            self.tokens.put(key, answer.clone(), ttl);
        }
        answer
    }

    async fn authorize(&self, caller: &Caller, connection: &str) -> Result<(), Denial> {
        let key = (
            caller.username.clone(),
            caller.uid.clone(),
            connection.to_owned(),
        );
        if let Some(answer) = self.access.get(&key) {
            return answer;
        }
        let answer = self.inner.authorize(caller, connection).await;
        if let Some(ttl) = self.ttl_of(&answer) {
            self.access.put(key, answer.clone(), ttl);
        }
        answer
    }
}

/// Answers by key, each until its deadline.
struct Answers<K, V>(Mutex<HashMap<K, (Instant, V)>>);

impl<K, V> Default for Answers<K, V> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<K: Hash + Eq, V: Clone> Answers<K, V> {
    fn get(&self, key: &K) -> Option<V> {
        let map = self.0.lock().expect("review cache lock");
        map.get(key)
            .filter(|(until, _)| *until > Instant::now())
            .map(|(_, v)| v.clone())
    }

    fn put(&self, key: K, value: V, ttl: Duration) {
        let now = Instant::now();
        let mut map = self.0.lock().expect("review cache lock");
        if map.len() >= CAPACITY {
            map.retain(|_, (until, _)| *until > now);
            if map.len() >= CAPACITY {
                map.clear();
            }
        }
        map.insert(key, (now + ttl, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::contract::reason;
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

    #[tokio::test(start_paused = true)]
    async fn answers_are_kept_for_their_ttl_and_unavailability_never() {
        let cache = CachedReviewer::new(Counting::default(), ReviewTtl::default());
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
        let cache = CachedReviewer::new(Counting::default(), ReviewTtl::default());
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
}
