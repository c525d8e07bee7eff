//! How many codes (`spec.count`), through the engine against the
//! simulator: a scale-up creates each missing code once and exports it at
//! once; creates and deletes whose answers are lost, garbled or answered
//! 5xx are settled from the next complete listing and never take the room
//! past the count; the surplus is kept (reported) or deleted, the codes
//! this resource created first, newest first; an incomplete listing, an
//! Observe resource and a suspended one create and delete nothing; two
//! live reconcilers of one resource, fenced as the API server fences them,
//! end with exactly the count, also when one is paused mid-batch.

mod common;

use common::fenced::*;
use common::{ROBOT, fast_options, seed_yaml, simulator};
use jiff::Timestamp;
use metastudio_operator::crd::ActivationCode;
use metastudio_operator::engine::conditions::reason;
use metastudio_operator::engine::{Engine, Mode, ReconcileReport};
use metastudio_operator::metastudio::pacing::{Pacing, Quotas};
use metastudio_operator::metastudio::{ActiveCode, ClientOptions, Operation};
use metastudio_operator::offline::host::OfflineHost;
use metastudio_operator::simulator::{FaultConfig, Simulator};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

const ROOM: &str = "lobby";
/// The grace for calls in doubt: the simulator never applies a call after
/// its caller is gone, so a short one keeps the tests quick.
const GRACE: Duration = Duration::from_millis(50);

fn resource(spec: Value) -> ActivationCode {
    let mut spec = spec;
    spec["robotId"] = json!(ROBOT);
    spec["roomId"] = json!(ROOM);
    spec["validPeriod"] = json!(7);
    serde_json::from_value(json!({
        "apiVersion": "metastudio.huaweicloud.com/v1alpha1",
        "kind": "ActivationCode",
        "metadata": {"name": "kiosks", "namespace": "retail", "generation": 1},
        "spec": spec,
    }))
    .unwrap()
}

/// The codes of the room, as the simulator holds them.
fn room(sim: &Simulator) -> Vec<ActiveCode> {
    sim.with_store(|s| s.all_codes())
        .into_iter()
        .filter(|c| c.robot_id == ROBOT && c.room_id.as_deref() == Some(ROOM))
        .collect()
}

fn ids(codes: &[ActiveCode]) -> BTreeSet<String> {
    codes.iter().map(|c| c.active_code_id.clone()).collect()
}

/// A robot with codes in the room (`ROOM`, created `age` ago each) and
/// two in another room.
fn seeded(ages: &[&str]) -> metastudio_operator::simulator::Seed {
    let codes: Vec<String> = ages
        .iter()
        .enumerate()
        .map(|(i, age)| {
            format!("{{activeCodeId: found-{i}, roomId: {ROOM}, validPeriod: 7, age: {age}}}")
        })
        .collect();
    seed_yaml(&format!(
        "spec: {{robots: [{{robotId: {ROBOT}, codes: [{}], generate: {{count: 2, validPeriod: 7, roomId: hall}}}}]}}",
        codes.join(", ")
    ))
}

/// Reconciles `ac` over `host` (its statuses carried from run to run).
async fn reconcile(engine: &Engine, host: &OfflineHost, ac: &ActivationCode) -> ReconcileReport {
    engine
        .reconcile(ac, host, Mode::Normal, Timestamp::now())
        .await
}

