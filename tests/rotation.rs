//! Rotation at fleet scale, through the engine against the simulator: a
//! progressive rotation resets one batch per interval and each code
//! exactly once (an intent write that failed takes no place of a batch);
//! renewal restarts a code's validity and keeps its value; narrowing and
//! widening the selection never resets a code twice for one token, nor
//! does a listing that misses a code, nor a 2xx whose body cannot be read.
//! The engine is given its clock, so an hour passes in no time.
//!
//! Two reconcilers of one resource, each with a status store fenced like
//! the API server's (a write names the version it read), over a simulator
//! that enforces a write quota: a batch that takes longer than the reset
//! grace, and a writer paused mid-batch whose batch the other took over,
//! still reset each code exactly once.

mod common;

use common::fenced::*;
use common::{ROBOT, fast_options, seed_yaml, simulator};
use jiff::{SignedDuration, Timestamp};
use metastudio_operator::crd::ActivationCode;
use metastudio_operator::engine::conditions::reason;
use metastudio_operator::engine::{Engine, Mode, Next, ReconcileReport};
use metastudio_operator::metastudio::pacing::{Pacing, Quotas};
use metastudio_operator::metastudio::{ClientOptions, Operation};
use metastudio_operator::offline::host::OfflineHost;
use metastudio_operator::simulator::{FaultConfig, Simulator};
use serde_json::{Value, json};
use std::sync::Mutex;
use std::time::Duration;

fn resource(spec: Value) -> ActivationCode {
    let mut spec = spec;
    spec["robotId"] = json!(ROBOT);
    serde_json::from_value(json!({
        "apiVersion": "metastudio.huaweicloud.com/v1alpha1",
        "kind": "ActivationCode",
        "metadata": {"name": "fleet", "namespace": "retail", "generation": 1},
        "spec": spec,
    }))
    .unwrap()
}

/// Reconciles `ac` at `now` and keeps the status it wrote.
async fn sync(engine: &Engine, ac: &mut ActivationCode, now: Timestamp) -> ReconcileReport {
    sync_with_events(engine, ac, now).await.0
}

/// As [`sync`], with the notes of the events it published.
async fn sync_with_events(
    engine: &Engine,
    ac: &mut ActivationCode,
    now: Timestamp,
) -> (ReconcileReport, Vec<String>) {
    let host = OfflineHost::new(Default::default(), None, None).unwrap();
    let report = engine.reconcile(ac, &host, Mode::Normal, now).await;
    ac.status = Some((*report.status).clone());
    let notes = host
        .take_events("retail/fleet")
        .into_iter()
        .map(|e| e.note)
        .collect();
    (report, notes)
}

fn condition<'a>(report: &'a ReconcileReport, type_: &str) -> &'a str {
    report
        .status
        .condition(type_)
        .map_or("absent", |c| c.status.as_str())
}

fn ten_codes() -> metastudio_operator::simulator::Seed {
    seed_yaml(&format!(
        "spec: {{robots: [{{robotId: {ROBOT}, generate: {{count: 10, validPeriod: 7, age: 1h}}}}]}}"
    ))
}

