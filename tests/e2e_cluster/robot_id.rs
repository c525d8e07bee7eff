//! Scenario x: spec.robotId is immutable on every server. From Kubernetes
//! 1.25 the API server refuses a change by the CRD's CEL rule; an older one
//! (1.20 here) stores it, and the operator refuses it itself: the resource
//! gets Ready=False, Stalled, InvalidSpec naming the old and new robot and
//! the fix, with no MetaStudio call, its reset ledger kept and the other
//! robot's codes untouched; patching the robot back makes it Ready again,
//! without resetting a code twice.

use crate::common::offline::fleet_seed_with;
use crate::e2e::tools::{describe, kubectl};
use crate::e2e::{OperatorProcess, Scenario};
use metastudio_operator::simulator::FaultConfig;
use serde_json::json;

const SINGLE: &[&str] = &["replicaCount=1", "leaderElection.enabled=false"];

/// `kubectl patch` of kiosk's spec.robotId, as a user would.
fn patch_robot(s: &Scenario, robot: &str) -> std::process::Output {
    let patch = json!({"spec": {"robotId": robot}}).to_string();
    kubectl()
        .args(["patch", "activationcode", "kiosk", "-n", s.ns()])
        .args(["--type", "merge", "-p", &patch])
        .output()
        .expect("kubectl runs")
}

/// Robot `robot`'s codes: id, value and validity.
fn codes_of(s: &Scenario, robot: &str) -> Vec<(String, String, u16)> {
    s.sim.with_store(|store| {
        store
            .all_codes()
            .into_iter()
            .filter(|c| c.robot_id == robot)
            .map(|c| {
                let value = c.active_code.expose().to_owned();
                (c.active_code_id, value, c.valid_period)
            })
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_a_changed_robot_id_stops_the_resource_until_it_is_put_back() {
    // robot-1's codes are valid 3 days: managing them would update them.
    let seed = fleet_seed_with(2, 2, |i| if i == 0 { 7 } else { 3 });
    let s = Scenario::start("robotid", seed, FaultConfig::default(), SINGLE).await;
    let operator = OperatorProcess::start(&s.replica("robotid-0"));
    s.apply(&s.manifest("kiosk", "robot-0", json!({"reset": {"token": "t1"}})))
        .await;
    let ready = s.ready("kiosk").await.status.unwrap();
    assert_eq!(ready.robot_id.as_deref(), Some("robot-0"));
    let ledger = ready.reset_ledger.clone();
    assert_eq!(s.sim.counters().total_resets(), 2, "t1 resets each code");
    let calls = s.sim.counters().total_calls();
    let other_robot = codes_of(&s, "robot-1");
    let mut hidden = s.secrets_to_hide();

    let patched = patch_robot(&s, "robot-1");
    if s.cluster.supports_cel() {
        let refused = String::from_utf8_lossy(&patched.stderr);
        assert!(
            !patched.status.success() && refused.contains("robotId is immutable"),
            "the CRD's CEL rule refuses the change: {}",
            describe(&patched)
        );
        eprintln!(
            "SKIPPED the operator's own robotId check: the server is {}.{} and its CEL rule refused the change",
            s.cluster.version.0, s.cluster.version.1
        );
        s.assert_clean_logs(&[&operator], &hidden);
        return;
    }
    assert!(
        patched.status.success(),
        "a server without CEL stores the change: {}",
        describe(&patched)
    );
    let stopped = s.ready_reason("kiosk", "InvalidSpec").await;
    let status = stopped.status.unwrap();
    let message = &status.condition("Ready").unwrap().message;
    println!("after the patch: InvalidSpec: {message}");
    for expected in [
        "spec.robotId is immutable",
        "changed from \"robot-0\" to \"robot-1\"",
        "put spec.robotId back to \"robot-0\"",
        "delete this ActivationCode and create a new one for \"robot-1\"",
    ] {
        assert!(message.contains(expected), "{expected:?} in: {message}");
    }
    let stalled = status.condition("Stalled").expect("Stalled");
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "InvalidSpec")
    );
    assert_eq!(status.robot_id.as_deref(), Some("robot-0"));
    assert_eq!(status.reset_ledger, ledger, "the ledger is kept");
    assert_eq!(s.sim.counters().total_calls(), calls, "no MetaStudio call");
    assert_eq!(codes_of(&s, "robot-1"), other_robot, "robot-1 untouched");

    let back = patch_robot(&s, "robot-0");
    assert!(back.status.success(), "{}", describe(&back));
    let recovered = s.ready("kiosk").await.status.unwrap();
    assert!(recovered.condition("Stalled").is_none());
    assert_eq!(recovered.reset_ledger, ledger);
    assert_eq!(s.sim.counters().total_resets(), 2, "no code reset twice");
    hidden.extend(s.secrets_to_hide());
    s.assert_clean_logs(&[&operator], &hidden);
}
