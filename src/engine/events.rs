//! The events of one sync: its results grouped by kind, one event per
//! kind, each note naming the codes and their `X-Request-Id`s within the
//! size the Events API accepts.

mod count;

use super::conditions::reason;
use super::host::EngineEvent;
use super::{ActionOutcome, ActionResult};
use crate::plan::{Action, CompletedReset, ResetReason};
use std::borrow::Cow;

pub use count::{CODE_CREATED, CODE_DELETED, of_adopted, of_confirmed_deletes};

/// The most bytes an Event's note may hold (events.k8s.io/v1 `note`).
pub const NOTE_LIMIT: usize = 1024;

/// The reason of the event for updated codes.
pub const CODE_UPDATED: &str = "CodeUpdated";
/// The reason of the event for reset codes.
pub const CODE_RESET: &str = "CodeReset";
/// The reason of the event for renewed codes.
pub const CODE_RENEWED: &str = "CodeRenewed";

/// Ends a text cut short.
const ELLIPSIS: &str = "...";

/// `text` within `limit` bytes: as it is when it fits, else cut on a
/// character boundary and ended with "...".
pub fn clipped(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let Some(room) = limit.checked_sub(ELLIPSIS.len()) else {
        return text[..text.floor_char_boundary(limit)].to_owned();
    };
    format!("{}{ELLIPSIS}", &text[..text.floor_char_boundary(room)])
}

/// `head` then as many of `items` as fit in `limit` bytes, joined by
/// `separator`; the items left out are counted in a closing "and N more".
/// A first item too long to fit at all is shown clipped.
pub fn listing(head: &str, items: &[String], separator: &str, limit: usize) -> String {
    let full = format!("{head}{}", items.join(separator));
    if full.len() <= limit {
        return full;
    }
    // Not everything fits: "and N more" closes the note, if there are
    // items at all.
    let more = |left: usize, after_item: bool| {
        let sep = if after_item { separator } else { "" };
        format!("{sep}and {left} more")
    };
    let counted = if items.is_empty() {
        0
    } else {
        more(items.len(), false).len()
    };
    let mut note = clipped(head, limit.saturating_sub(counted));
    let mut shown = 0;
    for item in items {
        let left = items.len() - shown - 1;
        let sep = if shown == 0 { "" } else { separator };
        let closing = if left == 0 { 0 } else { more(left, true).len() };
        if note.len() + sep.len() + item.len() + closing <= limit {
            note.push_str(sep);
            note.push_str(item);
            shown += 1;
            continue;
        }
        if shown == 0 {
            let part = clipped(item, limit.saturating_sub(note.len() + closing));
            if part.len() > ELLIPSIS.len() {
                note.push_str(&part);
                shown = 1;
            }
        }
        break;
    }
    if shown < items.len() {
        note.push_str(&more(items.len() - shown, shown > 0));
    }
    // Only a limit shorter than "and N more" itself leaves this too long.
    clipped(&note, limit)
}

/// One code in a note about changes of one kind.
struct Entry {
    code: String,
    /// What was done, e.g. `for token "t"`: in the head when every code
    /// shares it, else after the code.
    label: String,
    /// After the code in any case, e.g. its request id.
    detail: Option<String>,
}

/// A note about changes of one kind: `shared(label)` heads the list when
/// every entry has the same label; otherwise `head` does, and each code
/// shows its own label.
fn alike(mut entries: Vec<Entry>, shared: impl Fn(&str) -> String, head: String) -> String {
    entries.sort_by(|a, b| a.code.cmp(&b.code));
    let uniform = entries.windows(2).all(|w| w[0].label == w[1].label);
    let head = match entries.first() {
        Some(first) if uniform => shared(&first.label),
        _ => head,
    };
    let items: Vec<String> = entries
        .into_iter()
        .map(|e| {
            let label = (!uniform).then_some(e.label);
            let parts: Vec<String> = label.into_iter().chain(e.detail).collect();
            if parts.is_empty() {
                e.code
            } else {
                format!("{} ({})", e.code, parts.join(", "))
            }
        })
        .collect();
    listing(&head, &items, ", ", NOTE_LIMIT)
}