#[tokio::test]
async fn a_progressive_rotation_resets_one_batch_per_interval_each_code_once() {
    let sim = simulator(ten_codes(), FaultConfig::default()).await;
    let engine = engine(&sim);
    let mut ac = resource(json!({"validPeriod": 7,
        "reset": {"token": "2026-12-01", "rollout": {"maxCodes": 3, "interval": "1h"}}}));
    let t0 = Timestamp::now();
    let hour = SignedDuration::from_hours(1);

    let first = sync(&engine, &mut ac, t0).await;
    assert_eq!(sim.counters().total_resets(), 3, "the first batch at once");
    assert_eq!(first.reason, reason::ROTATING);
    assert_eq!(condition(&first, "Ready"), "False");
    assert_eq!(condition(&first, "Reconciling"), "True");
    let ready = first.status.condition("Ready").unwrap();
    assert!(
        ready
            .message
            .starts_with("rotating 3/10 codes for token \"2026-12-01\""),
        "{}",
        ready.message
    );
    let rollout = first.status.reset_token.clone().unwrap();
    assert_eq!(rollout.progress, "3/10");
    assert_eq!(rollout.next_batch_time, Some(t0 + hour));
    assert!(
        first.status.pending_resets.is_empty(),
        "intents settled: {:?}",
        first.status.pending_resets
    );
    let Next::SyncAfter(after) = first.next else {
        panic!("{:?}", first.next)
    };
    assert!(
        after <= Duration::from_secs(3600),
        "back when the next batch is due: {after:?}"
    );

    let half_hour = sync(&engine, &mut ac, t0 + hour / 2).await;
    assert_eq!(sim.counters().total_resets(), 3, "nothing between batches");
    assert_eq!(half_hour.reason, reason::ROTATING);

    for (batch, done) in [(1, 6), (2, 9), (3, 10)] {
        let report = sync(&engine, &mut ac, t0 + hour * batch).await;
        assert_eq!(sim.counters().total_resets(), done, "batch {batch}");
        assert_eq!(
            report.status.reset_token.as_ref().unwrap().progress,
            format!("{done}/10")
        );
    }
    let done = sync(&engine, &mut ac, t0 + hour * 4).await;
    assert_eq!(done.reason, reason::SYNCED, "{:?}", done.status.conditions);
    assert_eq!(condition(&done, "Reconciling"), "absent");
    assert_eq!(
        done.status.reset_token.as_ref().unwrap().next_batch_time,
        None
    );
    let counters = sim.counters();
    assert_eq!(counters.total_resets(), 10);
    assert!(
        counters.resets.values().all(|&n| n == 1),
        "{:?}",
        counters.resets
    );
}

#[tokio::test]
async fn renewal_restarts_the_validity_of_codes_near_expiry_and_keeps_their_values() {
    // Two days of validity, 30 hours old: they expire in 18 hours.
    let seed = seed_yaml(&format!(
        "spec: {{robots: [{{robotId: {ROBOT}, codes: [{{validPeriod: 2, age: 30h}}, {{validPeriod: 2, age: 30h}}, {{validPeriod: 2}}]}}]}}"
    ));
    let sim = simulator(seed, FaultConfig::default()).await;
    let before = sim.with_store(|s| s.all_codes());
    let engine = engine(&sim);
    let mut ac = resource(json!({"validPeriod": 2, "renewBeforeExpiry": "24h"}));

    let report = sync(&engine, &mut ac, Timestamp::now()).await;
    assert_eq!(
        report.reason,
        reason::SYNCED,
        "{:?}",
        report.status.conditions
    );
    let counters = sim.counters();
    assert_eq!(counters.total_updates(), 2, "only the two near expiry");
    assert_eq!(counters.total_resets(), 0);
    let after = sim.with_store(|s| s.all_codes());
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(
            old.active_code.expose(),
            new.active_code.expose(),
            "values kept"
        );
        assert_eq!(new.valid_period, 2);
    }
    let renewed: Vec<_> = after
        .iter()
        .filter(|c| counters.updates_of(&c.active_code_id) == 1)
        .collect();
    assert!(
        renewed
            .iter()
            .all(|c| c.expire_time.unwrap() > Timestamp::now() + SignedDuration::from_hours(47))
    );

    // Renewed: nothing is due again.
    sync(&engine, &mut ac, Timestamp::now()).await;
    assert_eq!(sim.counters().total_updates(), 2);
}

