use super::*;
use crate::crd::{CodeStatus, LastReset, ResetIntent, ResetPolicy, TokenRollout};
use crate::metastudio::Listing;
use crate::secret::Secret;
use proptest::prelude::*;
use std::collections::HashMap;

/// The plan's actions for a status (its ledger read from it).
fn plan(
    spec: &ActivationCodeSpec,
    status: &ActivationCodeStatus,
    remote: &[ActiveCode],
    now: Timestamp,
) -> Vec<Action> {
    super::plan(spec, &Ledger::of(status), status, remote, true, now).actions
}

fn complete(remote: &[ActiveCode]) -> Listing {
    Listing {
        codes: remote.to_vec(),
        complete: true,
    }
}

fn rollout_at(token: &str, observed_at: Timestamp) -> TokenRollout {
    TokenRollout {
        token: token.into(),
        observed_at,
        done: 0,
        total: 0,
        progress: String::new(),
        batch_started_at: None,
        batch_resets: 0,
        next_batch_time: None,
    }
}

fn now() -> Timestamp {
    "2026-11-22T12:00:00Z".parse().unwrap()
}

fn hours(h: i64) -> SignedDuration {
    SignedDuration::from_hours(h)
}

fn code(
    id: &str,
    room: Option<&str>,
    valid_period: u16,
    expires_in_hours: Option<i64>,
) -> ActiveCode {
    ActiveCode {
        active_code_id: id.into(),
        active_code: Secret::new(format!("V-{id}")),
        robot_id: "robot".into(),
        room_id: room.map(Into::into),
        valid_period,
        expire_time: expires_in_hours.map(|h| now() + hours(h)),
        create_time: now() - hours(1000),
        update_time: now() - hours(10),
    }
}

fn spec(valid_period: u16) -> ActivationCodeSpec {
    serde_json::from_value(serde_json::json!({"robotId": "robot", "validPeriod": valid_period}))
        .unwrap()
}

fn with_reset(
    mut s: ActivationCodeSpec,
    token: Option<&str>,
    window: Option<&str>,
) -> ActivationCodeSpec {
    s.reset = Some(ResetPolicy {
        token: token.map(Into::into),
        before_expiry: window.map(|w| w.parse().unwrap()),
        clean_auth_credential: true,
        ..Default::default()
    });
    s
}

fn status_with_token(pairs: &[(&str, &str)]) -> ActivationCodeStatus {
    let mut status = ActivationCodeStatus::default();
    let mut ledger = Ledger::default();
    for (id, token) in pairs {
        ledger.record(id, token);
    }
    ledger.store(&mut status);
    status
}

/// A status as an operator version before the ledger wrote it.
fn legacy_status_with_token(id: &str, token: &str) -> ActivationCodeStatus {
    ActivationCodeStatus {
        codes: vec![CodeStatus {
            id: id.into(),
            room_id: None,
            valid_period: 0,
            expire_time: None,
            update_time: now(),
            last_reset: Some(LastReset {
                token: Some(token.into()),
                time: now(),
            }),
        }],
        ..Default::default()
    }
}

fn update(id: &str, from: u16, to: u16) -> Action {
    Action::Update {
        code_id: id.into(),
        from,
        to,
    }
}

fn token_reset(id: &str, token: &str) -> Action {
    Action::Reset {
        code_id: id.into(),
        reason: ResetReason::Token(token.into()),
    }
}

/// Name, spec, status, remote codes, expected plan.
type Case = (
    &'static str,
    ActivationCodeSpec,
    ActivationCodeStatus,
    Vec<ActiveCode>,
    Vec<Action>,
);

