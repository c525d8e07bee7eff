//! Applying planned actions: codes in parallel (bounded), each code's
//! actions in order, every failure classed by [`outcome`](super::outcome).
//! Resets keep to the call window of their recorded intents (see
//! [`crate::plan::window`]): none starts after its deadline, and one still
//! under way then is cut and counts as in doubt.

use super::outcome::{self, WriteOutcome};
use super::{ActionOutcome, ActionResult};
use crate::metastudio::{ActiveCode, ApiError, MetaStudioClient, Reply};
use crate::plan::Action;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::future::Future;
use std::task::Poll;
use tokio::time::Instant;
use tracing::debug;

/// One result with the code's state after it, when known.
pub type Applied = (ActionResult, Option<ActiveCode>);

/// What one batch did.
#[derive(Default)]
pub struct Round {
    pub applied: Vec<Applied>,
    /// The actions of codes whose reset was not started before the
    /// deadline: nothing of them was sent.
    pub not_started: Vec<Action>,
}

/// Applies `actions` (their codes' current state in `codes`), at most
/// `concurrency` codes at once; no reset starts after `deadline`, and one
/// still under way then is cut.
pub async fn apply(
    client: &MetaStudioClient,
    actions: &[Action],
    codes: &BTreeMap<String, ActiveCode>,
    clean_auth_credential: bool,
    concurrency: usize,
    deadline: Option<Instant>,
) -> Round {
    let mut by_code: Vec<(&str, Vec<Action>)> = Vec::new();
    for action in actions {
        match by_code.last_mut() {
            Some((id, list)) if *id == action.code_id() => list.push(action.clone()),
            _ => by_code.push((action.code_id(), vec![action.clone()])),
        }
    }
    let call = |(id, actions): (&str, Vec<Action>)| {
        let code = Code {
            client,
            before: &codes[id],
            clean_auth_credential,
            deadline,
        };
        code.apply(actions)
    };
    // Named futures, collected first: closures returning borrowing futures
    // would not be `Send` for every lifetime the controller asks for.
    let calls: Vec<_> = by_code.into_iter().map(call).collect();
    let mut round = Round::default();
    let mut results = futures::stream::iter(calls).buffer_unordered(concurrency);
    while let Some(result) = results.next().await {
        match result {
            Ok(applied) => round.applied.extend(applied),
            Err(left) => round.not_started.extend(left),
        }
    }
    round
}

/// One code, and how its actions are made.
struct Code<'a> {
    client: &'a MetaStudioClient,
    before: &'a ActiveCode,
    clean_auth_credential: bool,
    deadline: Option<Instant>,
}

impl Code<'_> {
    /// The code's actions, in order; all of them back (`Err`) when a reset
    /// is among them and the deadline has passed before the first starts.
    async fn apply(self, actions: Vec<Action>) -> Result<Vec<Applied>, Vec<Action>> {
        if self.past_deadline() && actions.iter().any(Action::is_reset) {
            return Err(actions);
        }
        let mut out = Vec::with_capacity(actions.len());
        for action in &actions {
            out.push(self.apply_one(action).await);
        }
        Ok(out)
    }

    fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// One action against the API, with the code's state after it.
    async fn apply_one(&self, action: &Action) -> Applied {
        let (client, id) = (self.client, &self.before.active_code_id);
        match action {
            Action::Update { to: days, .. }
            | Action::Renew {
                valid_period: days, ..
            } => match client.update(id, *days).await {
                Ok(reply) => done(action, reply),
                Err(err) if outcome::of_error(&err) == WriteOutcome::Applied => {
                    read_back_update(client, action, &err).await
                }
                Err(err) => failed(action, &err),
            },
            Action::Reset { .. } => {
                let reset = client.reset(id, self.clean_auth_credential);
                match before(self.deadline, reset).await {
                    Some(Ok(reply)) => done(action, reply),
                    Some(Err(err)) if outcome::of_error(&err) == WriteOutcome::NotApplied => {
                        failed(action, &err)
                    }
                    Some(Err(err)) => {
                        let request_id = err.request_id().map(str::to_owned);
                        self.read_back_reset(action, err.to_string(), request_id)
                            .await
                    }
                    None => {
                        let why = "cut at the end of its call window (the batch took longer than recorded); whether it was sent is unknown";
                        self.read_back_reset(action, why.to_owned(), None).await
                    }
                }
            }
            Action::Create { .. } | Action::Delete { .. } => {
                unreachable!("creates and deletes are made by engine::count_calls")
            }
        }
    }

    /// A reset whose answer is missing or unreadable: only the remote value
    /// can tell whether it happened. While it shows no effect the server
    /// may still apply it, so the intent is kept.
    async fn read_back_reset(
        &self,
        action: &Action,
        why: String,
        request_id: Option<String>,
    ) -> Applied {
        let before = self.before;
        debug!(code = %before.active_code_id, error = %why, "reset outcome unknown; reading the code");
        match self.client.show(&before.active_code_id).await {
            Ok(reply) if reply.value.active_code != before.active_code => done(
                action,
                Reply {
                    request_id: request_id.or(reply.request_id),
                    value: reply.value,
                },
            ),
            Ok(_) => unconfirmed(action, format!("{why}; the code shows no reset yet")),
            Err(show_err) => unconfirmed(
                action,
                format!("{why}; reading the code failed too: {show_err}"),
            ),
        }
    }
}

