//! Reconcile slots: `--concurrency` bounds the reconciles that work at
//! once, not those that wait for their tenant's budget.
//!
//! The controller runs each reconcile with [`Slots::run`], which takes one
//! slot and makes it the reconcile's for as long as it runs. Whatever in
//! the reconcile waits for a tenant's budget (the MetaStudio client's
//! pacer, a 429's backoff) waits inside [`released_while`], and every HTTP
//! attempt runs inside [`holding`]. A reconcile holds its slot unless all
//! it does is wait: it gives the slot back when a wait begins and no
//! attempt of it is in flight, and takes one again before it goes on (the
//! last wait ended) or before its next attempt. So a tenant whose budget is
//! slow (a budget of 0.1 calls a second, or a quota that answers 429)
//! delays its own reconciles only, while the HTTP attempts in flight (and
//! the answers they read) stay bounded by `--concurrency`.
//!
//! The slot travels with the reconcile's task (a task-local value), so the
//! client needs no handle passed through the engine; outside
//! [`Slots::run`] (the broker, `reconcile -f`, the CLI) [`released_while`]
//! just waits and [`holding`] just runs. A reconcile whose calls run side by
//! side never holds more than one slot, and takes it again one call at a
//! time (single-flight): two calls that both need it never both ask the
//! semaphore, so a reconcile never waits for the slot it holds itself.

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

    /// Runs `work` in one slot, taken first; `work` gives it back while all
    /// it does is wait in [`released_while`].
    pub async fn run<F: Future>(&self, work: F) -> F::Output {
        let permit = acquire(&self.semaphore).await;
        let slot = Arc::new(Slot {
            semaphore: self.semaphore.clone(),
            state: Mutex::new(State {
                permit: Some(permit),
                waiting: 0,
                attempts: 0,
            }),
            joining: tokio::sync::Mutex::new(()),
        });
        SLOT.scope(slot, work).await
    }
}

/// The slot of one reconcile.
#[derive(Debug)]
struct Slot {
    semaphore: Arc<Semaphore>,
    state: Mutex<State>,
    /// Held by the one call that takes a slot again for the reconcile.
    joining: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct State {
    /// Held while the reconcile needs it ([`State::needs_slot`]).
    permit: Option<OwnedSemaphorePermit>,
    /// Waits under way in [`released_while`].
    waiting: usize,
    /// HTTP attempts under way in [`holding`].
    attempts: usize,
}

impl State {
    /// Whether the reconcile does more than wait: none of its calls waits,
    /// or one of them is in an attempt.
    fn needs_slot(&self) -> bool {
        self.waiting == 0 || self.attempts > 0
    }

    /// The permit to give back when the reconcile only waits now.
    fn surplus(&mut self) -> Option<OwnedSemaphorePermit> {
        if self.needs_slot() {
            None
        } else {
            self.permit.take()
        }
    }
}

impl Slot {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the counts and gives the slot back if all the reconcile
    /// does now is wait. Whether it needs a slot it does not hold.
    fn count(&self, change: impl FnOnce(&mut State)) -> bool {
        let mut state = self.state();
        change(&mut state);
        drop(state.surplus());
        state.needs_slot() && state.permit.is_none()
    }

    /// Takes a slot again if the reconcile needs one and holds none. One
    /// call at a time: the others wait for it and find the slot held.
    async fn rejoin(&self) {
        let _joining = self.joining.lock().await;
        {
            let state = self.state();
            if !state.needs_slot() || state.permit.is_some() {
                return;
            }
        }
        let permit = acquire(&self.semaphore).await;
        let mut state = self.state();
        // A wait may have begun meanwhile: then the permit goes back.
        if state.needs_slot() {
            state.permit = Some(permit);
        }
    }
}

/// One counted activity (a wait or an attempt) under way; uncounted by
/// [`Counted::end`], or when dropped (cut short).
struct Counted<'a> {
    slot: &'a Slot,
    field: fn(&mut State) -> &mut usize,
    ended: bool,
}

impl<'a> Counted<'a> {
    /// Counts one more; whether the reconcile needs a slot it does not hold.
    fn begin(slot: &'a Slot, field: fn(&mut State) -> &mut usize) -> (Self, bool) {
        let short = slot.count(|state| *field(state) += 1);
        let counted = Self {
            slot,
            field,
            ended: false,
        };
        (counted, short)
    }

