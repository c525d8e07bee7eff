//! The planner: spec x status x remote codes x now -> actions. Pure: no I/O,
//! no clock, no randomness, so it is tested as a table and as properties.

use crate::crd::{
    ActivationCodeSpec, ActivationCodeStatus, Drift, LastReset, ResetIntent, TokenRollout,
};
use crate::metastudio::ActiveCode;
use jiff::{SignedDuration, Timestamp};
use std::collections::HashMap;

/// One remote change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Set `valid_period` (restarts the validity window).
    Update { code_id: String, from: u16, to: u16 },
    /// Mint a new value for the code (restarts the validity window).
    Reset {
        code_id: String,
        reason: ResetReason,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetReason {
    /// `spec.reset.token` has a value this code was not reset for yet.
    Token(String),
    /// The code expires within `spec.reset.beforeExpiry`, or has expired.
    Expiry { expire_time: Timestamp },
}

impl Action {
    pub fn code_id(&self) -> &str {
        match self {
            Action::Update { code_id, .. } | Action::Reset { code_id, .. } => code_id,
        }
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

    /// The action as drift: what differs and what the spec wants.
    pub fn as_drift(&self) -> Drift {
        match self {
            Action::Update { code_id, from, to } => Drift {
                code_id: code_id.clone(),
                field: "validPeriod".into(),
                observed: from.to_string(),
                desired: to.to_string(),
            },
            Action::Reset { code_id, reason } => Drift {
                code_id: code_id.clone(),
                field: "reset".into(),
                observed: match reason {
                    ResetReason::Token(_) => "not reset for this token".into(),
                    ResetReason::Expiry { expire_time } => format!("expires {expire_time}"),
                },
                desired: match reason {
                    ResetReason::Token(token) => format!("reset for token {token:?}"),
                    ResetReason::Expiry { .. } => "reset before expiry".into(),
                },
            },
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
        },
    })
}

/// The actions that bring the selected codes to the spec. Per code, a reset
/// comes before an update, so a crash between them never hides a reset
/// behind a newer change.
///
/// A token resets each code not yet reset for it, except codes created
/// after the token was first seen (`status.resetToken`): they are fresh
/// already. A reset before expiry is left out when an update is planned for
/// the code, as the update restarts the validity window anyway. A code
/// with a reset still pending (its answer lost moments ago) gets no reset
/// until that one is settled.
pub fn plan(
    spec: &ActivationCodeSpec,
    status: &ActivationCodeStatus,
    remote: &[ActiveCode],
    now: Timestamp,
) -> Vec<Action> {
    let last_tokens: HashMap<&str, Option<&str>> = status
        .codes
        .iter()
        .map(|c| {
            (
                c.id.as_str(),
                c.last_reset.as_ref().and_then(|r| r.token.as_deref()),
            )
        })
        .collect();
    let rollout = token_rollout(spec, status.reset_token.as_ref(), now);
    let token = rollout.as_ref().map(|r| r.token.as_str());
    let window = spec
        .reset
        .as_ref()
        .and_then(|r| r.before_expiry)
        .and_then(|w| SignedDuration::try_from(w.0).ok());

    let pending: Vec<&str> = status
        .pending_resets
        .iter()
        .map(|i| i.code_id.as_str())
        .collect();
    let mut actions = Vec::new();
    for code in select(spec, remote) {
        let id = &code.active_code_id;
        // A reset still in doubt is settled before any other.
        let resettable = !pending.contains(&id.as_str());
        let fresh = rollout
            .as_ref()
            .is_some_and(|r| code.create_time >= r.observed_at + CLOCK_SKEW_MARGIN);
        let token_due = token.filter(|t| {
            resettable && !fresh && last_tokens.get(id.as_str()).copied().flatten() != Some(*t)
        });
        let update_due = code.valid_period != spec.valid_period;
        let expiry_due = window.filter(|_| resettable && !update_due).and_then(|w| {
            code.expire_time
                .filter(|&expires| expires.duration_since(now) <= w)
        });
        if let Some(token) = token_due {
            actions.push(Action::Reset {
                code_id: id.clone(),
                reason: ResetReason::Token(token.to_owned()),
            });
        } else if let Some(expire_time) = expiry_due {
            actions.push(Action::Reset {
                code_id: id.clone(),
                reason: ResetReason::Expiry { expire_time },
            });
        }
        if update_due {
            actions.push(Action::Update {
                code_id: id.clone(),
                from: code.valid_period,
                to: spec.valid_period,
            });
        }
    }
    actions
}

/// A code's last reset after one more: a reset before expiry applies no
/// token, so the code keeps the token it was last reset for.
pub fn next_last_reset(
    previous: Option<&LastReset>,
    token: Option<&str>,
    time: Timestamp,
) -> LastReset {
    LastReset {
        token: token
            .map(str::to_owned)
            .or_else(|| previous.and_then(|p| p.token.clone())),
        time,
    }
}

/// A reset that is known to have happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedReset {
    pub code_id: String,
    /// The token it applied; `None` for a reset before expiry.
    pub token: Option<String>,
    /// The code's update time after the reset.
    pub time: Timestamp,
}

/// What became of the resets recorded before a crash or a lost answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct IntentOutcome {
    /// Resets that did happen.
    pub completed: Vec<CompletedReset>,
    /// Intents whose reset did not happen (the planner will plan it again)
    /// or whose code is gone.
    pub abandoned: Vec<ResetIntent>,
    /// Resets whose answer was lost so recently that the server may still
    /// apply them: they stay pending, and their codes are not reset again.
    pub waiting: Vec<ResetIntent>,
}

/// Settles pending intents against the remote codes. A reset is the only
/// change that alters a code's value, so a changed value fingerprint proves
/// it happened and an unchanged one proves it did not. `value_changed`
/// compares the intent's fingerprint with the code now; when it cannot
/// (`None`: the fingerprint was taken under other credentials), a newer
/// update time counts as done: never twice beats never zero times.
///
/// A reset that shows no effect yet is still waiting while less than
/// `grace` has passed since its answer was lost, as a server may apply a
/// call after its caller gave up on the answer. An intent left by an
/// interrupted run (a crash, a lost lease: no time on record) starts its
/// grace now, as its call may have been in flight.
pub fn settle_intents(
    intents: &[ResetIntent],
    remote: &[ActiveCode],
    value_changed: impl Fn(&ResetIntent, &ActiveCode) -> Option<bool>,
    now: Timestamp,
    grace: SignedDuration,
) -> IntentOutcome {
    let by_id: HashMap<&str, &ActiveCode> = remote
        .iter()
        .map(|c| (c.active_code_id.as_str(), c))
        .collect();
    let mut outcome = IntentOutcome::default();
    for intent in intents {
        let Some(code) = by_id.get(intent.code_id.as_str()) else {
            outcome.abandoned.push(intent.clone());
            continue;
        };
        let happened = value_changed(intent, code)
            .unwrap_or_else(|| code.update_time > intent.previous_update_time);
        let since = intent.unanswered_since.unwrap_or(now);
        if happened {
            outcome.completed.push(CompletedReset {
                code_id: intent.code_id.clone(),
                token: intent.token.clone(),
                time: code.update_time,
            });
        } else if now.duration_since(since) < grace {
            outcome.waiting.push(ResetIntent {
                unanswered_since: Some(since),
                ..intent.clone()
            });
        } else {
            outcome.abandoned.push(intent.clone());
        }
    }
    outcome
}

#[cfg(test)]
mod tests;