#[tokio::test]
async fn narrowing_and_widening_the_selection_never_resets_a_code_twice_for_a_token() {
    let sim = simulator(ten_codes(), FaultConfig::default()).await;
    let ids: Vec<String> = sim
        .with_store(|s| s.all_codes())
        .into_iter()
        .map(|c| c.active_code_id)
        .collect();
    let engine = engine(&sim);
    let token = json!({"token": "t1"});
    let mut ac = resource(json!({"validPeriod": 7, "reset": token}));
    sync(&engine, &mut ac, Timestamp::now()).await;
    assert_eq!(sim.counters().total_resets(), 10);

    // Narrowed to two codes, then widened again: the ledger kept the rest.
    ac.spec.active_code_ids = Some(ids[..2].to_vec());
    let narrowed = sync(&engine, &mut ac, Timestamp::now()).await;
    assert_eq!(narrowed.status.managed_codes, 2);
    assert_eq!(
        narrowed.status.reset_ledger[0].codes.len(),
        10,
        "history of unselected codes kept"
    );
    ac.spec.active_code_ids = None;
    let widened = sync(&engine, &mut ac, Timestamp::now()).await;
    assert_eq!(widened.reason, reason::SYNCED);
    let counters = sim.counters();
    assert_eq!(counters.total_resets(), 10, "no code reset twice");
    assert!(counters.resets.values().all(|&n| n == 1));
}

#[tokio::test]
async fn a_code_an_incomplete_listing_misses_keeps_its_history_and_is_not_reset_again() {
    let sim = simulator(ten_codes(), FaultConfig::default()).await;
    let engine = engine(&sim);
    let mut ac = resource(json!({"validPeriod": 7, "reset": {"token": "2026-12-01"}}));
    let t0 = Timestamp::now();
    let minute = SignedDuration::from_mins(1);
    assert_eq!(sync(&engine, &mut ac, t0).await.reason, reason::SYNCED);
    assert_eq!(sim.counters().total_resets(), 10);

    // One code slips out of the pages while `count` still counts it.
    let missed = sim.with_store(|s| s.all_codes())[3].active_code_id.clone();
    sim.with_store(|s| s.miss_in_listings(&missed, true));
    let short = sync(&engine, &mut ac, t0 + minute).await;
    assert_eq!(short.reason, reason::LISTING_INCOMPLETE);
    assert_eq!(condition(&short, "Ready"), "False");
    assert!(
        short
            .status
            .reset_ledger
            .iter()
            .any(|entry| entry.token == "2026-12-01" && entry.codes.contains(&missed)),
        "the missed code's reset is still on record: {:?}",
        short.status.reset_ledger
    );

    sim.with_store(|s| s.miss_in_listings(&missed, false));
    let back = sync(&engine, &mut ac, t0 + minute * 2).await;
    assert_eq!(back.reason, reason::SYNCED);
    let counters = sim.counters();
    assert_eq!(counters.total_resets(), 10, "nothing reset again");
    assert!(counters.resets.values().all(|n| *n == 1));
}

#[tokio::test]
async fn a_2xx_whose_body_cannot_be_read_counts_as_applied_and_is_settled_by_reading_the_code() {
    let garbled = FaultConfig {
        garbled_response_rate: 1.0,
        operations: [Operation::ResetActiveCode, Operation::UpdateActiveCode].into(),
        ..FaultConfig::default()
    };
    let sim = simulator(ten_codes(), garbled).await;
    let engine = engine(&sim);
    let mut ac = resource(json!({"validPeriod": 30, "reset": {"token": "2026-12-01"}}));

    let report = sync(&engine, &mut ac, Timestamp::now()).await;
    assert_eq!(
        report.reason,
        reason::SYNCED,
        "{:?}",
        report.status.conditions
    );
    let counters = sim.counters();
    assert_eq!(counters.total_resets(), 10);
    assert!(
        counters.resets.values().all(|n| *n == 1),
        "never reset twice"
    );
    assert!(
        counters.updates.values().all(|n| *n == 1),
        "never updated twice"
    );
    assert_eq!(
        counters.calls_of(Operation::ShowActiveCode),
        20,
        "each unreadable answer settled by reading its code"
    );
    assert!(report.status.pending_resets.is_empty());
}

const SLOW_BATCH: u32 = 200;
const WRITES_PER_SECOND: f64 = 100.0;

