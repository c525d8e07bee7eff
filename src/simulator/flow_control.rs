//! The API gateway's per-tenant flow control: reads and writes each get a
//! bucket of one second's quota that refills at the quota's rate; a call
//! that finds its bucket empty is answered 429 `APIGW.0308` with the
//! seconds until a slot frees as `Retry-After`.

use crate::metastudio::Operation;
use crate::metastudio::pacing::{CallClass, Quotas};
use crate::metastudio::rate_limit::{RateLimit, RateLimiter};
use std::time::Duration;

#[derive(Debug)]
pub struct FlowControl {
    reads: RateLimiter,
    writes: RateLimiter,
}

impl FlowControl {
    pub fn new(quotas: Quotas) -> Self {
        let bucket = |per_second: f64| {
            RateLimiter::new(RateLimit {
                per_second,
                burst: per_second.ceil().max(1.0) as u32,
            })
        };
        Self {
            reads: bucket(quotas.reads),
            writes: bucket(quotas.writes),
        }
    }

    /// Admits a call, or says after how long it would be.
    pub fn admit(&self, operation: Operation) -> Result<(), Duration> {
        match CallClass::of(operation) {
            CallClass::Read => self.reads.try_reserve(),
            CallClass::Write => self.writes.try_reserve(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_second_of_quota_passes_then_the_rest_waits_for_its_class_only() {
        let gate = FlowControl::new(Quotas {
            reads: 20.0,
            writes: 5.0,
        });
        let writes: Vec<bool> = (0..6)
            .map(|_| gate.admit(Operation::UpdateActiveCode).is_ok())
            .collect();
        assert_eq!(writes, [true, true, true, true, true, false]);
        assert!(gate.admit(Operation::ListActiveCode).is_ok());
        assert_eq!(
            gate.admit(Operation::ResetActiveCode),
            Err(Duration::from_millis(200))
        );
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(gate.admit(Operation::DeleteActiveCode).is_ok());
    }
}