/// Reconciles until a run ends converged (waiting a little between runs,
/// as the controller's backoff would); returns the reasons seen on the way.
async fn until_converged(
    engine: &Engine,
    host: &OfflineHost,
    ac: &ActivationCode,
) -> Vec<&'static str> {
    let mut reasons = Vec::new();
    for _ in 0..400 {
        let report = reconcile(engine, host, ac).await;
        reasons.push(report.reason);
        if report.converged {
            return reasons;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not converged after 400 runs: {reasons:?}");
}

fn notes(host: &OfflineHost) -> Vec<(&'static str, String)> {
    host.take_events("retail/kiosks")
        .into_iter()
        .map(|e| (e.reason, e.note))
        .collect()
}

#[tokio::test]
async fn a_scale_up_creates_each_missing_code_once_and_exports_it_at_once() {
    let sim = simulator(seeded(&["3h", "2h", "1h"]), FaultConfig::default()).await;
    let engine = engine(&sim).with_reset_grace(GRACE);
    let dir = tempfile::tempdir().unwrap();
    let host = OfflineHost::new(Default::default(), None, Some(dir.path().to_owned())).unwrap();
    let ac = resource(
        json!({"count": 10, "exportSecretRef": {"name": "kiosk-codes"},
        "reset": {"token": "t1"}}),
    );

    let report = reconcile(&engine, &host, &ac).await;
    assert!(report.converged, "{:?}", report.status.condition("Ready"));
    let counters = sim.counters();
    assert_eq!(counters.total_creates(), 7, "the 3 found codes count");
    assert_eq!(counters.calls_of(Operation::CreateActiveCode), 7);
    let now = room(&sim);
    assert_eq!(now.len(), 10);
    // The new codes are this resource's and fresh for the token; the ones
    // it found are reset for it, the other room is left alone.
    let status = &report.status;
    assert_eq!(status.managed_codes, 10);
    let created: BTreeSet<String> = status
        .created_code_ids()
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        created,
        ids(&now)
            .into_iter()
            .filter(|id| !id.starts_with("found-"))
            .collect()
    );
    assert_eq!(
        counters.total_resets(),
        3,
        "only the found codes are reset for t1"
    );
    assert!(status.pending_creates.is_empty());
    // One Event names every new code with its request.
    let events = notes(&host);
    let created_note = &events.iter().find(|(r, _)| *r == "CodeCreated").unwrap().1;
    assert!(
        created_note.starts_with("created 7 code(s) in room lobby, valid 7 days (spec.count): "),
        "{created_note}"
    );
    assert_eq!(
        created_note.matches("X-Request-Id: ").count(),
        7,
        "{created_note}"
    );
    // The export Secret holds every code of the room, the new ones too.
    let secret = std::fs::read_to_string(dir.path().join("retail/kiosk-codes.yaml")).unwrap();
    for code in &now {
        assert!(
            secret.contains(&code.active_code_id),
            "{} not exported",
            code.active_code_id
        );
    }

    // Planning again on the result: nothing, one list call.
    let before = sim.counters().total_calls();
    let again = reconcile(&engine, &host, &ac).await;
    assert!(
        again.converged && again.planned.is_empty(),
        "{:?}",
        again.planned
    );
    assert_eq!(sim.counters().total_calls() - before, 1);
}

/// Every share of creates (or deletes) answered badly: lost after being
/// applied, applied with a body cut short, 500 before anything.
fn bad_answers(operation: Operation, seed: u64) -> FaultConfig {
    FaultConfig {
        lost_response_rate: 0.25,
        garbled_response_rate: 0.15,
        server_error_rate: 0.1,
        throttle_rate: 0.1,
        retry_after_secs: 0,
        operations: [operation].into(),
        seed,
        ..FaultConfig::default()
    }
}

