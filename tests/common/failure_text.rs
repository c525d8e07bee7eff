//! Checks on what the engine tells a user about a failed call: an answered
//! failure names the `X-Request-Id` the server sent with it, and a call
//! that got no answer says its outcome is unknown.

use metastudio_operator::simulator::Simulator;

/// What [`check_failure_text`] found in one message.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Answered failures (HTTP status and request id).
    pub answered: usize,
    /// Failures with no answer (outcome unknown).
    pub unanswered: usize,
}

/// Checks every error in `text` (each starts `<Operation> failed after N
/// attempt(s): `): an HTTP failure carries `(X-Request-Id: ID)` where ID is
/// the id the simulator sent with an error answer of that very status; any
/// other failure says the outcome is unknown and claims no request id.
pub fn check_failure_text(text: &str, sim: &Simulator) -> Found {
    let mut found = Found::default();
    let segments: Vec<&str> = text.split(" failed after ").skip(1).collect();
    assert!(
        !segments.is_empty(),
        "a failure names no failed call: {text}"
    );
    for segment in segments {
        let (_, kind) = segment
            .split_once(" attempt(s): ")
            .unwrap_or_else(|| panic!("no attempt count in {text:?}"));
        if let Some(rest) = kind.strip_prefix("HTTP ") {
            let status: u16 = rest[..3]
                .parse()
                .unwrap_or_else(|_| panic!("no status in {text:?}"));
            let id = request_ids(kind)
                .next()
                .unwrap_or_else(|| panic!("an HTTP failure without its request id: {text:?}"));
            assert_eq!(
                sim.failed_answer_status(id),
                Some(status),
                "the request id {id} is not the one sent with this HTTP {status}: {text:?}"
            );
            found.answered += 1;
        } else {
            assert!(
                kind.contains("whether the server applied the call is unknown"),
                "a failure without an answer must say its outcome is unknown: {text:?}"
            );
            assert_eq!(
                request_ids(kind).next(),
                None,
                "no answer, so no request id: {text:?}"
            );
            found.unanswered += 1;
        }
    }
    found
}

/// Checks the request ids of the changes an event reports as made: each
/// one the simulator sent with a successful answer.
pub fn check_success_note(note: &str, sim: &Simulator) {
    let ids: Vec<&str> = request_ids(note).collect();
    if note.contains("(confirmed after an interruption)") {
        // Their own answers were lost: they were found done by listing.
        assert!(ids.is_empty(), "no answer, so no request id: {note:?}");
        return;
    }
    assert!(!ids.is_empty(), "changes name their request ids: {note:?}");
    for id in ids {
        assert!(
            sim.issued_request_id(id),
            "the simulator never sent request id {id}: {note:?}"
        );
        assert_eq!(
            sim.failed_answer_status(id),
            None,
            "a change reported with an error's request id: {note:?}"
        );
    }
}

/// The values of every `X-Request-Id: VALUE)` in `text`, in order.
fn request_ids(text: &str) -> impl Iterator<Item = &str> {
    text.split("X-Request-Id: ")
        .skip(1)
        .map(|rest| rest.split_once(')').map_or(rest, |(id, _)| id))
}