/// A simulator that takes `WRITES_PER_SECOND` writes a second (429 above,
/// as the API gateway), with [`SLOW_BATCH`] codes.
async fn quota_simulator() -> Simulator {
    let sim = simulator(common::robot_seed(SLOW_BATCH, 7), FaultConfig::default()).await;
    sim.set_quotas(Some(Quotas {
        reads: 1000.0,
        writes: WRITES_PER_SECOND,
    }));
    sim
}

/// A reconciler paced at the simulator's write quota, whose reset grace
/// (300 ms) is far shorter than a batch of [`SLOW_BATCH`] resets takes (2 s):
/// as 60 s are to 200 resets at 3 a second.
fn slow_batch_engine(sim: &Simulator) -> Engine {
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

fn assert_each_code_reset_once(sim: &Simulator, codes: u32) {
    let counters = sim.counters();
    assert_eq!(counters.resets.len(), codes as usize, "every code reset");
    let twice: Vec<_> = counters.resets.iter().filter(|&(_, &n)| n != 1).collect();
    assert!(
        twice.is_empty(),
        "each code reset exactly once; {} were not, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(3)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_live_reconcilers_reset_each_code_once_when_a_batch_outlasts_the_grace() {
    let sim = quota_simulator().await;
    let (a, b) = (slow_batch_engine(&sim), slow_batch_engine(&sim));
    let stored = Mutex::new(Stored::default());
    let ac = resource(json!({"validPeriod": 7, "reset": {"token": "t1"}}));

    // A records its batch and resets at the quota; B, live beside it (an
    // overlapping install), finds A's intents once A is under way and
    // looks again every 50 ms, long past its 300 ms grace.
    let first = reconcile_fenced(&a, &stored, &ac);
    let second = async {
        until("A under way", || sim.counters().total_resets() >= 20).await;
        reconcile_until_converged(&b, &stored, &ac).await;
    };
    let (report, ()) = tokio::join!(first, second);
    if !report.converged {
        reconcile_until_converged(&a, &stored, &ac).await;
    }

    assert_each_code_reset_once(&sim, SLOW_BATCH);
    let status = stored.lock().unwrap().status.clone().unwrap();
    assert!(
        status.pending_resets.is_empty(),
        "{:?}",
        status.pending_resets
    );
    assert_eq!(status.reset_token.unwrap().progress, "200/200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_paused_mid_batch_resumes_after_the_other_took_over_and_resets_nothing_again() {
    let sim = quota_simulator().await;
    let (a, b) = (slow_batch_engine(&sim), slow_batch_engine(&sim));
    let stored = Mutex::new(Stored::default());
    let ac = resource(json!({"validPeriod": 7, "reset": {"token": "t1"}}));

    // A is stopped (SIGSTOP) a quarter into its batch: its reconcile is no
    // longer polled, calls in flight and all.
    let mut first = Box::pin(reconcile_fenced(&a, &stored, &ac));
    tokio::select! {
        _ = &mut first => panic!("A finished before it was paused"),
        () = until("A under way", || sim.counters().total_resets() >= 50) => {}
    }
    let at_pause = sim.counters().total_resets();
    assert!(at_pause < u64::from(SLOW_BATCH), "paused mid-batch");

    // B waits out A's call window and the grace, then takes the rest over.
    reconcile_until_converged(&b, &stored, &ac).await;
    assert_each_code_reset_once(&sim, SLOW_BATCH);
    let taken_over = sim.counters().total_resets() - at_pause;
    assert!(taken_over > 0, "B reset the codes A had not reached");

    // A resumes (SIGCONT): its window is over, so it starts nothing and
    // asks the status again, which B wrote since.
    let resumed = first.await;
    if !resumed.converged {
        reconcile_until_converged(&a, &stored, &ac).await;
    }
    assert_each_code_reset_once(&sim, SLOW_BATCH);
    println!("paused after {at_pause} resets; the other reconciler made {taken_over}");
}

#[tokio::test]
async fn an_intent_write_that_failed_takes_no_place_of_the_rollouts_batch() {
    let sim = simulator(ten_codes(), FaultConfig::default()).await;
    let engine = engine(&sim);
    let stored = Mutex::new(Stored {
        fail_next_intent_write: true,
        ..Stored::default()
    });
    let ac = resource(json!({"validPeriod": 7,
        "reset": {"token": "2026-12-01", "rollout": {"maxCodes": 3, "interval": "1h"}}}));
    let t0 = Timestamp::now();
    let reconcile = |at: Timestamp| {
        let host = Fenced::new(&stored);
        let ac = ac.clone();
        let engine = &engine;
        async move { engine.reconcile(&ac, &host, Mode::Normal, at).await }
    };

    // The intent write fails (the API server timed out): nothing starts.
    let failed = reconcile(t0).await;
    assert_eq!(failed.reason, reason::STATUS_NOT_SAVED);
    assert_eq!(sim.counters().total_resets(), 0);
    let rollout = failed.status.reset_token.clone().unwrap();
    assert_eq!(rollout.batch_resets, 0, "{rollout:?}");

    // The retry a minute later starts the first batch, not an hour later.
    let retried = reconcile(t0 + SignedDuration::from_mins(1)).await;
    assert_eq!(
        sim.counters().total_resets(),
        3,
        "{:?}",
        retried.status.conditions
    );
    assert_eq!(retried.reason, reason::ROTATING);
    assert_eq!(
        retried.status.reset_token.as_ref().unwrap().progress,
        "3/10"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_slowed_by_429s_past_its_window_records_the_rest_anew_and_resets_each_code_once() {
    let sim = quota_simulator().await;
    // The tenant's quota is lower than the operator's pace (another client
    // spends the rest): 429s slow the batch past its call window.
    sim.set_quotas(Some(Quotas {
        reads: 1000.0,
        writes: WRITES_PER_SECOND * 0.3,
    }));
    let engine = slow_batch_engine(&sim);
    let stored = Mutex::new(Stored::default());
    let ac = resource(json!({"validPeriod": 7, "reset": {"token": "t1"}}));

    let first = reconcile_fenced(&engine, &stored, &ac).await;
    let recorded = stored.lock().unwrap().intent_writes;
    assert!(
        recorded >= 2,
        "the resets left at the end of the window were recorded anew ({recorded} intent writes)"
    );
    assert!(sim.counters().answered("429") > 0, "the quota was hit");
    if !first.converged {
        reconcile_until_converged(&engine, &stored, &ac).await;
    }
    assert_each_code_reset_once(&sim, SLOW_BATCH);
}

#[tokio::test]
async fn an_intent_write_slower_than_its_call_window_starts_no_reset_and_the_next_sync_does() {
    let sim = simulator(ten_codes(), FaultConfig::default()).await;
    // Unpaced with a 1 s timeout: a batch's call window is 1 s, counted
    // from before its intent write.
    let options = ClientOptions {
        timeout: Duration::from_secs(1),
        ..fast_options()
    };
    let engine = engine_with(&sim, options);
    let stored = Mutex::new(Stored {
        intent_write_delay: Duration::from_millis(1500),
        ..Stored::default()
    });
    let ac = resource(json!({"validPeriod": 7, "reset": {"token": "t1"}}));

    let slow = reconcile_fenced(&engine, &stored, &ac).await;
    assert_eq!(
        slow.reason,
        reason::RESETTING,
        "{:?}",
        slow.status.conditions
    );
    assert_eq!(
        sim.counters().total_resets(),
        0,
        "no reset after its window"
    );
    assert!(
        slow.status.pending_resets.is_empty(),
        "nothing was sent, so nothing is in doubt: {:?}",
        slow.status.pending_resets
    );
    assert_eq!(slow.status.drift_count, 10);
    assert_eq!(slow.next, Next::Retry { at_least: None });

    stored.lock().unwrap().intent_write_delay = Duration::ZERO;
    let next = reconcile_fenced(&engine, &stored, &ac).await;
    assert_eq!(next.reason, reason::SYNCED, "{:?}", next.status.conditions);
    assert_each_code_reset_once(&sim, 10);
}
