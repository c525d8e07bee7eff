//! Scenario dp: `spec.deletionPolicy: Delete` against a real API server.
//! A counted resource holds the finalizer `metastudio.huaweicloud.com/
//! delete-codes`; deleting it deletes exactly the codes it created (a code
//! someone else made in its room stays), once each, then the resource goes.
//! A resource whose credentials Secret is gone when it is deleted says so
//! (DeletionBlocked, naming the Secret and the annotation), makes no call,
//! and goes with its codes kept once its owner annotates it
//! `metastudio.huaweicloud.com/orphan-codes: "true"`.

use crate::ReleaseFinalizer;
use crate::e2e::{OperatorProcess, Scenario, eventually};
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use metastudio_operator::crd::deletion::{FINALIZER, ORPHAN_ANNOTATION};
use metastudio_operator::metastudio::Operation;
use metastudio_operator::simulator::{DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, FaultConfig, Seed};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

const SINGLE: &[&str] = &["replicaCount=1", "leaderElection.enabled=false"];
const ROBOT: &str = "robot-0";

/// robot-0 with one code in room lobby that someone else created.
fn seed() -> Seed {
    Seed::from_yaml(&format!(
        "spec: {{robots: [{{robotId: {ROBOT}, codes: [{{activeCodeId: theirs, roomId: lobby, validPeriod: 7}}]}}]}}"
    ))
    .unwrap()
}

fn room(s: &Scenario, room: &str) -> BTreeSet<String> {
    s.sim
        .with_store(|store| store.all_codes())
        .into_iter()
        .filter(|c| c.room_id.as_deref() == Some(room))
        .map(|c| c.active_code_id)
        .collect()
}

/// Waits until `name` is Ready with `count` codes and holds the finalizer.
async fn counted_and_held(s: &Scenario, name: &str, count: u32) {
    let resources = s.resources();
    eventually(
        &format!("{name}: {count} codes, the finalizer held"),
        Duration::from_secs(120),
        || {
            let resources = resources.clone();
            async move {
                let current = resources.get(name).await.ok()?;
                let status = current.status.as_ref()?;
                let done = status.condition("Ready")?.status == "True"
                    && status.observed_generation == current.metadata.generation
                    && status.managed_codes == count
                    && current.finalizers().iter().any(|f| f == FINALIZER);
                done.then_some(())
            }
        },
    )
    .await;
}

async fn gone(s: &Scenario, name: &str) {
    let resources = s.resources();
    eventually(&format!("{name} gone"), Duration::from_secs(120), || {
        let resources = resources.clone();
        async move { resources.get_opt(name).await.ok()?.is_none().then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dp_deletion_policy_delete_removes_exactly_the_created_codes_and_a_blocked_one_lets_go_when_annotated()
 {
    let s = Scenario::start("delpolicy", seed(), FaultConfig::default(), SINGLE).await;
    let operator = OperatorProcess::start(&s.replica("delpolicy-0"));
    let _release = [
        ReleaseFinalizer {
            api: s.resources(),
            name: "kiosks".into(),
        },
        ReleaseFinalizer {
            api: s.resources(),
            name: "stuck".into(),
        },
    ];
    let mut hidden = s.secrets_to_hide();

    // Delete: 3 created beside theirs; deleting the resource deletes them.
    let spec = |room: &str, count: u32| json!({"roomId": room, "count": count, "deletionPolicy": "Delete"});
    s.apply(&s.manifest("kiosks", ROBOT, spec("lobby", 4)))
        .await;
    counted_and_held(&s, "kiosks", 4).await;
    let created: BTreeSet<String> = room(&s, "lobby")
        .into_iter()
        .filter(|c| c != "theirs")
        .collect();
    assert_eq!(created.len(), 3);
    hidden.extend(s.secrets_to_hide());
    s.resources()
        .delete("kiosks", &DeleteParams::default())
        .await
        .unwrap();
    gone(&s, "kiosks").await;
    assert_eq!(
        room(&s, "lobby"),
        BTreeSet::from(["theirs".to_owned()]),
        "exactly the created codes deleted"
    );
    let counters = s.sim.counters();
    assert_eq!(
        counters.deletes.keys().cloned().collect::<BTreeSet<_>>(),
        created
    );
    assert!(counters.deletes.values().all(|&n| n == 1), "each once");
    let deleted = crate::events_of(&s, "kiosks", "CodeDeleted").await;
    assert!(
        deleted.iter().any(|e| e
            .note
            .as_deref()
            .is_some_and(|n| n.contains("this resource created (spec.deletionPolicy: Delete)"))),
        "{deleted:?}"
    );

    // Blocked: its credentials Secret is gone when it is deleted.
    s.secrets()
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "stuck-credentials"},
                "stringData": {"accessKey": DEFAULT_ACCESS_KEY, "secretKey": DEFAULT_SECRET_KEY}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let mut stuck = s.manifest("stuck", ROBOT, spec("hall", 2));
    stuck["spec"]["connection"]["credentialsSecretRef"]["name"] = json!("stuck-credentials");
    s.apply(&stuck).await;
    counted_and_held(&s, "stuck", 2).await;
    hidden.extend(s.secrets_to_hide());
    let hall = room(&s, "hall");
    s.secrets()
        .delete("stuck-credentials", &DeleteParams::default())
        .await
        .unwrap();
    s.ready_reason("stuck", "CredentialsNotFound").await;
    s.resources()
        .delete("stuck", &DeleteParams::default())
        .await
        .unwrap();
    let blocked = s.ready_reason("stuck", "DeletionBlocked").await;
    let message = blocked
        .status
        .unwrap()
        .condition("Ready")
        .unwrap()
        .message
        .clone();
    for part in [
        "spec.deletionPolicy is Delete",
        "stuck-credentials",
        &format!(
            "kubectl annotate activationcode stuck -n {} {ORPHAN_ANNOTATION}=true",
            s.ns()
        ),
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
    let calls = s.sim.counters().total_calls();
    let annotate = json!({"metadata": {"annotations": {ORPHAN_ANNOTATION: "true"}}});
    s.resources()
        .patch("stuck", &PatchParams::default(), &Patch::Merge(&annotate))
        .await
        .unwrap();
    gone(&s, "stuck").await;
    assert_eq!(room(&s, "hall"), hall, "its codes kept");
    assert_eq!(
        s.sim.counters().total_calls(),
        calls,
        "no call once blocked"
    );
    assert_eq!(
        s.sim.counters().calls_of(Operation::DeleteActiveCode),
        counters.calls_of(Operation::DeleteActiveCode)
    );
    let orphaned = crate::events_of(&s, "stuck", "CodesOrphaned").await;
    assert_eq!(orphaned.len(), 1, "{orphaned:?}");
    s.assert_clean_logs(&[&operator], &hidden);
}
