use super::*;
use crate::crd::{CodeStatus, ResetPolicy, TokenRollout};
use crate::secret::Secret;
use proptest::prelude::*;

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
    ActivationCodeStatus {
        codes: pairs
            .iter()
            .map(|(id, token)| CodeStatus {
                id: (*id).into(),
                room_id: None,
                valid_period: 0,
                expire_time: None,
                update_time: now(),
                last_reset: Some(LastReset {
                    token: Some((*token).into()),
                    time: now(),
                }),
            })
            .collect(),
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
                reset_token: Some(TokenRollout {
                    token: "t1".into(),
                    observed_at: now() - hours(2),
                }),
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
                reset_token: Some(TokenRollout {
                    token: "t1".into(),
                    observed_at: now() - hours(2),
                }),
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
                reset_token: Some(TokenRollout {
                    token: "t1".into(),
                    observed_at: now() - hours(2000),
                }),
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
fn an_expiry_reset_keeps_the_token_the_code_was_reset_for() {
    let previous = LastReset {
        token: Some("t1".into()),
        time: now(),
    };
    assert_eq!(
        next_last_reset(Some(&previous), None, now())
            .token
            .as_deref(),
        Some("t1")
    );
    assert_eq!(
        next_last_reset(Some(&previous), Some("t2"), now())
            .token
            .as_deref(),
        Some("t2")
    );
    assert_eq!(next_last_reset(None, None, now()).token, None);
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
    }
}

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
    let outcome = settle_intents(&intents, &remote, fp, now(), GRACE);
    assert_eq!(outcome.completed.len(), 1);
    assert_eq!(outcome.completed[0].code_id, "reset");
    assert_eq!(outcome.completed[0].token.as_deref(), Some("t"));
    // Left by an interrupted run, its call may still land: it waits, from now.
    assert_eq!(outcome.waiting.len(), 1);
    assert_eq!(outcome.waiting[0].code_id, "same");
    assert_eq!(outcome.waiting[0].unanswered_since, Some(now()));
    let abandoned: Vec<_> = outcome
        .abandoned
        .iter()
        .map(|i| i.code_id.as_str())
        .collect();
    assert_eq!(abandoned, ["deleted"]);
    // Once the grace has passed with no effect, it did not happen.
    let outcome = settle_intents(&outcome.waiting, &remote, fp, now() + GRACE, GRACE);
    assert_eq!(outcome.abandoned.len(), 1);

    // Fingerprints that cannot be compared (other credentials): a newer
    // update time counts as done, the same one as not done.
    let mut later = unchanged.clone();
    later.update_time = unchanged.update_time + hours(1);
    let outcome = settle_intents(
        &[intent("same", "other-key", unchanged.update_time)],
        &[later],
        |_, _| None,
        now(),
        GRACE,
    );
    assert_eq!(outcome.completed.len(), 1);
    let outcome = settle_intents(
        &[intent("same", "other-key", unchanged.update_time)],
        std::slice::from_ref(&unchanged),
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
        ..intent("a", "fp", now())
    };
    // Ten seconds after the lost answer the server may still apply it.
    let outcome = settle_intents(
        std::slice::from_ref(&lost),
        &remote,
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
        &remote,
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

/// The remote API, as a model: what update and reset do to a code.
fn apply(
    actions: &[Action],
    remote: &mut [ActiveCode],
    status: &mut ActivationCodeStatus,
    now: Timestamp,
) {
    for action in actions {
        let code = remote
            .iter_mut()
            .find(|c| c.active_code_id == action.code_id())
            .unwrap();
        match action {
            Action::Update { to, .. } => code.valid_period = *to,
            Action::Reset { reason, .. } => {
                code.active_code = Secret::new(format!("{}'", code.active_code.expose()));
                let entry = match status
                    .codes
                    .iter_mut()
                    .find(|c| c.id == code.active_code_id)
                {
                    Some(entry) => entry,
                    None => {
                        status.codes.push(CodeStatus {
                            id: code.active_code_id.clone(),
                            room_id: None,
                            valid_period: 0,
                            expire_time: None,
                            update_time: now,
                            last_reset: None,
                        });
                        status.codes.last_mut().unwrap()
                    }
                };
                let token = match reason {
                    ResetReason::Token(t) => Some(t.as_str()),
                    ResetReason::Expiry { .. } => None,
                };
                entry.last_reset = Some(next_last_reset(entry.last_reset.as_ref(), token, now));
            }
        }
        code.update_time = now;
        code.expire_time =
            (code.valid_period > 0).then(|| now + hours(24 * i64::from(code.valid_period)));
    }
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
    )
        .prop_map(|(vp, token, window_hours, room)| {
            // A valid spec: the window is shorter than the validity.
            let window = window_hours
                .filter(|h| vp == 0 || *h < 24 * u64::from(vp))
                .map(|h| format!("{h}h"));
            let mut s = with_reset(spec(vp), token, window.as_deref());
            s.room_id = room.map(Into::into);
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
        // Only selected codes are touched, each at most one reset and one update.
        for action in &actions {
            let code = remote.iter().find(|c| c.active_code_id == action.code_id()).unwrap();
            prop_assert!(spec.selects(code.room_id.as_deref(), &code.active_code_id));
        }
        let mut per_code = HashMap::new();
        for a in &actions {
            *per_code.entry((a.code_id().to_owned(), matches!(a, Action::Reset { .. }))).or_insert(0) += 1;
        }
        prop_assert!(per_code.values().all(|&n| n == 1));

        let applied_at = now() + SignedDuration::from_secs(1);
        apply(&actions, &mut remote, &mut status, applied_at);
        for code in select(&spec, &remote) {
            prop_assert_eq!(code.valid_period, spec.valid_period);
        }
        prop_assert_eq!(plan(&spec, &status, &remote, applied_at), vec![]);
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
