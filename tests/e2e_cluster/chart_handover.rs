//! Scenario q: graceful handover between the chart's two pods, and kill -9
//! of the leader's container during a rotation.
//!
//! Deleting the leader pod (the kubelet sends SIGTERM) makes the operator
//! release its Lease, so another replica (the standby, or the pod that
//! replaces the deleted one, whichever looks first) leads before the lease
//! would have expired: its acquireTime is earlier than the old holder's
//! last renewTime plus the lease duration (15 s, the chart's default),
//! which no expiry allows. Then 20 ActivationCodes x 10 codes rotate a token against the
//! simulator in the cluster, which loses 30% of the reset answers, and the
//! new leader's container is killed with SIGKILL (through the node's
//! containerd) mid-rotation: the simulator's counters (its HTTP control
//! API, through the Service proxy) show every code reset exactly once.
//!
//! The chart runs with the suite's CRDs (`crds.enabled=false`), confined
//! to its namespace, with a short reset grace and the simulator's pace.

use crate::e2e::image;
use crate::e2e::in_cluster::{
    ClusterSimulator, can_kill_containers, container_id, fleet_seed_yaml, holder_among, kill_9,
    pods, restarts,
};
use crate::e2e::release::{Release, shipped_chart};
use crate::e2e::{Cluster, eventually};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use metastudio_operator::crd::ActivationCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant, SystemTime};

const FLEET: usize = 20;
const CODES: u32 = 10;
const WAIT: Duration = Duration::from_secs(240);

/// The chart's values for a scenario beside the others: the image, the
/// suite's CRDs, only `namespace` watched; the rest as shipped.
pub fn confined_values(image: &image::Image, namespace: &str) -> Vec<String> {
    let mut values = image.values().to_vec();
    values.push("crds.enabled=false".into());
    values.push(format!("watchNamespaces={{{namespace}}}"));
    values
}

/// An ActivationCode of robot `robot-I` through the simulator's connection
/// ([`ClusterSimulator::connect`]), with `spec`.
pub fn code_manifest(namespace: &str, i: usize, spec: Value) -> Value {
    let mut full = json!({"robotId": format!("robot-{i}"), "validPeriod": 7,
        "connectionRef": {"name": ClusterSimulator::CONNECTION}});
    if let (Some(full), Value::Object(extra)) = (full.as_object_mut(), spec) {
        full.extend(extra);
    }
    json!({"apiVersion": "metastudio.huaweicloud.com/v1alpha1", "kind": "ActivationCode",
           "metadata": {"name": format!("fleet-{i}"), "namespace": namespace}, "spec": full})
}

/// Applies `count` ActivationCodes (fleet-0, ...), fleet-I with `spec(I)`.
pub async fn apply_fleet(
    client: &kube::Client,
    namespace: &str,
    count: usize,
    spec: impl Fn(usize) -> Value,
) {
    let api: Api<ActivationCode> = Api::namespaced(client.clone(), namespace);
    for i in 0..count {
        let manifest = code_manifest(namespace, i, spec(i));
        api.patch(
            &format!("fleet-{i}"),
            &PatchParams::apply("kubectl"),
            &Patch::Apply(&manifest),
        )
        .await
        .unwrap_or_else(|e| panic!("apply fleet-{i}: {e}"));
    }
}

