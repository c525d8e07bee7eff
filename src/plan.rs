//! The planner: spec x ledger x status x remote codes x now -> actions.
//! Pure: no I/O, no clock, no randomness, so it is tested as a table and as
//! properties.

pub mod batch;
pub mod count;
pub mod ledger;
pub mod settle;
pub mod settle_count;
pub mod window;

use crate::crd::{ActivationCodeSpec, ActivationCodeStatus, Drift, TokenRollout};
use crate::metastudio::ActiveCode;
use jiff::{SignedDuration, Timestamp};
pub use ledger::Ledger;
pub use settle::{CompletedReset, IntentOutcome, settle_intents};
pub use settle_count::{
    Adopted, CreateSettlement, DeleteSettlement, settle_creates, settle_deletes,
};
use std::collections::HashSet;

/// One remote change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Set `valid_period` (restarts the validity window).
    Update { code_id: String, from: u16, to: u16 },
    /// Update the code with its own `valid_period`: restarts its validity
    /// window and keeps its value (`spec.renewBeforeExpiry`).
    Renew {
        code_id: String,
        valid_period: u16,
        expire_time: Timestamp,
    },
    /// Mint a new value for the code (restarts the validity window).
    Reset {
        code_id: String,
        reason: ResetReason,
    },
    /// Create a code in the room (`spec.count`). It has no id until the
    /// answer names it: `index` (from 1) tells the creates of one plan
    /// apart.
    Create {
        index: u32,
        room_id: String,
        valid_period: u16,
    },
    /// Delete the code: it is over `spec.count` (`spec.surplus: Delete`).
    Delete { code_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetReason {
    /// `spec.reset.token` has a value this code was not reset for yet.
    Token(String),
    /// The code expires within `spec.reset.beforeExpiry`, or has expired.
    Expiry { expire_time: Timestamp },
}

impl Action {
    /// The code the action changes; empty for a create (the answer names
    /// the new code).
    pub fn code_id(&self) -> &str {
        match self {
            Action::Update { code_id, .. }
            | Action::Renew { code_id, .. }
            | Action::Reset { code_id, .. }
            | Action::Delete { code_id } => code_id,
            Action::Create { .. } => "",
        }
    }

    /// Whether the action creates or deletes a code (`spec.count`).
    pub fn is_count(&self) -> bool {
        matches!(self, Action::Create { .. } | Action::Delete { .. })
    }

    /// The token a reset applies, if any.
    pub fn token(&self) -> Option<&str> {
        match self {
            Action::Reset {
                reason: ResetReason::Token(token),
                ..
            } => Some(token),
            _ => None,
        }
    }

    pub fn is_reset(&self) -> bool {
        matches!(self, Action::Reset { .. })
    }

    /// The action as drift: what differs and what the spec wants.
    pub fn as_drift(&self) -> Drift {
        let (field, observed, desired) = match self {
            Action::Update { from, to, .. } => ("validPeriod", from.to_string(), to.to_string()),
            Action::Renew { expire_time, .. } => (
                "expiry",
                format!("expires {expire_time}"),
                "renewed before expiry".into(),
            ),
            Action::Reset { reason, .. } => match reason {
                ResetReason::Token(token) => (
                    "reset",
                    "not reset for this token".into(),
                    format!("reset for token {token:?}"),
                ),
                ResetReason::Expiry { expire_time } => (
                    "reset",
                    format!("expires {expire_time}"),
                    "reset before expiry".into(),
                ),
            },
            Action::Create {
                room_id,
                valid_period,
                ..
            } => (
                "count",
                "missing".into(),
                format!("created in room {room_id} ({valid_period} days)"),
            ),
            Action::Delete { .. } => (
                "count",
                "over spec.count".into(),
                "deleted (spec.surplus: Delete)".into(),
            ),
        };
        Drift {
            code_id: self.code_id().to_owned(),
            field: field.into(),
            observed,
            desired,
        }
    }
}

/// The codes a spec manages, in remote order.
pub fn select<'a>(spec: &ActivationCodeSpec, remote: &'a [ActiveCode]) -> Vec<&'a ActiveCode> {
    remote
        .iter()
        .filter(|c| c.robot_id == spec.robot_id)
        .filter(|c| spec.selects(c.room_id.as_deref(), &c.active_code_id))
        .collect()
}

/// Codes created this soon after a token was first seen are reset for it
/// all the same: `observedAt` is the operator's clock, `create_time` the
/// service's, and a skew must not spare a code created before the token.
pub const CLOCK_SKEW_MARGIN: SignedDuration = SignedDuration::from_mins(5);

