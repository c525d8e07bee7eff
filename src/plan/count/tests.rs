//! spec.count as a table and as properties: a model of the service (a
//! room whose creates and deletes may land late) and of the engine's use
//! of the pure parts (settle, plan, record, apply, write back), driven
//! through every interleaving proptest finds of syncs, answers lost,
//! garbled or late, crashes, incomplete listings, foreign deletes and time.

use super::*;
use crate::crd::{ActivationCodeStatus, CreateIntent, DeleteIntent};
use crate::metastudio::Listing;
use crate::plan::{Action, Adopted, plan as plan_all, settle_creates, settle_deletes};
use crate::secret::Secret;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

const ROBOT: &str = "robot";
const ROOM: &str = "lobby";
/// The call window of every batch, and the grace after it.
const WINDOW: u32 = 10;
const GRACE: SignedDuration = SignedDuration::from_secs(5);

fn t0() -> Timestamp {
    "2026-12-01T00:00:00Z".parse().unwrap()
}

fn code(id: &str, created: Timestamp) -> ActiveCode {
    ActiveCode {
        active_code_id: id.into(),
        active_code: Secret::new(format!("V-{id}")),
        robot_id: ROBOT.into(),
        room_id: Some(ROOM.into()),
        valid_period: 7,
        expire_time: Some(created + SignedDuration::from_hours(24 * 7)),
        create_time: created,
        update_time: created,
    }
}

fn counted(count: u32, surplus: SurplusPolicy) -> ActivationCodeSpec {
    let mut spec: ActivationCodeSpec = serde_json::from_value(serde_json::json!({
        "robotId": ROBOT, "validPeriod": 7, "roomId": ROOM, "count": count
    }))
    .unwrap();
    spec.surplus = surplus;
    spec
}

/// What became of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Applied and answered.
    Answered,
    /// Applied, its answer lost or unreadable (a garbled 2xx).
    Lost,
    /// Applied this many seconds later (at most its window and the grace
    /// after it was sent; within the grace when the caller lived to see
    /// the answer lost), its answer lost.
    Late(u32),
    /// Never applied, its outcome unknown (a 5xx, a timeout).
    Never,
    /// Refused (a 4xx): not applied, and the caller knows it.
    Refused,
    /// The process is killed before this call: nothing more is sent, and
    /// the status write after the batch is not made.
    Crash,
}

/// Something that happens.
#[derive(Debug, Clone)]
enum Step {
    /// A sync, its listing complete or missing a code, its calls answered
    /// in turn by these.
    Sync {
        complete: bool,
        answers: Vec<Answer>,
    },
    /// Time passes (seconds).
    Tick(u32),
    /// Someone deletes the n-th code of the room.
    ForeignDelete(usize),
}

/// A change the service applies later.
#[derive(Debug, Clone)]
enum Pending {
    Create,
    Delete(String),
}

/// The service's room and the operator's durable status.
struct World {
    spec: ActivationCodeSpec,
    room: Vec<ActiveCode>,
    late: Vec<(Timestamp, Pending)>,
    status: ActivationCodeStatus,
    now: Timestamp,
    next_id: u32,
    /// The most and fewest codes the room held.
    peak: usize,
    low: usize,
}

impl World {
    fn new(spec: ActivationCodeSpec, initial: usize) -> Self {
        let mut world = World {
            spec,
            room: Vec::new(),
            late: Vec::new(),
            status: ActivationCodeStatus::default(),
            now: t0(),
            next_id: 0,
            peak: initial,
            low: initial,
        };
        for _ in 0..initial {
            world.create_now();
        }
        world.low = initial;
        world
    }

    fn create_now(&mut self) -> String {
        self.next_id += 1;
        let id = format!("c{:04}", self.next_id);
        self.room.push(code(&id, self.now));
        self.measure();
        id
    }

    fn delete_now(&mut self, id: &str) {
        self.room.retain(|c| c.active_code_id != id);
        self.measure();
    }

    fn measure(&mut self) {
        self.peak = self.peak.max(self.room.len());
        self.low = self.low.min(self.room.len());
    }

