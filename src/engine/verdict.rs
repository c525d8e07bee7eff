//! The end of a sync, decided: the Ready reason and message and when to
//! look again, from what the sync found and did. Pure.

use super::conditions::reason;
use super::{ActionOutcome, ActionResult, Mode, Next};
use crate::crd::{CreateIntent, DeleteIntent, ResetIntent, TokenRollout};
use crate::plan::{Action, window};
use jiff::{SignedDuration, Timestamp};
use std::time::Duration;

/// What a sync found and did, as far as its verdict goes.
pub struct Facts<'a> {
    pub mode: Mode,
    pub enforce: bool,
    /// Why the export Secret could not be written, if it could not.
    pub export_error: Option<String>,
    pub applied: &'a [ActionResult],
    /// Resets no batch could start within its call window.
    pub not_started: usize,
    /// The listing added up (see [`crate::metastudio::Listing`]).
    pub complete: bool,
    /// Resets whose answer was lost, not yet settled.
    pub waiting: &'a [ResetIntent],
    /// Creates and deletes (spec.count) in doubt, not yet settled.
    pub creates_waiting: &'a [CreateIntent],
    pub deletes_waiting: &'a [DeleteIntent],
    /// Codes over spec.count that spec.surplus Keep keeps.
    pub kept: usize,
    pub reset_grace: SignedDuration,
    pub managed: u32,
    pub planned: usize,
    /// The token's rollout, while token resets wait for a later batch.
    pub rotating: Option<&'a TokenRollout>,
    pub sync_interval: Duration,
    pub now: Timestamp,
}

/// The Ready condition's reason and message, and when to look again.
pub struct Verdict {
    pub reason: &'static str,
    pub message: String,
    pub next: Next,
}

fn verdict(reason: &'static str, message: String, next: Next) -> Verdict {
    Verdict {
        reason,
        message,
        next,
    }
}

pub fn decide(facts: &Facts) -> Verdict {
    let retry = Next::Retry { at_least: None };
    let failed: Vec<&ActionResult> = facts
        .applied
        .iter()
        .filter(|r| !matches!(r.outcome, ActionOutcome::Done { .. }))
        .collect();
    if let Some(message) = &facts.export_error {
        verdict(reason::EXPORT_FAILED, message.clone(), retry)
    } else if !failed.is_empty() {
        failures(&failed, facts.applied.len())
    } else if facts.not_started > 0 {
        let message = format!(
            "{} change(s) not started: the call window of their batch ran out before any of its calls could start (a slow status write, or the process was paused); they are recorded anew",
            facts.not_started
        );
        verdict(reason::RESETTING, message, retry)
    } else if !facts.complete {
        verdict(
            reason::LISTING_INCOMPLETE,
            "the listing of the robot's codes did not add up (its pages changed while they were read, or came back short): no code was taken as gone and the export Secret was left as it was; listing again".into(),
            retry,
        )
    } else if !facts.waiting.is_empty() {
        waiting(facts)
    } else if !(facts.creates_waiting.is_empty() && facts.deletes_waiting.is_empty()) {
        count_waiting(facts)
    } else if !facts.enforce {
        let why = if facts.mode == Mode::DryRun {
            "DryRun"
        } else {
            reason::OBSERVING
        };
        let message = format!(
            "{} code(s) observed, {} difference(s) from the spec (see status.drift); nothing was changed",
            facts.managed, facts.planned
        );
        verdict(why, message, Next::SyncAfter(facts.sync_interval))
    } else if let Some(rollout) = facts.rotating {
        rotating(rollout, facts)
    } else {
        let mut message = format!(
            "{} code(s) match the spec ({} change(s) made)",
            facts.managed,
            facts.applied.len()
        );
        if facts.kept > 0 {
            message.push_str(&format!(
                "; {} code(s) over spec.count are kept, as spec.surplus is Keep (see status.drift)",
                facts.kept
            ));
        }
        verdict(
            reason::SYNCED,
            message,
            Next::SyncAfter(facts.sync_interval),
        )
    }
}

