//! Scenario n: one ActivationCode with 10,000 codes rotates to completion
//! under a real API server, each code reset exactly once, and the stored
//! object stays under 512 KiB the whole way (etcd refuses objects over
//! 1.5 MiB; a status that grew with every intent would stop a rotation
//! like this one). The sizes printed are measurements; the bound is the
//! assertion.

use crate::common::offline::fleet_seed;
use crate::e2e::{OperatorProcess, Scenario, eventually};
use metastudio_operator::crd::ActivationCode;
use metastudio_operator::metastudio::Operation;
use metastudio_operator::simulator::FaultConfig;
use serde_json::json;
use std::cell::Cell;
use std::time::{Duration, Instant};

const SINGLE: &[&str] = &["replicaCount=1", "leaderElection.enabled=false"];
const CODES: u32 = 10_000;
/// The bound the issue sets for the stored object.
const MAX_OBJECT_BYTES: usize = 512 * 1024;

/// The object as the API server returns it, in bytes of JSON.
fn stored_size(resource: &ActivationCode) -> usize {
    serde_json::to_vec(resource).map_or(0, |json| json.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_ten_thousand_codes_rotate_once_each_within_512_kib() {
    let s = Scenario::start(
        "scale",
        fleet_seed(1, CODES, 7),
        FaultConfig::default(),
        SINGLE,
    )
    .await;
    let mut replica = s.replica("scale");
    // The simulator enforces no quota; the client's pace is not under test.
    replica.set("METASTUDIO_READ_RATE", "0");
    replica.set("METASTUDIO_WRITE_RATE", "0");
    let operator = OperatorProcess::start(&replica);
    s.apply(&s.manifest("huge", "robot-0", json!({}))).await;
    let adopted = s.ready("huge").await;
    assert_eq!(adopted.status.as_ref().unwrap().managed_codes, CODES);
    let mut hidden = s.secrets_to_hide();

    let started = Instant::now();
    s.apply(&s.manifest("huge", "robot-0", json!({"reset": {"token": "scale-1"}})))
        .await;
    let resources = s.resources();
    let largest = Cell::new(stored_size(&adopted));
    let done = eventually("10,000 codes rotated", Duration::from_secs(600), || {
        let resources = resources.clone();
        let largest = &largest;
        async move {
            let current = resources.get("huge").await.ok()?;
            largest.set(largest.get().max(stored_size(&current)));
            let status = current.status.as_ref()?;
            let finished = status.observed_generation == current.metadata.generation
                && status
                    .condition("Ready")
                    .is_some_and(|c| c.status == "True")
                && status.reset_token.as_ref().is_some_and(|r| r.done == CODES);
            finished.then_some(current)
        }
    })
    .await;
    let elapsed = started.elapsed();
    let largest = largest.get();
    let final_size = stored_size(&done);
    let counters = s.sim.counters();
    assert_eq!(counters.resets.len(), CODES as usize, "every code reset");
    let twice = counters.resets.values().filter(|&&n| n != 1).count();
    assert_eq!(twice, 0, "each code reset exactly once");
    assert!(
        largest < MAX_OBJECT_BYTES,
        "the stored object reached {largest} bytes"
    );
    let status = done.status.unwrap();
    assert!(status.pending_resets.is_empty());
    assert_eq!(status.reset_ledger.len(), 1);
    assert_eq!(status.reset_ledger[0].codes.len(), CODES as usize);
    println!(
        "10,000 codes rotated in {:.1} s ({} ResetActiveCode calls); stored object: largest seen {} bytes ({:.0} KiB), at the end {} bytes ({:.0} KiB)",
        elapsed.as_secs_f64(),
        counters.calls_of(Operation::ResetActiveCode),
        largest,
        largest as f64 / 1024.0,
        final_size,
        final_size as f64 / 1024.0
    );
    hidden.extend(s.secrets_to_hide());
    s.assert_clean_logs(&[&operator], &hidden);
}