    /// Applies the late changes due by now.
    fn land(&mut self) {
        self.late.sort_by_key(|(at, _)| *at);
        while self.late.first().is_some_and(|(at, _)| *at <= self.now) {
            let (at, change) = self.late.remove(0);
            let now = std::mem::replace(&mut self.now, at);
            match change {
                Pending::Create => {
                    self.create_now();
                }
                Pending::Delete(id) => self.delete_now(&id),
            }
            self.now = now;
        }
    }

    fn step(&mut self, step: &Step) {
        match step {
            Step::Sync { complete, answers } => self.sync(*complete, answers),
            Step::Tick(secs) => {
                self.now += SignedDuration::from_secs(i64::from(*secs));
                self.land();
            }
            Step::ForeignDelete(n) => {
                if !self.room.is_empty() {
                    let id = self.room[n % self.room.len()].active_code_id.clone();
                    self.delete_now(&id);
                }
            }
        }
    }

    /// One sync as the engine makes it, from the durable status.
    fn sync(&mut self, complete: bool, answers: &[Answer]) {
        let mut listing = Listing {
            codes: self.room.clone(),
            complete: true,
        };
        if !complete && !listing.codes.is_empty() {
            listing.codes.remove(0);
            listing.complete = false;
        }
        let mut ledger = Ledger::of(&self.status);
        ledger.observe(&listing, self.now);
        let created = settle_creates(
            &self.status.pending_creates,
            &listing,
            ROBOT,
            &ledger,
            self.now,
            GRACE,
        );
        let deleted = settle_deletes(&self.status.pending_deletes, &listing, self.now, GRACE);
        for adopted in &created.adopted {
            ledger.adopt(&adopted.code_id, adopted.token.as_deref());
        }
        for id in &deleted.deleted {
            ledger.forget(id);
        }
        if created.waiting.is_empty() {
            let ids = listing.codes.iter().map(|c| c.active_code_id.as_str());
            ledger.note_room(ids, listing.complete);
        }
        self.status.pending_creates = created.waiting;
        self.status.pending_deletes = deleted.waiting;
        let planned = plan_all(
            &self.spec,
            &ledger,
            &self.status,
            &listing.codes,
            listing.complete,
            self.now,
        );
        let creates = planned
            .actions
            .iter()
            .filter(|a| matches!(a, Action::Create { .. }))
            .count();
        let deletes: Vec<String> = planned
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Delete { code_id } => Some(code_id.clone()),
                _ => None,
            })
            .collect();
        let survived = if creates > 0 {
            self.creates(&mut ledger, creates, answers)
        } else if !deletes.is_empty() {
            self.deletes(&mut ledger, deletes, answers)
        } else {
            true
        };
        if survived {
            ledger.store(&mut self.status);
        }
    }

    /// Records `n` creates, makes them; `false` when the process died.
    fn creates(&mut self, ledger: &mut Ledger, n: usize, answers: &[Answer]) -> bool {
        self.status.pending_creates = vec![CreateIntent {
            room_id: ROOM.into(),
            count: n as u32,
            token: None,
            recorded_at: self.now,
            unanswered_since: None,
            call_window_seconds: Some(WINDOW),
        }];
        ledger.store(&mut self.status);
        let mut lost = 0;
        let calls = answers.iter().copied().cycle().take(n);
        for (answer, late) in with_lateness(calls) {
            match answer {
                Answer::Answered => {
                    let id = self.create_now();
                    ledger.adopt(&id, None);
                }
                Answer::Lost => {
                    self.create_now();
                    lost += 1;
                }
                Answer::Late(_) => {
                    self.late.push((self.now + late, Pending::Create));
                    lost += 1;
                }
                Answer::Never => lost += 1,
                Answer::Refused => {}
                Answer::Crash => return false,
            }
        }
        self.status.pending_creates = if lost > 0 {
            vec![CreateIntent {
                count: lost,
                unanswered_since: Some(self.now),
                call_window_seconds: None,
                ..self.status.pending_creates[0].clone()
            }]
        } else {
            Vec::new()
        };
        true
    }

    /// Records the deletes of `ids`, makes them one call each (a call
    /// naming many codes succeeds or fails for all of them alike);
    /// `false` when the process died.
    fn deletes(&mut self, ledger: &mut Ledger, ids: Vec<String>, answers: &[Answer]) -> bool {
        let intent = DeleteIntent {
            code_ids: ids.clone(),
            recorded_at: self.now,
            unanswered_since: None,
            call_window_seconds: Some(WINDOW),
        };
        self.status.pending_deletes = vec![intent.clone()];
        ledger.store(&mut self.status);
        let mut lost = Vec::new();
        let calls = answers.iter().copied().cycle().take(ids.len());
        for (id, (answer, late)) in ids.into_iter().zip(with_lateness(calls)) {
            match answer {
                Answer::Answered => {
                    self.delete_now(&id);
                    ledger.forget(&id);
                }
                Answer::Lost => {
                    self.delete_now(&id);
                    lost.push(id);
                }
                Answer::Late(_) => {
                    self.late
                        .push((self.now + late, Pending::Delete(id.clone())));
                    lost.push(id);
                }
                Answer::Never => lost.push(id),
                Answer::Refused => {}
                Answer::Crash => return false,
            }
        }
        self.status.pending_deletes = if lost.is_empty() {
            Vec::new()
        } else {
            vec![DeleteIntent {
                code_ids: lost,
                unanswered_since: Some(self.now),
                call_window_seconds: None,
                ..intent
            }]
        };
        true
    }
}

