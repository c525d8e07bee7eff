//! A circuit breaker per set of credentials: after repeated 401/403
//! answers, calls with those credentials stop for a while instead of
//! hammering the API gateway (which may lock the account) with requests
//! that cannot succeed.
//!
//! Closed: calls go through; consecutive rejections are counted and any
//! other answer clears the count. Open, after `threshold` rejections in a
//! row: calls fail at once, without a request, until the open period ends.
//! Then one call is let through as a probe: a rejection opens the breaker
//! again for twice as long (capped), anything else closes it. Credentials
//! that change (a new Secret) have a breaker of their own, so they are
//! tried at once.

use super::connection::{Connection, Credentials};
use super::recent::Recent;
use sha2::{Digest, Sha256};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Rejections in a row that open the breaker; 0 disables it.
    pub threshold: u32,
    /// How long the breaker first stays open.
    pub initial_open: Duration,
    /// The longest it stays open.
    pub max_open: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            threshold: 3,
            initial_open: Duration::from_secs(30),
            max_open: Duration::from_secs(600),
        }
    }
}

/// Names one set of credentials at one endpoint and project, without
/// holding them: a hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CredentialsId([u8; 16]);

impl CredentialsId {
    pub fn of(connection: &Connection) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"metastudio-operator breaker\0");
        for part in [connection.endpoint.as_str(), connection.project_id.as_str()] {
            hasher.update(part.as_bytes());
            hasher.update(b"\0");
        }
        match &connection.credentials {
            Credentials::AkSk {
                access_key,
                secret_key,
                security_token,
            } => {
                for part in [Some(access_key), Some(secret_key), security_token.as_ref()] {
                    hasher.update(part.map_or("", |s| s.expose()).as_bytes());
                    hasher.update(b"\0");
                }
            }
            Credentials::Token(token) => hasher.update(token.expose().as_bytes()),
        }
        let digest = hasher.finalize();
        let mut id = [0; 16];
        id.copy_from_slice(&digest[..16]);
        Self(id)
    }
}

/// Why a call was not sent: the breaker of its credentials is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspended {
    /// Until the next probe may go out.
    pub retry_in: Duration,
    /// Rejections in a row so far.
    pub rejections: u32,
    /// The last rejection's HTTP status, error code and request id.
    pub last_status: u16,
    pub last_code: String,
    pub last_request_id: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    rejections: u32,
    /// Set while open; a probe is allowed once it has passed.
    open_until: Option<Instant>,
    /// How many times it opened since it last closed (doubles the period).
    trips: u32,
    /// A probe is out: other calls wait for its verdict.
    probing: bool,
    last: (u16, String, Option<String>),
}

/// The breakers of every set of credentials rejected lately; one nobody
/// called with for an hour is forgotten (its longest pause is over).
#[derive(Debug, Default)]
pub struct Breakers {
    policy: BreakerPolicy,
    states: Mutex<Recent<CredentialsId, State>>,
}

impl Breakers {
    pub fn new(policy: BreakerPolicy) -> Self {
        Self {
            policy,
            states: Mutex::default(),
        }
    }

    fn states(&self) -> std::sync::MutexGuard<'_, Recent<CredentialsId, State>> {
        self.states.lock().expect("breaker lock")
    }

    /// Whether a call with these credentials may be sent now. The pass
    /// must be given back with [`Breakers::record`] or dropped: a probe
    /// whose call was cancelled ends with it, so the next call may probe.
    pub fn admit(&self, id: CredentialsId) -> Result<Pass<'_>, Suspended> {
        let pass = |probe| Pass {
            breakers: self,
            id,
            probe,
        };
        let mut states = self.states();
        let Some(state) = states.get_mut(&id) else {
            return Ok(pass(false));
        };
        let Some(until) = state.open_until else {
            return Ok(pass(false));
        };
        let now = Instant::now();
        if now >= until && !state.probing {
            state.probing = true;
            return Ok(pass(true));
        }
        let (last_status, last_code, last_request_id) = state.last.clone();
        Err(Suspended {
            retry_in: until.saturating_duration_since(now),
            rejections: state.rejections,
            last_status,
            last_code,
            last_request_id,
        })
    }

    /// Records an answer: `rejection` for 401/403, with its details, `None`
    /// for any other answer.
    fn record(&self, id: CredentialsId, rejection: Option<(u16, &str, Option<&str>)>) {
        if self.policy.threshold == 0 {
            return;
        }
        let mut states = self.states();
        let Some((status, code, request_id)) = rejection else {
            states.remove(&id);
            return;
        };
        let now = Instant::now();
        let over = |state: &State| state.open_until.is_none_or(|until| until <= now);
        let state = states.touch(id, State::default, over);
        state.probing = false;
        state.last = (status, code.to_owned(), request_id.map(str::to_owned));
        if state.open_until.is_some_and(|until| now < until) {
            // A call sent before the breaker opened: no new verdict.
            return;
        }
        state.rejections += 1;
        if state.rejections >= self.policy.threshold {
            let period = self
                .policy
                .initial_open
                .saturating_mul(1u32 << state.trips.min(16))
                .min(self.policy.max_open);
            state.trips += 1;
            state.open_until = Some(now + period);
        }
    }

    /// The last rejection of these credentials (401/403) while no other
    /// answer has cleared it: status, error code and request id.
    pub fn rejection(&self, id: CredentialsId) -> Option<(u16, String, Option<String>)> {
        self.states()
            .get(&id)
            .filter(|state| state.rejections > 0)
            .map(|state| state.last.clone())
    }

    /// A probe that got no verdict (a network fault, or its call was
    /// cancelled) ends, so the next call may probe again.
    fn release_probe(&self, id: CredentialsId) {
        if let Some(state) = self.states().get_mut(&id) {
            state.probing = false;
        }
    }
}

