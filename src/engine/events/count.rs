//! The events of creates and deletes (`spec.count`): the codes created and
//! deleted with their requests, those settled after an interruption, and
//! those in doubt.

use super::{Entry, alike, code_label, event, failures, request_id};
use crate::engine::conditions::reason;
use crate::engine::host::EngineEvent;
use crate::engine::{ActionOutcome, ActionResult};
use crate::plan::{Action, Adopted};
use std::borrow::Cow;

/// The reason of the event for created codes.
pub const CODE_CREATED: &str = "CodeCreated";
/// The reason of the event for deleted codes.
pub const CODE_DELETED: &str = "CodeDeleted";

/// `in room R, valid D days`.
fn room_label(room_id: &str, valid_period: u16) -> String {
    format!("in room {room_id}, valid {valid_period} days")
}

/// The `CodeCreated` event, naming each new code and its request.
pub(super) fn created_event(results: &[ActionResult]) -> Option<EngineEvent> {
    let entries: Vec<Entry> = results
        .iter()
        .filter_map(|r| match (&r.action, &r.outcome) {
            (
                Action::Create {
                    room_id,
                    valid_period,
                    ..
                },
                ActionOutcome::Done {
                    request_id: id,
                    created: Some(code),
                },
            ) => Some(Entry {
                code: code.clone(),
                label: room_label(room_id, *valid_period),
                detail: Some(request_id(id.as_deref())),
            }),
            _ => None,
        })
        .collect();
    let n = entries.len();
    (n > 0).then(|| {
        let note = alike(
            entries,
            |label| format!("created {n} code(s) {label} (spec.count): "),
            format!("created {n} code(s) (spec.count): "),
        );
        event(false, CODE_CREATED, "Create", note)
    })
}

/// Why surplus deletes were made, in their `CodeDeleted` event.
pub(super) const SURPLUS: &str = "over spec.count (spec.surplus: Delete)";
/// Why a teardown's deletes were made (the resource being deleted).
pub(super) const TEARDOWN: &str = "this resource created (spec.deletionPolicy: Delete)";

/// The `CodeDeleted` event, naming each deleted code and its request, and
/// `why` they were deleted ([`SURPLUS`] or [`TEARDOWN`]).
pub(super) fn deleted_event(results: &[ActionResult], why: &str) -> Option<EngineEvent> {
    let entries: Vec<Entry> = results
        .iter()
        .filter_map(|r| match (&r.action, &r.outcome) {
            (Action::Delete { code_id }, ActionOutcome::Done { request_id: id, .. }) => {
                Some(Entry {
                    code: code_id.clone(),
                    label: String::new(),
                    detail: Some(request_id(id.as_deref())),
                })
            }
            _ => None,
        })
        .collect();
    let n = entries.len();
    (n > 0).then(|| {
        let head = format!("deleted {n} code(s) {why}: ");
        let note = alike(entries, |_| head.clone(), head.clone());
        event(false, CODE_DELETED, "Delete", note)
    })
}