/// Each call's answer with how late a late one lands: within its window
/// and the grace while a crash cuts the batch short (the calls were still
/// in flight when the process died), else within the grace (the caller saw
/// the answer lost and recorded it so).
fn with_lateness(calls: impl Iterator<Item = Answer>) -> Vec<(Answer, SignedDuration)> {
    let calls: Vec<Answer> = calls.collect();
    let crashes = calls.contains(&Answer::Crash);
    let bound = if crashes {
        WINDOW + GRACE.as_secs() as u32
    } else {
        GRACE.as_secs() as u32
    };
    calls
        .into_iter()
        .map(|answer| {
            let late = match answer {
                Answer::Late(secs) => secs % bound,
                _ => 0,
            };
            (answer, SignedDuration::from_secs(i64::from(late)))
        })
        .collect()
}

fn arb_answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        6 => Just(Answer::Answered),
        2 => Just(Answer::Lost),
        2 => (0u32..100).prop_map(Answer::Late),
        1 => Just(Answer::Never),
        1 => Just(Answer::Refused),
        1 => Just(Answer::Crash),
    ]
}

fn arb_step(foreign: bool) -> impl Strategy<Value = Step> {
    let sync = (
        prop::bool::weighted(0.8),
        prop::collection::vec(arb_answer(), 1..6),
    )
        .prop_map(|(complete, answers)| Step::Sync { complete, answers });
    let delete = if foreign { 1 } else { 0 };
    prop_oneof![
        4 => sync,
        3 => (1u32..20).prop_map(Step::Tick),
        delete => any::<usize>().prop_map(Step::ForeignDelete),
    ]
}

fn arb_surplus() -> impl Strategy<Value = SurplusPolicy> {
    prop_oneof![Just(SurplusPolicy::Keep), Just(SurplusPolicy::Delete)]
}

/// Syncs with every answer given and time to settle, until nothing is
/// left to do (at most a few rounds).
fn settle_down(world: &mut World) {
    for _ in 0..6 {
        world.now += GRACE + SignedDuration::from_secs(i64::from(WINDOW) + 1);
        world.land();
        world.step(&Step::Sync {
            complete: true,
            answers: vec![Answer::Answered],
        });
    }
}

