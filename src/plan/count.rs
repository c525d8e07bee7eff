//! How many codes: `spec.count` against the codes of the room.
//!
//! Every code of the room counts, whoever created it. Nothing is created
//! or deleted from a listing that did not add up, nor while a create or a
//! delete recorded earlier is unsettled: its codes may still appear or
//! vanish, and counting without them could pass the count.

use super::ledger::Ledger;
use crate::crd::{ActivationCodeSpec, SurplusPolicy};
use crate::metastudio::ActiveCode;
use std::cmp::Reverse;

/// What `spec.count` asks of a sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountPlan {
    /// Codes to create.
    pub creates: u32,
    /// Codes to delete, in order.
    pub deletes: Vec<String>,
    /// Codes over the count that `spec.surplus: Keep` keeps, in the order
    /// they would be deleted.
    pub kept: Vec<String>,
}

/// The creates or deletes that bring the room (`selected`, the room's
/// codes) to `spec.count`; nothing while `held` (an incomplete listing, or
/// an unsettled create or delete).
pub fn plan(
    spec: &ActivationCodeSpec,
    ledger: &Ledger,
    held: bool,
    selected: &[&ActiveCode],
) -> CountPlan {
    let Some(count) = spec.count else {
        return CountPlan::default();
    };
    if held || spec.room_id.is_none() {
        return CountPlan::default();
    }
    let have = selected.len();
    let wanted = count as usize;
    if have <= wanted {
        return CountPlan {
            creates: (wanted - have) as u32,
            ..CountPlan::default()
        };
    }
    let surplus: Vec<String> = surplus_order(ledger, selected)
        .into_iter()
        .take(have - wanted)
        .map(|c| c.active_code_id.clone())
        .collect();
    match spec.surplus {
        SurplusPolicy::Delete => CountPlan {
            deletes: surplus,
            ..CountPlan::default()
        },
        SurplusPolicy::Keep => CountPlan {
            kept: surplus,
            ..CountPlan::default()
        },
    }
}

/// The room's codes in the order they go when there are too many: those
/// this resource created first, newest first (by the service's create
/// time, then id, so the order is total).
pub fn surplus_order<'a>(ledger: &Ledger, selected: &[&'a ActiveCode]) -> Vec<&'a ActiveCode> {
    let mut order = selected.to_vec();
    order.sort_by_key(|c| {
        (
            !ledger.created(&c.active_code_id),
            Reverse(c.create_time),
            Reverse(c.active_code_id.clone()),
        )
    });
    order
}

/// The deletes of a resource being deleted with spec.deletionPolicy
/// Delete: every code of the room (`selected`) on record as created by it
/// (`ledger`), newest first, and no other code; nothing while `held` (an
/// incomplete listing, or a create or delete unsettled: a create in doubt
/// may have made a code that is its own, so it is settled and adopted
/// first).
pub fn teardown(ledger: &Ledger, held: bool, selected: &[&ActiveCode]) -> Vec<String> {
    if held {
        return Vec::new();
    }
    surplus_order(ledger, selected)
        .into_iter()
        .filter(|c| ledger.created(&c.active_code_id))
        .map(|c| c.active_code_id.clone())
        .collect()
}

#[cfg(test)]
mod tests;