/// A note about failures: each code with its error.
fn failures(head: String, mut failed: Vec<(Cow<'_, str>, &str)>) -> String {
    failed.sort();
    let items: Vec<String> = failed
        .into_iter()
        .map(|(code, error)| format!("{code}: {error}"))
        .collect();
    listing(&head, &items, "; ", NOTE_LIMIT)
}

/// `for token "t"` or `before expiry`.
fn reset_label(token: Option<&str>) -> String {
    token.map_or_else(
        || "before expiry".to_owned(),
        |t| format!("for token {t:?}"),
    )
}

fn request_id(id: Option<&str>) -> String {
    format!("X-Request-Id: {}", id.unwrap_or("none"))
}

/// The events of one sync's results, emitted once the changes are made:
/// one each for the updated codes, the reset codes, the created and the
/// deleted codes, the failures, the resets in doubt and the creates and
/// deletes in doubt, when there are any.
pub fn of_results(results: &[ActionResult]) -> Vec<EngineEvent> {
    round_events(results, count::SURPLUS)
}

/// The events of a teardown's results (a resource being deleted with
/// spec.deletionPolicy Delete): as [`of_results`], the deleted codes named
/// as the ones the resource created.
pub fn of_teardown(results: &[ActionResult]) -> Vec<EngineEvent> {
    round_events(results, count::TEARDOWN)
}

fn round_events(results: &[ActionResult], deleted_because: &str) -> Vec<EngineEvent> {
    [
        updated_event(results),
        renewed_event(results),
        reset_event(results),
        count::created_event(results),
        count::deleted_event(results, deleted_because),
        failed_event(results),
        unconfirmed_event(results),
        count::unconfirmed_event(results),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The `CodeUpdated` event, naming each updated code's request.
fn updated_event(results: &[ActionResult]) -> Option<EngineEvent> {
    let entries: Vec<Entry> = results
        .iter()
        .filter_map(|r| match (&r.action, &r.outcome) {
            (Action::Update { from, to, .. }, ActionOutcome::Done { request_id: id, .. }) => {
                Some(Entry {
                    code: r.action.code_id().to_owned(),
                    label: format!("validPeriod {from} -> {to} days"),
                    detail: Some(request_id(id.as_deref())),
                })
            }
            _ => None,
        })
        .collect();
    let n = entries.len();
    (n > 0).then(|| {
        let note = alike(
            entries,
            |label| format!("updated {n} code(s): {label}: "),
            format!("updated {n} code(s): "),
        );
        event(false, CODE_UPDATED, "Update", note)
    })
}

/// The `CodeRenewed` event: codes whose validity window restarted with
/// their value kept.
fn renewed_event(results: &[ActionResult]) -> Option<EngineEvent> {
    let entries: Vec<Entry> = results
        .iter()
        .filter_map(|r| match (&r.action, &r.outcome) {
            (Action::Renew { valid_period, .. }, ActionOutcome::Done { request_id: id, .. }) => {
                Some(Entry {
                    code: r.action.code_id().to_owned(),
                    label: format!("validity restarted for {valid_period} days, value kept"),
                    detail: Some(request_id(id.as_deref())),
                })
            }
            _ => None,
        })
        .collect();
    let n = entries.len();
    (n > 0).then(|| {
        let note = alike(
            entries,
            |label| format!("renewed {n} code(s) before expiry: {label}: "),
            format!("renewed {n} code(s) before expiry: "),
        );
        event(false, CODE_RENEWED, "Renew", note)
    })
}

/// The `CodeReset` event, naming each reset code's request.
fn reset_event(results: &[ActionResult]) -> Option<EngineEvent> {
    let entries: Vec<Entry> = results
        .iter()
        .filter_map(|r| match (&r.action, &r.outcome) {
            (Action::Reset { reason: why, .. }, ActionOutcome::Done { request_id: id, .. }) => {
                let token = match why {
                    ResetReason::Token(t) => Some(t.as_str()),
                    ResetReason::Expiry { .. } => None,
                };
                Some(Entry {
                    code: r.action.code_id().to_owned(),
                    label: reset_label(token),
                    detail: Some(request_id(id.as_deref())),
                })
            }
            _ => None,
        })
        .collect();
    let n = entries.len();
    (n > 0).then(|| {
        let note = alike(
            entries,
            |label| format!("reset {n} code(s) {label}: "),
            format!("reset {n} code(s): "),
        );
        event(false, CODE_RESET, "Reset", note)
    })
}

/// How a note names the code of an action: its id, or for a create (no id
/// yet) `new code #N`.
fn code_label(action: &Action) -> Cow<'_, str> {
    match action {
        Action::Create { index, .. } => Cow::Owned(format!("new code #{index}")),
        _ => Cow::Borrowed(action.code_id()),
    }
}

/// The `RemoteError` warning, naming each failed change's code and error.
fn failed_event(results: &[ActionResult]) -> Option<EngineEvent> {
    let failed: Vec<(Cow<'_, str>, &str)> = results
        .iter()
        .filter_map(|r| match &r.outcome {
            ActionOutcome::Failed { error, .. } => Some((code_label(&r.action), error.as_str())),
            _ => None,
        })
        .collect();
    (!failed.is_empty()).then(|| {
        let head = format!("{} change(s) failed: ", failed.len());
        event(true, reason::REMOTE_ERROR, "Sync", failures(head, failed))
    })
}

/// The `ResetUnconfirmed` warning, naming each reset in doubt.
fn unconfirmed_event(results: &[ActionResult]) -> Option<EngineEvent> {
    let unconfirmed: Vec<(Cow<'_, str>, &str)> = results
        .iter()
        .filter(|r| !r.action.is_count())
        .filter_map(|r| match &r.outcome {
            ActionOutcome::Unconfirmed { error } => Some((code_label(&r.action), error.as_str())),
            _ => None,
        })
        .collect();
    (!unconfirmed.is_empty()).then(|| {
        let head = format!(
            "{} reset(s) got no clear answer; the next sync checks whether they happened: ",
            unconfirmed.len()
        );
        event(
            true,
            reason::RESET_UNCONFIRMED,
            "Reset",
            failures(head, unconfirmed),
        )
    })
}

/// The event for resets recorded before an interruption and found done
/// since, if there are any.
pub fn of_confirmed(resets: &[CompletedReset]) -> Option<EngineEvent> {
    if resets.is_empty() {
        return None;
    }
    let n = resets.len();
    let entries = resets
        .iter()
        .map(|r| Entry {
            code: r.code_id.clone(),
            label: reset_label(r.token.as_deref()),
            detail: None,
        })
        .collect();
    let note = alike(
        entries,
        |label| format!("reset {n} code(s) {label} (confirmed after an interruption): "),
        format!("reset {n} code(s) (confirmed after an interruption): "),
    );
    Some(event(false, CODE_RESET, "Reset", note))
}

fn event(warning: bool, reason: &'static str, action: &'static str, note: String) -> EngineEvent {
    EngineEvent {
        warning,
        reason,
        action,
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn everything_that_fits_exactly_is_listed() {
        let list = items(&["a1", "a2", "a3", "a4", "a5"]);
        let note = listing("h: ", &list, ", ", 21);
        assert_eq!(note, "h: a1, a2, a3, a4, a5");
        assert_eq!(note.len(), 21);
    }

    #[test]
    fn one_byte_over_leaves_items_out_and_counts_them() {
        let list = items(&["a1", "a2", "a3", "a4", "a5"]);
        // "h: a1, a2, and 3 more" would be 21 bytes too.
        assert_eq!(listing("h: ", &list, ", ", 20), "h: a1, and 4 more");
        assert_eq!(listing("h: ", &list, ", ", 17), "h: a1, and 4 more");
        // Not even one item and the count fit: only the count.
        assert_eq!(listing("h: ", &list, ", ", 16), "h: and 5 more");
    }

    #[test]
    fn a_multi_byte_character_at_the_limit_is_not_split() {
        // Each "é" is 2 bytes: 7 bytes of room would split the fourth one.
        let note = listing("", &items(&["éééééé"]), ", ", 10);
        assert_eq!(note, "ééé...");
        assert!(note.len() <= 10);
        assert_eq!(clipped("aéb", 2), "a", "no room for the ellipsis");
        assert_eq!(clipped("日本語のエラー", 8), "日...");
    }

    #[test]
    fn a_single_item_longer_than_the_limit_is_clipped() {
        let long = "x".repeat(2000);
        let note = listing(
            "1 change(s) failed: ",
            std::slice::from_ref(&long),
            "; ",
            1024,
        );
        assert_eq!(note.len(), 1024);
        assert!(note.starts_with("1 change(s) failed: xxx") && note.ends_with("x..."));
        let note = listing("h: ", &[long.clone(), "short".into()], "; ", 100);
        assert!(
            note.len() == 100 && note.ends_with("x...; and 1 more"),
            "{note}"
        );
    }

    #[test]
    fn zero_items_is_the_head_alone() {
        assert_eq!(listing("nothing", &[], ", ", 1024), "nothing");
        assert_eq!(listing(&"h".repeat(2000), &[], ", ", 1024).len(), 1024);
    }

    #[test]
    fn a_long_head_leaves_room_for_the_count() {
        let note = listing(&"h".repeat(50), &items(&["a", "b"]), ", ", 30);
        assert!(note.len() <= 30 && note.ends_with("and 2 more"), "{note}");
    }

    fn update(code: &str, from: u16, id: &str) -> ActionResult {
        ActionResult {
            action: Action::Update {
                code_id: code.into(),
                from,
                to: 30,
            },
            outcome: ActionOutcome::Done {
                request_id: Some(id.into()),
                created: None,
            },
        }
    }

    fn reset(code: &str, why: ResetReason, outcome: ActionOutcome) -> ActionResult {
        ActionResult {
            action: Action::Reset {
                code_id: code.into(),
                reason: why,
            },
            outcome,
        }
    }

    fn token(t: &str) -> ResetReason {
        ResetReason::Token(t.into())
    }

    fn done(id: &str) -> ActionOutcome {
        ActionOutcome::Done {
            request_id: Some(id.into()),
            created: None,
        }
    }

    #[test]
    fn one_event_per_kind_listing_every_code_in_order() {
        let results = [
            update("c2", 7, "r2"),
            update("c1", 7, "r1"),
            reset("c3", token("2026-11-22"), done("r3")),
            reset("c1", token("2026-11-22"), done("r4")),
            reset(
                "c4",
                token("2026-11-22"),
                ActionOutcome::Failed {
                    error: "ResetActiveCode failed after 1 attempt(s): HTTP 400".into(),
                    rate_limited: false,
                },
            ),
            reset(
                "c5",
                token("2026-11-22"),
                ActionOutcome::Unconfirmed {
                    error: "no response".into(),
                },
            ),
        ];
        let events = of_results(&results);
        let notes: Vec<_> = events
            .iter()
            .map(|e| (e.warning, e.reason, e.note.as_str()))
            .collect();
        assert_eq!(
            notes,
            [
                (
                    false,
                    CODE_UPDATED,
                    "updated 2 code(s): validPeriod 7 -> 30 days: c1 (X-Request-Id: r1), c2 (X-Request-Id: r2)"
                ),
                (
                    false,
                    CODE_RESET,
                    "reset 2 code(s) for token \"2026-11-22\": c1 (X-Request-Id: r4), c3 (X-Request-Id: r3)"
                ),
                (
                    true,
                    reason::REMOTE_ERROR,
                    "1 change(s) failed: c4: ResetActiveCode failed after 1 attempt(s): HTTP 400"
                ),
                (
                    true,
                    reason::RESET_UNCONFIRMED,
                    "1 reset(s) got no clear answer; the next sync checks whether they happened: c5: no response"
                ),
            ]
        );
        assert!(of_results(&[]).is_empty());
    }

    #[test]
    fn codes_changed_differently_each_say_how() {
        let expiry = ResetReason::Expiry {
            expire_time: "2026-11-23T00:00:00Z".parse().unwrap(),
        };
        let results = [
            update("c1", 7, "r1"),
            update("c2", 10, "r2"),
            reset("c3", token("t"), done("r3")),
            reset("c4", expiry, done("r4")),
        ];
        let events = of_results(&results);
        assert_eq!(
            events[0].note,
            "updated 2 code(s): c1 (validPeriod 7 -> 30 days, X-Request-Id: r1), c2 (validPeriod 10 -> 30 days, X-Request-Id: r2)"
        );
        assert_eq!(
            events[1].note,
            "reset 2 code(s): c3 (for token \"t\", X-Request-Id: r3), c4 (before expiry, X-Request-Id: r4)"
        );
    }

    #[test]
    fn confirmed_resets_are_one_event() {
        let time = "2026-11-23T00:00:00Z".parse().unwrap();
        let confirmed = |code: &str, token: Option<&str>| CompletedReset {
            code_id: code.into(),
            token: token.map(Into::into),
            time,
        };
        let event = of_confirmed(&[confirmed("c2", Some("t")), confirmed("c1", Some("t"))])
            .expect("an event");
        assert_eq!(
            (event.reason, event.note.as_str()),
            (
                CODE_RESET,
                "reset 2 code(s) for token \"t\" (confirmed after an interruption): c1, c2"
            )
        );
        let event = of_confirmed(&[confirmed("c1", Some("t")), confirmed("c2", None)]).unwrap();
        assert_eq!(
            event.note,
            "reset 2 code(s) (confirmed after an interruption): c1 (for token \"t\"), c2 (before expiry)"
        );
        assert!(of_confirmed(&[]).is_none());
    }

    #[test]
    fn a_large_sync_stays_within_the_limit() {
        let results: Vec<_> = (0..500)
            .map(|i| update(&format!("code-{i:04}"), 7, &format!("{i:032x}")))
            .collect();
        let events = of_results(&results);
        assert_eq!(events.len(), 1);
        let note = &events[0].note;
        assert!(note.len() <= NOTE_LIMIT, "{}", note.len());
        let listed = note.matches("X-Request-Id: ").count();
        let more: usize = note
            .rsplit_once(", and ")
            .and_then(|(_, rest)| rest.strip_suffix(" more"))
            .and_then(|n| n.parse().ok())
            .expect("ends with \"and N more\"");
        assert_eq!(listed + more, 500);
    }
}
