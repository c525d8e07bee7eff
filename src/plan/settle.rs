//! Settling the resets recorded before a crash or a lost answer.

use super::window;
use crate::crd::ResetIntent;
use crate::metastudio::{ActiveCode, Listing};
use jiff::{SignedDuration, Timestamp};
use std::collections::HashMap;

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
    /// Intents whose reset did not happen (the planner will plan it again),
    /// or whose code complete listings have lacked for longer than the
    /// ledger's retention.
    pub abandoned: Vec<ResetIntent>,
    /// Resets whose answer was lost so recently that the server may still
    /// apply them: they stay pending, and their codes are not reset again.
    pub waiting: Vec<ResetIntent>,
    /// Intents whose code the listing did not show: kept as they are, to
    /// be settled when the code shows up again. A listing that is not
    /// complete proves nothing about a code it lacks.
    pub parked: Vec<ResetIntent>,
}

impl IntentOutcome {
    /// The intents that stay on record.
    pub fn kept(&self) -> impl Iterator<Item = &ResetIntent> {
        self.waiting.iter().chain(&self.parked)
    }
}

/// Settles pending intents against the listing. A reset is the only
/// change that alters a code's value, so a changed value fingerprint proves
/// it happened and an unchanged one proves it did not. `value_changed`
/// compares the intent's fingerprint with the code now; when it cannot
/// (`None`: the fingerprint was taken under other credentials), a newer
/// update time counts as done: never twice beats never zero times.
///
/// A reset that shows no effect yet is still waiting until its call window
/// and then `grace` have passed since its answer was lost, as a server may
/// apply a call after its caller gave up on the answer. An intent of
/// another run (one in progress elsewhere, or interrupted: no time on
/// record) is in doubt from now, for its whole call window and then the
/// grace, as its calls may still be sent (see [`super::window`]). An
/// intent whose code the listing lacks is parked, never abandoned, until
/// complete listings have lacked it for longer than the ledger's
/// retention.
pub fn settle_intents(
    intents: &[ResetIntent],
    listing: &Listing,
    value_changed: impl Fn(&ResetIntent, &ActiveCode) -> Option<bool>,
    now: Timestamp,
    grace: SignedDuration,
) -> IntentOutcome {
    let by_id: HashMap<&str, &ActiveCode> = listing
        .codes
        .iter()
        .map(|c| (c.active_code_id.as_str(), c))
        .collect();
    let mut outcome = IntentOutcome::default();
    for intent in intents {
        let Some(code) = by_id.get(intent.code_id.as_str()) else {
            let expired = now.duration_since(intent.recorded_at) > super::ledger::RETENTION;
            if listing.complete && expired {
                outcome.abandoned.push(intent.clone());
            } else {
                outcome.parked.push(intent.clone());
            }
            continue;
        };
        let happened = value_changed(intent, code)
            .unwrap_or_else(|| code.update_time > intent.previous_update_time);
        let seen = window::first_seen(intent, now);
        if happened {
            outcome.completed.push(CompletedReset {
                code_id: intent.code_id.clone(),
                token: intent.token.clone(),
                time: code.update_time,
            });
        } else if window::in_doubt_until(&seen, grace).is_some_and(|until| now < until) {
            outcome.waiting.push(seen);
        } else {
            outcome.abandoned.push(intent.clone());
        }
    }
    outcome
}