    /// Uncounts it; whether the reconcile needs a slot it does not hold.
    fn end(mut self) -> bool {
        self.ended = true;
        self.slot.count(|state| *(self.field)(state) -= 1)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        // Cut short, the reconcile may be left without a slot: it takes one
        // again before its next attempt or at the end of its next wait.
        if !self.ended {
            self.slot.count(|state| *(self.field)(state) -= 1);
        }
    }
}

fn waits(state: &mut State) -> &mut usize {
    &mut state.waiting
}

fn attempts(state: &mut State) -> &mut usize {
    &mut state.attempts
}

/// Awaits `wait` without holding the current reconcile's slot (unless an
/// attempt of the same reconcile is in flight), then takes a slot again
/// before returning if no other wait is left. Outside [`Slots::run`] it
/// only awaits.
pub async fn released_while<F: Future>(wait: F) -> F::Output {
    let Ok(slot) = SLOT.try_with(Arc::clone) else {
        return wait.await;
    };
    let (waiting, _) = Counted::begin(&slot, waits);
    let output = wait.await;
    if waiting.end() {
        slot.rejoin().await;
    }
    output
}

/// Awaits `attempt` (one HTTP attempt) holding the current reconcile's
/// slot, taken again first if the reconcile gave it back (a sibling call
/// waits, or a wait was cut short). Outside [`Slots::run`] it only awaits.
pub async fn holding<F: Future>(attempt: F) -> F::Output {
    let Ok(slot) = SLOT.try_with(Arc::clone) else {
        return attempt.await;
    };
    let (attempting, short) = Counted::begin(&slot, attempts);
    if short {
        slot.rejoin().await;
    }
    let output = attempt.await;
    attempting.end();
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

    /// The reviewer's probe: two waits of one reconcile both end while it
    /// holds no slot and another reconcile holds the only one. Before, both
    /// asked the semaphore: the first got the slot, the second waited for
    /// the one its own reconcile held, forever.
    #[tokio::test(start_paused = true)]
    async fn two_waits_ending_without_a_slot_take_one_slot_once() {
        let slots = Slots::new(1);
        let x = tokio::spawn({
            let slots = slots.clone();
            async move {
                slots
                    .run(async {
                        futures::join!(
                            released_while(tokio::time::sleep(Duration::from_secs(1))),
                            async {
                                tokio::time::sleep(Duration::from_millis(1500)).await;
                                released_while(tokio::time::sleep(Duration::from_millis(100)))
                                    .await;
                            }
                        );
                    })
                    .await;
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let y = slots.run(tokio::time::sleep(Duration::from_millis(2900)));
        y.await;
        let finished = tokio::time::timeout(Duration::from_secs(3600), x).await;
        assert!(finished.is_ok(), "the reconcile never went on");
        assert_eq!(slots.available(), 1, "every slot is back");
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_wait_cut_short_the_next_attempt_takes_a_slot_first() {
        let slots = Slots::new(1);
        slots
            .run(async {
                let cut = tokio::time::timeout(
                    Duration::from_secs(1),
                    released_while(tokio::time::sleep(Duration::from_secs(60))),
                )
                .await;
                assert!(cut.is_err());
                assert_eq!(slots.available(), 1, "no slot held after the cut");
                holding(async {
                    assert_eq!(slots.available(), 0, "the attempt holds a slot");
                })
                .await;
            })
            .await;
        assert_eq!(slots.available(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_holds_the_slot_while_a_sibling_call_waits() {
        let slots = Slots::new(1);
        let at = |ms| tokio::time::sleep(Duration::from_millis(ms));
        slots
            .run(async {
                futures::join!(
                    released_while(at(10_000)),
                    async {
                        at(1000).await;
                        holding(at(2000)).await;
                    },
                    async {
                        at(500).await;
                        assert_eq!(slots.available(), 1, "only waiting: given back");
                        at(1000).await;
                        assert_eq!(slots.available(), 0, "an attempt in flight holds it");
                        at(2000).await;
                        assert_eq!(slots.available(), 1, "the attempt ended: given back");
                    }
                );
                assert_eq!(slots.available(), 0, "held again after the last wait");
            })
            .await;
        assert_eq!(slots.available(), 1);
    }

    #[tokio::test]
    async fn outside_a_reconcile_it_only_waits() {
        assert_eq!(released_while(async { 7 }).await, 7);
        assert_eq!(holding(async { 8 }).await, 8);
    }
}