#[test]
fn table() {
    let none = ActivationCodeStatus::default();
    let cases: Vec<Case> = vec![
        (
            "in sync: nothing",
            spec(3),
            none.clone(),
            vec![code("a", None, 3, Some(40))],
            vec![],
        ),
        (
            "valid period differs: update",
            spec(10),
            none.clone(),
            vec![code("a", None, 3, Some(40)), code("b", None, 10, Some(200))],
            vec![update("a", 3, 10)],
        ),
        (
            "to permanent",
            spec(0),
            none.clone(),
            vec![code("a", None, 3, Some(40))],
            vec![update("a", 3, 0)],
        ),
        (
            "new token resets every code once",
            with_reset(spec(3), Some("t1"), None),
            none.clone(),
            vec![code("a", None, 3, Some(40)), code("b", None, 3, Some(40))],
            vec![token_reset("a", "t1"), token_reset("b", "t1")],
        ),
        (
            "token already applied: nothing",
            with_reset(spec(3), Some("t1"), None),
            status_with_token(&[("a", "t1")]),
            vec![code("a", None, 3, Some(40))],
            vec![],
        ),
        (
            "token applied by an earlier operator version: nothing",
            with_reset(spec(3), Some("t1"), None),
            legacy_status_with_token("a", "t1"),
            vec![code("a", None, 3, Some(40))],
            vec![],
        ),
        (
            "changed token: reset again",
            with_reset(spec(3), Some("t2"), None),
            status_with_token(&[("a", "t1")]),
            vec![code("a", None, 3, Some(40))],
            vec![token_reset("a", "t2")],
        ),
        (
            "reset comes before update of the same code",
            with_reset(spec(5), Some("t1"), None),
            none.clone(),
            vec![code("a", None, 3, Some(40))],
            vec![token_reset("a", "t1"), update("a", 3, 5)],
        ),
        (
            "inside beforeExpiry and expired: reset; outside and permanent: not",
            with_reset(spec(3), None, Some("24h")),
            none.clone(),
            vec![
                code("soon", None, 3, Some(23)),
                code("gone", None, 3, Some(-5)),
                code("later", None, 3, Some(25)),
                code("forever", None, 3, None),
            ],
            vec![
                Action::Reset {
                    code_id: "soon".into(),
                    reason: ResetReason::Expiry {
                        expire_time: now() + hours(23),
                    },
                },
                Action::Reset {
                    code_id: "gone".into(),
                    reason: ResetReason::Expiry {
                        expire_time: now() - hours(5),
                    },
                },
            ],
        ),
        (
            "an update restarts the window: no reset before expiry",
            with_reset(spec(5), None, Some("24h")),
            none.clone(),
            vec![code("soon", None, 3, Some(1))],
            vec![update("soon", 3, 5)],
        ),
        (
            "codes created after the token was first seen are fresh: not reset",
            with_reset(spec(3), Some("t1"), None),
            ActivationCodeStatus {
                reset_token: Some(rollout_at("t1", now() - hours(2))),
                ..Default::default()
            },
            vec![code("old", None, 3, Some(40)), {
                let mut new = code("new", None, 3, Some(40));
                new.create_time = now() - hours(1);
                new
            }],
            vec![token_reset("old", "t1")],
        ),
        (
            "a code created within the clock-skew margin is reset all the same",
            with_reset(spec(3), Some("t1"), None),
            ActivationCodeStatus {
                reset_token: Some(rollout_at("t1", now() - hours(2))),
                ..Default::default()
            },
            vec![{
                let mut close = code("close", None, 3, Some(40));
                close.create_time = now() - hours(2) + SignedDuration::from_mins(1);
                close
            }],
            vec![token_reset("close", "t1")],
        ),
        (
            "a token seen before under another value is new again",
            with_reset(spec(3), Some("t2"), None),
            ActivationCodeStatus {
                reset_token: Some(rollout_at("t1", now() - hours(2000))),
                ..status_with_token(&[("a", "t1")])
            },
            vec![code("a", None, 3, Some(40))],
            vec![token_reset("a", "t2")],
        ),
        (
            "a token reset covers a due expiry reset: one reset",
            with_reset(spec(3), Some("t"), Some("24h")),
            none.clone(),
            vec![code("soon", None, 3, Some(1))],
            vec![token_reset("soon", "t")],
        ),
    ];
    for (name, spec, status, remote, expected) in cases {
        assert_eq!(plan(&spec, &status, &remote, now()), expected, "{name}");
    }
}

