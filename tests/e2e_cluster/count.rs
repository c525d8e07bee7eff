//! Scenario z: two live reconcilers (two installs over the same namespace,
//! no leader election) scale one ActivationCode's room from 0 to 60 codes
//! (`spec.count`) at MetaStudio's lowest documented write quota, 3 a
//! second, which the simulator enforces with 429s as the API gateway does,
//! then down to 25 with `surplus: Delete`. The reconciler that loses an
//! intent write waits out the other's call window instead of creating (or
//! deleting) beside it: the room holds exactly the count after each step,
//! each code was created once and deleted at most once, and every code on
//! record as the resource's is one it created.

use crate::common::offline::fleet_seed;
use crate::e2e::{OperatorProcess, Scenario, eventually};
use metastudio_operator::metastudio::pacing::Quotas;
use metastudio_operator::metastudio::{ActiveCode, Operation};
use metastudio_operator::simulator::{FaultConfig, Simulator};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const SINGLE: &[&str] = &["replicaCount=1", "leaderElection.enabled=false"];
const ROOM: &str = "lobby";
const UP: usize = 60;
const DOWN: usize = 25;

fn room(sim: &Simulator) -> Vec<ActiveCode> {
    sim.with_store(|s| s.all_codes())
        .into_iter()
        .filter(|c| c.room_id.as_deref() == Some(ROOM))
        .collect()
}

/// Waits until the resource reports `count` codes for its current
/// generation with nothing in doubt, and the room holds them.
async fn scaled(s: &Scenario, count: usize) {
    let resources = s.resources();
    eventually(
        &format!("{count} codes in the room"),
        Duration::from_secs(300),
        || {
            let resources = resources.clone();
            let codes = room(&s.sim).len();
            async move {
                let current = resources.get("kiosks").await.ok()?;
                let status = current.status.as_ref()?;
                let settled = status.observed_generation == current.metadata.generation
                    && status.pending_creates.is_empty()
                    && status.pending_deletes.is_empty()
                    && status.managed_codes as usize == count
                    && codes == count;
                settled.then_some(())
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn z_two_live_reconcilers_scale_a_room_up_and_down_to_exactly_the_count() {
    let s = Scenario::start("count", fleet_seed(1, 0, 7), FaultConfig::default(), SINGLE).await;
    // The manifest names no region: both operators pace at the lowest
    // documented quotas (3 writes a second), the simulator's quota too. A
    // short grace and timeout keep the call windows, and so the scenario,
    // short.
    s.sim.set_quotas(Some(Quotas::LOWEST));
    let operators: Vec<OperatorProcess> = ["reconciler-a", "reconciler-b"]
        .into_iter()
        .map(|identity| {
            let mut replica = s.replica(identity);
            replica.set("METASTUDIO_TIMEOUT", "5s");
            replica.set("RESET_GRACE", "5s");
            OperatorProcess::start(&replica)
        })
        .collect();
    let mut hidden = s.secrets_to_hide();

    let started = Instant::now();
    let spec = |count: usize| json!({"roomId": ROOM, "count": count, "surplus": "Delete"});
    s.apply(&s.manifest("kiosks", "robot-0", spec(UP))).await;
    scaled(&s, UP).await;
    let up = started.elapsed();
    let ready = s.ready("kiosks").await;
    let status = ready.status.unwrap();
    let listed: BTreeSet<String> = room(&s.sim)
        .iter()
        .map(|c| c.active_code_id.clone())
        .collect();
    let created: BTreeSet<String> = status
        .created_code_ids()
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(created, listed, "every code on record as the resource's");
    assert_eq!(
        s.sim.counters().total_creates(),
        UP as u64,
        "each code created once"
    );
    hidden.extend(s.secrets_to_hide());

    let down_started = Instant::now();
    s.apply(&s.manifest("kiosks", "robot-0", spec(DOWN))).await;
    scaled(&s, DOWN).await;
    let down = down_started.elapsed();
    s.ready("kiosks").await;
    let counters = s.sim.counters();
    assert_eq!(
        counters.total_creates(),
        UP as u64,
        "no code created while scaling down"
    );
    assert_eq!(counters.deletes.len(), UP - DOWN, "the surplus deleted");
    assert!(
        counters.deletes.keys().all(|id| created.contains(id)),
        "only codes of the room were deleted"
    );
    println!(
        "0 -> {UP} codes at 3 writes/s under two live reconcilers: {:.1} s; {UP} -> {DOWN}: {:.1} s; {} CreateActiveCode calls ({} answered 429), {} DeleteActiveCode calls, {} codes deleted twice",
        up.as_secs_f64(),
        down.as_secs_f64(),
        counters.calls_of(Operation::CreateActiveCode),
        counters.calls_with(Operation::CreateActiveCode, "429"),
        counters.calls_of(Operation::DeleteActiveCode),
        counters.deletes.values().filter(|&&n| n > 1).count()
    );
    s.assert_clean_logs(&[&operators[0], &operators[1]], &hidden);
}