/// What a converged world plans: nothing.
fn replan(world: &World) -> Vec<Action> {
    let ledger = Ledger::of(&world.status);
    plan_all(
        &world.spec,
        &ledger,
        &world.status,
        &world.room,
        true,
        world.now,
    )
    .actions
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2048,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x4d53_1900),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Whatever the answers, crashes and listings: the room never holds
    /// more codes than the count (or than it started with), nor, when no
    /// one else deletes codes, fewer than the count (or than it started
    /// with) through this resource's deletes. Given answers and time, it
    /// ends with exactly the count (the surplus kept, under Keep), every
    /// intent settled, every code it created on record as its own, and
    /// planning again on the result is empty.
    #[test]
    fn creates_and_deletes_never_pass_the_count_and_converge(
        count in 0u32..12,
        initial in 0usize..16,
        surplus in arb_surplus(),
        foreign in prop::bool::weighted(0.3),
        steps in prop::collection::vec(arb_step(true), 0..40),
    ) {
        let mut world = World::new(counted(count, surplus), initial);
        let bound = (count as usize).max(initial);
        let floor = (count as usize).min(initial);
        let steps: Vec<Step> = steps
            .into_iter()
            .filter(|s| foreign || !matches!(s, Step::ForeignDelete(_)))
            .collect();
        for step in &steps {
            world.step(step);
            prop_assert!(world.peak <= bound, "{} codes, count {count}, after {step:?}", world.peak);
            if !foreign {
                prop_assert!(world.low >= floor, "{} codes, count {count}, after {step:?}", world.low);
            }
        }
        settle_down(&mut world);
        prop_assert!(world.peak <= bound);
        prop_assert!(world.late.is_empty());
        match surplus {
            SurplusPolicy::Delete => prop_assert_eq!(world.room.len(), count as usize),
            SurplusPolicy::Keep => prop_assert!(world.room.len() >= count as usize),
        }
        prop_assert!(world.status.pending_creates.is_empty());
        prop_assert!(world.status.pending_deletes.is_empty());
        prop_assert_eq!(replan(&world), vec![]);
        // Each code of the room is on record: those this resource created
        // (with no one else creating, every one, answered or not) as its
        // own, the others as found.
        let ledger = Ledger::of(&world.status);
        for code in &world.room {
            let ours = code.active_code_id[1..].parse::<usize>().unwrap() > initial;
            prop_assert!(ledger.known(&code.active_code_id));
            prop_assert_eq!(ledger.created(&code.active_code_id), ours, "{}", code.active_code_id);
        }
    }
}

/// Name, spec, held, then the creates, deletes and kept codes planned.
type Case = (
    &'static str,
    ActivationCodeSpec,
    bool,
    u32,
    Vec<&'static str>,
    Vec<&'static str>,
);

#[test]
fn the_room_is_counted_whoever_created_its_codes_and_nothing_moves_while_in_doubt() {
    let now = t0();
    let room: Vec<ActiveCode> = (0..4).map(|i| code(&format!("c{i}"), now)).collect();
    let refs: Vec<&ActiveCode> = room.iter().collect();
    let keep = counted(6, SurplusPolicy::Keep);
    let mut ledger = Ledger::default();
    ledger.adopt("c1", None);
    // (name, spec, held, creates, deletes, kept)
    let table: [Case; 6] = [
        (
            "missing codes: created",
            keep.clone(),
            false,
            2,
            vec![],
            vec![],
        ),
        (
            "held (in doubt, or incomplete): nothing",
            keep,
            true,
            0,
            vec![],
            vec![],
        ),
        (
            "at the count: nothing",
            counted(4, SurplusPolicy::Delete),
            false,
            0,
            vec![],
            vec![],
        ),
        (
            "over, Delete: its own code first, then the newest",
            counted(2, SurplusPolicy::Delete),
            false,
            0,
            vec!["c1", "c3"],
            vec![],
        ),
        (
            "over, Keep: the same codes kept",
            counted(2, SurplusPolicy::Keep),
            false,
            0,
            vec![],
            vec!["c1", "c3"],
        ),
        (
            "0 deletes every code",
            counted(0, SurplusPolicy::Delete),
            false,
            0,
            vec!["c1", "c3", "c2", "c0"],
            vec![],
        ),
    ];
    for (name, spec, held, creates, deletes, kept) in table {
        let planned = plan(&spec, &ledger, held, &refs);
        assert_eq!(planned.creates, creates, "{name}");
        assert_eq!(planned.deletes, deletes, "{name}");
        assert_eq!(planned.kept, kept, "{name}");
    }
    let unset: ActivationCodeSpec =
        serde_json::from_value(serde_json::json!({"robotId": ROBOT, "validPeriod": 7})).unwrap();
    assert_eq!(plan(&unset, &ledger, false, &refs), CountPlan::default());
}