/// The rollout of `spec.reset.token`: kept while the token stays the same,
/// started `now` when it changes, none when the spec has no token.
pub fn token_rollout(
    spec: &ActivationCodeSpec,
    previous: Option<&TokenRollout>,
    now: Timestamp,
) -> Option<TokenRollout> {
    let token = spec.reset.as_ref()?.token.as_deref()?;
    Some(match previous {
        Some(rollout) if rollout.token == token => rollout.clone(),
        _ => TokenRollout {
            token: token.to_owned(),
            observed_at: now,
            done: 0,
            total: 0,
            progress: String::new(),
            batch_started_at: None,
            batch_resets: 0,
            next_batch_time: None,
        },
    })
}

/// What a sync should do, and the token's rollout as it stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// The token's rollout, its progress counted and its batch window
    /// opened when one is due.
    pub rollout: Option<TokenRollout>,
    /// Token resets that wait for a later batch of spec.reset.rollout.
    pub deferred: u32,
    /// Codes over spec.count that spec.surplus Keep keeps: drift.
    pub kept: Vec<String>,
}

/// A code over spec.count that spec.surplus Keep keeps, as drift.
pub fn kept_drift(code_id: &str) -> Drift {
    Drift {
        code_id: code_id.to_owned(),
        field: "count".into(),
        observed: "over spec.count".into(),
        desired: "kept (spec.surplus: Keep)".into(),
    }
}

/// Whether creates and deletes wait: the listing did not add up, or a
/// create or delete recorded earlier is unsettled.
fn count_held(status: &ActivationCodeStatus, complete: bool) -> bool {
    !complete || !status.pending_creates.is_empty() || !status.pending_deletes.is_empty()
}

/// The plan of a resource being deleted with spec.deletionPolicy Delete:
/// delete the codes it created ([`count::teardown`]), and nothing else.
pub fn teardown(
    spec: &ActivationCodeSpec,
    ledger: &Ledger,
    status: &ActivationCodeStatus,
    remote: &[ActiveCode],
    complete: bool,
) -> Plan {
    let selected = select(spec, remote);
    let deletes = count::teardown(ledger, count_held(status, complete), &selected);
    Plan {
        actions: deletes
            .into_iter()
            .map(|code_id| Action::Delete { code_id })
            .collect(),
        ..Plan::default()
    }
}

/// What is due for one code.
struct Due {
    token: bool,
    expiry: Option<Timestamp>,
    update: bool,
    renewal: Option<Timestamp>,
}

/// Windows of the spec, as durations.
struct Windows {
    reset: Option<SignedDuration>,
    renew: Option<SignedDuration>,
}

impl Windows {
    fn of(spec: &ActivationCodeSpec) -> Self {
        let signed = |d: crate::duration::HumanDuration| SignedDuration::try_from(d.0).ok();
        Self {
            reset: spec
                .reset
                .as_ref()
                .and_then(|r| r.before_expiry)
                .and_then(signed),
            renew: spec.renew_before_expiry.and_then(signed),
        }
    }
}

/// Whether the token resets `code` at all: codes created after the token
/// was first seen are fresh already. `observedAt` comes from a status a
/// tenant (or a status file's editor) may write: one too late to add the
/// margin to is later than any code.
fn token_applies(rollout: &TokenRollout, code: &ActiveCode) -> bool {
    let seen = rollout.observed_at.checked_add(CLOCK_SKEW_MARGIN);
    seen.map_or(true, |seen| code.create_time < seen)
}

/// Done and total of a token's rollout over the selected codes.
pub fn progress(
    spec: &ActivationCodeSpec,
    ledger: &Ledger,
    rollout: &mut TokenRollout,
    remote: &[ActiveCode],
) {
    let applies: Vec<&ActiveCode> = select(spec, remote)
        .into_iter()
        .filter(|c| token_applies(rollout, c))
        .collect();
    let done = applies
        .iter()
        .filter(|c| ledger.token(&c.active_code_id) == Some(rollout.token.as_str()))
        .count();
    rollout.total = applies.len() as u32;
    rollout.done = done as u32;
    rollout.progress = format!("{}/{}", rollout.done, rollout.total);
}