fn renewing(window: &str) -> ActivationCodeSpec {
    let mut s = spec(3);
    s.renew_before_expiry = Some(window.parse().unwrap());
    s
}

fn renew(id: &str, valid_period: u16, expires_in_hours: i64) -> Action {
    Action::Renew {
        code_id: id.into(),
        valid_period,
        expire_time: now() + hours(expires_in_hours),
    }
}

#[test]
fn codes_near_expiry_are_renewed_with_their_own_validity() {
    let remote = vec![
        code("soon", None, 3, Some(23)),
        code("gone", None, 3, Some(-5)),
        code("later", None, 3, Some(25)),
        code("forever", None, 0, None),
        code("other", None, 2, Some(1)),
    ];
    let mut expected = vec![renew("soon", 3, 23), renew("gone", 3, -5)];
    // A code whose validPeriod differs gets the update, which restarts
    // its window anyway; a permanent one is never renewed.
    expected.extend([update("forever", 0, 3), update("other", 2, 3)]);
    let none = ActivationCodeStatus::default();
    assert_eq!(plan(&renewing("24h"), &none, &remote, now()), expected);
    assert_eq!(renew("soon", 3, 23).as_drift().field, "expiry");
}

fn rolling(max_codes: serde_json::Value, window: Option<&str>) -> ActivationCodeSpec {
    let mut s = with_reset(spec(3), Some("t"), window);
    s.reset.as_mut().unwrap().rollout = Some(
        serde_json::from_value(serde_json::json!({"maxCodes": max_codes, "interval": "1h"}))
            .unwrap(),
    );
    s
}

fn five_codes() -> Vec<ActiveCode> {
    (1..=5)
        .map(|i| code(&format!("c{i}"), None, 3, Some(400)))
        .collect()
}

#[test]
fn a_rollout_resets_one_batch_per_interval_the_first_at_once() {
    let s = rolling(serde_json::json!(2), None);
    let remote = five_codes();
    let first = super::plan(
        &s,
        &Ledger::default(),
        &ActivationCodeStatus::default(),
        &remote,
        true,
        now(),
    );
    assert_eq!(
        first.actions,
        vec![token_reset("c1", "t"), token_reset("c2", "t")]
    );
    assert_eq!(first.deferred, 3);
    let rollout = first.rollout.clone().unwrap();
    assert_eq!(
        (rollout.done, rollout.total, rollout.progress.as_str()),
        (0, 5, "0/5")
    );
    assert_eq!(rollout.batch_started_at, Some(now()));
    assert_eq!(rollout.next_batch_time, Some(now() + hours(1)));

    // Both done, half an hour later: the batch is used up.
    let mut status = status_with_token(&[("c1", "t"), ("c2", "t")]);
    let mut recorded = rollout;
    recorded.batch_resets = 2;
    status.reset_token = Some(recorded);
    let later = now() + SignedDuration::from_mins(30);
    let waiting = super::plan(&s, &Ledger::of(&status), &status, &remote, true, later);
    assert_eq!(waiting.actions, vec![]);
    assert_eq!(waiting.deferred, 3);
    assert_eq!(waiting.rollout.as_ref().unwrap().progress, "2/5");

    // An hour after the first batch: the next one.
    let next = super::plan(
        &s,
        &Ledger::of(&status),
        &status,
        &remote,
        true,
        now() + hours(1),
    );
    assert_eq!(
        next.actions,
        vec![token_reset("c3", "t"), token_reset("c4", "t")]
    );
    assert_eq!(
        next.rollout.unwrap().batch_started_at,
        Some(now() + hours(1))
    );
}