fn failures(failed: &[&ActionResult], attempted: usize) -> Verdict {
    let rate_limited = failed.iter().any(|r| {
        matches!(
            r.outcome,
            ActionOutcome::Failed {
                rate_limited: true,
                ..
            }
        )
    });
    let why = if failed
        .iter()
        .all(|r| matches!(r.outcome, ActionOutcome::Unconfirmed { .. }))
    {
        if failed.iter().all(|r| r.action.is_count()) {
            reason::COUNT_UNCONFIRMED
        } else {
            reason::RESET_UNCONFIRMED
        }
    } else if rate_limited {
        reason::RATE_LIMITED
    } else {
        reason::REMOTE_ERROR
    };
    let first = failed.first().map(|r| describe(r)).unwrap_or_default();
    let message = format!(
        "{} of {attempted} changes failed; first: {first}",
        failed.len()
    );
    verdict(why, message, Next::Retry { at_least: None })
}

fn describe(result: &ActionResult) -> String {
    let what = match &result.action {
        Action::Create { index, .. } => format!("new code #{index}"),
        action => format!("code {}", action.code_id()),
    };
    match &result.outcome {
        ActionOutcome::Failed { error, .. } | ActionOutcome::Unconfirmed { error } => {
            format!("{what}: {error}")
        }
        ActionOutcome::Done { .. } => String::new(),
    }
}

/// Checked again once no call can be sent and the server can no longer
/// apply one late.
fn waiting(facts: &Facts) -> Verdict {
    let settles_at = facts
        .waiting
        .iter()
        .filter_map(|i| window::in_doubt_until(i, facts.reset_grace))
        .min();
    let settles_in = settles_at
        .map(|at| at.duration_since(facts.now))
        .and_then(|left| Duration::try_from(left).ok());
    let when = settles_at.map_or_else(|| "soon".to_owned(), |t| format!("at {t}"));
    let message = format!(
        "{} reset(s) show no effect yet: their answer was lost, or another run recorded them (one in progress elsewhere, or interrupted) and may still be making them; the codes are checked again before any new reset, {when}",
        facts.waiting.len()
    );
    verdict(
        reason::RESET_UNCONFIRMED,
        message,
        Next::Retry {
            at_least: settles_in,
        },
    )
}

/// Creates or deletes in doubt: checked again once the last of their calls
/// can no longer happen.
fn count_waiting(facts: &Facts) -> Verdict {
    let (settles_at, settles_in) = settles(
        facts
            .creates_waiting
            .iter()
            .map(|i| window::in_doubt_until(i, facts.reset_grace))
            .chain(
                facts
                    .deletes_waiting
                    .iter()
                    .map(|i| window::in_doubt_until(i, facts.reset_grace)),
            ),
        facts.now,
    );
    let when = settles_at.map_or_else(|| "soon".to_owned(), |t| format!("at {t}"));
    let creates: u32 = facts.creates_waiting.iter().map(|i| i.count).sum();
    let deletes: usize = facts.deletes_waiting.iter().map(|i| i.code_ids.len()).sum();
    let message = format!(
        "{creates} create(s) and {deletes} delete(s) (spec.count) are not settled: their answer was lost, or another run recorded them (one in progress elsewhere, or interrupted) and may still be making them; nothing is created or deleted until a complete listing settles them, {when}"
    );
    verdict(
        reason::COUNT_UNCONFIRMED,
        message,
        Next::Retry {
            at_least: settles_in,
        },
    )
}

/// The latest of `times` (`None`: not in doubt yet, or unknown), and how
/// long until then from `now`.
fn settles(
    times: impl Iterator<Item = Option<Timestamp>>,
    now: Timestamp,
) -> (Option<Timestamp>, Option<Duration>) {
    let at = times.flatten().max();
    let left = at
        .map(|at| at.duration_since(now))
        .and_then(|left| Duration::try_from(left).ok());
    (at, left)
}

/// A progressive rotation between batches: back when the next one is due.
fn rotating(rollout: &TokenRollout, facts: &Facts) -> Verdict {
    let until_next = rollout
        .next_batch_time
        .map(|t| t.duration_since(facts.now))
        .and_then(|left| Duration::try_from(left).ok());
    let next = until_next.map_or(facts.sync_interval, |d| d.min(facts.sync_interval));
    let when = rollout
        .next_batch_time
        .map_or_else(|| "soon".to_owned(), |t| format!("at {t}"));
    verdict(
        reason::ROTATING,
        format!(
            "{} for token {:?}; the next batch starts {when}",
            rotating_label(rollout),
            rollout.token
        ),
        Next::SyncAfter(next),
    )
}

/// "rotating 30/120 codes".
pub fn rotating_label(rollout: &TokenRollout) -> String {
    format!("rotating {}/{} codes", rollout.done, rollout.total)
}
