//! Rotation at fleet scale, through the engine against the simulator: a
//! progressive rotation resets one batch per interval and each code
//! exactly once; renewal restarts a code's validity and keeps its value;
//! narrowing and widening the selection never resets a code twice for one
//! token, nor does a listing that misses a code, nor a 2xx whose body
//! cannot be read. The engine is given its clock, so an hour passes in no
//! time.

mod common;

use common::{ROBOT, fast_options, seed_yaml, simulator};
use jiff::{SignedDuration, Timestamp};
use metastudio_operator::crd::ActivationCode;
use metastudio_operator::engine::conditions::reason;
use metastudio_operator::engine::{Engine, Mode, Next, OperatorDefaults, ReconcileReport};
use metastudio_operator::metastudio::settings::ConnectionSettings;
use metastudio_operator::metastudio::{Operation, Transport};
use metastudio_operator::offline::host::OfflineHost;
use metastudio_operator::simulator::{FaultConfig, Simulator};
use metastudio_operator::tenancy::DefaultCredentialsScope;
use serde_json::{Value, json};
use std::time::Duration;

fn engine(sim: &Simulator) -> Engine {
    Engine::new(
        Transport::new(fast_options()).unwrap(),
        OperatorDefaults {
            settings: ConnectionSettings {
                endpoint: Some(sim.endpoint()),
                project_id: Some(sim.project_id().to_owned()),
                ..Default::default()
            },
            credentials: Some(common::good_credentials()),
            credentials_scope: DefaultCredentialsScope::Everyone,
            inline_endpoints: metastudio_operator::tenancy::InlineEndpoints::Any,
        },
    )
}

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