/// Waits until all `count` ActivationCodes are Ready for their generation.
pub async fn fleet_ready(client: &kube::Client, namespace: &str, count: usize, timeout: Duration) {
    let api: Api<ActivationCode> = Api::namespaced(client.clone(), namespace);
    eventually(
        &format!("{count} ActivationCodes to be Ready"),
        timeout,
        || async {
            let list = api.list(&Default::default()).await.ok()?;
            let ready = list
                .items
                .iter()
                .filter(|r| {
                    r.status.as_ref().is_some_and(|s| {
                        s.observed_generation == r.metadata.generation
                            && s.condition("Ready").is_some_and(|c| c.status == "True")
                    })
                })
                .count();
            (ready == count).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q_the_leader_hands_over_on_sigterm_and_kill_9_mid_rotation_resets_each_code_once() {
    let Some(image) = image::or_skip("scenario q") else {
        return;
    };
    let cluster = Cluster::connect().await;
    let client = cluster.client.clone();
    let namespace = cluster.namespace("q").await;
    let ns = namespace.name.as_str();
    let sim = ClusterSimulator::start(
        &client,
        ns,
        &image,
        &fleet_seed_yaml(FLEET, CODES, 7),
        &[
            "--latency",
            "5ms",
            "--lost-response-rate",
            "0.3",
            "--fault-operations",
            "ResetActiveCode",
            "--fault-seed",
            "3614",
        ],
    )
    .await;
    sim.connect(ns).await;
    let mut release = Release::new(&format!("q-{}", &ns[ns.len() - 4..]), ns);
    let mut values = confined_values(&image, ns);
    values.extend(["resetGrace=1s".into(), "defaults.writeRate=20".into()]);
    release.install(&shipped_chart(), &values, &[]);
    release.rolled_out(&client).await;
    apply_fleet(&client, ns, FLEET, |_| json!({})).await;
    fleet_ready(&client, ns, FLEET, WAIT).await;

    let new_leader = graceful_handover(&client, &release).await;

    apply_fleet(&client, ns, FLEET, |_| json!({"reset": {"token": "t1"}})).await;
    match can_kill_containers() {
        Ok(()) => {
            eventually("the rotation to be under way", WAIT, || async {
                (sim.counters().await.total_resets() >= 40).then_some(())
            })
            .await;
            let pods_api: Api<Pod> = Api::namespaced(client.clone(), ns);
            // A replacement pod may lead before the kubelet has reported its
            // container in the pod's status.
            let leader_pod =
                eventually("the leader's container in its pod status", WAIT, || async {
                    let pod = pods_api.get(&new_leader).await.ok()?;
                    container_id(&pod).map(|_| pod)
                })
                .await;
            kill_9(&leader_pod);
            let resets = sim.counters().await.total_resets();
            println!(
                "kill -9 of {new_leader}'s container after {resets} of {} resets",
                FLEET * CODES as usize
            );
        }
        Err(reason) => eprintln!("SKIPPED kill -9 of the leader's container: {reason}"),
    }
    fleet_ready(&client, ns, FLEET, WAIT).await;
    let counters = sim.counters().await;
    assert_eq!(
        counters.resets.len(),
        FLEET * CODES as usize,
        "every code reset"
    );
    let twice: Vec<_> = counters.resets.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "codes reset other than once: {twice:?}");
    if can_kill_containers().is_ok() {
        let killed = Api::<Pod>::namespaced(client.clone(), ns)
            .get(&new_leader)
            .await
            .unwrap();
        assert_eq!(
            restarts(&killed),
            1,
            "the killed container was restarted once"
        );
    }
    let logs = crate::e2e::in_cluster::pod_logs(ns, &release.pod_selector());
    crate::e2e::operator::assert_no_forbidden(&logs, "the operator's pods");
    release.uninstall();
}

/// Deletes the leader pod and waits for another replica to lead (the
/// standby, or the pod that replaces the deleted one, whichever is first);
/// asserts the Lease was released, not left to expire. The new leader.
async fn graceful_handover(client: &kube::Client, release: &Release) -> String {
    let ns = release.namespace.as_str();
    let lease_name = release.fullname();
    let names: Vec<String> = pods(client, ns, &release.pod_selector())
        .await
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    let leader = holder_among(client, ns, &lease_name, &names).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut last = leases.get(&lease_name).await.unwrap().spec.unwrap();
    let deleted = Instant::now();
    pods_api
        .delete(&leader, &DeleteParams::default())
        .await
        .unwrap();
    // Every read of the Lease until another replica holds it; the last
    // renewal of the leader is the last read that names it.
    let deadline = Instant::now() + Duration::from_secs(120);
    let taken = loop {
        if let Some(spec) = leases.get(&lease_name).await.ok().and_then(|l| l.spec) {
            match spec.holder_identity.as_deref() {
                Some(holder) if holder == leader => last = spec,
                Some(_) => break spec,
                None => {}
            }
        }
        assert!(
            Instant::now() < deadline,
            "no replica took the Lease within 120 s after {leader} was deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let new_leader = taken.holder_identity.clone().unwrap();
    let role = if names.contains(&new_leader) {
        "the standby"
    } else {
        "the replacement pod"
    };
    let took = deleted.elapsed();
    let duration =
        Duration::from_secs(u64::try_from(last.lease_duration_seconds.unwrap()).unwrap());
    let renewed = SystemTime::from(last.renew_time.unwrap().0);
    let acquired = SystemTime::from(taken.acquire_time.unwrap().0);
    println!(
        "graceful handover: {new_leader} ({role}) leads {took:?} after the deletion of {leader} (lease {duration:?}; acquired {:?} after the last renewal)",
        acquired.duration_since(renewed).unwrap_or_default()
    );
    assert!(
        acquired < renewed + duration,
        "{new_leader} took the Lease only after it expired ({:?} after the last renewal, lease {duration:?}): the leader did not release it on SIGTERM",
        acquired.duration_since(renewed).unwrap_or_default()
    );
    new_leader
}
