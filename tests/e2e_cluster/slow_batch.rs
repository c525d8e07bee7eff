//! Scenario y: two live reconcilers (two installs over the same namespace,
//! no leader election) rotate 200 codes at MetaStudio's lowest documented
//! write quota, 3 a second, which the simulator enforces with 429s as the
//! API gateway does. The batch takes over a minute, longer than the reset
//! grace the operators are given; the reconciler that loses the intent
//! write waits out the winner's call window instead of taking the codes
//! the winner has not reached yet. Each code is reset exactly once, also
//! after both reconcilers have looked at the resource again.

use crate::common::offline::fleet_seed;
use crate::e2e::{OperatorProcess, Scenario, eventually};
use metastudio_operator::metastudio::Operation;
use metastudio_operator::metastudio::pacing::Quotas;
use metastudio_operator::simulator::FaultConfig;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const SINGLE: &[&str] = &["replicaCount=1", "leaderElection.enabled=false"];
const CODES: u32 = 200;

/// How many reconciles of the log ended converged ("reconciled").
fn converged_reconciles(operator: &OperatorProcess) -> usize {
    operator
        .log()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == "reconciled")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn y_two_live_reconcilers_reset_200_codes_once_at_3_writes_a_second() {
    let s = Scenario::start(
        "slowbatch",
        fleet_seed(1, CODES, 7),
        FaultConfig::default(),
        SINGLE,
    )
    .await;
    // The manifest names no region: both operators pace at the lowest
    // documented quotas (10 reads, 3 writes a second), the simulator's
    // quota too. A short grace (5 s, where 200 resets take at least 67 s)
    // and timeout keep the call window, and so the scenario, short.
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
    s.apply(&s.manifest("slow", "robot-0", json!({}))).await;
    s.ready("slow").await;
    let mut hidden = s.secrets_to_hide();
    let before: Vec<usize> = operators.iter().map(converged_reconciles).collect();

    let started = Instant::now();
    s.apply(&s.manifest("slow", "robot-0", json!({"reset": {"token": "slow-1"}})))
        .await;
    let resources = s.resources();
    eventually("200 codes rotated", Duration::from_secs(300), || {
        let resources = resources.clone();
        async move {
            let current = resources.get("slow").await.ok()?;
            let status = current.status.as_ref()?;
            let finished = status.observed_generation == current.metadata.generation
                && status.pending_resets.is_empty()
                && status.reset_token.as_ref().is_some_and(|r| r.done == CODES);
            finished.then_some(())
        }
    })
    .await;
    let rotated = started.elapsed();
    // Both have reconciled the resource since, to completion: the one that
    // waited did so after the winner's call window, and reset nothing.
    eventually(
        "both reconcilers converged after the rotation",
        Duration::from_secs(300),
        || {
            let converged = operators
                .iter()
                .zip(&before)
                .all(|(operator, &before)| converged_reconciles(operator) > before);
            async move { converged.then_some(()) }
        },
    )
    .await;

    let counters = s.sim.counters();
    assert_eq!(counters.resets.len(), CODES as usize, "every code reset");
    let twice: Vec<_> = counters.resets.iter().filter(|&(_, &n)| n != 1).collect();
    assert!(
        twice.is_empty(),
        "each code reset exactly once; {} were not, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(3)]
    );
    s.ready("slow").await;
    println!(
        "200 codes at 3 writes/s under two live reconcilers: rotated in {:.1} s, both converged after {:.1} s; {} ResetActiveCode calls, {} answered 429",
        rotated.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        counters.calls_of(Operation::ResetActiveCode),
        counters.calls_with(Operation::ResetActiveCode, "429")
    );
    hidden.extend(s.secrets_to_hide());
    s.assert_clean_logs(&[&operators[0], &operators[1]], &hidden);
}