/// The `CountUnconfirmed` warning, naming each create or delete in doubt.
pub(super) fn unconfirmed_event(results: &[ActionResult]) -> Option<EngineEvent> {
    let unconfirmed: Vec<(Cow<'_, str>, &str)> = results
        .iter()
        .filter(|r| r.action.is_count())
        .filter_map(|r| match &r.outcome {
            ActionOutcome::Unconfirmed { error } => Some((code_label(&r.action), error.as_str())),
            _ => None,
        })
        .collect();
    (!unconfirmed.is_empty()).then(|| {
        let head = format!(
            "{} create(s) or delete(s) got no clear answer; no code is created or deleted until a complete listing settles them: ",
            unconfirmed.len()
        );
        event(
            true,
            reason::COUNT_UNCONFIRMED,
            "Scale",
            failures(head, unconfirmed),
        )
    })
}

/// The event for codes that creates in doubt made, found in a listing and
/// adopted, if there are any.
pub fn of_adopted(adopted: &[Adopted]) -> Option<EngineEvent> {
    let n = adopted.len();
    let entries: Vec<Entry> = adopted
        .iter()
        .map(|a| Entry {
            code: a.code_id.clone(),
            label: String::new(),
            detail: None,
        })
        .collect();
    (n > 0).then(|| {
        let head = format!(
            "created {n} code(s) (spec.count; confirmed after an interruption, from the listing): "
        );
        let note = alike(entries, |_| head.clone(), head.clone());
        event(false, CODE_CREATED, "Create", note)
    })
}

/// The event for deletes in doubt that a listing confirmed, if any.
pub fn of_confirmed_deletes(deleted: &[String]) -> Option<EngineEvent> {
    let n = deleted.len();
    let entries: Vec<Entry> = deleted
        .iter()
        .map(|id| Entry {
            code: id.clone(),
            label: String::new(),
            detail: None,
        })
        .collect();
    (n > 0).then(|| {
        let head = format!("deleted {n} code(s) (confirmed after an interruption): ");
        let note = alike(entries, |_| head.clone(), head.clone());
        event(false, CODE_DELETED, "Delete", note)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(index: u32, outcome: ActionOutcome) -> ActionResult {
        ActionResult {
            action: Action::Create {
                index,
                room_id: "lobby".into(),
                valid_period: 7,
            },
            outcome,
        }
    }

    fn delete(code: &str, outcome: ActionOutcome) -> ActionResult {
        ActionResult {
            action: Action::Delete {
                code_id: code.into(),
            },
            outcome,
        }
    }

    fn done(request: &str, created: Option<&str>) -> ActionOutcome {
        ActionOutcome::Done {
            request_id: Some(request.into()),
            created: created.map(Into::into),
        }
    }

    #[test]
    fn created_and_deleted_codes_are_named_with_their_requests() {
        let lost = ActionOutcome::Unconfirmed {
            error: "no response".into(),
        };
        let results = [
            create(1, done("r1", Some("c9"))),
            create(2, done("r2", Some("c1"))),
            create(3, lost.clone()),
            delete("d1", done("r4", None)),
            delete("d2", lost),
        ];
        let events = super::super::of_results(&results);
        let notes: Vec<_> = events
            .iter()
            .map(|e| (e.warning, e.reason, e.note.as_str()))
            .collect();
        assert_eq!(
            notes,
            [
                (
                    false,
                    CODE_CREATED,
                    "created 2 code(s) in room lobby, valid 7 days (spec.count): c1 (X-Request-Id: r2), c9 (X-Request-Id: r1)"
                ),
                (
                    false,
                    CODE_DELETED,
                    "deleted 1 code(s) over spec.count (spec.surplus: Delete): d1 (X-Request-Id: r4)"
                ),
                (
                    true,
                    reason::COUNT_UNCONFIRMED,
                    "2 create(s) or delete(s) got no clear answer; no code is created or deleted until a complete listing settles them: d2: no response; new code #3: no response"
                ),
            ]
        );
    }

    #[test]
    fn codes_settled_after_an_interruption_are_one_event_each() {
        let adopted = [
            Adopted {
                code_id: "c2".into(),
                token: None,
            },
            Adopted {
                code_id: "c1".into(),
                token: Some("t".into()),
            },
        ];
        let event = of_adopted(&adopted).unwrap();
        assert_eq!(
            (event.reason, event.note.as_str()),
            (
                CODE_CREATED,
                "created 2 code(s) (spec.count; confirmed after an interruption, from the listing): c1, c2"
            )
        );
        let event = of_confirmed_deletes(&["d".into()]).unwrap();
        assert_eq!(
            event.note,
            "deleted 1 code(s) (confirmed after an interruption): d"
        );
        assert!(of_adopted(&[]).is_none() && of_confirmed_deletes(&[]).is_none());
    }
}