#[test]
fn a_percentage_sizes_batches_and_a_code_due_before_expiry_is_not_kept_waiting() {
    let s = rolling(serde_json::json!("20%"), Some("24h"));
    let mut remote = five_codes();
    remote[4].expire_time = Some(now() + hours(2));
    let planned = super::plan(
        &s,
        &Ledger::default(),
        &ActivationCodeStatus::default(),
        &remote,
        true,
        now(),
    );
    // 20% of 5 is one code per batch, and c5 needs a reset now anyway: it
    // gets the token's rather than a second one later.
    assert_eq!(
        planned.actions,
        vec![token_reset("c1", "t"), token_reset("c5", "t")]
    );
    assert_eq!(planned.deferred, 3);
}

#[test]
fn a_token_rollout_starts_when_the_token_changes_and_then_stays() {
    let t1 = with_reset(spec(3), Some("t1"), None);
    let started = token_rollout(&t1, None, now()).unwrap();
    assert_eq!((started.token.as_str(), started.observed_at), ("t1", now()));
    let later = now() + hours(5);
    assert_eq!(
        token_rollout(&t1, Some(&started), later),
        Some(started.clone())
    );
    let t2 = with_reset(spec(3), Some("t2"), None);
    let next = token_rollout(&t2, Some(&started), later).unwrap();
    assert_eq!((next.token.as_str(), next.observed_at), ("t2", later));
    assert_eq!(token_rollout(&spec(3), Some(&started), later), None);
}

#[test]
fn codes_outside_the_selection_are_left_alone() {
    let remote = vec![
        code("a", Some("lobby"), 3, Some(40)),
        code("b", Some("hall"), 3, Some(40)),
        code("c", None, 3, Some(40)),
    ];
    let mut s = with_reset(spec(9), Some("t"), None);
    s.room_id = Some("lobby".into());
    let ids: Vec<_> = plan(&s, &ActivationCodeStatus::default(), &remote, now())
        .iter()
        .map(|a| a.code_id().to_owned())
        .collect();
    assert_eq!(ids, ["a", "a"]);

    let mut s = spec(9);
    s.active_code_ids = Some(vec!["b".into(), "c".into(), "missing".into()]);
    let ids: Vec<_> = plan(&s, &ActivationCodeStatus::default(), &remote, now())
        .iter()
        .map(|a| a.code_id().to_owned())
        .collect();
    assert_eq!(ids, ["b", "c"]);

    let mut other_robot = code("x", None, 3, Some(40));
    other_robot.robot_id = "another".into();
    assert!(
        plan(
            &spec(9),
            &ActivationCodeStatus::default(),
            &[other_robot],
            now()
        )
        .is_empty()
    );
}

#[test]
fn drift_describes_the_action() {
    let drift = update("a", 3, 10).as_drift();
    assert_eq!(
        (
            drift.field.as_str(),
            drift.observed.as_str(),
            drift.desired.as_str()
        ),
        ("validPeriod", "3", "10")
    );
    assert_eq!(token_reset("a", "t").as_drift().field, "reset");
}

fn intent(id: &str, fingerprint: &str, previous_update_time: Timestamp) -> ResetIntent {
    ResetIntent {
        code_id: id.into(),
        token: Some("t".into()),
        previous_update_time,
        previous_fingerprint: fingerprint.into(),
        recorded_at: now(),
        unanswered_since: None,
        call_window_seconds: Some(WINDOW_SECONDS),
    }
}

/// The call window of the intents of [`intent`].
const WINDOW_SECONDS: u32 = 100;
const WINDOW: SignedDuration = SignedDuration::from_secs(WINDOW_SECONDS as i64);