/// Leave to send one call; see [`Breakers::admit`].
#[must_use]
#[derive(Debug)]
pub struct Pass<'a> {
    breakers: &'a Breakers,
    id: CredentialsId,
    probe: bool,
}

impl Pass<'_> {
    /// The call's verdict on the credentials: `Some` for a 401/403 (status,
    /// error code, request id), `None` for any other answer.
    pub fn record(mut self, rejection: Option<(u16, &str, Option<&str>)>) {
        self.probe = false;
        self.breakers.record(self.id, rejection);
    }
}

impl Drop for Pass<'_> {
    /// No verdict (no answer, or the call was dropped mid-flight).
    fn drop(&mut self) {
        if self.probe {
            self.breakers.release_probe(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(sk: &str) -> Connection {
        Connection::new(
            "http://127.0.0.1:1".parse().unwrap(),
            "p",
            Credentials::ak_sk("ak", sk),
            None,
        )
        .unwrap()
    }

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            threshold: 2,
            initial_open: Duration::from_secs(30),
            max_open: Duration::from_secs(100),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_probes_after_the_period_and_doubles() {
        let breakers = Breakers::new(policy());
        let id = CredentialsId::of(&connection("wrong"));
        let reject = Some((401, "APIGW.0301", Some("req-1")));
        breakers.record(id, reject);
        assert!(breakers.admit(id).is_ok(), "one rejection is not enough");
        breakers.record(id, reject);
        let suspended = breakers.admit(id).unwrap_err();
        assert_eq!(suspended.retry_in, Duration::from_secs(30));
        assert_eq!(suspended.last_request_id.as_deref(), Some("req-1"));

        tokio::time::advance(Duration::from_secs(30)).await;
        let probe = breakers.admit(id).expect("the probe goes out");
        assert!(breakers.admit(id).is_err(), "one probe at a time");
        probe.record(reject);
        assert_eq!(
            breakers.admit(id).unwrap_err().retry_in,
            Duration::from_secs(60)
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        breakers.admit(id).unwrap().record(None);
        assert!(breakers.admit(id).is_ok(), "a success closes it");
        assert!(breakers.admit(id).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_without_a_verdict_lets_the_next_call_probe() {
        let breakers = Breakers::new(policy());
        let id = CredentialsId::of(&connection("wrong"));
        for _ in 0..2 {
            breakers.record(id, Some((401, "", None)));
        }
        tokio::time::advance(Duration::from_secs(30)).await;
        let probe = breakers.admit(id).unwrap();
        assert!(breakers.admit(id).is_err());
        // Cancelled, or a network fault: no verdict on the credentials.
        drop(probe);
        assert!(breakers.admit(id).is_ok(), "the next call probes");
    }

    #[tokio::test(start_paused = true)]
    async fn other_credentials_are_not_held_back() {
        let breakers = Breakers::new(policy());
        let wrong = CredentialsId::of(&connection("wrong"));
        for _ in 0..2 {
            breakers.record(wrong, Some((403, "", None)));
        }
        assert!(breakers.admit(wrong).is_err());
        assert!(
            breakers
                .admit(CredentialsId::of(&connection("right")))
                .is_ok()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rejected_credentials_nobody_called_with_for_an_hour_are_forgotten() {
        let breakers = Breakers::new(policy());
        let old = CredentialsId::of(&connection("old"));
        for _ in 0..2 {
            breakers.record(old, Some((401, "", None)));
        }
        tokio::time::advance(super::super::recent::FORGET_AFTER).await;
        breakers.record(CredentialsId::of(&connection("new")), Some((401, "", None)));
        assert_eq!(breakers.states().len(), 1, "only the new one is kept");
        assert!(breakers.rejection(old).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_period_is_capped() {
        let breakers = Breakers::new(policy());
        let id = CredentialsId::of(&connection("wrong"));
        let mut periods = Vec::new();
        for _ in 0..3 {
            breakers.record(id, Some((401, "", None)));
        }
        for _ in 0..4 {
            // Calls already in flight when it opened do not lengthen it.
            breakers.record(id, Some((401, "", None)));
            let period = breakers.admit(id).unwrap_err().retry_in;
            periods.push(period.as_secs());
            tokio::time::advance(period).await;
            let probe = breakers.admit(id).expect("probe");
            probe.record(Some((401, "", None)));
        }
        assert_eq!(periods, [30, 60, 100, 100]);
    }
}