/// The actions that bring the selected codes to the spec. Per code, a reset
/// comes before an update, so a crash between them never hides a reset
/// behind a newer change.
///
/// A token resets each code not yet reset for it (by the ledger), except
/// codes created after the token was first seen (`status.resetToken`):
/// they are fresh already. With `spec.reset.rollout`, only as many token
/// resets as the current batch has left; a code whose reset is due anyway
/// (inside beforeExpiry) gets its token reset at once. A reset before
/// expiry, or a renewal, is left out when an update is planned for the
/// code, as the update restarts the validity window anyway. A code with a
/// reset still pending (its answer lost moments ago) gets no reset until
/// that one is settled.
///
/// With spec.count, the deletes come first and the creates last (see
/// [`count::plan`]); a code being deleted, or whose delete is in doubt,
/// gets no other action. `complete` says whether the listing of `remote`
/// added up: nothing is created or deleted from one that did not.
pub fn plan(
    spec: &ActivationCodeSpec,
    ledger: &Ledger,
    status: &ActivationCodeStatus,
    remote: &[ActiveCode],
    complete: bool,
    now: Timestamp,
) -> Plan {
    let mut rollout = token_rollout(spec, status.reset_token.as_ref(), now);
    let pending: HashSet<&str> = status
        .pending_resets
        .iter()
        .map(|i| i.code_id.as_str())
        .collect();
    let selected = select(spec, remote);
    let counted = count::plan(spec, ledger, count_held(status, complete), &selected);
    let leaving: HashSet<&str> = counted
        .deletes
        .iter()
        .chain(status.pending_deletes.iter().flat_map(|i| &i.code_ids))
        .map(String::as_str)
        .collect();
    let windows = Windows::of(spec);
    let codes: Vec<(&ActiveCode, Due)> = selected
        .into_iter()
        .filter(|code| !leaving.contains(code.active_code_id.as_str()))
        .map(|code| {
            let resettable = !pending.contains(code.active_code_id.as_str());
            (
                code,
                due(
                    spec,
                    ledger,
                    rollout.as_ref(),
                    &windows,
                    code,
                    resettable,
                    now,
                ),
            )
        })
        .collect();
    let token_due = codes.iter().filter(|(_, d)| d.token).count() as u32;
    let mut allowance = match rollout.as_mut() {
        Some(rollout) => {
            progress(spec, ledger, rollout, remote);
            batch::allowance(
                spec.reset.as_ref().and_then(|r| r.rollout.as_ref()),
                rollout,
                token_due,
                now,
            )
        }
        None => None,
    };
    let token = rollout
        .as_ref()
        .map(|r| r.token.clone())
        .unwrap_or_default();
    let mut plan = Plan {
        actions: counted
            .deletes
            .iter()
            .map(|id| Action::Delete {
                code_id: id.clone(),
            })
            .collect(),
        kept: counted.kept,
        ..Plan::default()
    };
    for (code, due) in codes {
        let in_batch = due.token && (due.expiry.is_some() || batch::take(&mut allowance));
        plan.deferred += u32::from(due.token && !in_batch);
        let token = in_batch.then_some(token.as_str());
        plan.actions.extend(actions_for(spec, code, &due, token));
    }
    if let Some(rollout) = rollout.as_mut() {
        batch::schedule(
            spec.reset.as_ref().and_then(|r| r.rollout.as_ref()),
            rollout,
            plan.deferred,
        );
    }
    plan.rollout = rollout;
    plan.actions.extend(creates(spec, counted.creates));
    plan
}

/// `n` creates in the spec's room with its validPeriod.
fn creates(spec: &ActivationCodeSpec, n: u32) -> impl Iterator<Item = Action> + '_ {
    let room = spec.room_id.clone().unwrap_or_default();
    (1..=n).map(move |index| Action::Create {
        index,
        room_id: room.clone(),
        valid_period: spec.valid_period,
    })
}

/// One code's actions, a reset before an update: the token's reset when
/// `token` is given (the code is in this batch), else a reset before
/// expiry if one is due; then the update, or else a renewal.
fn actions_for(
    spec: &ActivationCodeSpec,
    code: &ActiveCode,
    due: &Due,
    token: Option<&str>,
) -> Vec<Action> {
    let id = &code.active_code_id;
    let mut actions = Vec::with_capacity(2);
    if let Some(token) = token {
        actions.push(reset(id, ResetReason::Token(token.to_owned())));
    } else if let Some(expire_time) = due.expiry {
        actions.push(reset(id, ResetReason::Expiry { expire_time }));
    }
    if due.update {
        actions.push(Action::Update {
            code_id: id.clone(),
            from: code.valid_period,
            to: spec.valid_period,
        });
    } else if let Some(expire_time) = due.renewal {
        actions.push(Action::Renew {
            code_id: id.clone(),
            valid_period: code.valid_period,
            expire_time,
        });
    }
    actions
}

fn reset(id: &str, reason: ResetReason) -> Action {
    Action::Reset {
        code_id: id.to_owned(),
        reason,
    }
}

/// What is due for one selected code.
fn due(
    spec: &ActivationCodeSpec,
    ledger: &Ledger,
    rollout: Option<&TokenRollout>,
    windows: &Windows,
    code: &ActiveCode,
    resettable: bool,
    now: Timestamp,
) -> Due {
    let within = |window: Option<SignedDuration>| {
        window.and_then(|w| code.expire_time.filter(|&t| t.duration_since(now) <= w))
    };
    let token = rollout.is_some_and(|r| {
        resettable
            && token_applies(r, code)
            && ledger.token(&code.active_code_id) != Some(r.token.as_str())
    });
    let update = code.valid_period != spec.valid_period;
    let expiry = within(windows.reset).filter(|_| resettable && !update);
    let renewal = within(windows.renew).filter(|_| !update && code.valid_period != 0);
    Due {
        token,
        // A token reset covers a due reset before expiry.
        expiry,
        update,
        renewal,
    }
}

#[cfg(test)]
mod tests;