#[test]
fn settles_intents_by_fingerprint_then_by_update_time() {
    let unchanged = code("same", None, 3, Some(40));
    let mut reset = code("reset", None, 3, Some(40));
    reset.active_code = Secret::new("NEW");
    // Same second as before: only the fingerprint can tell.
    let fp = |i: &ResetIntent, c: &ActiveCode| {
        Some(i.previous_fingerprint != format!("fp-{}", c.active_code.expose()))
    };
    let remote = vec![unchanged.clone(), reset.clone()];
    let intents = vec![
        intent("same", "fp-V-same", unchanged.update_time),
        intent("reset", "fp-V-reset", reset.update_time),
        intent("deleted", "fp-x", now()),
    ];
    let outcome = settle_intents(&intents, &complete(&remote), fp, now(), GRACE);
    assert_eq!(outcome.completed.len(), 1);
    assert_eq!(outcome.completed[0].code_id, "reset");
    assert_eq!(outcome.completed[0].token.as_deref(), Some("t"));
    // Left by another run (in progress elsewhere, or interrupted), its
    // calls may still be sent: it waits, from now, for its window.
    assert_eq!(outcome.waiting.len(), 1);
    assert_eq!(outcome.waiting[0].code_id, "same");
    assert_eq!(outcome.waiting[0].unanswered_since, Some(now()));
    assert_eq!(outcome.waiting[0].call_window_seconds, Some(WINDOW_SECONDS));
    // A code the listing lacks: the intent is parked, not abandoned.
    assert!(outcome.abandoned.is_empty());
    assert_eq!(outcome.parked.len(), 1);
    assert_eq!(outcome.parked[0].code_id, "deleted");
    // Once the window and the grace have passed with no effect, it did not
    // happen.
    let outcome = settle_intents(
        &outcome.waiting,
        &complete(&remote),
        fp,
        now() + WINDOW + GRACE,
        GRACE,
    );
    assert_eq!(outcome.abandoned.len(), 1);

    // Fingerprints that cannot be compared (other credentials): a newer
    // update time counts as done, the same one as not done.
    let mut later = unchanged.clone();
    later.update_time = unchanged.update_time + hours(1);
    let outcome = settle_intents(
        &[intent("same", "other-key", unchanged.update_time)],
        &complete(&[later]),
        |_, _| None,
        now(),
        GRACE,
    );
    assert_eq!(outcome.completed.len(), 1);
    let outcome = settle_intents(
        &[intent("same", "other-key", unchanged.update_time)],
        &complete(std::slice::from_ref(&unchanged)),
        |_, _| None,
        now(),
        GRACE,
    );
    assert_eq!(outcome.waiting.len(), 1);
}

const GRACE: SignedDuration = SignedDuration::from_secs(60);

#[test]
fn a_reset_that_lost_its_answer_waits_out_the_grace_before_it_is_retried() {
    let remote = vec![code("a", None, 3, Some(40))];
    let unchanged = |_: &ResetIntent, _: &ActiveCode| Some(false);
    let lost = ResetIntent {
        unanswered_since: Some(now() - SignedDuration::from_secs(10)),
        call_window_seconds: None,
        ..intent("a", "fp", now())
    };
    // Ten seconds after the lost answer the server may still apply it.
    let outcome = settle_intents(
        std::slice::from_ref(&lost),
        &complete(&remote),
        unchanged,
        now(),
        GRACE,
    );
    assert_eq!(outcome.waiting, vec![lost.clone()]);
    let spec = with_reset(spec(3), Some("t"), Some("2000h"));
    let status = ActivationCodeStatus {
        pending_resets: outcome.waiting,
        ..Default::default()
    };
    assert_eq!(
        plan(&spec, &status, &remote, now()),
        vec![],
        "no second reset while the first is in doubt"
    );
    // After the grace it did not happen: abandoned, and planned again.
    let later = now() + GRACE;
    let outcome = settle_intents(
        std::slice::from_ref(&lost),
        &complete(&remote),
        unchanged,
        later,
        GRACE,
    );
    assert_eq!(outcome.abandoned, vec![lost]);
    assert_eq!(
        plan(&spec, &ActivationCodeStatus::default(), &remote, later),
        vec![token_reset("a", "t")]
    );
}

/// Where an unsettled intent stands after one settle.
#[derive(Debug, PartialEq, Eq)]
enum Stands {
    /// Waiting, in doubt from this time with this window.
    Waits(Timestamp, Option<u32>),
    Abandoned,
}

