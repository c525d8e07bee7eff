//! Backoff after failed reconciles. A reconcile that ends in a fault
//! returns a [`ReconcileError`]; kube-runtime hands it to the controller's
//! `error_policy`, which counts the resource's consecutive failures here
//! and requeues it after 5s, 10s, 20s, ... up to 5 minutes (with jitter),
//! never sooner than the fault asks (a Retry-After, a reset's grace). A
//! reconcile that succeeds starts the count over. kube-runtime keeps no
//! such count itself (kube-rs issue 1916), so this is the one place that
//! does.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Why a reconcile did not finish its work; the resource's status says
/// more (its Ready condition carries the message).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A fault the operator retries by itself.
    #[error("not converged ({reason}); retrying with backoff")]
    Retry {
        /// The Ready condition's reason, e.g. RemoteError.
        reason: &'static str,
        /// The fault's own wait (Retry-After, a reset's grace), if any.
        at_least: Option<Duration>,
    },
    /// The stored resource kept changing under the reconcile.
    #[error("the resource changed {replans} times while it was reconciled; retrying with backoff")]
    KeptChanging { replans: u32 },
}

impl ReconcileError {
    fn at_least(&self) -> Option<Duration> {
        match self {
            ReconcileError::Retry { at_least, .. } => *at_least,
            ReconcileError::KeptChanging { .. } => None,
        }
    }
}

/// Consecutive failures per resource (`namespace/name`).
#[derive(Debug, Default)]
pub struct Failures(Mutex<HashMap<String, u32>>);

impl Failures {
    /// Counts one more failure of `key`; returns when to try again.
    pub fn delay_after(&self, key: &str, err: &ReconcileError) -> Duration {
        let mut failures = self.0.lock().expect("failure map lock");
        let count = failures.entry(key.to_owned()).or_insert(0);
        *count += 1;
        let delay = backoff(*count);
        err.at_least().map_or(delay, |floor| delay.max(floor))
    }

    /// `key` reconciled successfully: its next failure is the first again.
    pub fn succeeded(&self, key: &str) {
        self.0.lock().expect("failure map lock").remove(key);
    }

    /// Forgets resources that are gone.
    pub fn retain(&self, keys: &HashSet<String>) {
        self.0
            .lock()
            .expect("failure map lock")
            .retain(|key, _| keys.contains(key));
    }
}

/// Exponential backoff with jitter: 5s, 10s, 20s, ... up to 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let delay = BACKOFF_BASE
        .saturating_mul(1u32 << exponent)
        .min(BACKOFF_MAX);
    jittered(delay, 0.1)
}

/// `base` stretched by up to `share` at random, so resources spread out.
pub fn jittered(base: Duration, share: f64) -> Duration {
    base.mul_f64(1.0 + share * rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        for (failures, base) in [(1, 5), (2, 10), (3, 20), (7, 300), (40, 300)] {
            let d = backoff(failures);
            let base = Duration::from_secs(base);
            assert!(d >= base && d <= base.mul_f64(1.1), "{failures}: {d:?}");
        }
    }

    #[test]
    fn failures_count_per_resource_honour_the_fault_and_start_over() {
        let failures = Failures::default();
        let retry = |at_least| ReconcileError::Retry {
            reason: "RemoteError",
            at_least,
        };
        let first = failures.delay_after("ns/a", &retry(None));
        let second = failures.delay_after("ns/a", &retry(None));
        assert!(first < Duration::from_secs(6) && second >= Duration::from_secs(10));
        assert!(failures.delay_after("ns/b", &retry(None)) < Duration::from_secs(6));
        let floor = Duration::from_secs(60);
        assert_eq!(failures.delay_after("ns/b", &retry(Some(floor))), floor);
        failures.succeeded("ns/a");
        assert!(failures.delay_after("ns/a", &retry(None)) < Duration::from_secs(6));
    }
}
