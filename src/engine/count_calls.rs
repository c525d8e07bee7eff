//! The calls of creates and deletes (`spec.count`), within the call window
//! of their recorded intents, each failure classed by
//! [`outcome`](super::outcome). A create takes no client token and is never
//! retried once it may have reached the server: its answer lost, its body
//! unreadable (a 2xx: applied, but which code?), a 5xx or a call cut at the
//! end of its window leave it in doubt, for the next complete listing to
//! settle. A delete names its codes, so deleting one twice is harmless,
//! but one in doubt is settled by a listing too: a late delete must not
//! take a code a later plan keeps.

use super::ActionOutcome;
use super::apply::{Applied, Round, before, failed, result, unconfirmed};
use super::outcome::{self, WriteOutcome};
use crate::metastudio::models::CreateActiveCodeBody;
use crate::metastudio::{ActiveCode, ApiError, MetaStudioClient, Reply};
use crate::plan::Action;
use futures::StreamExt;
use tokio::time::Instant;

/// The most code ids one DeleteActiveCode call names. The API takes a JSON
/// array and the official SDKs' models state no limit; a page's worth
/// keeps each request small (about 3.5 KiB of 32-character ids) and one
/// refusal from failing more than a page of codes.
pub const DELETE_BATCH: usize = 100;

/// The DeleteActiveCode calls `codes` needs.
pub fn delete_calls(codes: usize) -> usize {
    codes.div_ceil(DELETE_BATCH)
}

/// Makes the creates of `batch`, at most `concurrency` at once; none starts
/// after `deadline`, and one still under way then is cut (in doubt).
pub async fn create(
    client: &MetaStudioClient,
    robot_id: &str,
    batch: &[Action],
    concurrency: usize,
    deadline: Option<Instant>,
) -> Round {
    let calls: Vec<_> = batch
        .iter()
        .map(|action| create_one(client, robot_id, action, deadline))
        .collect();
    gather(calls, concurrency).await
}

/// One create: `Err` when its window was over before it started.
async fn create_one(
    client: &MetaStudioClient,
    robot_id: &str,
    action: &Action,
    deadline: Option<Instant>,
) -> Result<Vec<Applied>, Vec<Action>> {
    let Action::Create {
        room_id,
        valid_period,
        ..
    } = action
    else {
        return Ok(Vec::new());
    };
    if past(deadline) {
        return Err(vec![action.clone()]);
    }
    let body = CreateActiveCodeBody {
        robot_id: robot_id.to_owned(),
        room_id: Some(room_id.clone()),
        valid_period: Some(*valid_period),
    };
    let applied = match before(deadline, client.create(&body)).await {
        Some(Ok(reply)) => created(action, robot_id, room_id, reply),
        Some(Err(err)) if outcome::of_error(&err) == WriteOutcome::NotApplied => {
            failed(action, &err)
        }
        Some(Err(err)) => unconfirmed(action, in_doubt(&err)),
        None => unconfirmed(action, CUT.to_owned()),
    };
    Ok(vec![applied])
}

/// Why a call cut at the end of its window is in doubt.
const CUT: &str = "cut at the end of its call window (the batch took longer than recorded); whether it was sent is unknown";

/// Why a failed call may still have been applied.
fn in_doubt(err: &ApiError) -> String {
    let why = if outcome::of_error(err) == WriteOutcome::Applied {
        "applied, but its answer could not be read"
    } else {
        "it may still be applied"
    };
    format!("{err}; {why}: the next complete listing settles it")
}

/// A create's answer: the new code, when it is one of the room it was made
/// in; an answer naming anything else settles nothing (in doubt).
fn created(action: &Action, robot_id: &str, room_id: &str, reply: Reply<ActiveCode>) -> Applied {
    let code = reply.value;
    if code.robot_id != robot_id || code.room_id.as_deref() != Some(room_id) {
        let why = format!(
            "the answer (X-Request-Id: {}) names a code of another robot or room; the next complete listing settles it",
            reply.request_id.as_deref().unwrap_or("none")
        );
        return unconfirmed(action, why);
    }
    let outcome = ActionOutcome::Done {
        request_id: reply.request_id,
        created: Some(code.active_code_id.clone()),
    };
    (result(action, outcome), Some(code))
}

/// Makes the deletes of `batch`, [`DELETE_BATCH`] codes a call, at most
/// `concurrency` calls at once; none starts after `deadline`, and one still
/// under way then is cut (in doubt).
pub async fn delete(
    client: &MetaStudioClient,
    batch: &[Action],
    concurrency: usize,
    deadline: Option<Instant>,
) -> Round {
    let calls: Vec<_> = batch
        .chunks(DELETE_BATCH)
        .map(|chunk| delete_chunk(client, chunk, deadline))
        .collect();
    gather(calls, concurrency).await
}

/// One DeleteActiveCode call for `chunk`: `Err` when its window was over
/// before it started.
async fn delete_chunk(
    client: &MetaStudioClient,
    chunk: &[Action],
    deadline: Option<Instant>,
) -> Result<Vec<Applied>, Vec<Action>> {
    if past(deadline) {
        return Err(chunk.to_vec());
    }
    let ids: Vec<String> = chunk.iter().map(|a| a.code_id().to_owned()).collect();
    let each = |applied: &dyn Fn(&Action) -> Applied| chunk.iter().map(applied).collect();
    Ok(match before(deadline, client.delete(&ids)).await {
        Some(Ok(reply)) => each(&|a| deleted(a, reply.request_id.clone())),
        Some(Err(err)) => match outcome::of_error(&err) {
            WriteOutcome::NotApplied => each(&|a| failed(a, &err)),
            WriteOutcome::Applied => each(&|a| deleted(a, err.request_id().map(str::to_owned))),
            WriteOutcome::InDoubt => each(&|a| unconfirmed(a, in_doubt(&err))),
        },
        None => each(&|a| unconfirmed(a, CUT.to_owned())),
    })
}

fn deleted(action: &Action, request_id: Option<String>) -> Applied {
    let outcome = ActionOutcome::Done {
        request_id,
        created: None,
    };
    (result(action, outcome), None)
}

fn past(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// Runs `calls` at most `concurrency` at once, into one round.
async fn gather<F>(calls: Vec<F>, concurrency: usize) -> Round
where
    F: std::future::Future<Output = Result<Vec<Applied>, Vec<Action>>>,
{
    let mut round = Round::default();
    let mut results = futures::stream::iter(calls).buffer_unordered(concurrency.max(1));
    while let Some(result) = results.next().await {
        match result {
            Ok(applied) => round.applied.extend(applied),
            Err(left) => round.not_started.extend(left),
        }
    }
    round
}