fn stands(intent: &ResetIntent, at: Timestamp) -> Stands {
    let remote = [code(&intent.code_id, None, 3, Some(40))];
    let outcome = settle_intents(
        std::slice::from_ref(intent),
        &complete(&remote),
        |_, _| Some(false),
        at,
        GRACE,
    );
    match (&outcome.waiting[..], &outcome.abandoned[..]) {
        ([waiting], []) => Stands::Waits(
            waiting.unanswered_since.unwrap(),
            waiting.call_window_seconds,
        ),
        ([], [_]) => Stands::Abandoned,
        _ => panic!("{outcome:?}"),
    }
}

#[test]
fn a_batch_in_progress_elsewhere_is_waited_out_for_its_window_then_the_grace() {
    let secs = SignedDuration::from_secs;
    let recorded = intent("a", "fp", now());
    let seen = ResetIntent {
        unanswered_since: Some(now()),
        ..recorded.clone()
    };
    let lost = ResetIntent {
        unanswered_since: Some(now()),
        call_window_seconds: None,
        ..recorded.clone()
    };
    let legacy = ResetIntent {
        call_window_seconds: None,
        ..recorded.clone()
    };
    let ended = ResetIntent {
        call_window_seconds: Some(0),
        ..recorded.clone()
    };
    // (intent, settled at, where it stands)
    let table = [
        // First seen now: in doubt from now, whatever the writer's clock
        // said when it recorded it (recordedAt is not read).
        (&recorded, now(), Stands::Waits(now(), Some(WINDOW_SECONDS))),
        (
            &ResetIntent {
                recorded_at: now() - hours(1000),
                ..recorded.clone()
            },
            now(),
            Stands::Waits(now(), Some(WINDOW_SECONDS)),
        ),
        // 200 resets at 3 a second outlast a 60 s grace: a batch still
        // going after the grace is not abandoned (the double reset of two
        // live reconcilers), only once its window has passed too.
        (
            &seen,
            now() + GRACE,
            Stands::Waits(now(), Some(WINDOW_SECONDS)),
        ),
        (
            &seen,
            now() + WINDOW + GRACE - secs(1),
            Stands::Waits(now(), Some(WINDOW_SECONDS)),
        ),
        (&seen, now() + WINDOW + GRACE, Stands::Abandoned),
        // An answer lost by this run: its call is over, the grace only.
        (&lost, now() + GRACE - secs(1), Stands::Waits(now(), None)),
        (&lost, now() + GRACE, Stands::Abandoned),
        // Recorded by an earlier version (no window): a full batch's.
        (
            &legacy,
            now(),
            Stands::Waits(now(), Some(window::LEGACY_CALL_WINDOW_SECONDS)),
        ),
        // A run known to have ended (the status file's lock): the grace only.
        (&ended, now(), Stands::Waits(now(), Some(0))),
    ];
    for (i, (intent, at, expected)) in table.into_iter().enumerate() {
        assert_eq!(stands(intent, at), expected, "row {i}: {intent:?} at {at}");
    }
    // What a reader recorded at its first sight is what it waits out next
    // time: the window is not restarted.
    let Stands::Waits(since, window) = stands(&recorded, now()) else {
        unreachable!()
    };
    let again = ResetIntent {
        unanswered_since: Some(since),
        call_window_seconds: window,
        ..recorded
    };
    assert_eq!(stands(&again, now() + WINDOW + GRACE), Stands::Abandoned);
}

