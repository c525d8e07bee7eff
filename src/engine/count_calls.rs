//! The calls of creates and deletes (`spec.count`), within the call window
//! of their recorded intents, each failure classed by
//! [`outcome`](super::outcome). A call for which the write budget has no
//! slot before the window ends is not sent (it is recorded anew in the
//! next batch): in a fleet sharing one budget, a batch waits its turn
//! without leaving creates in doubt. A create takes no client token and is never
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
use crate::metastudio::{ActiveCode, ApiError, ApiErrorKind, MetaStudioClient, Reply};
use crate::plan::Action;
use futures::StreamExt;
use std::time::Duration;
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

/// When the calls of a batch must end, and be sent by.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// The end of the call window: a call still under way then is cut.
    pub end: Instant,
    /// The last moment a call is sent: the end less one request timeout,
    /// which the window holds for the last answer (half the window when it
    /// is shorter than two: an unpaced batch).
    pub send_by: Instant,
}

impl Window {
    /// The window of `length` ending at `end`, for calls answering within
    /// `timeout`.
    pub fn new(end: Instant, length: Duration, timeout: Duration) -> Self {
        let margin = timeout.min(length / 2);
        let send_by = end.checked_sub(margin).unwrap_or(end);
        Self { end, send_by }
    }
}

/// Makes the creates of `batch`, at most `concurrency` at once, within
/// `window`: none is sent after its `send_by`, and one still under way at
/// its end is cut (in doubt).
pub async fn create(
    client: &MetaStudioClient,
    robot_id: &str,
    batch: &[Action],
    concurrency: usize,
    window: Window,
) -> Round {
    let calls: Vec<_> = batch
        .iter()
        .map(|action| create_one(client, robot_id, action, window))
        .collect();
    gather(calls, concurrency).await
}

/// One create: `Err` when it could not be sent within its window.
async fn create_one(
    client: &MetaStudioClient,
    robot_id: &str,
    action: &Action,
    window: Window,
) -> Result<Vec<Applied>, Vec<Action>> {
    // A batch of creates holds nothing else.
    let Action::Create {
        room_id,
        valid_period,
        ..
    } = action
    else {
        return Ok(Vec::new());
    };
    if past(window.send_by) {
        return Err(vec![action.clone()]);
    }
    let body = CreateActiveCodeBody {
        robot_id: robot_id.to_owned(),
        room_id: Some(room_id.clone()),
        valid_period: Some(*valid_period),
    };
    let call = client.create(&body, Some(window.send_by));
    let applied = match before(Some(window.end), call).await {
        Some(Ok(reply)) => created(action, robot_id, room_id, reply),
        Some(Err(err)) if matches!(err.kind, ApiErrorKind::NotSent) => {
            return Err(vec![action.clone()]);
        }
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
/// `concurrency` calls at once, within `window` (as [`create`]).
pub async fn delete(
    client: &MetaStudioClient,
    batch: &[Action],
    concurrency: usize,
    window: Window,
) -> Round {
    let calls: Vec<_> = batch
        .chunks(DELETE_BATCH)
        .map(|chunk| delete_chunk(client, chunk, window))
        .collect();
    gather(calls, concurrency).await
}

/// One DeleteActiveCode call for `chunk`: `Err` when it could not be sent
/// within its window.
async fn delete_chunk(
    client: &MetaStudioClient,
    chunk: &[Action],
    window: Window,
) -> Result<Vec<Applied>, Vec<Action>> {
    if past(window.send_by) {
        return Err(chunk.to_vec());
    }
    let ids: Vec<String> = chunk.iter().map(|a| a.code_id().to_owned()).collect();
    let each = |applied: &dyn Fn(&Action) -> Applied| chunk.iter().map(applied).collect();
    let call = client.delete(&ids, Some(window.send_by));
    Ok(match before(Some(window.end), call).await {
        Some(Ok(reply)) => each(&|a| deleted(a, reply.request_id.clone())),
        Some(Err(err)) if matches!(err.kind, ApiErrorKind::NotSent) => {
            return Err(chunk.to_vec());
        }
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

fn past(send_by: Instant) -> bool {
    Instant::now() >= send_by
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