#[tokio::test]
async fn creates_whose_answers_are_lost_or_garbled_settle_from_the_listing_and_never_pass_the_count()
 {
    let sim = simulator(seeded(&[]), bad_answers(Operation::CreateActiveCode, 19)).await;
    let engine = engine(&sim).with_reset_grace(GRACE);
    let host = OfflineHost::new(Default::default(), None, None).unwrap();
    let ac = resource(json!({"count": 60}));
    let mut reasons = Vec::new();
    for _ in 0..400 {
        let report = reconcile(&engine, &host, &ac).await;
        reasons.push(report.reason);
        assert!(
            room(&sim).len() <= 60,
            "more codes than the count: {}",
            room(&sim).len()
        );
        if report.converged {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let counters = sim.counters();
    assert_eq!(room(&sim).len(), 60, "{reasons:?}");
    assert_eq!(counters.total_creates(), 60, "each code created once");
    assert!(counters.calls_with(Operation::CreateActiveCode, "lost") > 0);
    assert!(reasons.contains(&reason::COUNT_UNCONFIRMED), "{reasons:?}");
    // Every code it created is on record as its own, answered or not.
    let status = host.status_of("retail/kiosks").unwrap();
    let created: BTreeSet<String> = status
        .created_code_ids()
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(created, ids(&room(&sim)));
    assert!(status.pending_creates.is_empty());
    assert_eq!(
        engine
            .transport()
            .metrics()
            .change_count(Operation::CreateActiveCode, "done")
            + engine
                .transport()
                .metrics()
                .change_count(Operation::CreateActiveCode, "confirmed"),
        60
    );
}

#[tokio::test]
async fn the_surplus_is_kept_as_drift_or_deleted_own_codes_first_newest_first() {
    let sim = simulator(seeded(&["3h", "2h", "1h"]), FaultConfig::default()).await;
    let engine = engine(&sim).with_reset_grace(GRACE);
    let host = OfflineHost::new(Default::default(), None, None).unwrap();
    until_converged(&engine, &host, &resource(json!({"count": 6}))).await;
    let created: BTreeSet<String> = ids(&room(&sim))
        .into_iter()
        .filter(|id| !id.starts_with("found-"))
        .collect();
    assert_eq!(created.len(), 3);

    // Keep: reported, nothing deleted, and done as asked.
    let keep = resource(json!({"count": 2}));
    let report = reconcile(&engine, &host, &keep).await;
    assert!(report.converged, "{:?}", report.status.condition("Ready"));
    assert_eq!(sim.counters().total_deletes(), 0);
    assert_eq!(report.status.drift_count, 4);
    assert!(
        report
            .status
            .drift
            .iter()
            .all(|d| d.field == "count" && d.desired == "kept (spec.surplus: Keep)")
    );
    assert_eq!(report.status.condition("Synced").unwrap().status, "False");
    let ready = report.status.condition("Ready").unwrap();
    assert!(
        ready.message.contains("4 code(s) over spec.count are kept"),
        "{}",
        ready.message
    );

    // Delete, with deletes answered badly: its 3 codes go first, then the
    // newest it found; the oldest two are left.
    sim.set_faults(bad_answers(Operation::DeleteActiveCode, 7));
    let delete = resource(json!({"count": 2, "surplus": "Delete"}));
    let reasons = until_converged(&engine, &host, &delete).await;
    assert_eq!(
        ids(&room(&sim)),
        BTreeSet::from(["found-0".to_owned(), "found-1".to_owned()]),
        "{reasons:?}"
    );
    let deleted: BTreeSet<String> = sim.counters().deletes.keys().cloned().collect();
    let mut expected = created.clone();
    expected.insert("found-2".into());
    assert_eq!(deleted, expected);
    let status = host.status_of("retail/kiosks").unwrap();
    assert!(status.created_code_ids().is_empty() && status.pending_deletes.is_empty());
    // Each deleted code is named in an Event: with its request, or as
    // confirmed by the listing after its answer was lost.
    let events = notes(&host);
    for id in &expected {
        assert!(
            events
                .iter()
                .any(|(r, n)| *r == "CodeDeleted" && n.contains(id.as_str())),
            "{id}: {events:?}"
        );
    }
}

#[tokio::test]
async fn observe_suspend_and_an_incomplete_listing_create_and_delete_nothing() {
    let sim = simulator(seeded(&["3h", "2h"]), FaultConfig::default()).await;
    let engine = engine(&sim).with_reset_grace(GRACE);
    let host = OfflineHost::new(Default::default(), None, None).unwrap();

    let observed = reconcile(
        &engine,
        &host,
        &resource(json!({"count": 5, "managementPolicy": "Observe"})),
    )
    .await;
    assert_eq!(observed.reason, reason::OBSERVING);
    assert_eq!(observed.status.drift_count, 3, "three codes missing");
    assert!(
        observed
            .status
            .drift
            .iter()
            .all(|d| d.field == "count" && d.observed == "missing")
    );
    let over = reconcile(
        &engine,
        &host,
        &resource(json!({"count": 1, "surplus": "Delete", "managementPolicy": "Observe"})),
    )
    .await;
    assert_eq!(
        over.status.drift[0].desired,
        "deleted (spec.surplus: Delete)"
    );

    let before = sim.counters().total_calls();
    let suspended = reconcile(
        &engine,
        &host,
        &resource(json!({"count": 5, "suspend": true})),
    )
    .await;
    assert_eq!(suspended.reason, reason::SUSPENDED);
    assert_eq!(sim.counters().total_calls(), before, "no call at all");

    // A listing that does not add up: nothing is created from it.
    sim.with_store(|s| s.miss_in_listings("found-0", true));
    let incomplete = reconcile(&engine, &host, &resource(json!({"count": 5}))).await;
    assert_eq!(incomplete.reason, reason::LISTING_INCOMPLETE);
    assert_eq!(sim.counters().total_creates(), 0);
    sim.with_store(|s| s.miss_in_listings("found-0", false));
    until_converged(&engine, &host, &resource(json!({"count": 5}))).await;
    assert_eq!(room(&sim).len(), 5);
    assert_eq!(
        sim.counters().total_creates() + sim.counters().total_deletes(),
        3
    );
}

#[tokio::test]
async fn codes_someone_else_creates_count_toward_the_count() {
    let sim = simulator(seeded(&["3h"]), FaultConfig::default()).await;
    let engine = engine(&sim).with_reset_grace(GRACE);
    let host = OfflineHost::new(Default::default(), None, None).unwrap();
    let ac = resource(json!({"count": 3}));
    until_converged(&engine, &host, &ac).await;
    sim.with_store(|s| s.insert(None, ROBOT, Some(ROOM.into()), 7, s.now()));
    let report = reconcile(&engine, &host, &ac).await;
    assert_eq!(room(&sim).len(), 4, "none deleted: spec.surplus is Keep");
    assert_eq!(report.status.drift_count, 1);
    assert_eq!(sim.counters().total_creates(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_sharing_one_write_budget_waits_its_turn_without_leaving_creates_in_doubt() {
    // Three rooms of one robot, one resource each, calling with the same
    // credentials: one write budget of 10 a second. Each batch's call
    // window is its own 30 creates at that rate (and a 1 s timeout), but
    // the three share it, so each gets a third: creates still waiting for
    // the budget when their window ends are not sent, and go into the
    // next batch, never into doubt.
    let sim = simulator(seeded(&[]), FaultConfig::default()).await;
    let options = ClientOptions {
        timeout: Duration::from_secs(1),
        pacing: Pacing {
            reads_per_second: Some(0.0),
            writes_per_second: Some(10.0),
            ..Pacing::default()
        },
        ..fast_options()
    };
    let engine = engine_with(&sim, options).with_reset_grace(GRACE);
    let host = OfflineHost::new(Default::default(), None, None).unwrap();
    let fleet: Vec<ActivationCode> = ["a", "b", "c"]
        .into_iter()
        .map(|room| {
            let mut ac = resource(json!({"count": 30}));
            ac.spec.room_id = Some(room.into());
            ac.metadata.name = Some(format!("room-{room}"));
            ac
        })
        .collect();
    let reports =
        futures::future::join_all(fleet.iter().map(|ac| reconcile(&engine, &host, ac))).await;
    for report in &reports {
        assert!(report.converged, "{:?}", report.status.condition("Ready"));
        assert_eq!(report.status.managed_codes, 30);
    }
    let counters = sim.counters();
    assert_eq!(counters.total_creates(), 90);
    assert_eq!(
        counters.calls_of(Operation::CreateActiveCode),
        90,
        "one call per code: nothing cut in doubt, nothing settled by listing"
    );
    assert_eq!(counters.calls_of(Operation::ListActiveCode), 3);
}

/// Writes a second the simulator takes (429 above, as the API gateway).
const WRITES_PER_SECOND: f64 = 100.0;
const SCALE: u32 = 200;

/// A reconciler paced at the simulator's write quota, whose grace (300 ms)
/// is far shorter than its batch of [`SCALE`] creates takes (2 s).
fn paced_engine(sim: &Simulator) -> Engine {
    let options = ClientOptions {
        timeout: Duration::from_secs(2),
        pacing: Pacing {
            reads_per_second: Some(0.0),
            writes_per_second: Some(WRITES_PER_SECOND),
            ..Pacing::default()
        },
        ..fast_options()
    };
    engine_with(sim, options).with_reset_grace(Duration::from_millis(300))
}

async fn quota_simulator() -> Simulator {
    let sim = simulator(seeded(&[]), FaultConfig::default()).await;
    sim.set_quotas(Some(Quotas {
        reads: 1000.0,
        writes: WRITES_PER_SECOND,
    }));
    sim
}

fn assert_exactly_the_count(sim: &Simulator, stored: &Mutex<Stored>) {
    assert_eq!(room(sim).len(), SCALE as usize);
    assert_eq!(
        sim.counters().total_creates(),
        u64::from(SCALE),
        "no code created beyond the count"
    );
    let status = stored.lock().unwrap().status.clone().unwrap();
    assert!(
        status.pending_creates.is_empty(),
        "{:?}",
        status.pending_creates
    );
    let created: BTreeSet<String> = status
        .created_code_ids()
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        created,
        ids(&room(sim)),
        "every code on record as this resource's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_live_reconcilers_scaling_the_same_resource_end_with_exactly_the_count() {
    let sim = quota_simulator().await;
    let (a, b) = (paced_engine(&sim), paced_engine(&sim));
    let stored = Mutex::new(Stored::default());
    let ac = resource(json!({"count": SCALE}));
    // A records its batch and creates at the quota; B, live beside it,
    // finds A's intent once A is under way and looks again every 50 ms,
    // long past its grace.
    let first = reconcile_fenced(&a, &stored, &ac);
    let second = async {
        until("A under way", || sim.counters().total_creates() >= 20).await;
        reconcile_until_converged(&b, &stored, &ac).await;
    };
    let (report, ()) = tokio::join!(first, second);
    if !report.converged {
        reconcile_until_converged(&a, &stored, &ac).await;
    }
    reconcile_until_converged(&b, &stored, &ac).await;
    assert_exactly_the_count(&sim, &stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_paused_mid_batch_resumes_after_the_other_took_over_and_creates_nothing_more() {
    let sim = quota_simulator().await;
    let (a, b) = (paced_engine(&sim), paced_engine(&sim));
    let stored = Mutex::new(Stored::default());
    let ac = resource(json!({"count": SCALE}));
    // A is stopped (SIGSTOP) a quarter into its batch: no longer polled,
    // calls in flight and all.
    let mut first = Box::pin(reconcile_fenced(&a, &stored, &ac));
    tokio::select! {
        _ = &mut first => panic!("A finished before it was paused"),
        () = until("A under way", || sim.counters().total_creates() >= 50) => {}
    }
    let at_pause = sim.counters().total_creates();
    // B waits out A's call window and the grace, adopts what A created
    // from the listing and creates the rest.
    reconcile_until_converged(&b, &stored, &ac).await;
    assert_exactly_the_count(&sim, &stored);
    assert!(
        sim.counters().total_creates() > at_pause,
        "B created the codes A had not"
    );
    // A resumes (SIGCONT): its window is over, so it creates nothing and
    // asks the status again, which B wrote since.
    let resumed = first.await;
    if !resumed.converged {
        reconcile_until_converged(&a, &stored, &ac).await;
    }
    assert_exactly_the_count(&sim, &stored);
    println!("paused after {at_pause} creates; the other reconciler made the rest");
}