/// The remote API and the engine, as a model: what update and reset do to
/// a code, and creates and deletes to the room (a created code is this
/// resource's, fresh for the spec's token).
fn apply(
    spec: &ActivationCodeSpec,
    actions: &[Action],
    remote: &mut Vec<ActiveCode>,
    status: &mut ActivationCodeStatus,
    now: Timestamp,
) {
    let mut ledger = Ledger::of(status);
    for action in actions {
        let code = match action {
            Action::Create {
                index,
                room_id,
                valid_period,
            } => {
                let mut new = code(&format!("new-{index}"), Some(room_id), *valid_period, None);
                new.create_time = now;
                let token = spec.reset.as_ref().and_then(|r| r.token.as_deref());
                ledger.adopt(&new.active_code_id, token);
                remote.push(new);
                remote.last_mut().unwrap()
            }
            Action::Delete { code_id } => {
                remote.retain(|c| &c.active_code_id != code_id);
                ledger.forget(code_id);
                continue;
            }
            _ => remote
                .iter_mut()
                .find(|c| c.active_code_id == action.code_id())
                .unwrap(),
        };
        match action {
            Action::Update { to, .. } => code.valid_period = *to,
            Action::Reset {
                reason: ResetReason::Token(token),
                ..
            } => {
                code.active_code = Secret::new(format!("{}'", code.active_code.expose()));
                ledger.record(&code.active_code_id, token);
            }
            Action::Reset { .. } => {
                code.active_code = Secret::new(format!("{}'", code.active_code.expose()));
            }
            _ => {}
        }
        code.update_time = now;
        code.expire_time =
            (code.valid_period > 0).then(|| now + hours(24 * i64::from(code.valid_period)));
    }
    ledger.store(status);
}

fn arb_code(index: usize) -> impl Strategy<Value = ActiveCode> {
    (
        0u16..30,
        proptest::option::of(-100i64..1000),
        proptest::option::of(prop_oneof![Just("lobby"), Just("hall")]),
    )
        .prop_map(move |(vp, expires, room)| {
            let expires = if vp == 0 { None } else { expires };
            code(&format!("c{index}"), room, vp, expires)
        })
}

fn arb_remote() -> impl Strategy<Value = Vec<ActiveCode>> {
    (0usize..12).prop_flat_map(|n| (0..n).map(arb_code).collect::<Vec<_>>())
}

fn arb_spec() -> impl Strategy<Value = ActivationCodeSpec> {
    (
        0u16..30,
        proptest::option::of(prop_oneof![Just("t1"), Just("t2")]),
        proptest::option::of(1u64..200),
        proptest::option::of(prop_oneof![Just("lobby"), Just("hall")]),
        proptest::option::of((0u32..10, any::<bool>())),
    )
        .prop_map(|(vp, token, window_hours, room, count)| {
            // A valid spec: the window is shorter than the validity, a
            // count has a room.
            let window = window_hours
                .filter(|h| vp == 0 || *h < 24 * u64::from(vp))
                .map(|h| format!("{h}h"));
            let mut s = with_reset(spec(vp), token, window.as_deref());
            s.room_id = room.map(Into::into);
            if let (Some((count, delete)), Some(_)) = (count, room) {
                s.count = Some(count);
                if delete {
                    s.surplus = crate::crd::SurplusPolicy::Delete;
                }
            }
            s
        })
}

fn arb_status() -> impl Strategy<Value = ActivationCodeStatus> {
    proptest::collection::vec((0usize..12, prop_oneof![Just("t1"), Just("t2")]), 0..6).prop_map(
        |pairs| {
            let owned: Vec<(String, &str)> = pairs
                .into_iter()
                .map(|(i, t)| (format!("c{i}"), t))
                .collect();
            let mut seen = std::collections::HashSet::new();
            let unique: Vec<(&str, &str)> = owned
                .iter()
                .filter(|(id, _)| seen.insert(id.clone()))
                .map(|(id, t)| (id.as_str(), *t))
                .collect();
            status_with_token(&unique)
        },
    )
}

