//! Settling the creates and deletes (spec.count) recorded before a crash or
//! a lost answer.
//!
//! A create takes no client token and its answer names the code, so a lost
//! answer leaves only the listing to tell: every code of the room is on
//! record in the ledger (created or found), so a code of the room that no
//! list names is new since the intent. Once no call of the intent can
//! still happen (its call window and the grace have passed), a complete
//! listing settles it: the new codes, as many as the creates in doubt, are
//! the ones it created. More new codes than that cannot be told from codes
//! someone else created meanwhile: they count toward spec.count all the
//! same, and are recorded as found, not as this resource's.
//!
//! A delete names its codes: a complete listing that lacks one proves it
//! deleted, and one that shows it after the window and the grace proves it
//! was not.

use super::ledger::Ledger;
use super::window;
use crate::crd::{CreateIntent, DeleteIntent};
use crate::metastudio::{ActiveCode, Listing};
use jiff::{SignedDuration, Timestamp};
use std::collections::HashSet;

/// A code a create in doubt made, adopted as this resource's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adopted {
    pub code_id: String,
    /// The reset.token of its intent: the code counts as reset for it.
    pub token: Option<String>,
}

/// What became of creates recorded before a crash or a lost answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CreateSettlement {
    /// Codes the creates made, adopted as this resource's.
    pub adopted: Vec<Adopted>,
    /// New codes of a room with more of them than creates in doubt: they
    /// cannot be told from codes someone else created, and are recorded as
    /// found.
    pub ambiguous: Vec<String>,
    /// Intents whose creates may still happen, or that an incomplete
    /// listing cannot settle: they stay on record, and no create is made.
    pub waiting: Vec<CreateIntent>,
}

/// Settles the create intents against the robot's listing (every code of
/// it), `ledger` naming every code of their rooms at the time they were
/// recorded.
pub fn settle_creates(
    intents: &[CreateIntent],
    listing: &Listing,
    robot_id: &str,
    ledger: &Ledger,
    now: Timestamp,
    grace: SignedDuration,
) -> CreateSettlement {
    let mut settlement = CreateSettlement::default();
    if intents.is_empty() {
        return settlement;
    }
    let doubtful = intents
        .iter()
        .any(|i| window::still_in_doubt(i, now, grace).is_some());
    if doubtful || !listing.complete {
        settlement.waiting = intents.iter().map(|i| window::first_seen(i, now)).collect();
        return settlement;
    }
    let mut rooms: Vec<&str> = intents.iter().map(|i| i.room_id.as_str()).collect();
    rooms.dedup();
    for room in rooms {
        let mut new: Vec<&ActiveCode> = listing
            .codes
            .iter()
            .filter(|c| c.robot_id == robot_id && c.room_id.as_deref() == Some(room))
            .filter(|c| !ledger.known(&c.active_code_id))
            .collect();
        new.sort_by(|a, b| {
            (a.create_time, &a.active_code_id).cmp(&(b.create_time, &b.active_code_id))
        });
        let of_room: Vec<&CreateIntent> = intents.iter().filter(|i| i.room_id == room).collect();
        let in_doubt: u64 = of_room.iter().map(|i| u64::from(i.count)).sum();
        if new.len() as u64 > in_doubt {
            settlement
                .ambiguous
                .extend(new.iter().map(|c| c.active_code_id.clone()));
            continue;
        }
        let tokens = of_room
            .iter()
            .flat_map(|i| std::iter::repeat_n(i.token.clone(), i.count as usize));
        settlement
            .adopted
            .extend(new.iter().zip(tokens).map(|(code, token)| Adopted {
                code_id: code.active_code_id.clone(),
                token,
            }));
    }
    settlement
}

/// What became of deletes recorded before a crash or a lost answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DeleteSettlement {
    /// Codes a complete listing lacks: deleted.
    pub deleted: Vec<String>,
    /// Codes still listed after their delete could no longer happen: not
    /// deleted (the planner decides afresh).
    pub not_deleted: Vec<String>,
    /// Intents whose deletes may still happen, or that an incomplete
    /// listing cannot settle, narrowed to the codes still listed.
    pub waiting: Vec<DeleteIntent>,
}

/// Settles the delete intents against the robot's listing.
pub fn settle_deletes(
    intents: &[DeleteIntent],
    listing: &Listing,
    now: Timestamp,
    grace: SignedDuration,
) -> DeleteSettlement {
    let listed: HashSet<&str> = listing
        .codes
        .iter()
        .map(|c| c.active_code_id.as_str())
        .collect();
    let mut settlement = DeleteSettlement::default();
    for intent in intents {
        if !listing.complete {
            settlement.waiting.push(window::first_seen(intent, now));
            continue;
        }
        let (present, gone): (Vec<String>, Vec<String>) = intent
            .code_ids
            .iter()
            .cloned()
            .partition(|id| listed.contains(id.as_str()));
        settlement.deleted.extend(gone);
        if present.is_empty() {
            continue;
        }
        let narrowed = DeleteIntent {
            code_ids: present,
            ..intent.clone()
        };
        match window::still_in_doubt(&narrowed, now, grace) {
            Some(seen) => settlement.waiting.push(seen),
            None => settlement.not_deleted.extend(narrowed.code_ids),
        }
    }
    settlement
}
