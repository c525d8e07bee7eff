//! Reconcile slots: `--concurrency` bounds the reconciles that work at
//! once, not those that wait for their tenant's budget.
//!
//! The controller runs each reconcile with [`Slots::run`], which takes one
//! slot and makes it the reconcile's for as long as it runs. Whatever in
//! the reconcile waits for a tenant's budget (the MetaStudio client's
//! pacer, a 429's backoff) waits inside [`released_while`], which gives the
//! slot back for the wait and takes one again before the reconcile goes
//! on. So a tenant whose budget is slow (a budget of 0.1 calls a second, or
//! a quota that answers 429) delays its own reconciles only.
//!
//! The slot travels with the reconcile's task (a task-local value), so the
//! client needs no handle passed through the engine; outside
//! [`Slots::run`] (the broker, `reconcile -f`, the CLI) [`released_while`]
//! just waits. A reconcile whose calls run side by side gives its slot back
//! while any of them waits and takes one again when none waits any more; it
//! never holds more than one.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

tokio::task_local! {
    static SLOT: Arc<Slot>;
}

/// The slots every reconcile shares (one set per operator, across every
/// watched namespace).
#[derive(Debug, Clone)]
pub struct Slots {
    semaphore: Arc<Semaphore>,
}

impl Slots {
    /// `count` slots (at least one).
    pub fn new(count: usize) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(count.max(1))),
        }
    }

    /// Slots free now (for tests and diagnostics).
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// Runs `work` in one slot, taken first; `work` gives it back while it
    /// waits in [`released_while`].
    pub async fn run<F: Future>(&self, work: F) -> F::Output {
        let permit = acquire(&self.semaphore).await;
        let slot = Arc::new(Slot {
            semaphore: self.semaphore.clone(),
            state: Mutex::new(State {
                permit: Some(permit),
                waiting: 0,
            }),
        });
        SLOT.scope(slot, work).await
    }
}

/// The slot of one reconcile.
#[derive(Debug)]
struct Slot {
    semaphore: Arc<Semaphore>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Held while none of the reconcile's waits is under way.
    permit: Option<OwnedSemaphorePermit>,
    /// Waits under way in [`released_while`].
    waiting: usize,
}

impl Slot {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A wait begins: the first gives the slot back.
    fn leave(&self) -> Option<OwnedSemaphorePermit> {
        let mut state = self.state();
        state.waiting += 1;
        state.permit.take()
    }

    /// A wait ended (or was dropped): whether none is left, so the
    /// reconcile needs its slot again.
    fn returned(&self) -> bool {
        let mut state = self.state();
        state.waiting -= 1;
        state.waiting == 0 && state.permit.is_none()
    }

    /// Takes a slot again, unless another wait began meanwhile (then the
    /// reconcile goes on without one until that wait ends too).
    async fn rejoin(&self) {
        let permit = acquire(&self.semaphore).await;
        let mut state = self.state();
        if state.waiting == 0 && state.permit.is_none() {
            state.permit = Some(permit);
        }
    }
}

/// One wait under way: begun by [`Waiting::begin`], ended by
/// [`Waiting::end`], or by dropping it when the wait is cut short.
struct Waiting<'a> {
    slot: &'a Slot,
    ended: bool,
}

impl<'a> Waiting<'a> {
    /// The first wait of the reconcile gives its slot back.
    fn begin(slot: &'a Slot) -> Self {
        drop(slot.leave());
        Self { slot, ended: false }
    }

    /// Whether the reconcile must take a slot again: no wait is left.
    fn end(mut self) -> bool {
        self.ended = true;
        self.slot.returned()
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        // A wait cut short (the reconcile was dropped) leaves no count
        // behind; the reconcile, if it goes on, takes a slot again at the
        // end of its next wait.
        if !self.ended {
            self.slot.returned();
        }
    }
}

/// Awaits `wait` without holding the current reconcile's slot, then takes
/// a slot again before returning. Outside [`Slots::run`] it only awaits.
pub async fn released_while<F: Future>(wait: F) -> F::Output {
    let Ok(slot) = SLOT.try_with(Arc::clone) else {
        return wait.await;
    };
    let waiting = Waiting::begin(&slot);
    let output = wait.await;
    if waiting.end() {
        slot.rejoin().await;
    }
    output
}

async fn acquire(semaphore: &Arc<Semaphore>) -> OwnedSemaphorePermit {
    semaphore
        .clone()
        .acquire_owned()
        .await
        .expect("the reconcile semaphore is never closed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::oneshot;

    #[tokio::test(start_paused = true)]
    async fn a_waiting_reconcile_holds_no_slot_and_takes_one_to_go_on() {
        let slots = Slots::new(1);
        let (entered, waiting) = oneshot::channel();
        let slow = tokio::spawn({
            let slots = slots.clone();
            async move {
                slots
                    .run(async {
                        entered.send(()).unwrap();
                        released_while(tokio::time::sleep(Duration::from_secs(3600))).await;
                        "slow done"
                    })
                    .await
            }
        });
        waiting.await.unwrap();
        let fast = slots.run(async { "fast done" }).await;
        assert_eq!(
            fast, "fast done",
            "the other reconcile ran while the slow one waited"
        );
        assert!(!slow.is_finished());
        assert_eq!(slow.await.unwrap(), "slow done");
        assert_eq!(slots.available(), 1, "every slot is back");
    }

    #[tokio::test(start_paused = true)]
    async fn after_its_wait_a_reconcile_waits_for_a_free_slot() {
        let slots = Slots::new(1);
        let (release_busy, busy_done) = oneshot::channel::<()>();
        let (entered, entered_rx) = oneshot::channel();
        let waiter = tokio::spawn({
            let slots = slots.clone();
            async move {
                slots
                    .run(async {
                        entered.send(()).unwrap();
                        released_while(tokio::time::sleep(Duration::from_secs(1))).await;
                        assert!(
                            SLOT.with(|slot| slot.state().permit.is_some()),
                            "it holds a slot again"
                        );
                    })
                    .await
            }
        });
        entered_rx.await.unwrap();
        let busy = tokio::spawn({
            let slots = slots.clone();
            async move { slots.run(async { busy_done.await.unwrap() }).await }
        });
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(
            !waiter.is_finished(),
            "its wait is over, but the slot is busy"
        );
        release_busy.send(()).unwrap();
        busy.await.unwrap();
        waiter.await.unwrap();
        assert_eq!(slots.available(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_side_by_side_hold_one_slot_and_give_it_back_while_any_waits() {
        let slots = Slots::new(2);
        slots
            .run(async {
                assert_eq!(slots.available(), 1);
                let wait = |secs| released_while(tokio::time::sleep(Duration::from_secs(secs)));
                futures::join!(wait(1), wait(2), async {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    assert_eq!(slots.available(), 2, "given back while they wait");
                });
                assert_eq!(slots.available(), 1, "one slot again, not one per call");
            })
            .await;
        assert_eq!(slots.available(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_cut_short_leaves_no_count_behind() {
        let slots = Slots::new(1);
        slots
            .run(async {
                let cut = tokio::time::timeout(
                    Duration::from_secs(1),
                    released_while(tokio::time::sleep(Duration::from_secs(60))),
                )
                .await;
                assert!(cut.is_err());
                released_while(tokio::time::sleep(Duration::from_secs(1))).await;
                assert_eq!(slots.available(), 0, "held again after the next wait");
            })
            .await;
        assert_eq!(slots.available(), 1);
    }

    #[tokio::test]
    async fn outside_a_reconcile_it_only_waits() {
        assert_eq!(released_while(async { 7 }).await, 7);
    }
}