proptest! {
    // A fixed seed keeps the suite deterministic; raise `cases` locally to explore more.
    #![proptest_config(ProptestConfig {
        cases: 1024,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x4d53_2026),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn applying_a_plan_converges_and_replanning_is_empty(
        spec in arb_spec(),
        mut status in arb_status(),
        mut remote in arb_remote(),
    ) {
        let actions = plan(&spec, &status, &remote, now());
        // Only selected codes are touched, each at most one reset and one
        // update, or one delete (and nothing else).
        for action in actions.iter().filter(|a| !matches!(a, Action::Create { .. })) {
            let code = remote.iter().find(|c| c.active_code_id == action.code_id()).unwrap();
            prop_assert!(spec.selects(code.room_id.as_deref(), &code.active_code_id));
        }
        let mut per_code = HashMap::new();
        for a in actions.iter().filter(|a| !matches!(a, Action::Create { .. })) {
            let kind = matches!(a, Action::Reset { .. });
            *per_code.entry((a.code_id().to_owned(), kind)).or_insert(0) += 1;
        }
        prop_assert!(per_code.values().all(|&n| n == 1));
        // The count is met exactly: creates only up to it, deletes only
        // down to it, and only with spec.surplus Delete.
        let room = select(&spec, &remote).len();
        let creates = actions.iter().filter(|a| matches!(a, Action::Create { .. })).count();
        let deletes = actions.iter().filter(|a| matches!(a, Action::Delete { .. })).count();
        match spec.count.map(|c| c as usize) {
            Some(count) => {
                prop_assert_eq!(creates, count.saturating_sub(room));
                let surplus = room.saturating_sub(count);
                let delete = spec.surplus == crate::crd::SurplusPolicy::Delete;
                prop_assert_eq!(deletes, if delete { surplus } else { 0 });
            }
            None => prop_assert_eq!(creates + deletes, 0),
        }

        let applied_at = now() + SignedDuration::from_secs(1);
        apply(&spec, &actions, &mut remote, &mut status, applied_at);
        for code in select(&spec, &remote) {
            prop_assert_eq!(code.valid_period, spec.valid_period);
        }
        prop_assert_eq!(plan(&spec, &status, &remote, applied_at), vec![]);
    }

    /// A writer records a batch at real time 0 with a call window and
    /// sends nothing after it (a call cut at its end counts as an answer
    /// lost then); the server may apply a call until the grace after that.
    /// A reader first sees the intent at any later moment, on a clock of
    /// its own (any offset from the writer's, whose recordedAt is
    /// anything), and settles it again at any later moments: it never
    /// abandons the intent while a reset could still happen, and never
    /// waits beyond its own first sight plus window plus grace.
    #[test]
    fn a_reader_never_gives_up_on_an_intent_its_writer_can_still_send(
        window_secs in 0u32..=window::MAX_CALL_WINDOW_SECONDS,
        grace_secs in 0i64..600,
        writer_offset in -86_400i64..86_400,
        reader_offset in -86_400i64..86_400,
        first_sight in 0i64..10_000,
        later in proptest::collection::vec(0i64..3_000, 1..8),
    ) {
        let secs = SignedDuration::from_secs;
        let grace = secs(grace_secs);
        let real_zero = now();
        let reader = |real: i64| real_zero + secs(real + reader_offset);
        let recorded = ResetIntent {
            recorded_at: real_zero + secs(writer_offset),
            call_window_seconds: Some(window_secs),
            ..intent("a", "fp", now())
        };
        let last_apply = i64::from(window_secs) + grace_secs;
        let remote = [code("a", None, 3, Some(40))];
        let settle = |intent: &ResetIntent, real: i64| {
            settle_intents(
                std::slice::from_ref(intent),
                &complete(&remote),
                |_, _| Some(false),
                reader(real),
                grace,
            )
        };
        let mut current = recorded;
        let mut real = first_sight;
        for step in std::iter::once(0).chain(later) {
            real += step;
            let outcome = settle(&current, real);
            if let [abandoned] = &outcome.abandoned[..] {
                prop_assert!(real >= last_apply, "abandoned at {real}, applicable until {last_apply}");
                prop_assert_eq!(abandoned.code_id.as_str(), "a");
                break;
            }
            prop_assert!(real < first_sight + last_apply, "still waiting at {real}");
            current = outcome.waiting[0].clone();
        }
    }

    #[test]
    fn observing_the_same_state_twice_plans_the_same(
        spec in arb_spec(),
        status in arb_status(),
        remote in arb_remote(),
    ) {
        prop_assert_eq!(plan(&spec, &status, &remote, now()), plan(&spec, &status, &remote, now()));
    }
}
