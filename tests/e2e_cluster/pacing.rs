//! Scenario o: the operator's default pacing against a simulator that
//! enforces MetaStudio's flow control like the API gateway. Within the
//! quota no call is throttled; when the tenant's quota turns out lower
//! than the documented one (another client spends it), 429s slow the class
//! down and the rotation still resets each code exactly once.

use crate::common::offline::fleet_seed;
use crate::e2e::{OperatorProcess, Scenario};
use metastudio_operator::metastudio::pacing::Quotas;
use metastudio_operator::simulator::FaultConfig;
use serde_json::json;

const SINGLE: &[&str] = &["replicaCount=1", "leaderElection.enabled=false"];
const ROBOTS: usize = 4;
const CODES: u32 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o_paced_within_the_documented_quota_nothing_is_throttled() {
    let s = Scenario::start(
        "pacing",
        fleet_seed(ROBOTS, CODES, 7),
        FaultConfig::default(),
        SINGLE,
    )
    .await;
    // The operator's defaults name only an endpoint: no region, so it paces
    // at the lowest documented quotas (10 reads, 3 writes a second). The
    // simulator enforces twice the write quota: 40 unpaced updates would
    // still overrun it, and a stalled machine bunching a few paced calls
    // does not.
    s.sim.set_quotas(Some(Quotas {
        writes: 6.0,
        ..Quotas::LOWEST
    }));
    let _operator = OperatorProcess::start(&s.replica("pacing"));
    let names: Vec<String> = (0..ROBOTS).map(|i| format!("paced-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        s.apply(&s.manifest(name, &format!("robot-{i}"), json!({"validPeriod": 30})))
            .await;
    }
    for name in &names {
        s.ready(name).await;
    }
    let counters = s.sim.counters();
    assert_eq!(counters.answered("429"), 0, "{:?}", counters.calls);
    assert_eq!(counters.updates.len(), ROBOTS * CODES as usize);
    assert!(counters.updates.values().all(|n| *n == 1), "{counters:?}");

    // Another client now spends half the tenant's write quota: the
    // operator's 3 writes a second are too many.
    s.sim.set_quotas(Some(Quotas {
        writes: 1.5,
        ..Quotas::LOWEST
    }));
    s.apply(&s.manifest(
        &names[0],
        "robot-0",
        json!({"validPeriod": 30, "reset": {"token": "rotation-1"}}),
    ))
    .await;
    s.ready(&names[0]).await;
    let counters = s.sim.counters();
    assert!(counters.answered("429") > 0, "the lower quota was hit");
    assert_eq!(counters.resets.len(), CODES as usize);
    assert!(
        counters.resets.values().all(|n| *n == 1),
        "each code reset exactly once: {:?}",
        counters.resets
    );
}
