//! `X-Request-Id` values: issued in sequence, one per request, so a test
//! can check that an id in an error message or an event came from this
//! simulator, and which error answer carried it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Error answers remembered (id and HTTP status); older ones are forgotten,
/// so a long-running simulator under faults stays within a few MiB.
pub const REMEMBERED_FAILURES: usize = 100_000;

#[derive(Debug)]
pub struct RequestIds {
    /// The first 16 hex digits of every id, from the simulator's seed.
    salt: u64,
    /// The sequence number of the next id; ids start at 1.
    next: AtomicU64,
    failures: Mutex<Failures>,
}

#[derive(Debug, Default)]
struct Failures {
    status: HashMap<String, u16>,
    order: VecDeque<String>,
}

impl RequestIds {
    pub fn new(random_seed: u64) -> Self {
        Self {
            salt: random_seed.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            next: AtomicU64::new(1),
            failures: Mutex::new(Failures::default()),
        }
    }

    /// A new id: 32 hex digits, the salt then the sequence number.
    pub fn next(&self) -> String {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}{seq:016x}", self.salt)
    }

    /// Whether `id` is one this simulator has handed out.
    pub fn issued(&self, id: &str) -> bool {
        let (Some(salt), Some(seq)) = (id.get(..16), id.get(16..)) else {
            return false;
        };
        id.len() == 32
            && u64::from_str_radix(salt, 16) == Ok(self.salt)
            && u64::from_str_radix(seq, 16)
                .is_ok_and(|seq| seq >= 1 && seq < self.next.load(Ordering::Relaxed))
    }

    /// Remembers that the answer with `id` was an error with `status`.
    pub fn record_failure(&self, id: &str, status: u16) {
        let mut failures = self.failures.lock().expect("request id lock");
        if failures.order.len() == REMEMBERED_FAILURES
            && let Some(oldest) = failures.order.pop_front()
        {
            failures.status.remove(&oldest);
        }
        failures.status.insert(id.to_owned(), status);
        failures.order.push_back(id.to_owned());
    }

    /// The HTTP status of the error answer that carried `id`, if it was one
    /// of the last [`REMEMBERED_FAILURES`] error answers.
    pub fn failure_status(&self, id: &str) -> Option<u16> {
        self.failures
            .lock()
            .expect("request id lock")
            .status
            .get(id)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_recognised_only_once_issued_and_failures_are_remembered() {
        let ids = RequestIds::new(1);
        let first = ids.next();
        let second = ids.next();
        assert_eq!(first.len(), 32);
        assert!(ids.issued(&first) && ids.issued(&second));
        let not_yet = format!("{}{:016x}", &first[..16], 3);
        assert!(!ids.issued(&not_yet));
        assert!(!RequestIds::new(2).issued(&first), "another seed's salt");
        assert!(!ids.issued("none") && !ids.issued(&first[..31]));

        ids.record_failure(&second, 429);
        assert_eq!(ids.failure_status(&second), Some(429));
        assert_eq!(ids.failure_status(&first), None);
    }

    #[test]
    fn only_the_latest_failures_are_kept() {
        let ids = RequestIds::new(5);
        let oldest = ids.next();
        ids.record_failure(&oldest, 500);
        for _ in 0..REMEMBERED_FAILURES {
            ids.record_failure(&ids.next(), 500);
        }
        assert_eq!(ids.failure_status(&oldest), None);
        let newest = format!("{}{:016x}", &oldest[..16], REMEMBERED_FAILURES + 1);
        assert_eq!(ids.failure_status(&newest), Some(500));
    }
}
