//! Consumers follow rotations, against a real API server and its
//! kube-controller-manager: a Deployment named in
//! `spec.exportSecretRef.restartTargets` (the chart installed with
//! `restartTargets.enabled=true`) rolls out once when it is first named,
//! once per rotation of the codes, and not on a sync without change: not
//! when the operator syncs again (its credentials Secret touched) nor when
//! it restarts. A rollout is a new `metadata.generation` and a new
//! ReplicaSet made by the Deployment controller; the Deployment has no
//! replicas, so no pod (and no image) is needed.

use crate::common::{ROBOT, robot_seed};
use crate::e2e::operator::sum_of;
use crate::e2e::tools::kubectl;
use crate::e2e::{OperatorProcess, Scenario, eventually};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use metastudio_operator::controller::restarts::HASH_ANNOTATION;
use metastudio_operator::simulator::FaultConfig;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;

const VALUES: &[&str] = &[
    "replicaCount=1",
    "leaderElection.enabled=false",
    "restartTargets.enabled=true",
];
const WAIT: Duration = Duration::from_secs(120);

/// Deployment `web`, no replicas.
fn web() -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "localhost/metastudio-e2e/none:1"}]}
            }
        }
    }))
    .unwrap()
}

/// What the cluster shows of web's rollouts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rollouts {
    generation: i64,
    replica_sets: usize,
    hash: Option<String>,
}

/// web's generation, its ReplicaSets and its pod template's hash, once the
/// Deployment controller has seen its generation.
async fn observed(s: &Scenario) -> Option<Rollouts> {
    let deployments: Api<Deployment> = Api::namespaced(s.cluster.client.clone(), s.ns());
    let web = deployments.get("web").await.ok()?;
    let generation = web.metadata.generation?;
    if web.status.as_ref()?.observed_generation != Some(generation) {
        return None;
    }
    let sets: Api<ReplicaSet> = Api::namespaced(s.cluster.client.clone(), s.ns());
    let uid = web.uid();
    let replica_sets = sets
        .list(&ListParams::default())
        .await
        .ok()?
        .items
        .iter()
        .filter(|rs| {
            rs.owner_references()
                .iter()
                .any(|o| Some(&o.uid) == uid.as_ref())
        })
        .count();
    let hash = web
        .spec
        .template
        .metadata
        .and_then(|m| m.annotations)
        .and_then(|a| a.get(HASH_ANNOTATION).cloned());
    Some(Rollouts {
        generation,
        replica_sets,
        hash,
    })
}

/// Waits until web has rolled out to generation `generation`, with one
/// ReplicaSet per generation.
async fn rolled_out(s: &Scenario, generation: i64) -> Rollouts {
    eventually(
        &format!("web at generation {generation} with {generation} ReplicaSets"),
        WAIT,
        || async {
            observed(s)
                .await
                .filter(|r| r.generation == generation && r.replica_sets == generation as usize)
        },
    )
    .await
}

/// web as the Deployment controller last saw it, whatever its generation.
async fn settled(s: &Scenario) -> Rollouts {
    eventually("the Deployment controller to see web", WAIT, || observed(s)).await
}

/// The reconciles the operator at `addr` has finished.
async fn reconciles(addr: SocketAddr) -> f64 {
    let (_, text) = crate::common::fake_api::get(&format!("http://{addr}/metrics")).await;
    sum_of(&text, "metastudio_reconciles_total")
}

/// Waits until the operator at `addr` has finished more than `before`
/// reconciles.
async fn reconciled_after(addr: SocketAddr, before: f64) {
    eventually("another reconcile of kiosk", WAIT, || async {
        (reconciles(addr).await > before).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt_a_deployment_rolls_out_once_per_rotation_and_not_on_a_resync() {
    let s = Scenario::start("restart", robot_seed(2, 7), FaultConfig::default(), VALUES).await;
    let deployments: Api<Deployment> = Api::namespaced(s.cluster.client.clone(), s.ns());
    deployments
        .create(&PostParams::default(), &web())
        .await
        .expect("create Deployment web");
    let created = rolled_out(&s, 1).await;
    assert_eq!(created.hash, None);
    let mut operator = OperatorProcess::start(&s.replica("restart-0"));
    let export = json!({"exportSecretRef": {"name": "kiosk-codes",
        "restartTargets": [{"kind": "Deployment", "name": "web"}]}});
    s.apply(&s.manifest("kiosk", ROBOT, export.clone())).await;
    s.ready("kiosk").await;
    let mut hidden = s.secrets_to_hide();

    // Named for the first time: the annotation is set, one rollout.
    let adopted = rolled_out(&s, 2).await;
    let first_hash = adopted.hash.clone().expect("web carries the hash");
    assert_eq!(first_hash.len(), 32, "{first_hash}");

    // A rotation: new values, one rollout more.
    let mut rotate: Value = export;
    rotate["reset"] = json!({"token": "t1"});
    s.apply(&s.manifest("kiosk", ROBOT, rotate)).await;
    s.ready("kiosk").await;
    assert_eq!(s.sim.counters().total_resets(), 2, "t1 resets each code");
    hidden.extend(s.secrets_to_hide());
    let rotated = rolled_out(&s, 3).await;
    println!("created {created:?}, named {adopted:?}, rotated {rotated:?}");
    assert_ne!(
        rotated.hash.as_ref(),
        Some(&first_hash),
        "the new values' hash"
    );

    // A sync without change: the credentials Secret touched, so kiosk is
    // reconciled again; web stays as it was.
    let addr = operator.metrics_addr().await;
    let before = reconciles(addr).await;
    s.secrets()
        .patch(
            crate::e2e::scenario::CREDENTIALS,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"touched": "1"}}})),
        )
        .await
        .expect("touch the credentials Secret");
    reconciled_after(addr, before).await;
    assert_eq!(settled(&s).await, rotated, "no rollout on a resync");

    // A restarted operator syncs everything anew: no rollout either.
    operator.kill_9();
    let mut restarted = OperatorProcess::start(&s.replica("restart-0"));
    let addr = restarted.metrics_addr().await;
    reconciled_after(addr, 0.0).await;
    let after = settled(&s).await;
    println!("after a resync and a restart: {after:?}");
    assert_eq!(after, rotated, "no rollout after a restart");
    let log = restarted.log();
    assert!(
        log.contains("\"reconciled\"") && !log.contains("cannot roll out"),
        "the restarted operator read web and left it: {log}"
    );

    // kubectl explain wraps descriptions: look for single words.
    let explain = eventually(
        "kubectl explain to know restartTargets",
        Duration::from_secs(60),
        || async {
            let output = kubectl()
                .args([
                    "explain",
                    "activationcode.spec.exportSecretRef.restartTargets",
                ])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&output.stdout).into_owned();
            (output.status.success() && text.contains("RestartTargetFailed")).then_some(text)
        },
    )
    .await;
    for expected in [
        "StatefulSets",
        "DaemonSets",
        "metastudio.huaweicloud.com/export-hash",
        "kind",
        "name",
    ] {
        assert!(explain.contains(expected), "{expected:?} in:\n{explain}");
    }
    s.assert_clean_logs(&[&restarted], &hidden);
}
