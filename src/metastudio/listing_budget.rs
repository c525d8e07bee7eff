//! The listing budget: how many listed codes the whole process holds at
//! once, so that its memory is bounded by this budget and not by the
//! number of listings under way (every ActivationCode, since a listing
//! waiting for its tenant's pacer holds no reconcile slot).
//!
//! A listing holds a share of it from its first page, which tells how many
//! codes the robot has, until its codes are dropped (the end of the
//! reconcile): [`ListingHold`]. It takes its share only when the budget has
//! it free ([`ListingHold::cover`]); otherwise it drops what it read and
//! waits for the whole share without its reconcile slot
//! ([`ListingBudget::hold`]), then reads again. Nothing is held while
//! waiting for more, so listings never wait on each other in a circle.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The codes every listing of the process may hold at once, by default.
/// With the most an answer may make one code take (about 0.8 KiB with
/// 128-byte fields: `cargo bench --bench hostile_listing`, BENCHMARKS.md),
/// 150,000 codes are about 115 MiB: under the chart's 256 MiB limit with
/// the rest of the process.
pub const DEFAULT_LISTING_BUDGET: u32 = 150_000;

/// The process-wide budget of listed codes (never below what one listing
/// may need: [`super::listing::MAX_LISTED_CODES`]).
#[derive(Debug, Clone)]
pub struct ListingBudget {
    codes: Arc<Semaphore>,
    total: u32,
}

impl ListingBudget {
    /// A budget of `codes` codes, at least one full listing's.
    pub fn new(codes: u32) -> Self {
        let total = codes.max(super::listing::MAX_LISTED_CODES);
        Self {
            codes: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// Codes not held by any listing now.
    pub fn available(&self) -> usize {
        self.codes.available_permits()
    }

    /// A hold of nothing yet, to [`ListingHold::cover`] as pages come.
    pub fn empty(&self) -> ListingHold {
        ListingHold {
            budget: self.clone(),
            permit: None,
            codes: 0,
        }
    }

    /// A hold of `codes` (at most the whole budget), waited for without
    /// the reconcile's slot ([`crate::slots::released_while`]).
    pub async fn hold(&self, codes: u32) -> ListingHold {
        let codes = codes.min(self.total);
        let permit = crate::slots::released_while(self.codes.clone().acquire_many_owned(codes))
            .await
            .expect("the listing budget is never closed");
        ListingHold {
            budget: self.clone(),
            permit: Some(permit),
            codes,
        }
    }
}

/// The share of the listing budget one listing holds, given back when
/// dropped.
#[derive(Debug)]
pub struct ListingHold {
    budget: ListingBudget,
    permit: Option<OwnedSemaphorePermit>,
    codes: u32,
}

impl ListingHold {
    /// Codes held.
    pub fn codes(&self) -> u32 {
        self.codes
    }

    /// Grows the hold to `codes` if the budget has them free now; whether
    /// it holds them.
    pub fn cover(&mut self, codes: u32) -> bool {
        if codes <= self.codes {
            return true;
        }
        let more = codes.min(self.budget.total) - self.codes;
        let Ok(permit) = self.budget.codes.clone().try_acquire_many_owned(more) else {
            return false;
        };
        match &mut self.permit {
            Some(held) => held.merge(permit),
            None => self.permit = Some(permit),
        }
        self.codes += more;
        codes <= self.codes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metastudio::listing::MAX_LISTED_CODES;

    #[tokio::test]
    async fn holds_are_taken_when_free_given_back_on_drop_and_waited_for_otherwise() {
        let budget = ListingBudget::new(0);
        assert_eq!(
            budget.available(),
            MAX_LISTED_CODES as usize,
            "one listing at least"
        );
        let mut first = budget.empty();
        assert!(first.cover(60_000));
        assert!(first.cover(40_000), "already held");
        let mut second = budget.empty();
        assert!(!second.cover(60_000), "not free now: nothing taken");
        assert_eq!(second.codes(), 0);
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.hold(60_000).await.codes() }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(first);
        assert_eq!(waiting.await.unwrap(), 60_000);
        assert_eq!(budget.available(), MAX_LISTED_CODES as usize);
    }
}
