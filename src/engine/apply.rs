//! Applying planned actions: codes in parallel (bounded), each code's
//! actions in order, every failure classed by [`outcome`](super::outcome).

use super::outcome::{self, WriteOutcome};
use super::{ActionOutcome, ActionResult};
use crate::metastudio::{ActiveCode, ApiError, MetaStudioClient, Reply};
use crate::plan::Action;
use futures::StreamExt;
use std::collections::BTreeMap;
use tracing::debug;

/// One result with the code's state after it, when known.
pub type Applied = (ActionResult, Option<ActiveCode>);

/// Applies `actions` (their codes' current state in `codes`), at most
/// `concurrency` codes at once.
pub async fn apply(
    client: &MetaStudioClient,
    actions: &[Action],
    codes: &BTreeMap<String, ActiveCode>,
    clean_auth_credential: bool,
    concurrency: usize,
) -> Vec<Applied> {
    let mut by_code: Vec<(&str, Vec<Action>)> = Vec::new();
    for action in actions {
        match by_code.last_mut() {
            Some((id, list)) if *id == action.code_id() => list.push(action.clone()),
            _ => by_code.push((action.code_id(), vec![action.clone()])),
        }
    }
    // Named futures, collected first: closures returning borrowing futures
    // would not be `Send` for every lifetime the controller asks for.
    let calls: Vec<_> = by_code
        .into_iter()
        .map(|(id, actions)| apply_code(client, &codes[id], actions, clean_auth_credential))
        .collect();
    futures::stream::iter(calls)
        .buffer_unordered(concurrency)
        .flat_map(futures::stream::iter)
        .collect()
        .await
}

/// One code's actions, in order.
async fn apply_code(
    client: &MetaStudioClient,
    before: &ActiveCode,
    actions: Vec<Action>,
    clean_auth_credential: bool,
) -> Vec<Applied> {
    let mut out = Vec::with_capacity(actions.len());
    for action in &actions {
        out.push(apply_one(client, action, before, clean_auth_credential).await);
    }
    out
}

fn done(action: &Action, reply: Reply<ActiveCode>) -> Applied {
    (
        result(
            action,
            ActionOutcome::Done {
                request_id: reply.request_id,
            },
        ),
        Some(reply.value),
    )
}

fn failed(action: &Action, err: &ApiError) -> Applied {
    let outcome = ActionOutcome::Failed {
        error: err.to_string(),
        rate_limited: err.is_rate_limited(),
    };
    (result(action, outcome), None)
}

fn unconfirmed(action: &Action, error: String) -> Applied {
    (result(action, ActionOutcome::Unconfirmed { error }), None)
}

fn result(action: &Action, outcome: ActionOutcome) -> ActionResult {
    ActionResult {
        action: action.clone(),
        outcome,
    }
}

/// One action against the API, with the code's state after it.
async fn apply_one(
    client: &MetaStudioClient,
    action: &Action,
    before: &ActiveCode,
    clean_auth_credential: bool,
) -> Applied {
    let id = &before.active_code_id;
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
        Action::Reset { .. } => match client.reset(id, clean_auth_credential).await {
            Ok(reply) => done(action, reply),
            Err(err) if outcome::of_error(&err) == WriteOutcome::NotApplied => failed(action, &err),
            Err(err) => read_back_reset(client, action, before, &err).await,
        },
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
        Err(_) => (result(action, ActionOutcome::Done { request_id }), None),
    }
}

/// A reset whose answer is missing or unreadable: only the remote value
/// can tell whether it happened. While it shows no effect the server may
/// still apply it, so the intent is kept.
async fn read_back_reset(
    client: &MetaStudioClient,
    action: &Action,
    before: &ActiveCode,
    err: &ApiError,
) -> Applied {
    debug!(code = %before.active_code_id, error = %err, "reset outcome unknown; reading the code");
    match client.show(&before.active_code_id).await {
        Ok(reply) if reply.value.active_code != before.active_code => done(
            action,
            Reply {
                request_id: err.request_id().map(str::to_owned).or(reply.request_id),
                value: reply.value,
            },
        ),
        Ok(_) => unconfirmed(action, format!("{err}; the code shows no reset yet")),
        Err(show_err) => unconfirmed(
            action,
            format!("{err}; reading the code failed too: {show_err}"),
        ),
    }
}