/// `call`'s output, or `None` once `deadline` has passed: from then on the
/// call is never polled again (it is checked before each poll), so nothing
/// more of it is sent.
pub(super) async fn before<F: Future>(deadline: Option<Instant>, call: F) -> Option<F::Output> {
    let Some(deadline) = deadline else {
        return Some(call.await);
    };
    let mut call = std::pin::pin!(call);
    let mut alarm = std::pin::pin!(tokio::time::sleep_until(deadline));
    std::future::poll_fn(|cx| {
        if Instant::now() >= deadline || alarm.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        call.as_mut().poll(cx).map(Some)
    })
    .await
}

fn done(action: &Action, reply: Reply<ActiveCode>) -> Applied {
    (
        result(
            action,
            ActionOutcome::Done {
                request_id: reply.request_id,
                created: None,
            },
        ),
        Some(reply.value),
    )
}

pub(super) fn failed(action: &Action, err: &ApiError) -> Applied {
    let outcome = ActionOutcome::Failed {
        error: err.to_string(),
        rate_limited: err.is_rate_limited(),
    };
    (result(action, outcome), None)
}

pub(super) fn unconfirmed(action: &Action, error: String) -> Applied {
    (result(action, ActionOutcome::Unconfirmed { error }), None)
}

pub(super) fn result(action: &Action, outcome: ActionOutcome) -> ActionResult {
    ActionResult {
        action: action.clone(),
        outcome,
    }
}

/// An update answered 2xx with a body that could not be read: it was
/// applied; the code is read for its new state.
async fn read_back_update(client: &MetaStudioClient, action: &Action, err: &ApiError) -> Applied {
    let request_id = err.request_id().map(str::to_owned);
    match client.show(action.code_id()).await {
        Ok(reply) => done(
            action,
            Reply {
                request_id,
                ..reply
            },
        ),
        Err(_) => {
            let done = ActionOutcome::Done {
                request_id,
                created: None,
            };
            (result(action, done), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_call_is_cut_at_its_deadline_and_never_polled_after_it() {
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(before(None, async { 1 }).await, Some(1));
        assert_eq!(before(Some(deadline), async { 2 }).await, Some(2));
        // Still waiting (for the pacer, a retry, an answer) at the deadline.
        let slow = tokio::time::sleep(Duration::from_secs(10));
        assert_eq!(before(Some(deadline), slow).await, None);
        assert_eq!(Instant::now(), deadline, "cut at the deadline, not later");
        // Resumed after the deadline (a paused process): a call that would
        // go out at once is not even polled.
        let polled = AtomicBool::new(false);
        let call = std::future::poll_fn(|_| {
            polled.store(true, Ordering::SeqCst);
            Poll::Ready(())
        });
        assert_eq!(before(Some(deadline), call).await, None);
        assert!(!polled.load(Ordering::SeqCst));
    }
}
