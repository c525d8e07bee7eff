//! Scenario u: under the chart's own resource limits (256 MiB, 500m CPU),
//! 200 ActivationCodes x 10 codes, every code drifted (7 days, asked 30),
//! converge against the simulator in the cluster without a restart of the
//! operator's container. Prints the leader's peak memory, from its cgroup
//! (`memory.max_usage_in_bytes`, where the node is this machine), and how
//! long the fleet took.
//!
//! The chart runs with the suite's CRDs, confined to its namespace, and
//! without client-side pacing (the simulator enforces no quota): the load,
//! not the quota, is under test.

use super::chart_handover::{apply_fleet, confined_values, fleet_ready};
use crate::e2e::Cluster;
use crate::e2e::image;
use crate::e2e::in_cluster::{
    ClusterSimulator, assert_no_restarts, container_process, fleet_seed_yaml, holder_among,
    peak_memory, pods, status_field,
};
use crate::e2e::release::{Release, shipped_chart};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use serde_json::json;
use std::time::{Duration, Instant};

const FLEET: usize = 200;
const CODES: u32 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn u_two_hundred_resources_converge_under_the_charts_limits_without_a_restart() {
    let Some(image) = image::or_skip("scenario u") else {
        return;
    };
    let cluster = Cluster::connect().await;
    let client = cluster.client.clone();
    let namespace = cluster.namespace("u").await;
    let ns = namespace.name.as_str();
    let sim =
        ClusterSimulator::start(&client, ns, &image, &fleet_seed_yaml(FLEET, CODES, 7), &[]).await;
    sim.connect(ns).await;
    let mut release = Release::new(&format!("u-{}", &ns[ns.len() - 4..]), ns);
    let mut values = confined_values(&image, ns);
    values.extend(["defaults.readRate=0".into(), "defaults.writeRate=0".into()]);
    release.install(&shipped_chart(), &values, &[]);
    let deployment = release.rolled_out(&client).await;
    let resources = deployment.spec.template.spec.unwrap().containers[0]
        .resources
        .clone()
        .unwrap();
    let limits = resources.limits.unwrap();
    println!(
        "the operator's container limits: memory {}, cpu {}",
        limits["memory"].0, limits["cpu"].0
    );

    let started = Instant::now();
    apply_fleet(
        &client,
        ns,
        FLEET,
        |i| json!({"validPeriod": 30, "exportSecretRef": {"name": format!("fleet-{i}-codes")}}),
    )
    .await;
    fleet_ready(&client, ns, FLEET, Duration::from_secs(600)).await;
    let took = started.elapsed();
    let counters = sim.counters().await;
    assert_eq!(
        counters.updates.len(),
        FLEET * CODES as usize,
        "every code updated"
    );
    assert_no_restarts(&client, ns, &release.pod_selector()).await;

    let names: Vec<String> = pods(&client, ns, &release.pod_selector())
        .await
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    let leader = holder_among(&client, ns, &release.fullname(), &names).await;
    let pod = Api::<Pod>::namespaced(client.clone(), ns)
        .get(&leader)
        .await
        .unwrap();
    match peak_memory(&pod) {
        Ok((peak, limit)) => {
            // The process's own peak resident set, beside its cgroup's.
            let hwm = container_process(&pod)
                .ok()
                .and_then(|(status, _)| status_field(&status, "VmHWM").map(str::to_owned))
                .unwrap_or_default();
            println!(
                "{FLEET} ActivationCodes x {CODES} codes converged in {took:?} without a restart; the leader's peak memory {:.1} MiB of its {:.0} MiB limit (cgroup memory.max_usage_in_bytes; the process's VmHWM {hwm})",
                peak as f64 / 1048576.0,
                limit as f64 / 1048576.0
            );
            assert!(peak < limit, "the peak reached the limit");
        }
        Err(reason) => println!(
            "{FLEET} ActivationCodes x {CODES} codes converged in {took:?} without a restart; peak memory not measured: {reason}"
        ),
    }
    release.uninstall();
}