#[test]
fn a_create_in_doubt_is_settled_from_the_codes_no_list_names() {
    let at = t0();
    let intent = CreateIntent {
        room_id: ROOM.into(),
        count: 2,
        token: Some("t".into()),
        recorded_at: at,
        unanswered_since: Some(at),
        call_window_seconds: None,
    };
    let mut ledger = Ledger::default();
    ledger.note_room(["old"], true);
    let listing = |ids: &[&str], complete| Listing {
        codes: ids.iter().map(|id| code(id, at)).collect(),
        complete,
    };
    let settle = |ids: &[&str], complete, now| {
        settle_creates(
            std::slice::from_ref(&intent),
            &listing(ids, complete),
            ROBOT,
            &ledger,
            now,
            GRACE,
        )
    };
    let later = at + GRACE;
    // Within the grace the create may still land: nothing is decided.
    assert_eq!(settle(&["old", "n1"], true, at).waiting.len(), 1);
    // An incomplete listing settles nothing either.
    assert_eq!(settle(&["old", "n1"], false, later).waiting.len(), 1);
    // After it: the new code is the created one, fresh for the token.
    let settled = settle(&["old", "n1"], true, later);
    assert!(settled.waiting.is_empty() && settled.ambiguous.is_empty());
    assert_eq!(
        settled.adopted,
        [Adopted {
            code_id: "n1".into(),
            token: Some("t".into())
        }]
    );
    // More new codes than creates in doubt: someone else created some;
    // none is taken for this resource's.
    let crowded = settle(&["old", "n1", "n2", "n3"], true, later);
    assert!(crowded.adopted.is_empty());
    assert_eq!(crowded.ambiguous, ["n1", "n2", "n3"]);
    // Another room's codes are not this intent's.
    let mut other = code("x", at);
    other.room_id = Some("hall".into());
    let listing = Listing {
        codes: vec![code("old", at), other],
        complete: true,
    };
    let settled = settle_creates(
        std::slice::from_ref(&intent),
        &listing,
        ROBOT,
        &ledger,
        later,
        GRACE,
    );
    assert!(settled.adopted.is_empty() && settled.ambiguous.is_empty());
}

#[test]
fn a_delete_in_doubt_is_settled_by_whether_the_listing_shows_its_codes() {
    let at = t0();
    let intent = DeleteIntent {
        code_ids: vec!["a".into(), "b".into()],
        recorded_at: at,
        unanswered_since: None,
        call_window_seconds: Some(WINDOW),
    };
    let listing = |ids: &[&str]| Listing {
        codes: ids.iter().map(|id| code(id, at)).collect(),
        complete: true,
    };
    // Both gone: deleted, at once.
    let settled = settle_deletes(std::slice::from_ref(&intent), &listing(&[]), at, GRACE);
    assert_eq!((settled.deleted.len(), settled.waiting.len()), (2, 0));
    // One left, another run's batch: in doubt from now for its window and
    // the grace, narrowed to the code still listed.
    let settled = settle_deletes(std::slice::from_ref(&intent), &listing(&["b"]), at, GRACE);
    assert_eq!(settled.deleted, ["a"]);
    assert_eq!(settled.waiting[0].code_ids, ["b"]);
    assert_eq!(settled.waiting[0].unanswered_since, Some(at));
    let after = at + SignedDuration::from_secs(i64::from(WINDOW)) + GRACE;
    let settled = settle_deletes(&settled.waiting, &listing(&["b"]), after, GRACE);
    assert_eq!(settled.not_deleted, ["b"]);
    assert!(settled.waiting.is_empty());
}

#[test]
fn a_teardown_deletes_exactly_the_created_codes_newest_first_and_waits_for_doubt() {
    let now = t0();
    let room: Vec<ActiveCode> = vec![
        code("mine-old", now),
        code("theirs", now + SignedDuration::from_secs(1)),
        code("mine-new", now + SignedDuration::from_secs(2)),
    ];
    let refs: Vec<&ActiveCode> = room.iter().collect();
    let mut ledger = Ledger::default();
    ledger.adopt("mine-old", None);
    ledger.adopt("mine-new", None);
    ledger.adopt("gone-already", None);
    assert_eq!(
        teardown(&ledger, false, &refs),
        ["mine-new", "mine-old"],
        "only codes on record as created, and only those the room still holds"
    );
    assert!(
        teardown(&ledger, true, &refs).is_empty(),
        "nothing while a listing or an intent is in doubt"
    );
    assert!(teardown(&Ledger::default(), false, &refs).is_empty());
}
